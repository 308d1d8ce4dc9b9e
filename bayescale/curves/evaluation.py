"""Scores of curve predictions against held-out losses."""

from __future__ import annotations

import numpy as np
import pandas as pd


def prediction_scores(pred: pd.DataFrame) -> dict:
    """PredE (mean relative error of the posterior mean), WorstE (its max) and the share
    of observed losses inside the band, over rows with an observed loss."""
    rows = pred[np.isfinite(pred["loss"].to_numpy(dtype=float))]
    if rows.empty:
        raise ValueError("no observed losses to score the prediction against")
    relative = np.abs(rows["mean"] - rows["loss"]) / rows["loss"]
    inside = (rows["loss"] >= rows["lower"]) & (rows["loss"] <= rows["upper"])
    return {
        "n_points": len(rows),
        "PredE": float(relative.mean()),
        "WorstE": float(relative.max()),
        "coverage": float(inside.mean()),
    }


def r_squared(observed, predicted) -> float:
    observed = np.asarray(observed, dtype=float)
    return float(1.0 - np.sum((observed - predicted) ** 2) / np.sum((observed - observed.mean()) ** 2))
