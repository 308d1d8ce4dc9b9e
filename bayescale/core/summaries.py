"""The one interval convention of the package: the posterior mean and the central ``prob``
interval (the (1 − prob)/2 and (1 + prob)/2 quantiles), never a highest-density interval."""

from __future__ import annotations

import numpy as np
import pandas as pd


def check_prob(prob: float) -> float:
    if not 0 < prob < 1:
        raise ValueError(f"prob must be between 0 and 1, got {prob}")
    return prob


def central(draws, prob: float = 0.9, axis: int = 0, median: bool = False) -> dict:
    """``mean`` (and ``median``), ``lower``, ``upper`` of ``draws`` along ``axis``: floats
    for a 1-D array, arrays for more dimensions."""
    draws = np.asarray(draws, dtype=float)
    lower, upper = np.quantile(draws, [(1 - check_prob(prob)) / 2, (1 + prob) / 2], axis=axis)
    out = {"mean": draws.mean(axis=axis)}
    if median:
        out["median"] = np.median(draws, axis=axis)
    out.update(lower=lower, upper=upper)
    return {k: (float(v) if np.ndim(v) == 0 else v) for k, v in out.items()}


def table(named_draws, prob: float = 0.9, median: bool = False) -> pd.DataFrame:
    """One row per name of ``named_draws`` (a dict or DataFrame of 1-D draws): ``central``."""
    return pd.DataFrame({name: central(x, prob, median=median) for name, x in named_draws.items()}).T


def predictions(rows: pd.DataFrame, draws, prob: float = 0.9, mean=None) -> pd.DataFrame:
    """``rows`` with ``mean``, ``lower``, ``upper`` of ``draws`` (draws, rows) appended;
    ``mean`` replaces the draws' mean where the law's point prediction is another one."""
    summary = central(draws, prob, axis=0)
    return rows.reset_index(drop=True).assign(mean=summary["mean"] if mean is None else mean,
                                              lower=summary["lower"], upper=summary["upper"])
