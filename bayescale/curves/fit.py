"""Loss-curve laws as Bayesian fits: the domain layer shared by the annealing and the
multi-power law.

Observation model on y = log(loss):
    y_rj ~ StudentT(ν, log f(t_rj; θ_r), σ),   θ_r = θ · exp(τ · z_r) for the constants in
    ``run_effects`` (z_r ~ N(0, 1) per run, summing to zero over the fitted runs, so θ is the
    constants of the average run), θ_r = θ for the others.
A law fitted jointly to a few schedules misses each of them in its own way, and that
misfit, not measurement noise, dominates the error on a schedule it has not seen. The run
effects put that misfit into the model: τ measures how much the schedules disagree about
the constants, and a prediction for any schedule is a new run, drawn with fresh z. Bands
from σ and the parameter uncertainty alone cover far too little of held-out curves.

ν is fixed at 4 by default (model setting ``nu: null`` estimates it): estimated on a few smooth curves it
collapses below 1 (multi-power law, 25M split: ν 0.89, σ 1e-4 at the mode), fitting some
points exactly and calling the rest outliers. ``noise: "huber"`` puts Huber's density in
place of the Student-t (``bayescale.core.noise``): the authors' fitting loss as a
likelihood, log-concave, so a few far points cannot split the posterior in two modes.
``noise: "auto"`` (the default) chooses between them from the data before sampling
(``choose_noise``): the Student-t, unless its likelihood has two distinct modes within
``BIMODAL_GAP`` nats of each other, as on tissue-fig2 (four points ten times further off
the law than the rest: "data" and "outliers" are two modes 3.4 nats apart, and the chains
split between them). No single family serves both: the Huber likelihood predicts the
multi-power split worse (annealing law, 25M: PredE 0.00279 against 0.00209, with 50
divergences), and ν = 7, which recovers tissue-fig2, predicts it worse too (annealing law,
PredE 0.00235 against 0.00209 at 25M with R-hat 1.03, 0.00201 against 0.00182 at 100M).

The run deviations τ·z_r are sampled centred (as one variable) when the curves are smooth and
pin each run's deviation, and non-centred (z_r itself) when they are noisy, as per-step
training loss is: each form makes a funnel in the other case. ``run_effects_centred: null``
decides from the point fit's residual scale (centred below ``NOISY_CURVES``) and, if that
fit diverges, samples once more with the form switched for the effects at fault (the form
chosen is derived state, ``derived["run_effects_centred"]``); a bool, or a dict
``{effect: bool}``, sets the form per effect.

Derived from the data and stored with the fit: ``lr_scale`` (the largest peak LR),
``area_scale`` (the largest area S1), the runs' ``schedule_specs`` and, for ``noise:
"auto"``, ``noise_chosen`` (the family and why).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt
from pymc_extras.prior import Prior
from scipy import stats
from scipy.optimize import minimize
from scipy.special import logsumexp

from bayescale.core import summaries
from bayescale.core.errors import DataError
from bayescale.core.fit import BayesianFit, check_kind
from bayescale.core.noise import (
    huber_logp,
    huber_logpdf,
    huber_random,
    huber_standard_draws,
)
from bayescale.curves.data import Curves, clean

MIN_POINTS_PER_RUN = 5
NOISE_FAMILIES = ("auto", "student_t", "huber")
# a second mode of the likelihood this close to the best one holds a share of the posterior
# that chains land in (e^-10 ≈ 5e-5 of the mass otherwise, before volume factors)
BIMODAL_GAP = 10.0
MIN_RUNS_FOR_EFFECTS = 3
NOISY_CURVES = 3e-3  # robust residual s.d. of log loss; validation curves 6e-4–1e-3, the demo 2.7e-3, per-step loss ~1e-2


class CurveFit(BayesianFit):
    kind = "curves"
    sampler_defaults = {"target_accept": 0.95}
    law_params: tuple[str, ...] = ()
    # constants that enter the law elementwise, so that they may vary by run
    elementwise_params: tuple[str, ...] = ("L0", "A", "alpha")

    # --- what each law adds ---------------------------------------------------------------
    def run_features(self, schedule, steps) -> dict:
        raise NotImplementedError

    def law_mean(self, feats: dict, p: dict, xp=np):
        raise NotImplementedError

    def raw_params(self, p: dict) -> dict:
        raise NotImplementedError

    def law_priors(self) -> dict[str, Prior]:
        raise NotImplementedError

    def extra_start(self) -> dict:
        return {}

    def first_area(self, schedule) -> float:
        """S1 (in η/η_peak · steps) after the whole of ``schedule``; sets the area scale."""
        return float(np.sum(schedule.post_warmup())) / self.derived["lr_scale"]

    # --- settings and priors --------------------------------------------------------------
    def default_model_config(self) -> dict:
        return {
            "warmup_steps": 0,
            "min_step": 0,
            "max_points_per_run": 200,
            "noise": "auto",
            "nu": 4.0,
            "run_effects": {"L0": 0.005, "alpha": 0.05},
            "run_effects_centred": None,
            "nonfinite": "error",
        }

    def default_priors(self) -> dict[str, Prior]:
        priors = {**self.law_priors(), "sigma": Prior("HalfNormal", sigma=0.02)}
        if self.student_t and self.model_config["nu"] is None:
            priors["nu"] = Prior("Gamma", alpha=2.0, beta=0.1)
        for name, scale in self.run_effects.items():
            # boundary-avoiding (Gamma with shape 2, mean ``scale``): with a handful of runs a
            # prior with mass at 0 makes a funnel that NUTS diverges in
            priors[f"{name}_run_sd"] = Prior("Gamma", alpha=2.0, beta=2.0 / scale)
        return priors

    @property
    def run_effects(self) -> dict:
        """Run effects in use: none with fewer than three runs, where a spread across runs
        has at most one degree of freedom and its prior alone would set the bands."""
        effects = self.model_config["run_effects"]
        bad = [name for name in effects if name not in self.elementwise_params]
        if bad:
            raise ValueError(f"{self.law}: run effects are possible on {self.elementwise_params}, not {bad}")
        if getattr(self, "schedules", None) is not None and len(self.schedules) < MIN_RUNS_FOR_EFFECTS:
            return {}
        return effects

    @property
    def param_names(self) -> list[str]:
        return list(self.default_priors()) + [f"{name}_run_dev" for name in self.run_effects]

    def scaled_priors(self) -> dict[str, Prior]:
        # no upper bound at the lowest loss: on noisy training loss the lowest point lies
        # below the curve, and the fitted L0 can exceed it
        low = float(np.exp(self.y.min()))
        return {"L0": Prior("TruncatedNormal", mu=0.85 * low, sigma=0.15 * low, lower=0.0)}

    # --- data -----------------------------------------------------------------------------
    def prepare(self, data) -> None:
        cfg = self.model_config
        if isinstance(data, pd.DataFrame):
            data = Curves.from_frame(data, self.derived.get("schedule_specs", {}))
        curves = clean(data, nonfinite=cfg["nonfinite"])
        self.derived["schedule_specs"] = dict(curves.specs)
        self.curves = curves
        self.data = curves.table.reset_index(drop=True)
        self.notes = list(curves.notes)
        observed = []
        for run in curves.runs:
            rows = curves.run_table(run)
            rows = rows[rows["observed"] & (rows["step"] >= cfg["min_step"])]
            if len(rows) < MIN_POINTS_PER_RUN:
                raise DataError(
                    f"{curves.run_table(run)['source'].iloc[0]}: run {run!r} has {len(rows)} observed losses at or after "
                    f"step {cfg['min_step']}; a curve law needs at least {MIN_POINTS_PER_RUN}"
                )
            observed.append(self._thin(run, rows))
        self.obs = pd.concat(observed, ignore_index=True)
        self._point_start = None
        self.centring_was_automatic = False
        self.schedules = {run: curves.schedule(run, cfg["warmup_steps"]) for run in curves.runs}
        if "lr_scale" not in self.derived:  # reference scales, once set, stay (refits on parts of the data share them)
            self.derived["lr_scale"] = max(s.peak for s in self.schedules.values())
            self.derived["area_scale"] = max(self.first_area(s) for s in self.schedules.values())
        self.y = np.log(self.obs["loss"].to_numpy())
        self.feats = self.features(self.obs, self.schedules)
        if cfg["noise"] == "auto" and "noise_chosen" not in self.derived:
            if cfg["nu"] is None:
                self.derived["noise_chosen"] = {"noise": "student_t", "reason": "nu is estimated, so the noise is the Student-t"}
            else:
                self.derived["noise_chosen"] = self.choose_noise()
        if cfg["noise"] == "auto":
            self.notes.append(f"noise: {self.noise} (chosen from the data: {self.derived['noise_chosen']['reason']})")
        if cfg["run_effects"] and not self.run_effects:
            self.notes.append(
                f"{len(self.schedules)} runs: no run effects (they need {MIN_RUNS_FOR_EFFECTS}); shared constants, and "
                "bands that hold the in-sample misfit only: expect them to be too narrow on unseen schedules"
            )

    def _thin(self, run: str, rows: pd.DataFrame) -> pd.DataFrame:
        """Curves logged at every step: average log loss over consecutive equal-count bins
        so that a run keeps at most ``max_points_per_run`` points."""
        limit = self.model_config["max_points_per_run"]
        rows = rows[["run", "step", "loss"]].assign(n_averaged=1)
        if len(rows) <= limit:
            return rows
        bins = np.arange(len(rows)) * limit // len(rows)
        grouped = pd.DataFrame({"bin": bins, "step": rows["step"].to_numpy(), "y": np.log(rows["loss"].to_numpy())})
        binned = grouped.groupby("bin").agg(step=("step", "median"), y=("y", "mean"), n_averaged=("y", "size"))
        self.notes.append(f"run {run!r}: {len(rows)} observed losses averaged (in log) into {len(binned)} bins")
        return pd.DataFrame(
            {
                "run": run,
                "step": np.round(binned["step"].to_numpy()).astype(np.int64),
                "loss": np.exp(binned["y"].to_numpy()),
                "n_averaged": binned["n_averaged"].to_numpy(),
            }
        )

    def features(self, points: pd.DataFrame, schedules: dict) -> dict:
        """Law features for ``points`` (run, step), runs kept in order of appearance."""
        per_run = [
            self.run_features(schedules[run], rows["step"].to_numpy(np.int64))
            for run, rows in points.groupby("run", sort=False)
        ]
        feats = {
            key: (np.concatenate([f[key] for f in per_run]) if isinstance(per_run[0][key], np.ndarray)
                  else [f[key] for f in per_run])
            for key in per_run[0]
        }
        feats["run_index"] = pd.factorize(points["run"])[0]
        return feats

    # --- model ----------------------------------------------------------------------------
    def build_model(self) -> pm.Model:
        runs = list(dict.fromkeys(self.obs["run"]))
        coords = {"point": np.arange(len(self.obs)), "run": runs}
        if self.run_effects and self.model_config["run_effects_centred"] is None and "run_effects_centred" not in self.derived:
            self.derived["run_effects_centred"] = bool(self.point_start()["sigma"] < NOISY_CURVES)
            self.centring_was_automatic = True
        with pm.Model(coords=coords) as model:
            p = {name: self.priors[name].create_variable(name) for name in self.law_priors()}
            for name in self.run_effects:
                sd = self.priors[f"{name}_run_sd"].create_variable(f"{name}_run_sd")
                # zero-sum: otherwise shifting θ and every deviation in opposite ways is a
                # ridge the sampler cannot cross with only a few runs
                if self.centred(name):
                    deviation = pm.ZeroSumNormal(f"{name}_run_dev", sigma=sd, dims="run")
                else:
                    z = pm.ZeroSumNormal(f"{name}_run_z", sigma=1.0, dims="run")
                    deviation = pm.Deterministic(f"{name}_run_dev", sd * z, dims="run")
                p[name] = p[name] * pt.exp(deviation)[self.feats["run_index"]]
            sigma = self.priors["sigma"].create_variable("sigma")
            mu = pt.log(self.law_mean(self.feats, p, xp=pt))
            if self.student_t:
                nu = self.priors["nu"].create_variable("nu") if "nu" in self.priors else self.model_config["nu"]
                pm.StudentT("log_loss", nu=nu, mu=mu, sigma=sigma, observed=self.y, dims="point")
            else:
                pm.CustomDist("log_loss", mu, sigma, logp=huber_logp, random=huber_random, observed=self.y, dims="point")
        return model

    @property
    def noise(self) -> str:
        """The noise family in use: the model setting's, or for ``auto`` the one
        ``choose_noise`` picked when the data were prepared (derived state; the Student-t
        until then)."""
        noise = self.model_config["noise"]
        if noise not in NOISE_FAMILIES:
            raise ValueError(f"{self.law}: noise must be one of {NOISE_FAMILIES}, not {noise!r}")
        if noise == "auto":
            return self.derived.get("noise_chosen", {}).get("noise", "student_t")
        return noise

    @property
    def student_t(self) -> bool:
        return self.noise == "student_t"

    def choose_noise(self) -> dict:
        """Student-t or Huber noise for these data: the Student-t unless its likelihood (at
        the fixed ν, σ free) has two modes whose curves differ by more than σ and whose
        log-likelihoods lie within ``BIMODAL_GAP``. Its optima are searched from the Huber
        point fit (the mode where every point counts) and from the point fit's starting
        grid (where the far points may end up as outliers)."""
        names = self.law_params
        positive = [name != "L0" for name in names]
        start = self.point_start()
        nu = self.model_config["nu"]

        def curve(x):
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                pred = np.ravel(self.law_mean(self.feats, {n: (np.exp(v) if pos else v) for n, v, pos in zip(names, x, positive)}))
            return np.log(pred) if np.all(pred > 0) else None

        def negative_log_likelihood(x):
            mu = curve(x[:-1])
            if mu is None:
                return 1e10
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # the optimiser's far steps
                z = (self.y - mu) / np.exp(x[-1])
                return float(z.size * x[-1] - np.sum(stats.t.logpdf(z, df=nu)))

        optima = []
        for point in [start, *self.start_points()]:
            x0 = [np.log(point[n]) if pos else point[n] for n, pos in zip(names, positive)] + [np.log(start["sigma"])]
            result = minimize(negative_log_likelihood, x0, method="L-BFGS-B")
            if result.fun < 1e10:
                optima.append((result.fun, curve(result.x[:-1]), float(np.exp(result.x[-1]))))
        best_value, best_curve, best_sigma = min(optima, key=lambda o: o[0])
        rivals = [value - best_value for value, mu, _ in optima
                  if np.max(np.abs(mu - best_curve)) > best_sigma and value - best_value < BIMODAL_GAP]
        if rivals:
            return {"noise": "huber", "reason": (
                f"the Student-t likelihood has a second mode {min(rivals):.1f} nats below the best (under "
                f"{BIMODAL_GAP:g}): its posterior would be bimodal, so Huber's log-concave density is used")}
        return {"noise": "student_t", "reason": (
            f"the Student-t (nu {nu:g}) likelihood has one mode (no other within {BIMODAL_GAP:g} nats)")}

    def centred(self, name: str) -> bool:
        choice = self.model_config["run_effects_centred"]
        if choice is None:
            choice = self.derived["run_effects_centred"]
        return bool(choice[name] if isinstance(choice, dict) else choice)

    def reparametrisation(self, idata) -> dict | None:
        """After divergences with the automatic form of the run effects: switch the form of
        the effects whose scale the divergent draws sit in a tail of (a funnel's neck). The
        residual-scale rule misses some data sets (dense synthetic curves, 10^4 points each:
        13 divergences centred, 0 with α non-centred). Divergences elsewhere are left to the
        report: switching every effect on the multi-power 100M split (2 divergences) gave
        R-hat 1.02, ESS 202 and took 5× as long."""
        if not (self.centring_was_automatic and self.fit_report["divergences"]):
            return None
        diverging = idata.sample_stats["diverging"].values.ravel().astype(bool)
        in_tail = []
        for name in self.run_effects:
            scale = self.draws(f"{name}_run_sd")
            quantile = np.median((scale[diverging, None] > scale[None, :]).mean(axis=1))
            if not 0.1 <= quantile <= 0.9:
                in_tail.append(name)
        if not in_tail:
            return None
        return {"run_effects_centred": {name: self.centred(name) != (name in in_tail) for name in self.run_effects}}

    # --- starting point -------------------------------------------------------------------
    def start_points(self) -> list[dict]:
        low = float(np.exp(self.y.min()))
        return [
            {"L0": f * low, "A": a, "alpha": alpha, **self.extra_start()}
            for f in (0.7, 0.9) for a in (0.1, 0.5) for alpha in (0.3, 0.7)
        ]

    def point_fit(self, huber_delta: float = 1e-3) -> dict:
        """The authors' fitting method: Huber loss on log L, L-BFGS from several starts, one
        set of constants for all runs. Positive constants are optimised in log space.
        Returns constants in this fit's scaled units."""
        names = self.law_params
        positive = [name != "L0" for name in names]

        def unpack(x):
            return {n: (np.exp(v) if pos else v) for n, v, pos in zip(names, x, positive)}

        def objective(x):
            pred = np.ravel(self.law_mean(self.feats, unpack(x), xp=np))
            if not np.all(pred > 0):
                return 1e10
            r = np.abs(np.log(pred) - self.y)
            return float(np.sum(np.where(r < huber_delta, 0.5 * r**2, huber_delta * (r - 0.5 * huber_delta))))

        best = None
        for start in self.start_points():
            x0 = [np.log(start[n]) if pos else start[n] for n, pos in zip(names, positive)]
            result = minimize(objective, x0, method="L-BFGS-B")
            if best is None or result.fun < best.fun:
                best = result
        return unpack(best.x)

    def point_start(self) -> dict:
        """The point fit and the robust s.d. (1.4826 × median |residual|) of its residuals on
        log loss, computed once per data set; the early transient's few large residuals would
        inflate a plain s.d."""
        if self._point_start is None:
            start = self.point_fit()
            residual = self.y - np.log(np.ravel(self.law_mean(self.feats, start, xp=np)))
            scale = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
            self._point_start = {**start, "sigma": max(scale, 1e-4)}
        return dict(self._point_start)

    def initial_point(self) -> dict:
        start = self.point_start()
        if "nu" in self.priors:
            start["nu"] = 10.0
        n_runs = len(self.schedules)
        for name, scale in self.run_effects.items():
            start[f"{name}_run_sd"] = 0.5 * scale
            start[f"{name}_run_dev" if self.centred(name) else f"{name}_run_z"] = np.zeros(n_runs)
        return {k: np.asarray(v, dtype=float) for k, v in start.items()}

    # --- posterior in numpy ---------------------------------------------------------------
    def posterior_params(self, max_draws: int | None = 1000, seed: int = 0) -> dict:
        """Draws of the population constants, σ and the run-effect scales."""
        names = list(self.default_priors())
        values = {name: self.draws(name) for name in names}
        n = len(values[names[0]])
        if max_draws and n > max_draws:
            keep = np.sort(np.random.default_rng(seed).choice(n, max_draws, replace=False))
            values = {k: v[keep] for k, v in values.items()}
        return values

    def degrees_of_freedom(self, p: dict):
        """ν of the Student-t noise: fixed in the model settings, or one per draw as a column."""
        return p["nu"][:, None] if "nu" in p else self.model_config["nu"]

    def noise_draws(self, p: dict, n_points: int, rng) -> np.ndarray:
        """Noise on log loss, (draws, points), for the draws ``p``."""
        shape = (len(p["sigma"]), n_points)
        standard = rng.standard_t(self.degrees_of_freedom(p), size=shape) if self.student_t else huber_standard_draws(rng, shape)
        return standard * p["sigma"][:, None]

    def noise_logpdf(self, z: np.ndarray, p: dict) -> np.ndarray:
        """log density of standardised residuals ``z`` (draws, points) on log loss."""
        sigma = p["sigma"][:, None]
        if not self.student_t:
            return huber_logpdf(z, sigma)
        return stats.t.logpdf(z, df=self.degrees_of_freedom(p)) - np.log(sigma)

    def law_curves(self, feats: dict, p: dict, rng=None) -> np.ndarray:
        """The law for every draw, (draws, points): at the population constants, or, given
        ``rng``, with fresh run effects (every run a new run)."""
        n_draws = len(p["sigma"])
        columns = {k: np.asarray(v)[:, None] for k, v in p.items() if k in self.law_params}
        if rng is not None:
            n_runs = feats["run_index"].max() + 1
            for name in self.run_effects:
                z = rng.standard_normal((n_draws, n_runs))[:, feats["run_index"]]
                columns[name] = columns[name] * np.exp(p[f"{name}_run_sd"][:, None] * z)
        return np.broadcast_to(self.law_mean(feats, columns, xp=np), (n_draws, len(feats["run_index"])))

    def params_table(self, prob: float = 0.9) -> pd.DataFrame:
        """Posterior mean, sd and central ``prob`` interval of each law constant in raw-LR units."""
        raw = self.raw_params({k: self.draws(k) for k in self.law_params})
        return summaries.table(raw, prob).assign(sd=[np.std(v) for v in raw.values()])[["mean", "sd", "lower", "upper"]]

    def prediction_points(self, data, warmup_steps: int | None = None, min_step: int | None = None):
        """Rows of ``data`` to predict (at or after min_step) and their schedules."""
        curves = data if isinstance(data, Curves) else Curves.from_frame(data)
        curves = clean(Curves(curves.table.assign(observed=False), curves.specs))
        warmup = self.model_config["warmup_steps"] if warmup_steps is None else warmup_steps
        first = self.model_config["min_step"] if min_step is None else min_step
        schedules = {run: curves.schedule(run, warmup) for run in curves.runs}
        points = curves.table[curves.table["step"] >= max(first, 1)].reset_index(drop=True)
        return points, schedules

    def predict(self, data, prob: float = 0.9, kind: str = "mean", warmup_steps: int | None = None,
                min_step: int | None = None, seed: int = 0, max_draws: int = 1000) -> pd.DataFrame:
        """Every row of ``data`` (Curves, or a table with run, step, lr and optionally loss)
        at or after ``min_step``: run, step, lr, loss, then ``mean``, the posterior mean of
        the law for the average run (the population constants), and the central ``prob``
        interval of a new run of that schedule (fresh run effects), with the noise for
        ``kind="observation"``: the band a measured curve should fall in."""
        summaries.check_prob(prob)
        check_kind(kind)
        points, schedules = self.prediction_points(data, warmup_steps, min_step)
        feats = self.features(points, schedules)
        p = self.posterior_params(max_draws, seed)
        rng = np.random.default_rng(seed)
        sample = self.law_curves(feats, p, rng)
        if kind == "observation":
            sample = sample * np.exp(self.noise_draws(p, len(points), rng))
        rows = points[["run", "step", "lr", "loss"]].astype({"loss": float})
        return summaries.predictions(rows, sample, prob, mean=self.law_curves(feats, p).mean(axis=0))

    def held_out_log_density(self, points: pd.DataFrame, schedules: dict, seed: int = 0) -> np.ndarray:
        """log p(all observed losses of a run | training data) for each run of ``points``,
        the run taken as new (its run effects integrated over by Monte Carlo)."""
        feats = self.features(points, schedules)
        p = self.posterior_params(None)
        mu = np.log(self.law_curves(feats, p, np.random.default_rng(seed)))
        z = (np.log(points["loss"].to_numpy()) - mu) / p["sigma"][:, None]
        logpdf = self.noise_logpdf(z, p)
        per_run = np.stack([logpdf[:, feats["run_index"] == r].sum(axis=1)
                            for r in range(feats["run_index"].max() + 1)], axis=1)
        return logsumexp(per_run, axis=0) - np.log(per_run.shape[0])
