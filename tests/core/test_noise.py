"""Huber's density: normalised, its draws follow it, PyTensor and numpy agree."""

import numpy as np
import pymc as pm
import pytest
from scipy import integrate, stats

from bayescale.core.noise import (
    HUBER_C,
    huber_logp,
    huber_logpdf,
    huber_random,
    huber_standard_draws,
)


def test_density_integrates_to_one():
    pieces = [(-np.inf, -HUBER_C), (-HUBER_C, HUBER_C), (HUBER_C, np.inf)]
    total = sum(integrate.quad(lambda z: np.exp(huber_logpdf(z, 1.0)), a, b)[0] for a, b in pieces)
    assert total == pytest.approx(1.0, abs=1e-9)


def test_density_is_gaussian_inside_and_exponential_outside():
    inside, outside = np.array([0.0, 1.0]), np.array([2.0, 3.0])
    assert np.diff(huber_logpdf(inside, 1.0))[0] == pytest.approx(-0.5)
    assert np.diff(huber_logpdf(outside, 1.0))[0] == pytest.approx(-HUBER_C)
    assert huber_logpdf(np.array([0.3]), 0.01)[0] == pytest.approx(huber_logpdf(np.array([30.0]) / 100, 1.0)[0] - np.log(0.01))


def test_draws_follow_the_density():
    draws = huber_standard_draws(np.random.default_rng(0), 200_000)
    grid = np.linspace(-12, 12, 24001)
    cdf = integrate.cumulative_trapezoid(np.exp(huber_logpdf(grid, 1.0)), grid, initial=0.0)
    assert stats.kstest(draws, lambda x: np.interp(x, grid, cdf)).pvalue > 0.01
    assert abs(draws.mean()) < 0.01


def test_pytensor_logp_matches_numpy():
    value, mu, sigma = np.array([-0.02, 0.0, 0.003, 0.05]), 0.001, 0.004
    got = huber_logp(value, mu, sigma).eval()
    np.testing.assert_allclose(got, huber_logpdf((value - mu) / sigma, sigma), rtol=1e-12)


def test_custom_dist_random_and_logp():
    with pm.Model() as model:
        pm.CustomDist("y", 0.0, 2.0, logp=huber_logp, random=huber_random, shape=50_000)
    draws = pm.draw(model["y"], random_seed=1)
    assert np.std(draws) == pytest.approx(2.0 * np.std(huber_standard_draws(np.random.default_rng(2), 200_000)), rel=0.02)
    assert model.compile_logp()({"y": np.zeros(50_000)}) == pytest.approx(50_000 * huber_logpdf(0.0, 2.0))
