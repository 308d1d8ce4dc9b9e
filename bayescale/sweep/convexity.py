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
3. A flexible curve against the bowl, by exact leave-one-out: per slice, the points within
   ``SHAPE_WINDOW`` octaves of the best LR, fitted once by a convex bowl (an asymmetric
   parabola per slice, its curvature and asymmetry pooled) and once by a random walk on
   second differences (a discrete smoothing spline whose curvature may change sign, around a
   profile of curvatures shared by the slices, so that a stretch that recurs across slices
   can be predicted at a held-out point). Both use the same Normal noise of the surface
   fit's sd. Each model is Gaussian given a few hyperparameters, or a mixture over fine grids
   of its nonlinear ones, so p(y_i | y_−i) is computed exactly: no importance sampling (a
   sampled version of this comparison had Pareto k > 0.7 at a quarter of the points, with
   five parameters per slice of seven points). A positive elpd difference favours the
   flexible curve; the profile's posterior gives P(concave stretch) for the whole sweep.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.linalg import cho_solve
from scipy.special import logsumexp

from bayescale.sweep.surface import linex

LATTICE = 0.5  # octaves between neighbouring LRs of the grid
NEAR_BEST = 1.0  # octaves either side of a slice's best LR where convexity is checked
SHAPE_WINDOW = 1.5  # octaves either side of it fitted by the bowl and the flexible curve
LEVEL_SD = 0.01  # prior sd of a slice's loss at its best LR around its best measured loss
SLOPE_SD = 0.05  # prior sd of the flexible curve's slope there (loss per octave)
# grids of the shape models (curvatures in loss per octave², offsets and asymmetry per octave)
C_GRID = np.linspace(-0.75, 0.75, 61)
A_GRID = np.geomspace(1e-3, 0.5, 161)
K_GRID = np.linspace(-2.0, 2.0, 41)
# the bowl's hyperparameters: centre and spread over slices of log a and of k (centres on
# grids as fine as the per-slice ones, or a tight spread would force the wrong shape)
BOWL_HYPER = {"a": (np.log(A_GRID[20:141:3]), [0.03, 0.1, 0.3, 1.0]), "k": (K_GRID[5:36], [0.03, 0.1, 0.3, 1.0])}
# the flexible curve: a profile of second differences shared by the slices, and their spread
PROFILE_MEAN, PROFILE_SD = 0.02, 0.1
TAU_GRID = np.geomspace(1e-3, 0.3, 26)


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


def shape_points(slices: pd.DataFrame) -> pd.DataFrame:
    """The points both shape models are fitted to: per slice, one point per LR within
    ``SHAPE_WINDOW`` octaves of its best LR (the mean loss of the runs there), with its lattice
    position (0 … 2·SHAPE_WINDOW/LATTICE, the best LR in the middle)."""
    points = []
    for s, runs in slices.groupby("slice", sort=True):
        one = _slice_points(runs).assign(slice=s)
        one["offset"] = one["log2_lr"] - runs["best_log2_lr"].iloc[0]
        points.append(one[one["offset"].abs() <= SHAPE_WINDOW + 1e-9])
    out = pd.concat(points, ignore_index=True)
    out["position"] = np.rint(out["offset"] / LATTICE).astype(int) + round(SHAPE_WINDOW / LATTICE)
    return out


def _log_prior(grid, centres, sds) -> np.ndarray:
    """Discrete Normal(centre, sd) weights over ``grid``, one row per (centre, sd) pair (log,
    normalised)."""
    centre, sd = (g.ravel()[:, None] for g in np.meshgrid(centres, sds, indexing="ij"))
    w = -0.5 * ((grid[None] - centre) / sd) ** 2
    return w - logsumexp(w, axis=1, keepdims=True)


def _level_logpdf(r, sd) -> np.ndarray:
    """log N(r; 0, diag(sd²) + LEVEL_SD²·11ᵀ) over the last axis of ``r`` for all the points,
    then all but point i for each i (Sherman–Morrison): shape (..., n + 1)."""
    n = r.shape[-1]
    keep = np.vstack([np.ones(n), 1 - np.eye(n)])  # (n + 1, n)
    w = 1 / sd**2
    s2, s1 = (r**2 * w) @ keep.T, (r * w) @ keep.T
    sw, v = keep @ w, LEVEL_SD**2
    return -0.5 * (s2 - v * s1**2 / (1 + v * sw)) - 0.5 * (keep @ np.log(sd**2) + np.log1p(v * sw) + keep.sum(1) * np.log(2 * np.pi))


