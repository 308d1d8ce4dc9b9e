"""Comparison of fitted laws: PSIS-LOO over points, and for curve fits leave-one-run-out
(points along one curve are not exchangeable, so pointwise LOO alone flatters a law that
fits each training curve's quirks)."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.core import diagnostics as diag
from bayescale.registry import load


def leave_one_run_out(fit, draws: int = 500, tune: int = 500, chains: int = 4, seed: int = 0) -> pd.DataFrame:
    """Refit a curve fit without each of its runs and score the run left out: the log
    density of all its observed losses, the run taken as a new schedule."""
    runs = fit.curves.runs
    if len(runs) < 2:
        raise ValueError("leave-one-run-out needs a fit on at least two runs")
    rows = []
    for run in runs:
        refit = type(fit)(priors=fit.user_priors, model_config=fit.model_config, sampler_config=fit.sampler_config,
                          spec_priors=fit.spec_priors)
        refit.derived = copy.deepcopy(fit.derived)  # the same reference scales and form of the run effects
        refit.fit(fit.curves.select([r for r in runs if r != run]), draws=draws, tune=tune, chains=chains,
                  seed=seed, progress=False)
        points = fit.obs[fit.obs["run"] == run]
        elpd = refit.held_out_log_density(points, {run: fit.schedules[run]}, seed=seed)[0]
        rows.append({"run": run, "elpd": float(elpd), "n_points": len(points),
                     **{k: refit.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences")}})
    return pd.DataFrame(rows)


def load_fits(paths) -> dict:
    """Saved fits keyed by file stem (by path where stems repeat)."""
    names = [Path(p).stem for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return {name: load(path) for name, path in zip(names, paths)}


def compare_fits(fits: dict, leave_one_run_out_scores: bool = True, seed: int = 0) -> pd.DataFrame:
    """One row per fit: PSIS-LOO (elpd, se, p_loo, Pareto-k above 0.7) and, for curve fits,
    the summed leave-one-run-out elpd with its standard error over runs."""
    observed = {name: tuple(np.round(f.idata.observed_data[next(iter(f.idata.observed_data))].values, 12))
                for name, f in fits.items()}
    if len(set(observed.values())) > 1:
        raise ValueError("the fits were made on different data; LOO can only compare fits of the same observations")
    table = diag.compare({name: f.idata for name, f in fits.items()})
    table["pareto_k_above_0.7"] = [diag.bad_pareto_k(fits[name].idata) for name in table.index]
    table["law"] = [fits[name].law for name in table.index]
    if leave_one_run_out_scores:
        for name in table.index:
            fit = fits[name]
            if fit.kind != "curves" or len(fit.curves.runs) < 2:
                continue
            per_run = leave_one_run_out(fit, seed=seed)
            table.loc[name, "elpd_run_out"] = per_run["elpd"].sum()
            table.loc[name, "se_run_out"] = float(np.sqrt(len(per_run)) * per_run["elpd"].std(ddof=1))
            table.loc[name, "run_out_divergences"] = int(per_run["divergences"].sum())
    return table
