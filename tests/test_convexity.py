import numpy as np
import pandas as pd

from bayescale.convexity import concave_probability, posterior_predictive_check, second_differences, verdict


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


def _slice(bump: float, seed: int) -> pd.DataFrame:
    """One LR slice on a half-octave grid around 2^-9: the bowl, noise, and a concave cap of
    height ``bump`` over the octave above the optimum (zero: a convex slice)."""
    x = np.arange(-11.0, -6.5, 0.5)
    t = x + 9
    cap = np.where((t >= 0) & (t <= 1), bump * (1 - (2 * t - 1) ** 2), 0.0)
    y = 2.5 + 0.01 * t**2 + cap + np.random.default_rng(seed).normal(0, 0.002, len(x))
    return pd.DataFrame({"slice": 0, "cell": 0, "log2_lr": x, "lr": 2.0**x, "batch_tokens": 2.0**18, "target": y,
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