def bowl_evidence(x, y, sd) -> np.ndarray:
    """Bowl m + a·linex(x − c, k) for one slice: log p(all points | hyper) and with each point
    left out, shape (n + 1, hyper). m ~ Normal(best loss, LEVEL_SD) is integrated in closed
    form; c (uniform), log a ~ Normal(log a0, s_a) and k ~ Normal(k0, s_k) over grids fine
    enough that neighbouring bowls differ by less than the noise."""
    f = linex(x[None, None] - C_GRID[:, None, None], K_GRID[None, :, None])  # (c, k, point)
    r = y - y.min() - A_GRID[:, None, None, None] * f[None]  # (a, c, k, point)
    ll = logsumexp(_level_logpdf(r, sd), axis=1) - np.log(len(C_GRID))  # (a, k, n + 1)
    ll = _log_matmul(_log_prior(K_GRID, *BOWL_HYPER["k"]), ll.transpose(1, 0, 2))  # (k hyper, a, n + 1)
    ll = _log_matmul(_log_prior(np.log(A_GRID), *BOWL_HYPER["a"]), ll.transpose(1, 0, 2))  # (a hyper, k hyper, n + 1)
    return ll.reshape(-1, len(y) + 1).T


def _log_matmul(log_w, log_x) -> np.ndarray:
    """log Σ_j exp(log_w[h, j] + log_x[j, ...]) as a matrix product (stabilised; a sum that
    underflows entirely is floored at 1e-300 of the largest term)."""
    top_w, top_x = log_w.max(), log_x.max(axis=0)
    prod = np.tensordot(np.exp(log_w - top_w), np.exp(log_x - top_x), axes=(1, 0))
    return np.log(np.maximum(prod, 1e-300)) + top_w + top_x


def bowl_loo(points: pd.DataFrame, noise_sd: float) -> np.ndarray:
    """Exact leave-one-out log predictive density of every point under the bowl: slices are
    independent given the hyperparameters (uniform over their grid), so
    log p(y_i | y_−i) = log Σ_h p(y | h) − log Σ_h p(y | h) p(y_s,−i | h) / p(y_s | h)."""
    evidence = [bowl_evidence(one["offset"].to_numpy(), one["target"].to_numpy(), noise_sd / np.sqrt(one["runs"].to_numpy()))
                for _, one in points.groupby("slice", sort=True)]
    total = sum(e[0] for e in evidence)
    return np.concatenate([logsumexp(total) - logsumexp(total - e[0] + e[1:], axis=1) for e in evidence])


def _rw2_basis(length: int) -> np.ndarray:
    """The linear map from (value and forward slope at the middle position, the second
    differences at the interior positions) to the values on a lattice of ``length`` points."""
    h, mid = LATTICE, length // 2
    rows = np.zeros((length, length))
    rows[0, mid] = 1.0
    rows[1, [mid, mid + 1]] = [-1.0 / h, 1.0 / h]
    for j in range(1, length - 1):
        rows[j + 1, [j - 1, j, j + 1]] = [1.0 / h**2, -2.0 / h**2, 1.0 / h**2]
    return np.linalg.inv(rows)


_RW2 = _rw2_basis(round(2 * SHAPE_WINDOW / LATTICE) + 1)


def flexible_moments(points: pd.DataFrame, noise_sd: float, tau: float):
    """The flexible curve's joint Gaussian over all points for one τ: per slice, value ~
    Normal(best loss, LEVEL_SD) and slope ~ Normal(0, SLOPE_SD) at the best LR, second
    differences d2_sj = μ_j + τ z_sj (loss per octave², either sign) around a profile μ_j
    shared by the slices (offset j from the best LR), μ_j ~ Normal(PROFILE_MEAN, PROFILE_SD).
    Returns (mean, covariance, the d2 columns G of the design: the profile's loading)."""
    design = _RW2[points["position"].to_numpy()]  # (point, [m, g, d2 …])
    same = points["slice"].to_numpy()[:, None] == points["slice"].to_numpy()[None]
    own = np.r_[LEVEL_SD**2, SLOPE_SD**2, np.full(design.shape[1] - 2, tau**2)]
    G = design[:, 2:]
    best = points.groupby("slice")["target"].transform("min").to_numpy()
    mean = best * design[:, 0] + G.sum(1) * PROFILE_MEAN
    cov = same * ((design * own) @ design.T) + PROFILE_SD**2 * G @ G.T
    cov[np.diag_indices_from(cov)] += noise_sd**2 / points["runs"].to_numpy()
    return mean, cov, G


def flexible_loo(points: pd.DataFrame, noise_sd: float):
    """Exact leave-one-out log predictive density of every point under the flexible curve
    (Gaussian given τ, mixed over a log-uniform τ grid), and the posterior weights of τ."""
    y = points["target"].to_numpy()
    joint, cond = [], []
    for tau in TAU_GRID:
        mean, cov, _ = flexible_moments(points, noise_sd, tau)
        r, chol = y - mean, np.linalg.cholesky(cov)
        precision = cho_solve((chol, True), np.eye(len(y)))
        q, pr = np.diag(precision), precision @ r
        joint.append(-0.5 * r @ pr - np.log(np.diag(chol)).sum() - 0.5 * len(y) * np.log(2 * np.pi))
        cond.append(-0.5 * np.log(2 * np.pi / q) - 0.5 * pr**2 / q)  # log p(y_i | y_−i, τ)
    joint, cond = np.array(joint), np.array(cond)
    return logsumexp(joint) - logsumexp(joint[:, None] - cond, axis=0), np.exp(joint - logsumexp(joint))


