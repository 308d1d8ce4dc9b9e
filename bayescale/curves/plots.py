"""Plots of predictions; each returns ``(fig, ax)``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def plot_curve_predictions(pred: pd.DataFrame, runs=None, ax=None, log_steps: bool = False):
    """Observed losses (dots), posterior mean (line) and band for each run of ``pred``
    (the table returned by ``predict``)."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    for run in runs or list(dict.fromkeys(pred["run"])):
        rows = pred[pred["run"] == run]
        line, = ax.plot(rows["step"], rows["mean"], label=run)
        ax.fill_between(rows["step"], rows["lower"], rows["upper"], color=line.get_color(), alpha=0.25, lw=0)
        seen = np.isfinite(rows["loss"].to_numpy(dtype=float))
        ax.plot(rows["step"][seen], rows["loss"][seen], ".", ms=3, color=line.get_color())
    if log_steps:
        ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    return fig, ax


def plot_relative_errors(pred: pd.DataFrame, ax=None):
    """(mean − observed)/observed along each run, with the band's relative half-widths."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 3))
    else:
        fig = ax.figure
    rows = pred[np.isfinite(pred["loss"].to_numpy(dtype=float))]
    for run, part in rows.groupby("run", sort=False):
        line, = ax.plot(part["step"], (part["mean"] - part["loss"]) / part["loss"], label=run)
        ax.fill_between(part["step"], (part["lower"] - part["loss"]) / part["loss"],
                        (part["upper"] - part["loss"]) / part["loss"], color=line.get_color(), alpha=0.15, lw=0)
    ax.axhline(0.0, color="k", lw=0.5)
    ax.set_xlabel("step")
    ax.set_ylabel("relative error")
    ax.legend(fontsize=8)
    return fig, ax
