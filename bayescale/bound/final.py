"""Final loss against base LR, schedule and horizon from the convex bound, pooled across
schedules, and the best base LR γ* per (schedule, horizon) with intervals.

Mean function for a run at base LR γ with a schedule whose bound terms are S̃_T, K_T:

    L = L_ref + δ_g − 2√(θ1_g θ2_g) + E·((T/T_ref)^(−β) − 1)
        + θ1_g·(S̃_T/S̃_ref)^(−p)/γ_u + θ2_g·γ_u·K_T/K_ref

with γ_u = γ/γ_ref. L_ref + δ_g is family g's loss at its best LR for the reference shape
and horizon (S̃_T = S̃_ref, K_T = K_ref, T = T_ref): the level the runs pin, where the bound's
constant L_inf = L_ref + δ_g − 2√(θ1_g θ2_g) traded off against the valley's depth. With
p = 1 and no horizon term this is the bound mapped to a loss (L_inf + θ1/(γ S̃) + θ2 γ K). Two departures, both measured on the 124M grid: the loss at
fixed LR falls with the horizon faster than the bound's 1/(γ S̃) allows (the E·T^(−β)
term, used only when the data hold several horizons), and γ* shrinks more slowly with T
than T^(−1/2) (the exponent p, prior centred on the theory's 1). E is sampled as
``horizon_gap``, the term's value at the shortest horizon in the fit (E and β lie on a
ridge when the horizons span only a factor of a few). Both need several
horizons to be identified; with one horizon the fit keeps the bound's p = 1. Schedules are pooled:
each schedule family g has its offset δ_g and multiplicative deviations of θ1, θ2 from
the shared values, drawn from a common population, so the bound's shape terms carry the
schedule-to-schedule differences and a schedule absent from the fit gets a fresh draw.
θ1 and θ2 are parametrised along the two axes of interest: ``log_lr`` = ½ ln(θ1/θ2)
(ln γ*/γ_ref at the reference shape) and ``log_depth`` = ½ ln(θ1 θ2) (the depth of the LR
valley); so are the deviations: ``lr_shift``, ln γ* (θ1 up, θ2 down,
scale ``sigma_lr``: how far the data's γ* departs from the bound's schedule ratios) and
``depth_shift``, the depth of the LR valley (both up, scale ``sigma_depth``). The deviations
sum to zero over the fitted families. Offsets and LR shifts are centred (each family's runs
pin them); the depth shifts, which the runs of one family pin least, are non-centred
(``depth_z`` × ``sigma_depth``): centred, they made a funnel at small ``sigma_depth`` that
gave a divergence on the 124M grid.

γ* = γ_ref·√(θ1_g (S̃_T/S̃_ref)^(−p) / (θ2_g K_T/K_ref)).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pymc as pm
from pymc_extras.prior import Prior

from bayescale.bound.data import (
    RUN_COLUMNS,
    read_runs,
    run_terms,
    schedule_label,
    tidy_runs,
)
from bayescale.core import summaries
from bayescale.core.errors import DataError
from bayescale.core.fit import BayesianFit

# the bound laws' sampling budget: the scale of the final-loss law's depth deviations mixes
# slowly (bulk ESS ≈ 0.1 of the draws on the 124M grid), so 4 × 2500 draws keep it above 400
BUDGET = {"draws": 2500, "tune": 1500, "chains": 4}
SCALARS = ["L_ref", "log_lr", "log_depth", "sigma_offset", "sigma_lr", "sigma_depth", "sigma"]
HORIZON = ["p", "horizon_gap", "beta"]
GROUP_SCALES = {"offset": "sigma_offset", "lr_shift": "sigma_lr", "depth_shift": "sigma_depth"}
GROUP = list(GROUP_SCALES)


def mean_loss(gamma_u, S_rel, K_rel, T_rel, L_ref, offset, theta1, theta2, p, E=0.0, beta=1.0, xp=np):
    """The law in scaled units (numpy or pymc.math; broadcasting). ``L_ref + offset`` is the
    family's loss at its best LR for the reference shape and horizon (S_rel = K_rel = T_rel = 1):
    the bound's constant is that minus the valley's floor 2√(θ1 θ2)."""
    horizon = E * (xp.exp(-beta * xp.log(T_rel)) - 1.0)
    return (L_ref + offset - 2.0 * xp.sqrt(theta1 * theta2) + horizon
            + theta1 * xp.exp(-p * xp.log(S_rel)) / gamma_u + theta2 * gamma_u * K_rel)


def thetas(log_depth, log_lr, xp=np):
    """θ1 and θ2 from the valley's depth ½ ln(θ1 θ2) and ln γ_u* = ½ ln(θ1/θ2) at the reference shape."""
    return xp.exp(log_depth + log_lr), xp.exp(log_depth - log_lr)


