"""Plots of a surface fit: η* or B* against D (one band per model size N) or against N,
with the grid's near-optimal runs on top. Each returns ``(fig, ax)``."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from bayescale.sweep.data import near_optimal

LABELS = {"lr": "optimal peak LR η*", "batch_tokens": "optimal batch size B* (tokens)"}


def optimum_band(fit, quantity: str, N, D, prob: float = 0.9):
    """Posterior mean and central ``prob`` interval of ``quantity`` along matching N, D arrays."""
    rows = [fit.optimum(n, d, prob=prob).loc[quantity] for n, d in zip(np.ravel(N), np.ravel(D))]
    return tuple(np.array([r[k] for r in rows]) for k in ("mean", "lower", "upper"))


def plot_optimum(fit, quantity: str = "lr", against: str = "D", fixed=None, span=(0.5, 10.0), prob: float = 0.9, ax=None):
    """``quantity`` ("lr" or "batch_tokens") against ``against`` ("D" or "N"), one credible
    band per value of the other axis (``fixed``: default the grid's values), from ``span[0]``
    times the grid's smallest to ``span[1]`` times its largest value."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    else:
        fig = ax.figure
    other = "N" if against == "D" else "D"
    grid = fit.cells
    fixed = sorted(grid[other].unique()) if fixed is None else fixed
    x = np.geomspace(grid[against].min() * span[0], grid[against].max() * span[1], 30)
    near = near_optimal(fit.data)
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(fixed)))
    for value, colour in zip(fixed, colours):
        N, D = (np.full_like(x, value), x) if against == "D" else (x, np.full_like(x, value))
        mean, lower, upper = optimum_band(fit, quantity, N, D, prob)
        ax.plot(x, mean, color=colour, label=f"{other} = {value:.3g}")
        ax.fill_between(x, lower, upper, color=colour, alpha=0.2)
        runs = near[np.isclose(near[other], value)]
        ax.scatter(runs[against], runs[quantity], color=colour, s=12, edgecolor="k", linewidth=0.3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(against)
    ax.set_ylabel(LABELS[quantity])
    ax.set_title(f"{LABELS[quantity]}: {prob:.0%} bands, near-optimal runs (0.25%) as dots", fontsize=9)
    ax.legend(fontsize=7)
    return fig, ax
