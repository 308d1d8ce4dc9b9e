"""The Step Law procedure (Li et al. 2025), the baseline the surface model is compared with:
keep each cell's runs within 0.25% of its best smoothed loss, OLS of ln η on (ln N, ln D) and
of ln B on ln D over those runs, and resample the runs with replacement for intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.core import summaries
from bayescale.sweep.data import near_optimal

PUBLISHED = {"lr": (1.79, -0.713, 0.307), "batch_tokens": (0.58, 0.571)}


def published_optimum(N, D) -> dict:
    """Step Law's published η*(N, D) = 1.79 N^−0.713 D^0.307 and B*(D) = 0.58 D^0.571."""
    c, a, b = PUBLISHED["lr"]
    cb, bb = PUBLISHED["batch_tokens"]
    return {"lr": c * N**a * D**b, "batch_tokens": cb * D**bb}


@dataclass
class StepLawFit:
    lr_coef: np.ndarray  # (1 + n_boot, 3): intercept, ln N, ln D; row 0 is the fit to all runs
    bs_coef: np.ndarray  # (1 + n_boot, 2): intercept, ln D

    def predict(self, N, D, prob: float = 0.9) -> pd.DataFrame:
        """η* and B* at (N, D): the fit to all runs (``mean``) and the bootstrap's central
        ``prob`` interval."""
        lr = np.exp(self.lr_coef @ np.array([1.0, np.log(N), np.log(D)]))
        bs = np.exp(self.bs_coef @ np.array([1.0, np.log(D)]))
        return summaries.table({"lr": lr[1:], "batch_tokens": bs[1:]}, prob).assign(mean=[lr[0], bs[0]])


def fit_steplaw(table: pd.DataFrame, n_boot: int = 1000, seed: int = 0, tolerance: float = 0.0025) -> StepLawFit:
    near = near_optimal(table, tolerance)
    logN, logD = np.log(near["N"].to_numpy()), np.log(near["D"].to_numpy())
    X_lr = np.column_stack([np.ones_like(logN), logN, logD])
    X_bs = np.column_stack([np.ones_like(logD), logD])
    y_lr, y_bs = np.log(near["lr"].to_numpy()), np.log(near["batch_tokens"].to_numpy())
    rng = np.random.default_rng(seed)
    rows = [np.arange(len(near))] + [rng.integers(0, len(near), len(near)) for _ in range(n_boot)]
    lr_coef = np.array([np.linalg.lstsq(X_lr[r], y_lr[r], rcond=None)[0] for r in rows])
    bs_coef = np.array([np.linalg.lstsq(X_bs[r], y_bs[r], rcond=None)[0] for r in rows])
    return StepLawFit(lr_coef, bs_coef)