def horizon_scale(horizon_gap, beta, T_min_rel, xp=np):
    """E of the horizon term from ``horizon_gap``, the term's value at the shortest horizon
    in the fit (E and β alone lie on a ridge when the horizons span a factor of a few)."""
    return horizon_gap / (xp.exp(-beta * xp.log(T_min_rel)) - 1.0)


def optimal_gamma_u(S_rel, K_rel, theta1, theta2, p):
    return np.sqrt(theta1 * np.exp(-p * np.log(S_rel)) / (theta2 * K_rel))


def select_cohort(runs: pd.DataFrame, model_size=None) -> tuple[pd.DataFrame, str | None]:
    """One model size and dataset: the one asked for, else the one with most runs."""
    sizes = runs["model_size"].fillna(-1.0)
    key = runs["dataset"].fillna("").astype(str) + "|" + sizes.astype(str)
    if model_size is not None:
        chosen = runs[np.isclose(sizes, float(model_size), rtol=1e-6)]
        if chosen.empty:
            raise DataError(f"no runs of model size {model_size:g}; sizes present: {sorted(set(sizes))}")
        key = key[chosen.index]
        runs = chosen
    if key.nunique() == 1:
        return runs, None
    top = key.value_counts().index[0]
    note = f"runs of several model sizes/datasets; fitted the largest cohort {top} ({(key == top).sum()} of {len(key)} runs)"
    return runs[key == top], note


def scaled_terms(frame: pd.DataFrame, scales: dict) -> dict:
    """Base LR, bound shape terms and horizon of each run relative to the fit's references."""
    return {
        "gamma_u": frame["lr"].to_numpy(float) / scales["gamma_ref"],
        "S_rel": frame["S_tilde"].to_numpy(float) / scales["S_ref"],
        "K_rel": frame["K"].to_numpy(float) / scales["K_ref"],
        "T_rel": frame["total_steps"].to_numpy(float) / scales["T_ref"],
    }


