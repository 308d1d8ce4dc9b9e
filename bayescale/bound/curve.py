"""The bound at every logged step of whole runs (Bu et al.'s protocol): fit the first part
of each run, predict the rest, with bands.

    y_t = L_inf + θ1·(γ_u·S̃_t/S̃_ref)^(−p) + θ2·γ_u·K_t/K_ref,   γ_u = γ/γ_ref

S̃_t, K_t are the bound's shape terms at horizon t of the run's own schedule (so the
cooldown's drop in K_t is what predicts the loss drop); one parameter set serves all runs
of a cohort, whatever their schedule and base LR. p = 1 is the bound (θ1/(γ S̃)); its prior
is centred there. The exponent acts on the distance term γ·S̃ as a whole: on the 124M runs
at three base LRs, an exponent on S̃ alone (θ1·S̃^(−p)/γ) fits the first halves with twice
the residual and triples the held-out error, since the early loss falls with the LR area
γ·S̃, not with S̃ and 1/γ separately. Steps before ``burn_in`` are left out (the bound says
nothing about the first transient).

Sampled parameters. A power law with an offset puts (L_inf, θ1, p) on a curved ridge
(R-hat 1.02, bulk ESS ≈ 320 on the 124M runs); the sampler gets what the data pin down
instead: ``L_ref`` = L_inf + θ1 + θ2, the mean loss at the reference point (γ_u = S̃/S̃_ref =
K/K_ref = 1, inside the data), and ``log_slope`` = ln(p·θ1), the loss drop per unit of
ln(γ·S̃) there; p is left as the curvature. Noise is Student-t and independent across steps: the intervals ignore the
serial correlation of logged losses, so they are too narrow within a run (on the 124M runs,
residuals of consecutive logged steps correlate at 0.98, and the 90% bands cover about 77%
of the held-out halves). Two error models were tried on those runs and dropped: an
Ornstein–Uhlenbeck discrepancy per run (its correlation length came out longer than the
fitted half, the law's level lost its anchor and the chains did not converge: R-hat 1.53,
held-out coverage 0.53), and per-run level and coefficient effects around the shared law
(held-out error 0.76% instead of ≈1%, but each run's first half then pins its own curve,
the noise scale falls to 0.001 and coverage to 0.29, at 260 s for 2 × 200 draws). A third,
a level-plus-random-walk Gaussian discrepancy per run with its exact multivariate normal
likelihood, passed the synthetic tests but did not finish 4 × 2500 draws on the 124M runs
in 13 minutes here (a 116-step Cholesky and its gradient per evaluation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
from pymc_extras.prior import Prior

from bayescale.bound.data import read_runs, schedule_for
from bayescale.bound.final import BUDGET
from bayescale.core import summaries
from bayescale.core.convex_bound import shape_terms
from bayescale.core.errors import DataError
from bayescale.core.fit import BayesianFit, check_kind
from bayescale.core.tracker import load_export_dirs, stitched, to_curve_rows

PARAMS = ["L_ref", "log_slope", "log_theta2", "p", "sigma"]
RUN_FIELDS = ["schedule", "cooldown", "decay_type", "final_lr", "warmup_steps", "total_steps", "lr"]


def mean_loss(gamma_u, S_rel, K_rel, L_inf, theta1, theta2, p, xp=np):
    return L_inf + theta1 * xp.exp(-p * xp.log(gamma_u * S_rel)) + theta2 * gamma_u * K_rel


def bound_params(L_ref, log_slope, log_theta2, p, xp=np) -> dict:
    """(L_inf, θ1, θ2, p) of ``mean_loss`` from the sampled parameters."""
    theta1 = xp.exp(log_slope) / p
    theta2 = xp.exp(log_theta2)
    return {"L_inf": L_ref - theta1 - theta2, "theta1": theta1, "theta2": theta2, "p": p}


def curve_table(path, runs: list[str], fit_fraction: float = 0.5, burn_in: int = 2000) -> pd.DataFrame:
    """Logged validation losses of ``runs`` (cooldowns stitched onto their parents) with
    each run's schedule description; ``split`` is "fit" up to ``fit_fraction`` of the
    run's horizon, "test" after."""
    meta, _ = read_runs(path)
    meta = meta.set_index("run")
    missing = [r for r in runs if r not in meta.index]
    if missing:
        raise DataError(f"{path}: no run(s) {missing}")
    exports, _ = load_export_dirs(path)
    table = pd.concat([to_curve_rows(stitched(run, exports), run) for run in runs], ignore_index=True)
    # the logged LR is dropped: the shape terms come from each run's schedule, ``lr`` is the base LR
    table = table[table["observed"] & (table["step"] >= burn_in)].drop(columns="lr")
    table = table.join(meta[RUN_FIELDS], on="run")
    table = table[table["step"] <= table["total_steps"]]
    table["split"] = np.where(table["step"] <= fit_fraction * table["total_steps"], "fit", "test")
    return table[["run", "step", "loss", "split", *RUN_FIELDS]].reset_index(drop=True)


