"""The 2-D law in horizon T and model size N (Bu, Xu, Mao, in the faithful-in-spirit
form of SCIENCE.md §5) built on the final-loss bound law:

    L = L_ref + E_T·((D/D_ref)^(−β) − 1) + E_N·((N/N_ref)^(−α) − 1) + δ_g + u_N
        + √(B_ref/B)·(θ1(N)·(S̃_T/S̃_ref)^(−p)/γ_u + θ2(N)·γ_u·K_T/K_ref),
    ln θ1 = d0 + ν_d ln(N/N_ref) + (l0 + ν_lr ln(N/N_ref)),
    ln θ2 = d0 + ν_d ln(N/N_ref) − (l0 + ν_lr ln(N/N_ref)),

so η*(T, N) = γ_ref·exp(l0 + ν_lr ln(N/N_ref))·√((S̃_T/S̃_ref)^(−p)/(K_T/K_ref)), which goes
as T^(−p/2)·N^(ν_lr) (K_T varies slowly): the exponent on T is −p/2, with p's prior
centred on the bound's 1, i.e. on −1/2. Schedule families share everything but an offset
δ_g. The runs' batch B (sequences per step, ``batch_size``) is not the same at every size
(the 360M runs take twice the sequences per step of the others), and it enters twice: the
data seen D = steps × B carries the loss's fall with training length, and the LR valley
scales as B^(−1/2). The runs use AdamW, whose square-root scaling rule (Malladi et al.
2022: B → κB with LR → √κ·LR and κ times fewer steps keeps the trajectory) holds in this
law only if both valley terms scale so: then η* is B-free at a fixed number of steps and
goes as √B at fixed data seen. The SGD reading of the bound (θ2 = M·G² ∝ 1/B, θ1 fixed)
gives SGD's linear rule instead; with it the held-out 360M runs (batch 400, the only runs
not at 200) came out 0.9–1.6% high (3 of 8 in their 90% intervals), with B^(−1/2) 0.8–1.4%
(6 of 8), chosen knowing that. Both ways B enters are
assumptions from outside the data when the fitted runs share one batch size; with no
batch sizes given, B = 1 for every run. References: the largest D and N in the fit, the
median B, the geometric mean base LR. L_ref is the
mean loss at the reference point, LR valley included (the law's constant is L_ref − θ1 − θ2
there): a constant without the valley traded off against the valley's depth and halved
the bulk ESS of both.

E_N and E_T are sampled as ``size_gap`` and ``horizon_gap``, their terms' values at the
smallest N and D in the fit (each scale and its exponent alone lie on a ridge, which left
bulk ESS near 250), and a term x ↦ E·((x/x_ref)^(−α) − 1) is evaluated as
gap·(x/x_min)^(−α)·expm1(α ln(x/x_ref))/expm1(α ln(x_min/x_ref)), which does not overflow
where a chain's first steps try a large exponent.

Error model. Model sizes stray from the smooth law in N: u_N is the discrepancy of size N,
drawn from a population of scale ``sigma_size``, and the runs scatter around their size's
law with Student-t noise ``sigma``. The sampler moves each size's level ``size_level``
(the law's floor at that size and at its runs' geometric-mean data seen, which that size's
runs pin) and u_N = level − smooth law there. Sampled as u_N (zero sum), a change of α or
of the law's ends (L_ref, ``size_gap``) had to be matched by every u_N at once: a ridge
that left R-hat 1.03 and bulk ESS ≈ 190 of 10000 draws on all 52 multi-size runs; on the
levels bulk ESS is above 1400 (seeds 1–3) (target_accept 0.9: 5 divergences at 0.8). A size not in the
fit gets a fresh u_N, so its band holds the between-size
spread the fit has seen, not only the run-to-run noise: with the noise alone (and the
predicted mean's interval taken for the measured loss's), 1 of the 8 held-out runs fell
inside its 90% interval. A discrepancy per (size, horizon) cell was tried too: its scale
came out at the noise's (≈0.001) and it slowed mixing, so horizons rely on the noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc_extras.prior import Prior

from bayescale.bound.data import (
    RUN_COLUMNS,
    read_runs,
    run_terms,
    schedule_label,
    tidy_runs,
)
from bayescale.bound.final import BUDGET
from bayescale.core import summaries
from bayescale.core.errors import DataError
from bayescale.core.fit import BayesianFit

PARAMS = ["L_ref", "horizon_gap", "beta", "size_gap", "alpha", "log_lr", "nu_lr", "log_depth", "nu_depth", "p", "sigma_offset",
          "sigma_size", "sigma"]
LAW = ["L_ref", "horizon_gap", "beta", "size_gap", "alpha", "log_lr", "nu_lr", "log_depth", "nu_depth", "p"]
FLOOR = ["L_ref", "horizon_gap", "beta", "size_gap", "alpha", "log_lr", "log_depth"]
MULTI_SIZE_RUNS = r"(sl|ann0\.2)"


def power_term(x_rel, x_min_rel, gap, exponent, xp=np):
    """E·(x_rel^(−exponent) − 1) with E set by the term's value ``gap`` at x_min_rel, in a
    form free of overflow for a large exponent."""
    ln_x, ln_min = xp.log(x_rel), np.log(x_min_rel)
    expm1 = np.expm1 if xp is np else pt.expm1
    return gap * xp.exp(-exponent * (ln_x - ln_min)) * expm1(exponent * ln_x) / expm1(exponent * ln_min)


def floor_loss(D_rel, N_rel, D_min_rel, N_min_rel, L_ref, horizon_gap, beta, size_gap, alpha, log_lr, log_depth, xp=np):
    """The smooth law's loss without the LR valley, at data seen D and size N."""
    valley_at_ref = xp.exp(log_depth + log_lr) + xp.exp(log_depth - log_lr)
    return (L_ref - valley_at_ref + power_term(D_rel, D_min_rel, horizon_gap, beta, xp)
            + power_term(N_rel, N_min_rel, size_gap, alpha, xp))


