"""Is the loss convex in log LR near the optimum? Three answers for each LR slice (one cell,
one batch size, the runs within 3% of the cell's best loss), judged within an octave of the slice's
best LR (far out a flank can be nearly straight, and its curvature's sign says nothing):

1. A posterior predictive check of the surface model (a convex bowl along every slice): the
   discrepancy is the most negative second divided difference of loss in log2 LR, and the
   Bayesian p-value P(T(y_rep) ≤ T(y_obs)). A small p-value says "more concave than the
   bowl can produce".
2. P(concave stretch) = P(some second difference < 0 near the best LR) under the most
   flexible curve: a free value at each observed LR, the noise held at the surface fit's
   level (a free, heavy-tailed noise calls a single raised point an outlier, and a concave
   stretch on a half-octave grid is often a single raised point). Its posterior is Normal,
   so no sampler runs.
3. A discrete spline per slice on the half-octave LR lattice (second differences pooled
   around a mean curvature, either sign allowed) against a bowl fitted to the same points,
   by LOO (overall and per slice).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pymc as pm
import pytensor.tensor as pt

from bayescale import diagnostics as diag
from bayescale.fitting import run_sampler
from bayescale.laws.surface import linex

LATTICE = 0.5  # octaves between neighbouring LRs of the grid
NEAR_BEST = 1.0  # octaves either side of a slice's best LR where convexity is checked


def second_differences(x, y) -> np.ndarray:
    """Second divided differences, 2[(y3−y2)/(x3−x2) − (y2−y1)/(x2−x1)]/(x3−x1), along the
    last axis of ``y`` (x sorted, unevenly spaced allowed)."""
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    dx = np.diff(x)
    slope = np.diff(y, axis=-1) / dx
    return 2 * np.diff(slope, axis=-1) / (x[2:] - x[:-2])


def lr_slices(fit, slice_window: float = 0.005, near: float = 0.03, min_points: int = 4) -> pd.DataFrame:
    """The runs within ``near`` of their cell's best loss, grouped into (cell, batch size)
    slices, for the batch sizes whose best run is within ``slice_window`` of the cell's best."""
    table = fit.data.assign(cell=fit.cell_index, log2_lr=np.log2(fit.data["lr"]))
    table = table[~table["diverged"]]
    cell_best = table.groupby("cell")["target"].transform("min")
    inside = table[table["target"] <= cell_best * (1 + near)]
    cell_best = cell_best[inside.index]
    slice_best = inside.groupby(["cell", "batch_tokens"])["target"].transform("min")
    near = inside[slice_best <= cell_best * (1 + slice_window)]
    near = near.sort_values(["cell", "batch_tokens", "log2_lr"])
    counts = near.groupby(["cell", "batch_tokens"])["log2_lr"].transform("nunique")
    near = near[counts >= min_points]
    keys = near[["cell", "batch_tokens"]].drop_duplicates().reset_index(drop=True)
    keys["slice"] = np.arange(len(keys))
    out = near.merge(keys, on=["cell", "batch_tokens"])
    best = out.loc[out.groupby("slice")["target"].idxmin()].set_index("slice")["log2_lr"]
    out["best_log2_lr"] = out["slice"].map(best)
    return out


def posterior_predictive_check(fit, slices: pd.DataFrame, n_draws: int = 400, seed: int = 0) -> pd.DataFrame:
    """Per slice: T_obs (most negative second difference, loss per octave²) and its p-value
    under the surface model's posterior predictive distribution."""
    rng = np.random.default_rng(seed)
    total = len(fit.draws("sigma"))
    pick = rng.choice(total, size=min(n_draws, total), replace=False)
    sigma = fit.draws("sigma")[pick, None]
    rows = []
    for s, runs in slices.groupby("slice", sort=True):
        best = runs["best_log2_lr"].iloc[0]
        runs = _slice_points(runs)
        cell = int(runs["cell"].iloc[0])
        mean = fit.cell_mean(cell, runs["lr"], runs["batch_tokens"])[pick]
        y_rep = mean + sigma * rng.logistic(size=mean.shape)
        x = runs["log2_lr"].to_numpy()
        near = _near_best(x, best)
        t_obs = second_differences(x, runs["target"].to_numpy())[near].min()
        t_rep = second_differences(x, y_rep)[:, near].min(axis=-1)
        rows.append({"slice": s, "cell": cell, "batch_tokens": runs["batch_tokens"].iloc[0], "n_lr": len(runs),
                     "statistic": t_obs, "p_value": float(np.mean(t_rep <= t_obs))})
    return pd.DataFrame(rows)


