import numpy as np
import pandas as pd
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayescale.sweep import convexity as cv
from bayescale.sweep.convexity import (
    concave_probability,
    posterior_predictive_check,
    second_differences,
    verdict,
)


def test_second_differences_match_a_loop_on_uneven_spacing():
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-14, -8, 9))
    y = rng.normal(size=9)
    expected = [
        2 * ((y[i + 2] - y[i + 1]) / (x[i + 2] - x[i + 1]) - (y[i + 1] - y[i]) / (x[i + 1] - x[i])) / (x[i + 2] - x[i])
        for i in range(7)
    ]
    assert np.allclose(second_differences(x, y), expected)


def test_second_differences_are_twice_the_quadratic_coefficient():
    x = np.array([-12.0, -11.5, -11.0, -10.0, -9.5])
    assert np.allclose(second_differences(x, 3 * x**2 - x + 2), 6.0)
    # a concave cap gives negative values; rows of y are handled at once
    ys = np.stack([x**2, -(x**2)])
    d2 = second_differences(x, ys)
    assert d2.shape == (2, 3)
    assert (d2[0] > 0).all() and (d2[1] < 0).all()


class _BowlPosterior:
    """A surface posterior whose every draw is the same convex parabola in log2 LR."""

    def __init__(self, curvature=0.02, sigma=0.0011, draws=400):  # logistic scale: sd 0.002
        self.curvature, self.n = curvature, draws
        self.sigma = np.full(draws, sigma)

    def draws(self, name):
        assert name == "sigma"
        return self.sigma

    def cell_mean(self, cell, lr, batch_tokens):
        x = np.log2(np.asarray(lr, float)) + 9
        return np.broadcast_to(2.5 + self.curvature * x**2 / 2, (self.n, len(x)))


def _slice(bump: float, seed: int, width: float = 1.0, slice_id: int = 0) -> pd.DataFrame:
    """One LR slice on a half-octave grid around 2^-9: the bowl, noise, and a concave cap of
    height ``bump`` over the ``width`` octaves above the optimum (zero: a convex slice)."""
    x = np.arange(-11.0, -6.5, 0.5)
    t = x + 9
    cap = np.where((t >= 0) & (t <= width), bump * (1 - (2 * t / width - 1) ** 2), 0.0)
    y = 2.5 + 0.01 * t**2 + cap + np.random.default_rng(seed).normal(0, 0.002, len(x))
    return pd.DataFrame({"slice": slice_id, "cell": 0, "log2_lr": x, "lr": 2.0**x, "batch_tokens": 2.0**18, "target": y,
                         "best_log2_lr": x[np.argmin(y)]})


def test_ppc_flags_a_planted_concave_stretch_and_not_a_convex_slice():
    fit = _BowlPosterior()
    concave = posterior_predictive_check(fit, _slice(0.01, seed=0))
    assert concave["statistic"].iloc[0] < 0 and concave["p_value"].iloc[0] < 0.05
    convex_p = [posterior_predictive_check(fit, _slice(0.0, seed=s))["p_value"].iloc[0] for s in range(10)]
    assert np.mean(np.array(convex_p) < 0.05) <= 0.2


def test_verdict_needs_either_check_to_flag_a_slice():
    out = verdict([0.01, 0.5, 0.5, 0.2], [0.1, 0.995, 0.5, 0.98])
    assert list(out) == ["not convex here", "not convex here", "no evidence against convexity", "no evidence against convexity"]


def test_concave_probability_is_high_on_a_planted_stretch_and_not_on_convex_slices():
    concave = [concave_probability(_slice(0.01, seed=s), noise_sd=0.002).iloc[0] for s in range(10)]
    convex = [concave_probability(_slice(0.0, seed=s), noise_sd=0.002).iloc[0] for s in range(10)]
    assert min(concave) >= 0.99
    assert np.mean(np.array(convex) >= 0.99) <= 0.1


def test_level_logpdf_matches_a_dense_normal_with_each_point_left_out():
    rng = np.random.default_rng(2)
    r, sd = rng.normal(0, 0.01, (3, 5)), rng.uniform(0.001, 0.004, 5)
    cov = np.diag(sd**2) + cv.LEVEL_SD**2
    got = cv._level_logpdf(r, sd)
    for row in range(3):
        assert np.isclose(got[row, 0], multivariate_normal(np.zeros(5), cov).logpdf(r[row]))
        for i in range(5):
            keep = np.delete(np.arange(5), i)
            assert np.isclose(got[row, i + 1], multivariate_normal(np.zeros(4), cov[np.ix_(keep, keep)]).logpdf(r[row, keep]))


def test_log_matmul_is_a_stable_logsumexp():
    rng = np.random.default_rng(3)
    log_w, log_x = rng.normal(-3, 2, (4, 6)), rng.normal(-800, 5, (6, 2, 3))
    expected = logsumexp(log_w[:, :, None, None] + log_x[None], axis=1)
    assert np.allclose(cv._log_matmul(log_w, log_x), expected)


def test_rw2_basis_builds_the_parabola_of_a_constant_second_difference():
    length = len(cv._RW2)
    x = (np.arange(length) - length // 2) * cv.LATTICE
    m, g, d2 = 2.5, -0.03, 0.04
    values = cv._RW2 @ np.r_[m, g, np.full(length - 2, d2)]
    # value m at the middle, forward slope g there, curvature d2
    assert np.allclose(values, m + (g - d2 * cv.LATTICE / 2) * x + d2 * x**2 / 2)


def test_flexible_loo_matches_normal_conditionals_mixed_over_tau():
    points = cv.shape_points(pd.concat([_slice(0.01, seed=s, slice_id=s) for s in range(2)]))
    y = points["target"].to_numpy()
    got, weights = cv.flexible_loo(points, 0.002)
    joint, left_out = [], []
    for tau in cv.TAU_GRID:
        mean, cov, _ = cv.flexible_moments(points, 0.002, tau)
        joint.append(multivariate_normal(mean, cov).logpdf(y))
        keeps = [np.delete(np.arange(len(y)), i) for i in range(len(y))]
        left_out.append([multivariate_normal(mean[k], cov[np.ix_(k, k)]).logpdf(y[k]) for k in keeps])
    joint, left_out = np.array(joint), np.array(left_out)
    # log p(y_i | y_-i) = log Σ_τ p(y | τ) − log Σ_τ p(y_−i | τ), uniform over the τ grid
    assert np.allclose(got, logsumexp(joint) - logsumexp(left_out, axis=0))
    assert np.allclose(weights, np.exp(joint - logsumexp(joint)))


def test_loo_prefers_the_flexible_curve_on_planted_concave_slices_only():
    convex = pd.concat([_slice(0.0, seed=s, slice_id=s) for s in range(6)])
    concave = pd.concat([_slice(0.01, seed=s, width=1.5, slice_id=s) for s in range(6)])
    table, overall = cv.compare_shapes(convex, 0.002)
    assert (table["loo_points"] == 7).all()
    assert overall["elpd_diff"] < 2 * overall["elpd_diff_se"]
    assert overall["p_concave_profile"] < 0.99
    table, overall = cv.compare_shapes(concave, 0.002)
    assert overall["elpd_diff"] > 2 * overall["elpd_diff_se"]
    assert overall["p_concave_profile"] >= 0.99
    assert np.isclose(table["elpd_diff"].sum(), overall["elpd_diff"])