class BoundFinalFit(BayesianFit):
    kind = "bound"
    law = "final"
    sampler_defaults = {**BUDGET, "target_accept": 0.95}

    def default_model_config(self):
        return {"model_size": None, "nu": 4.0, "horizon_term": "auto", "seed_new_groups": 0}

    @property
    def horizon_term(self) -> bool:
        """The E·T^(−β) term in use: by default when the data hold several horizons."""
        return self.derived["horizon_term"]

    def default_priors(self):
        return {
            "L_ref": Prior("Normal", mu=3.0, sigma=1.0),
            "log_lr": Prior("Normal", mu=0.0, sigma=1.5),
            "log_depth": Prior("Normal", mu=np.log(0.05), sigma=1.5),
            "p": Prior("TruncatedNormal", mu=1.0, sigma=0.3, lower=0.05, upper=2.0),
            "horizon_gap": Prior("HalfNormal", sigma=0.3),
            "beta": Prior("LogNormal", mu=np.log(0.5), sigma=0.5),
            # boundary-avoiding (Gamma) on the scales of the schedule families: with a handful
            # of families a prior with mass at 0 makes a funnel of the centred deviations
            # (shape 4 on the depth's, which the runs of one family pin least, and on the LR
            # shifts': at shape 2 the fit without c = 0.994 diverged once, at sigma_lr = 0.008)
            "sigma_offset": Prior("Gamma", alpha=2.0, beta=2.0 / 0.03),
            "sigma_lr": Prior("Gamma", alpha=4.0, beta=4.0 / 0.2),
            "sigma_depth": Prior("Gamma", alpha=4.0, beta=4.0 / 0.1),
            "sigma": Prior("HalfNormal", sigma=0.01),
        }

    def scaled_priors(self):
        return {"L_ref": Prior("Normal", mu=float(self.data["loss"].min()), sigma=0.2)}

    @property
    def param_names(self):
        return SCALARS + (HORIZON if self.horizon_term else []) + GROUP

    # --- data ------------------------------------------------------------------------------
    def prepare(self, data):
        self.notes = []
        if isinstance(data, (str, Path)):
            runs, self.notes = read_runs(data)
        else:
            runs = tidy_runs(pd.DataFrame(data)[[c for c in RUN_COLUMNS if c in data]], "table")
        runs, note = select_cohort(runs, self.model_config["model_size"])
        if note:
            self.notes.append(note)
        if runs["lr"].nunique() < 2:
            raise DataError("the final-loss law needs runs at two or more base LRs")
        runs = runs.reset_index(drop=True)
        runs["group"] = runs.apply(schedule_label, axis=1)
        runs[["S_tilde", "K"]] = run_terms(runs)
        choice = self.model_config["horizon_term"]
        self.derived["horizon_term"] = bool(runs["total_steps"].nunique() > 1) if choice == "auto" else bool(choice)
        self.data = runs
        self.groups = sorted(runs["group"].unique())
        self.derived["scales"] = {
            "gamma_ref": float(np.exp(np.log(runs["lr"]).mean())),
            "S_ref": float(runs["S_tilde"].median()),
            "K_ref": float(runs["K"].median()),
            "T_ref": float(runs["total_steps"].max()),
            "T_min": float(runs["total_steps"].min()),
        }

    def _scaled(self, frame: pd.DataFrame) -> dict:
        return scaled_terms(frame, self.derived["scales"])

    # --- model -----------------------------------------------------------------------------
    def build_model(self):
        x = self._scaled(self.data)
        g = pd.Categorical(self.data["group"], categories=self.groups).codes
        with pm.Model(coords={"group": self.groups, "run": self.data["run"].to_numpy()}) as model:
            v = {name: self.priors[name].create_variable(name) for name in SCALARS}
            # centred (each family's level, ln γ* and depth are pinned by its own runs) and
            # summing to zero, so that L_ref, log_lr and log_depth are the families' means and
            # do not trade off against the deviations
            offset = pm.ZeroSumNormal("offset", sigma=v["sigma_offset"], dims="group")
            shift_lr = pm.ZeroSumNormal("lr_shift", sigma=v["sigma_lr"], dims="group")
            depth_z = pm.ZeroSumNormal("depth_z", sigma=1.0, dims="group")
            shift_depth = pm.Deterministic("depth_shift", v["sigma_depth"] * depth_z, dims="group")
            theta1, theta2 = thetas(v["log_depth"] + shift_depth, v["log_lr"] + shift_lr, xp=pm.math)
            horizon = {"p": 1.0}
            if self.horizon_term:
                h = {name: self.priors[name].create_variable(name) for name in HORIZON}
                T_min_rel = self.derived["scales"]["T_min"] / self.derived["scales"]["T_ref"]
                E = pm.Deterministic("E", horizon_scale(h["horizon_gap"], h["beta"], T_min_rel, xp=pm.math))
                horizon = {"p": h["p"], "E": E, "beta": h["beta"]}
            mu = mean_loss(
                x["gamma_u"], x["S_rel"], x["K_rel"], x["T_rel"], v["L_ref"], offset[g], theta1[g], theta2[g],
                xp=pm.math, **horizon,
            )
            pm.StudentT("loss", nu=self.model_config["nu"], mu=mu, sigma=v["sigma"], observed=self.data["loss"].to_numpy(),
                        dims="run")
        return model

    # --- derived ---------------------------------------------------------------------------
    def _group_draws(self, group: str) -> dict:
        """θ1, θ2, δ draws of a fitted schedule family, or of a new one drawn from the
        population when ``group`` was not in the fit."""
        n = self.draws("L_ref").shape[0]
        if group in self.groups:
            j = self.groups.index(group)
            shift = {name: self.draws(name)[:, j] for name in GROUP}
        else:
            rng = np.random.default_rng(self.model_config["seed_new_groups"])
            shift = {name: rng.standard_normal(n) * self.draws(scale) for name, scale in GROUP_SCALES.items()}
        theta1, theta2 = thetas(self.draws("log_depth") + shift["depth_shift"], self.draws("log_lr") + shift["lr_shift"])
        return {"offset": shift["offset"], "theta1": theta1, "theta2": theta2}

    def _common_draws(self) -> dict:
        out = {"L_ref": self.draws("L_ref"), "p": np.ones_like(self.draws("L_ref"))}
        if self.horizon_term:
            out.update({name: self.draws(name) for name in ("p", "E", "beta")})
        return out

    def _runs_frame(self, runs) -> pd.DataFrame:
        frame = pd.DataFrame(runs)
        if "loss" not in frame:
            frame["loss"] = 0.0
        frame = tidy_runs(frame, "query")
        frame["group"] = frame.apply(schedule_label, axis=1)
        frame[["S_tilde", "K"]] = run_terms(frame)
        return frame

    def predict_draws(self, runs, observed: bool = False) -> np.ndarray:
        """Posterior draws of the mean final loss of ``runs``, shape (draws, runs); with
        ``observed`` the runs' Student-t noise is added."""
        frame = self._runs_frame(runs)
        x = self._scaled(frame)
        common = self._common_draws()
        out = np.empty((common["p"].size, len(frame)))
        for i, group in enumerate(frame["group"]):
            gd = self._group_draws(group)
            out[:, i] = mean_loss(x["gamma_u"][i], x["S_rel"][i], x["K_rel"][i], x["T_rel"][i], **common, **gd)
        if observed:
            rng = np.random.default_rng(self.model_config["seed_new_groups"] + 1)
            out = out + self.draws("sigma")[:, None] * rng.standard_t(self.model_config["nu"], size=out.shape)
        return out

    def optimum_draws(self, schedule: dict) -> tuple[np.ndarray, np.ndarray]:
        """Draws of (γ*, loss at γ*) for one schedule description such as
        ``{"schedule": "wsd", "total_steps": 50000, "cooldown": 0.2, "warmup_steps": 300}``."""
        frame = self._runs_frame([{"run": "query", "lr": self.derived["scales"]["gamma_ref"], **schedule}])
        row = frame.iloc[0]
        x = self._scaled(frame)
        common = self._common_draws()
        gd = self._group_draws(row["group"])
        gamma_u = optimal_gamma_u(x["S_rel"][0], x["K_rel"][0], gd["theta1"], gd["theta2"], common["p"])
        loss = mean_loss(gamma_u, x["S_rel"][0], x["K_rel"][0], x["T_rel"][0], **common, **gd)
        return gamma_u * self.derived["scales"]["gamma_ref"], loss

    def optimum(self, schedule: dict, prob: float = 0.9) -> dict:
        """{"lr": {mean, median, lower, upper}, "loss": {…}, "group", "in_fit"}."""
        lr, loss = self.optimum_draws(schedule)
        group = self._runs_frame([{"run": "query", "lr": 1.0, **schedule}])["group"].iloc[0]
        return {"lr": summaries.central(lr, prob, median=True), "loss": summaries.central(loss, prob, median=True),
                "group": group, "in_fit": group in self.groups}

    def optima(self, total_steps: int | None = None, prob: float = 0.9) -> pd.DataFrame:
        """γ* and the loss there for every fitted schedule family at ``total_steps``
        (default: the largest horizon in the data)."""
        T = int(total_steps or self.derived["scales"]["T_ref"])
        rows = []
        for group in self.groups:
            example = self.data[self.data["group"] == group].iloc[0]
            spec = {k: example[k] for k in ("schedule", "cooldown", "decay_type", "final_lr", "warmup_steps")}
            result = self.optimum({**spec, "total_steps": T}, prob)
            rows.append({"group": group, "total_steps": T, **{f"lr_{k}": v for k, v in result["lr"].items()},
                         **{f"loss_{k}": v for k, v in result["loss"].items()}})
        return pd.DataFrame(rows)