def _lattice(slices: pd.DataFrame):
    """Per slice, its runs' positions on the half-octave lattice starting at the slice's lowest LR."""
    x0 = slices.groupby("slice")["log2_lr"].transform("min")
    pos = np.rint((slices["log2_lr"] - x0) / LATTICE).astype(int).to_numpy()
    length = int(pos.max()) + 1
    return pos, length


def bowl_model(slices: pd.DataFrame, noise_sd: float) -> pm.Model:
    """Per slice: minimum m_s at log2 LR c_s, curvature a_s (pooled on the log scale) and a
    pooled asymmetry k: y = m_s + a_s linex(x − c_s, k); Student-t noise."""
    s = slices["slice"].to_numpy()
    x = slices["log2_lr"].to_numpy()
    y = slices["target"].to_numpy()
    best = slices.loc[slices.groupby("slice")["target"].idxmin()].sort_values("slice")
    with pm.Model(coords={"slice": np.arange(s.max() + 1), "run": np.arange(len(y))}) as model:
        m = pm.Normal("m", best["target"].to_numpy(), 0.05, dims="slice")
        c = pm.Normal("c", best["log2_lr"].to_numpy(), 1.0, dims="slice")
        log_a_mu = pm.Normal("log_a_mu", np.log(0.02), 1.5)
        log_a_sd = pm.HalfNormal("log_a_sd", 0.5)
        log_a = pm.Normal("log_a", log_a_mu, log_a_sd, dims="slice")
        k = pm.Normal("k", 0.0, 2.0)
        mean = m[s] + pt.exp(log_a)[s] * linex(x - c[s], k, math=pm.math)
        pm.Normal("loss", mu=mean, sigma=noise_sd, observed=y, dims="run")
    return model


def flexible_model(slices: pd.DataFrame, noise_sd: float) -> pm.Model:
    """Per slice a discrete spline on the half-octave lattice: value m_s and slope g_s at the
    lowest LR, second differences d2 ~ Normal(μ, τ) (loss per octave²) of either sign."""
    s = slices["slice"].to_numpy()
    y = slices["target"].to_numpy()
    pos, length = _lattice(slices)
    first = slices.loc[slices.groupby("slice")["log2_lr"].idxmin()].sort_values("slice")
    n_slices = s.max() + 1
    with pm.Model(coords={"slice": np.arange(n_slices), "knot": np.arange(max(length - 2, 1)), "run": np.arange(len(y))}) as model:
        m = pm.Normal("m", first["target"].to_numpy(), 0.05, dims="slice")
        g = pm.Normal("g", 0.0, 0.1, dims="slice")
        mu = pm.Normal("curvature_mean", 0.0, 0.05)
        tau = pm.HalfNormal("curvature_sd", 0.05)
        # heavy tails: one concave stretch need not be explained away by the curvature that
        # every other knot shares
        z = pm.StudentT("z", nu=2.0, mu=0.0, sigma=1.0, dims=("slice", "knot"))
        d2 = pm.Deterministic("d2", mu + tau * z, dims=("slice", "knot"))
        # slope on each lattice interval, then values by summing slopes
        slopes = pt.concatenate([pt.zeros((n_slices, 1)), pt.cumsum(d2 * LATTICE, axis=1)], axis=1) + g[:, None]
        values = pt.concatenate([pt.zeros((n_slices, 1)), pt.cumsum(slopes * LATTICE, axis=1)], axis=1) + m[:, None]
        mean = values[s, pos]
        pm.Normal("loss", mu=mean, sigma=noise_sd, observed=y, dims="run")
    return model


def _near_best(x, best) -> np.ndarray:
    """Which second differences (at the interior points of ``x``) lie within ``NEAR_BEST``
    octaves of the slice's best LR."""
    return np.abs(x[1:-1] - best) <= NEAR_BEST


