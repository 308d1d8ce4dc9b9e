"""Every ArviZ call of the package lives here, so that a move to ArviZ 1.x touches one module."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

InferenceData = az.InferenceData

RHAT_MAX = 1.01
ESS_BULK_MIN = 400


def sampling_diagnostics(idata, var_names) -> dict:
    """R-hat (max), bulk ESS (min) and divergences of the named variables."""
    summary = az.summary(idata, var_names=list(var_names), kind="diagnostics")
    divergences = int(idata.sample_stats["diverging"].sum()) if "diverging" in idata.sample_stats else 0
    return {
        "rhat_max": float(np.nanmax(summary["r_hat"])),
        "ess_bulk_min": float(np.nanmin(summary["ess_bulk"])),
        "divergences": divergences,
    }


def problems(diagnostics: dict) -> list[str]:
    out = []
    if not diagnostics["rhat_max"] <= RHAT_MAX:
        out.append(f"R-hat {diagnostics['rhat_max']:.3f} > {RHAT_MAX}")
    if not diagnostics["ess_bulk_min"] >= ESS_BULK_MIN:
        out.append(f"bulk ESS {diagnostics['ess_bulk_min']:.0f} < {ESS_BULK_MIN}")
    if diagnostics["divergences"]:
        out.append(f"{diagnostics['divergences']} divergent transitions")
    return out


def posterior_summary(idata, var_names, prob: float = 0.9) -> pd.DataFrame:
    """Per parameter: mean, sd, the central ``prob`` interval (lower, upper), R-hat and
    bulk ESS."""
    tails = ((1 - prob) / 2, (1 + prob) / 2)
    stats = {"mean": np.mean, "sd": np.std, "lower": lambda x: np.quantile(x, tails[0]),
             "upper": lambda x: np.quantile(x, tails[1])}
    names = list(var_names)
    table = az.summary(idata, var_names=names, stat_funcs=stats, extend=False, round_to="none")
    checks = az.summary(idata, var_names=names, kind="diagnostics", round_to="none")
    return table.join(checks[["r_hat", "ess_bulk"]])


def loo(idata, var_name: str | None = None):
    return az.loo(idata, var_name=var_name, pointwise=True)


def compare(named_idata: dict, var_name: str | None = None) -> pd.DataFrame:
    return az.compare(named_idata, ic="loo", var_name=var_name)


def bad_pareto_k(idata, threshold: float = 0.7) -> int:
    """How many points have a Pareto k above ``threshold`` (their LOO estimate is unreliable)."""
    return int((loo(idata).pareto_k.values > threshold).sum())


def save(idata, path) -> None:
    idata.to_netcdf(str(path), engine="h5netcdf")


def load(path):
    return az.from_netcdf(str(path), engine="h5netcdf")


def draws(idata, name: str) -> np.ndarray:
    """Posterior draws of one variable, chains and draws flattened into the first axis."""
    values = idata.posterior[name].values
    return values.reshape((-1,) + values.shape[2:])