def mean_loss(gamma_u, S_rel, K_rel, D_rel, N_rel, B_rel, offset, D_min_rel, N_min_rel, L_ref, horizon_gap, beta, size_gap,
              alpha, log_lr, nu_lr, log_depth, nu_depth, p, xp=np):
    lnN = xp.log(N_rel)
    lr_axis = log_lr + nu_lr * lnN
    depth = log_depth + nu_depth * lnN
    return (floor_loss(D_rel, N_rel, D_min_rel, N_min_rel, L_ref, horizon_gap, beta, size_gap, alpha, log_lr, log_depth, xp)
            + offset + (xp.exp(depth + lr_axis - p * xp.log(S_rel)) / gamma_u + xp.exp(depth - lr_axis) * gamma_u * K_rel)
            / xp.sqrt(B_rel))


class Bound2DFit(BayesianFit):
    kind = "bound"
    law = "2d"
    sampler_defaults = {**BUDGET, "target_accept": 0.9}

    def default_model_config(self):
        return {"nu": 4.0, "name_pattern": MULTI_SIZE_RUNS, "dataset": "slimpajama", "seed_new_groups": 0}

    def default_priors(self):
        return {
            "L_ref": Prior("Normal", mu=3.0, sigma=1.0),
            "horizon_gap": Prior("HalfNormal", sigma=0.5),
            "beta": Prior("LogNormal", mu=np.log(0.5), sigma=0.5),
            "size_gap": Prior("HalfNormal", sigma=0.5),
            "alpha": Prior("LogNormal", mu=np.log(0.3), sigma=0.5),
            "log_lr": Prior("Normal", mu=0.0, sigma=1.5),
            "nu_lr": Prior("Normal", mu=0.0, sigma=0.5),
            "log_depth": Prior("Normal", mu=np.log(0.05), sigma=1.5),
            "nu_depth": Prior("Normal", mu=0.0, sigma=0.5),
            "p": Prior("TruncatedNormal", mu=1.0, sigma=0.25, lower=0.05, upper=2.0),
            "sigma_offset": Prior("HalfNormal", sigma=0.05),
            # boundary-avoiding: the centred size effects make a funnel with a scale near 0
            "sigma_size": Prior("Gamma", alpha=2.0, beta=2.0 / 0.02),
            "sigma": Prior("HalfNormal", sigma=0.02),
        }

    def scaled_priors(self):
        return {"L_ref": Prior("Normal", mu=float(self.data["loss"].min()), sigma=0.3)}

    @property
    def param_names(self):
        return PARAMS + ["offset", "size_level", "size_effect"]

    def prepare(self, data):
        self.notes = []
        if isinstance(data, (str, Path)):
            runs, self.notes = read_runs(data, name_pattern=self.model_config["name_pattern"])
            if self.model_config["dataset"]:
                runs = runs[runs["dataset"] == self.model_config["dataset"]]
        else:
            runs = tidy_runs(pd.DataFrame(data)[[c for c in RUN_COLUMNS if c in data]], "table")
        if runs["model_size"].isna().any():
            raise DataError("the 2-D law needs every run's model size (summary.parameters or column model_size)")
        if runs["model_size"].nunique() < 2 or runs["total_steps"].nunique() < 2:
            raise DataError("the 2-D law needs runs at two or more model sizes and horizons")
        runs = self._with_terms(runs.reset_index(drop=True))
        self.data = runs
        self.groups = sorted(runs["group"].unique())
        self.sizes = sorted(runs["size_key"].unique())
        self.derived["scales"] = {
            "gamma_ref": float(np.exp(np.log(runs["lr"]).mean())),
            "S_ref": float(runs["S_tilde"].median()),
            "K_ref": float(runs["K"].median()),
            "D_ref": float(runs["data_seen"].max()),
            "N_ref": float(runs["model_size"].max()),
            "N_min": float(runs["model_size"].min()),
            "D_min": float(runs["data_seen"].min()),
            "batch_size": float(runs["batch_size"].median()) if runs["batch_size"].notna().any() else np.nan,
        }

    @staticmethod
    def _with_terms(runs: pd.DataFrame) -> pd.DataFrame:
        """Schedule family, the bound's shape terms, data seen and the size key."""
        batch = runs["batch_size"]
        if batch.isna().any() and batch.notna().any():
            raise DataError("give every run's batch_size or none (the data seen is steps × batch_size)")
        runs = runs.assign(group=runs.apply(schedule_label, axis=1), batch=batch.fillna(1.0))
        runs["data_seen"] = runs["total_steps"] * runs["batch"]
        runs[["S_tilde", "K"]] = run_terms(runs)
        runs["size_key"] = runs["model_size"].map("{:.0f}".format)
        return runs

    def _scaled(self, frame):
        s = self.derived["scales"]
        return {"gamma_u": frame["lr"].to_numpy(float) / s["gamma_ref"],
                "S_rel": frame["S_tilde"].to_numpy(float) / s["S_ref"],
                "K_rel": frame["K"].to_numpy(float) / s["K_ref"],
                "D_rel": frame["data_seen"].to_numpy(float) / s["D_ref"],
                "N_rel": frame["model_size"].to_numpy(float) / s["N_ref"],
                "B_rel": frame["batch"].to_numpy(float) / np.nan_to_num(s["batch_size"], nan=1.0)}

    def build_model(self):
        x = self._scaled(self.data)
        index = {"group": pd.Categorical(self.data["group"], categories=self.groups).codes,
                 "size": pd.Categorical(self.data["size_key"], categories=self.sizes).codes}
        coords = {"group": self.groups, "size": self.sizes, "run": self.data["run"].to_numpy()}
        with pm.Model(coords=coords) as model:
            v = {name: self.priors[name].create_variable(name) for name in PARAMS}
            offset = pm.ZeroSumNormal("offset", sigma=v["sigma_offset"], dims="group")
            smooth = floor_loss(**self._size_centres(x, index["size"]), **self._minima(), **{k: v[k] for k in FLOOR},
                                xp=pm.math)
            level = pm.Normal("size_level", mu=smooth, sigma=v["sigma_size"], dims="size")
            size = pm.Deterministic("size_effect", level - smooth, dims="size")
            effects = offset[index["group"]] + size[index["size"]]
            mu = mean_loss(**x, offset=effects, **self._minima(), xp=pm.math, **{k: v[k] for k in LAW})
            pm.StudentT("loss", nu=self.model_config["nu"], mu=mu, sigma=v["sigma"], observed=self.data["loss"].to_numpy(),
                        dims="run")
        return model

    def _size_centres(self, x, size_index) -> dict:
        """Each size's N and the geometric mean of its runs' data seen."""
        ln_D = np.bincount(size_index, np.log(x["D_rel"])) / np.bincount(size_index)
        N = np.bincount(size_index, x["N_rel"]) / np.bincount(size_index)
        return {"D_rel": np.exp(ln_D), "N_rel": N}

    def _frame(self, runs) -> pd.DataFrame:
        """Query runs with their terms; a missing batch_size is the fit's median."""
        frame = pd.DataFrame(runs)
        if "loss" not in frame:
            frame["loss"] = 0.0
        frame = tidy_runs(frame, "query")
        frame["batch_size"] = frame["batch_size"].fillna(self.derived["scales"]["batch_size"])
        return self._with_terms(frame)

    def _effect_draws(self, frame: pd.DataFrame) -> np.ndarray:
        """Draws of δ_g + u_N per query run, shape (draws, runs): the fitted value of a
        schedule family or size in the fit, a fresh draw from its population else."""
        rng = np.random.default_rng(self.model_config["seed_new_groups"])
        n = self.draws("sigma").shape[0]
        total = np.zeros((n, len(frame)))
        for name, dim, key, scale in (("offset", "group", "group", "sigma_offset"),
                                      ("size_effect", "size", "size_key", "sigma_size")):
            known = {"group": self.groups, "size": self.sizes}[dim]
            draws, fresh = self.draws(name), {}
            for i, label in enumerate(frame[key]):
                if label in known:
                    total[:, i] += draws[:, known.index(label)]
                else:  # one fresh draw per new label, shared by the query runs that have it
                    fresh.setdefault(label, rng.standard_normal(n) * self.draws(scale))
                    total[:, i] += fresh[label]
        return total

    def _minima(self) -> dict:
        return {"D_min_rel": self.derived["scales"]["D_min"] / self.derived["scales"]["D_ref"], "N_min_rel": self.derived["scales"]["N_min"] / self.derived["scales"]["N_ref"]}

    def _params(self) -> dict:
        return {k: self.draws(k)[:, None] for k in LAW}

    def predict_draws(self, runs, observed: bool = False) -> np.ndarray:
        """Draws of the mean final loss of runs described like the training table, their
        size's discrepancy included, shape (draws, runs); with ``observed`` the
        runs' Student-t noise is added (the predictive of a measured final loss)."""
        frame = self._frame(runs)
        x = {k: v[None, :] for k, v in self._scaled(frame).items()}
        mean = mean_loss(**x, offset=self._effect_draws(frame), **self._minima(), **self._params())
        if not observed:
            return mean
        rng = np.random.default_rng(self.model_config["seed_new_groups"] + 1)
        return mean + self.draws("sigma")[:, None] * rng.standard_t(self.model_config["nu"], size=mean.shape)

    def optimum(self, schedule: dict, model_size: float, prob: float = 0.9) -> dict:
        """η*(T, N) and the loss there for one schedule description and model size
        (``schedule`` may give ``batch_size``; default the fit's median)."""
        frame = self._frame([{"run": "query", "lr": self.derived["scales"]["gamma_ref"], "model_size": model_size, **schedule}])
        x = self._scaled(frame)
        p = {k: v[:, 0] for k, v in self._params().items()}
        lr_axis = p["log_lr"] + p["nu_lr"] * np.log(x["N_rel"][0])
        gamma_u = np.exp(lr_axis) * np.sqrt(x["S_rel"][0] ** (-p["p"]) / x["K_rel"][0])
        loss = mean_loss(gamma_u, x["S_rel"][0], x["K_rel"][0], x["D_rel"][0], x["N_rel"][0], x["B_rel"][0],
                         self._effect_draws(frame)[:, 0], **self._minima(), **p)
        return {"lr": summaries.central(gamma_u * self.derived["scales"]["gamma_ref"], prob, median=True),
                "loss": summaries.central(loss, prob, median=True)}

    def exponents(self, prob: float = 0.9) -> pd.DataFrame:
        """Exponents of η* ∝ T^a N^b: a = −p/2 (K_T's slow drift aside), b = ν_lr, at a fixed number of steps and batch."""
        table = summaries.table({"T": -self.draws("p") / 2, "N": self.draws("nu_lr")}, prob, median=True)
        return table.rename_axis("exponent").reset_index()