def _slice_points(runs: pd.DataFrame) -> pd.DataFrame:
    """One point per LR of a slice: the mean loss of its runs and how many there are."""
    return runs.groupby("log2_lr", as_index=False).agg(
        target=("target", "mean"), runs=("target", "size"), lr=("lr", "first"),
        batch_tokens=("batch_tokens", "first"), cell=("cell", "first"))


def concave_probability(slices: pd.DataFrame, noise_sd: float, n_draws: int = 4000, seed: int = 0) -> pd.Series:
    """Per slice, P(some second difference < 0 within ``NEAR_BEST`` octaves of its best LR)
    under the most flexible curve there is: a free value at every observed LR (flat prior),
    the noise known (``noise_sd`` per run). Its posterior is Normal around the observed
    losses, so the probability is a Monte Carlo over that Normal; no sampler is needed."""
    rng = np.random.default_rng(seed)
    out = {}
    for s, runs in slices.groupby("slice", sort=True):
        best = runs["best_log2_lr"].iloc[0]
        points = _slice_points(runs)
        x, y = points["log2_lr"].to_numpy(), points["target"].to_numpy()
        near = _near_best(x, best)
        if not near.any():
            out[s] = np.nan
            continue
        sd = noise_sd / np.sqrt(points["runs"].to_numpy())
        d2 = second_differences(x, y + sd * rng.standard_normal((n_draws, len(y))))[:, near]
        out[s] = float(np.mean((d2 < 0).any(axis=1)))
    return pd.Series(out, name="p_concave")


def compare_shapes(slices: pd.DataFrame, noise_sd: float, draws: int = 400, tune: int = 400, chains: int = 2, seed: int = 0):
    """Fit the bowl and the spline alternative to the same slices. Returns (per-slice table
    of the flexible-minus-bowl elpd, LOO comparison table, reports)."""
    fitted, reports = {}, {}
    for name, build in (("bowl", bowl_model), ("flexible", flexible_model)):
        model = build(slices, noise_sd)
        idata, timing = run_sampler(model, "auto", draws, tune, chains, seed, False, None)
        with model:
            pm.compute_log_likelihood(idata, progressbar=False)
        fitted[name] = idata
        names = [v.name for v in model.free_RVs if v.name not in ("z",)]
        reports[name] = {**diag.sampling_diagnostics(idata, names), **timing}
    elpd = {name: diag.loo(idata).loo_i.values for name, idata in fitted.items()}
    per_slice = pd.DataFrame({"slice": slices["slice"].to_numpy(), "d": elpd["flexible"] - elpd["bowl"]})
    table = pd.DataFrame({"elpd_flexible_minus_bowl": per_slice.groupby("slice")["d"].sum()})
    table.index.name = "slice"
    return table.reset_index(), diag.compare(fitted), reports


def verdict(p_value, p_concave, alpha: float = 0.05, prob: float = 0.99) -> np.ndarray:
    """"not convex here" where the bowl's p-value is at most ``alpha`` or the flexible curve's
    P(concave stretch) at least ``prob``; otherwise "no evidence against convexity"."""
    flagged = (np.asarray(p_value) <= alpha) | (np.asarray(p_concave) >= prob)
    return np.where(flagged, "not convex here", "no evidence against convexity")


def convexity_check(fit, slice_window: float = 0.005, seed: int = 0, draws: int = 400, tune: int = 400) -> pd.DataFrame:
    """The convexity table of a surface fit: one row per (cell, batch size) slice, with its
    statistic, p-value, P(concave stretch), LOO difference and verdict."""
    slices = lr_slices(fit, slice_window)
    if slices.empty:
        raise ValueError("no LR slice has 4 or more runs near its cell's optimum; nothing to check")
    ppc = posterior_predictive_check(fit, slices, seed=seed)
    noise_sd = float(np.median(fit.draws("sigma"))) * np.pi / np.sqrt(3)  # the logistic scale's sd
    shapes, _, _ = compare_shapes(slices, noise_sd, draws=draws, tune=tune, seed=seed)
    concave = concave_probability(slices, noise_sd, seed=seed).rename_axis("slice").reset_index()
    table = ppc.merge(concave, on="slice").merge(shapes, on="slice")
    table["verdict"] = verdict(table["p_value"], table["p_concave"])
    cells = fit.cells.reset_index().rename(columns={"index": "cell"})[["cell", "N", "D"]]
    return cells.merge(table, on="cell").drop(columns="slice")