def profile_concave_probability(points: pd.DataFrame, noise_sd: float, weights, n_draws: int = 4000, seed: int = 0) -> float:
    """P(the shared profile has a negative second difference within ``NEAR_BEST`` octaves of
    the best LR) under the flexible curve's posterior: the sweep-wide concave stretch."""
    rng = np.random.default_rng(seed)
    y = points["target"].to_numpy()
    centre = (len(_RW2) - 1) // 2
    near = np.abs(np.arange(1, len(_RW2) - 1) - centre) * LATTICE <= NEAR_BEST
    counts = rng.multinomial(n_draws, weights)
    draws = []
    for tau, n in zip(TAU_GRID, counts):
        if n:
            mean, cov, G = flexible_moments(points, noise_sd, tau)
            gain = PROFILE_SD**2 * np.linalg.solve(cov, G).T  # Cov(μ, y) Σ⁻¹
            post_mean = PROFILE_MEAN + gain @ (y - mean)
            post_cov = PROFILE_SD**2 * np.eye(G.shape[1]) - gain @ G * PROFILE_SD**2
            draws.append(rng.multivariate_normal(post_mean, post_cov, size=n, method="eigh"))
    return float(np.mean((np.concatenate(draws)[:, near] < 0).any(axis=1)))


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


def compare_shapes(slices: pd.DataFrame, noise_sd: float, seed: int = 0):
    """Exact leave-one-out comparison of the bowl and the flexible curve, fitted to the same
    points (``shape_points``) with the same Normal noise (``noise_sd`` per run). Returns (per
    slice: points, elpd of flexible minus bowl and its se; overall: points, the elpd of
    each model, their difference and its se, and P(concave stretch in the shared profile))."""
    points = shape_points(slices)
    bowl = bowl_loo(points, noise_sd)
    flexible, weights = flexible_loo(points, noise_sd)
    d = flexible - bowl
    per_slice = pd.Series(d).groupby(points["slice"].to_numpy())
    table = pd.DataFrame({"loo_points": per_slice.size(), "elpd_diff": per_slice.sum(), "elpd_diff_se": per_slice.agg(_sum_se)})
    overall = {"points": len(points), "elpd_bowl": float(bowl.sum()), "elpd_flexible": float(flexible.sum()),
               "elpd_diff": float(d.sum()), "elpd_diff_se": _sum_se(d),
               "p_concave_profile": profile_concave_probability(points, noise_sd, weights, seed=seed)}
    return table.rename_axis("slice").reset_index(), overall


def _sum_se(d) -> float:
    """Standard error of a sum of pointwise differences."""
    d = np.asarray(d)
    return float(np.sqrt(len(d) * d.var(ddof=1))) if len(d) > 1 else float("nan")


def verdict(p_value, p_concave, alpha: float = 0.05, prob: float = 0.99) -> np.ndarray:
    """"not convex here" where the bowl's p-value is at most ``alpha`` or the flexible curve's
    P(concave stretch) at least ``prob``; otherwise "no evidence against convexity"."""
    flagged = (np.asarray(p_value) <= alpha) | (np.asarray(p_concave) >= prob)
    return np.where(flagged, "not convex here", "no evidence against convexity")


def convexity_check(fit, slice_window: float = 0.005, seed: int = 0):
    """The convexity table of a surface fit: one row per (cell, batch size) slice, with its
    statistic, p-value, P(concave stretch), the flexible-minus-bowl exact-LOO difference
    (points, se) and verdict. Returns (table, the overall LOO comparison)."""
    slices = lr_slices(fit, slice_window)
    if slices.empty:
        raise ValueError("no LR slice has 4 or more runs near its cell's optimum; nothing to check")
    ppc = posterior_predictive_check(fit, slices, seed=seed)
    noise_sd = float(np.median(fit.draws("sigma"))) * np.pi / np.sqrt(3)  # the logistic scale's sd
    shapes, overall = compare_shapes(slices, noise_sd, seed=seed)
    concave = concave_probability(slices, noise_sd, seed=seed).rename_axis("slice").reset_index()
    table = ppc.merge(concave, on="slice").merge(shapes, on="slice", how="left")
    table["verdict"] = verdict(table["p_value"], table["p_concave"])
    cells = fit.cells.reset_index().rename(columns={"index": "cell"})[["cell", "N", "D"]]
    return cells.merge(table, on="cell").drop(columns="slice"), overall