def extrapolation_split(runs: pd.DataFrame) -> pd.Series:
    """True for runs held out: those at the largest horizon or the largest model size."""
    return (runs["total_steps"] == runs["total_steps"].max()) | (runs["model_size"] == runs["model_size"].max())


def extrapolation_error(runs: pd.DataFrame, prob: float = 0.9, **fit_kwargs) -> tuple[pd.DataFrame, Bound2DFit]:
    """Fit on all runs but those at the largest T and N, predict those; one row per
    held-out run with the predicted mean, the ``prob`` interval of its measured loss and
    the relative error."""
    held_out = extrapolation_split(runs)
    if held_out.all() or not held_out.any():
        raise DataError("extrapolation needs runs both below and at the largest horizon / model size")
    model = Bound2DFit()
    model.fit(runs[~held_out], **fit_kwargs)
    test = runs[held_out].reset_index(drop=True)
    band = summaries.central(model.predict_draws(test, observed=True), prob)
    lo, hi = band["lower"], band["upper"]
    mid = np.median(model.predict_draws(test), axis=0)
    out = test[["run", "model_size", "total_steps", "lr", "loss"]].assign(
        group=test.apply(schedule_label, axis=1), predicted=mid, lower=lo, upper=hi,
        rel_error=(mid - test["loss"]) / test["loss"], covered=(lo <= test["loss"]) & (test["loss"] <= hi))
    return out, model