class BoundCurveFit(BayesianFit):
    kind = "bound"
    law = "curve"
    sampler_defaults = BUDGET

    def default_model_config(self):
        return {"nu": 4.0}

    def default_priors(self):
        return {
            "L_ref": Prior("Normal", mu=3.0, sigma=1.0),
            "log_slope": Prior("Normal", mu=np.log(0.1), sigma=1.5),
            "log_theta2": Prior("Normal", mu=np.log(0.05), sigma=1.5),
            "p": Prior("TruncatedNormal", mu=1.0, sigma=0.3, lower=0.05, upper=2.0),
            "sigma": Prior("HalfNormal", sigma=0.02),
        }

    def scaled_priors(self):
        return {"L_ref": Prior("Normal", mu=float(self.fit_rows["loss"].median()), sigma=0.3)}

    @property
    def param_names(self):
        return PARAMS

    def prepare(self, data):
        table = pd.DataFrame(data)
        missing = [c for c in ["run", "step", "loss", "split", *RUN_FIELDS] if c not in table]
        if missing:
            raise DataError(f"a curve table needs columns {missing} (see curve_table)")
        table = table.reset_index(drop=True)
        self.all_data = self._with_terms(table)
        fit_rows = self.all_data[self.all_data["split"] == "fit"]
        self.derived["scales"] = {
            "gamma_ref": float(np.exp(np.log(table["lr"]).mean())),
            "S_ref": float(fit_rows["S_tilde"].median()),
            "K_ref": float(fit_rows["K"].median()),
        }
        self.data = table  # stored whole so that load() restores the held-out part too
        self.fit_rows = fit_rows.reset_index(drop=True)

    @staticmethod
    def _with_terms(table: pd.DataFrame) -> pd.DataFrame:
        parts = []
        for run, rows in table.groupby("run", sort=False):
            schedule = schedule_for(rows.iloc[0])
            terms = shape_terms(schedule, rows["step"].to_numpy(int))
            parts.append(rows.assign(S_tilde=terms["S_tilde"].to_numpy(), K=terms["K"].to_numpy()))
        out = pd.concat(parts)
        bad = out[~np.isfinite(out["K"])]
        if len(bad):
            raise DataError(f"run {bad['run'].iloc[0]!r}: the bound is undefined at step {bad['step'].iloc[0]} (zero LR)")
        return out.sort_index()

    def _scaled(self, frame):
        s = self.derived["scales"]
        return (frame["lr"].to_numpy(float) / s["gamma_ref"], frame["S_tilde"].to_numpy(float) / s["S_ref"],
                frame["K"].to_numpy(float) / s["K_ref"])

    def build_model(self):
        gamma_u, S_rel, K_rel = self._scaled(self.fit_rows)
        with pm.Model(coords={"point": np.arange(len(self.fit_rows))}) as model:
            v = {name: self.priors[name].create_variable(name) for name in PARAMS}
            law = bound_params(v["L_ref"], v["log_slope"], v["log_theta2"], v["p"], xp=pm.math)
            pm.Deterministic("L_inf", law["L_inf"])
            mu = mean_loss(gamma_u, S_rel, K_rel, **law, xp=pm.math)
            pm.StudentT("loss", nu=self.model_config["nu"], mu=mu, sigma=v["sigma"],
                        observed=self.fit_rows["loss"].to_numpy(), dims="point")
        return model

    def _draws_at(self, frame: pd.DataFrame, observed: bool, seed: int = 0) -> np.ndarray:
        """Draws (draws, rows) of the mean loss at the rows of ``frame`` (with their shape
        terms), with the Student-t noise when ``observed``."""
        gamma_u, S_rel, K_rel = self._scaled(frame)
        d = {k: self.draws(k)[:, None] for k in PARAMS}
        mu = mean_loss(gamma_u[None], S_rel[None], K_rel[None], **bound_params(d["L_ref"], d["log_slope"], d["log_theta2"], d["p"]))
        if not observed:
            return mu
        return mu + d["sigma"] * np.random.default_rng(seed).standard_t(self.model_config["nu"], size=mu.shape)

    def predict(self, data, prob: float = 0.9, kind: str = "mean", seed: int = 0) -> pd.DataFrame:
        """The rows of ``data`` (a curve table, as ``curve_table`` writes) with the posterior
        mean and central ``prob`` interval of the loss at each step: the law's mean, or
        (``kind="observation"``) a logged loss with its noise."""
        summaries.check_prob(prob)
        rows = pd.DataFrame(data).reset_index(drop=True)
        draws = self._draws_at(self._with_terms(rows), check_kind(kind) == "observation", seed)
        return summaries.predictions(rows, draws, prob)

    def bands(self, prob: float = 0.9) -> pd.DataFrame:
        """Every logged step (fit and held-out) with the posterior mean curve's median and
        a central ``prob`` band of the predicted observation (mean + Student-t noise)."""
        band = summaries.central(self._draws_at(self.all_data, observed=True), prob)
        return self.all_data[["run", "step", "loss", "split", "lr"]].assign(
            predicted=np.median(self._draws_at(self.all_data, observed=False), axis=0), lower=band["lower"],
            upper=band["upper"]).reset_index(drop=True)

    def holdout_error(self, prob: float = 0.9) -> pd.DataFrame:
        """Per run: mean and worst relative error on the held-out part, and band coverage."""
        b = self.bands(prob)
        test = b[b["split"] == "test"].assign(rel=lambda f: (f["predicted"] - f["loss"]).abs() / f["loss"],
                                              covered=lambda f: (f["lower"] <= f["loss"]) & (f["loss"] <= f["upper"]))
        return test.groupby("run").agg(n=("rel", "size"), mean_rel_error=("rel", "mean"), worst_rel_error=("rel", "max"),
                                       coverage=("covered", "mean")).reset_index()
