"""Huber's density, exp(−ρ_c(r/σ)) / (σ Z_c): Gaussian within c·σ of the mean, exponential
tails beyond. Robust (a far point pulls with a bounded force) and log-concave (unlike the
Student-t, whose redescending pull makes a posterior bimodal when a few points sit far from
the rest: treated as data in one mode, as outliers in the other). The maximum-likelihood
location is the Huber M-estimate the curve-law authors fit with."""

from __future__ import annotations

import numpy as np
import pytensor.tensor as pt
from scipy.special import erf

HUBER_C = 1.345  # 95% efficiency at the normal
_CORE_MASS = np.sqrt(2 * np.pi) * erf(HUBER_C / np.sqrt(2))
LOG_NORMALISER = float(np.log(_CORE_MASS + 2 * np.exp(-HUBER_C**2 / 2) / HUBER_C))


def huber_logp(value, mu, sigma):
    """log density of ``value`` (PyTensor; also a ``pm.CustomDist`` logp)."""
    z = pt.abs((value - mu) / sigma)
    rho = pt.switch(z <= HUBER_C, 0.5 * z**2, HUBER_C * z - 0.5 * HUBER_C**2)
    return -rho - pt.log(sigma) - LOG_NORMALISER


def huber_logpdf(z, sigma):
    """log density in numpy of standardised residuals ``z`` with scale ``sigma``."""
    a = np.abs(z)
    rho = np.where(a <= HUBER_C, 0.5 * a**2, HUBER_C * a - 0.5 * HUBER_C**2)
    return -rho - np.log(sigma) - LOG_NORMALISER


def huber_standard_draws(rng, size) -> np.ndarray:
    """Draws with σ = 1: a normal truncated to ±c with probability core/total, else
    c + Exponential(rate c) with a random sign."""
    core = rng.random(size) < _CORE_MASS / np.exp(LOG_NORMALISER)
    normal = rng.standard_normal(size)
    while np.any(outside := core & (np.abs(normal) > HUBER_C)):
        normal[outside] = rng.standard_normal(int(outside.sum()))
    tail = (HUBER_C + rng.exponential(1.0 / HUBER_C, size)) * rng.choice([-1.0, 1.0], size)
    return np.where(core, normal, tail)


def huber_random(mu, sigma, rng=None, size=None):
    """``pm.CustomDist`` random: draws around ``mu`` with scale ``sigma``."""
    rng = np.random.default_rng() if rng is None else rng
    shape = np.broadcast_shapes(np.shape(mu), np.shape(sigma)) if size is None else size
    return mu + sigma * huber_standard_draws(rng, shape)
