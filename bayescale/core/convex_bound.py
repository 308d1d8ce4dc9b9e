"""The last-iterate bound of convex SGD (Defazio et al. 2023; Schaipp et al. 2025) for any
schedule: Ω_T(γ) = t1/γ + γ(t2 + t3), the best base LR γ* and the best bound Ω*.

Conventions. A ``Schedule`` of ``total_steps`` T holds T + 1 LRs for steps 0..T; the T
updates of a T-step run use steps 0..T−1, so the bound's η_1..η_T are ``lr[0:T]`` (the LR
at step T itself is never applied, which keeps η_T > 0 for decay-to-zero shapes). The
shape is divided by its peak, so γ is in units of the schedule's peak LR.

Cost. For one horizon the k-sum telescopes (η_k = S_k − S_{k−1}) into reverse cumulative
sums: t3 = ½ Σ_k η_k P_k / (R_k (R_k + η_k)) with R_k = Σ_{i>k} η_i and
P_k = Σ_{i≥k} η_i² G². Summing R from the end keeps it exact where S_T − S_k would cancel.
At many horizons (whole curves) each horizon gets its own reverse sums: O(J·T) for J
horizons, exact to rounding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.core.schedules import Schedule


def shape_of(schedule, horizon: int | None = None) -> np.ndarray:
    """η_1..η_T of a ``Schedule`` (or a raw LR array of T + 1 values), divided by the
    peak. Refuses what the bound cannot take: a negative LR, a zero LR at the horizon."""
    name = getattr(schedule, "name", "") or "schedule"
    lr = np.asarray(schedule.lr if isinstance(schedule, Schedule) else schedule, dtype=np.float64)
    if lr.ndim != 1 or lr.size < 2:
        raise ValueError(f"{name}: needs a 1-D array of at least 2 learning rates (steps 0..T)")
    T = lr.size - 1 if horizon is None else int(horizon)
    if not 1 <= T <= lr.size - 1:
        raise ValueError(f"{name}: horizon {T} outside 1..{lr.size - 1}")
    eta = lr[:T]
    if not np.all(np.isfinite(eta)):
        raise ValueError(f"{name}: learning rates must be finite")
    if np.any(eta < 0):
        bad = int(np.flatnonzero(eta < 0)[0])
        raise ValueError(f"{name}: negative learning rate {eta[bad]:g} at step {bad}; the bound needs η ≥ 0")
    if eta[-1] <= 0:
        raise ValueError(
            f"{name}: zero learning rate at the horizon (step {T - 1}, the last update of a {T}-step run); "
            "the bound divides by it. Build the schedule with T + 1 points so that the zero falls on step T"
        )
    return eta / eta.max()


@dataclass(frozen=True)
class BoundTerms:
    """t1 = D²/(2 S_T), t2 = Q_T/(2 S_T), t3 (the k-sum); ``S`` = S_T."""

    t1: float
    t2: float
    t3: float
    S: float

    @property
    def K(self) -> float:
        """t2 + t3: the coefficient of γ."""
        return self.t2 + self.t3

    @property
    def gamma_star(self) -> float:
        return float(np.sqrt(self.t1 / self.K))

    @property
    def omega_star(self) -> float:
        return float(2.0 * np.sqrt(self.t1 * self.K))

    def omega(self, gamma):
        gamma = np.asarray(gamma, dtype=np.float64)
        return self.t1 / gamma + gamma * self.K


def bound_terms(schedule, horizon: int | None = None, D: float = 1.0, G: float = 1.0) -> BoundTerms:
    """The three terms of Ω_T in O(T) by reverse cumulative sums."""
    eta = shape_of(schedule, horizon)
    return _terms(eta, D, G)


def _terms(eta: np.ndarray, D: float, G: float) -> BoundTerms:
    q = eta**2 * G**2
    S = eta.sum()
    Q = q.sum()
    after = np.cumsum(eta[::-1])[::-1] - eta  # R_k = Σ_{i>k} η_i, summed from the end
    from_k = np.cumsum(q[::-1])[::-1]  # P_k = Σ_{i≥k} q_i
    k = slice(0, eta.size - 1)
    t3 = 0.5 * np.sum(eta[k] * from_k[k] / (after[k] * (after[k] + eta[k])))
    return BoundTerms(t1=D**2 / (2 * S), t2=Q / (2 * S), t3=float(t3), S=float(S))


def bound_terms_direct(schedule, horizon: int | None = None, D: float = 1.0, G: float = 1.0) -> BoundTerms:
    """The k-sum written as in the paper, every partial sum recomputed: O(T²), for tests."""
    eta = shape_of(schedule, horizon)
    T = eta.size
    S = eta.sum()
    Q = np.sum(eta**2) * G**2
    t3 = 0.0
    for k in range(1, T):  # 1-based k = 1..T−1; η_k = eta[k−1]
        S_T_minus_S_k = np.sum(eta[k:])
        S_T_minus_S_km1 = np.sum(eta[k - 1 :])
        Q_T_minus_Q_km1 = np.sum(eta[k - 1 :] ** 2) * G**2
        t3 += eta[k - 1] / S_T_minus_S_k * Q_T_minus_Q_km1 / S_T_minus_S_km1
    return BoundTerms(t1=D**2 / (2 * S), t2=Q / (2 * S), t3=0.5 * t3, S=float(S))


def omega(schedule, gamma, horizon: int | None = None, D: float = 1.0, G: float = 1.0):
    """Ω_T(γ) for one or many base LRs γ (in units of the schedule's peak)."""
    return bound_terms(schedule, horizon, D, G).omega(gamma)


def optimal_lr(schedule, horizon: int | None = None, D: float = 1.0, G: float = 1.0) -> float:
    """γ* = √(t1 / (t2 + t3))."""
    return bound_terms(schedule, horizon, D, G).gamma_star


def optimal_bound(schedule, horizon: int | None = None, D: float = 1.0, G: float = 1.0) -> float:
    """Ω* = 2 √(t1 (t2 + t3))."""
    return bound_terms(schedule, horizon, D, G).omega_star


def shape_terms(schedule, steps) -> pd.DataFrame:
    """S̃_t = 2 S_t and K_t = t2 + t3 (D = G = 1) of the bound at horizon t, for each horizon t in
    ``steps`` (integers in 1..T; cost O(J·T) for J horizons). With these, a run at base LR γ follows
    y_t = L_inf + θ1/(γ S̃_t) + θ2 γ K_t, linear in (L_inf, θ1, θ2).

    Horizons where the bound is undefined (S_t = 0, or η_t = 0 as in an initial warmup
    from zero) get NaN."""
    lr = np.asarray(schedule.lr if isinstance(schedule, Schedule) else schedule, dtype=np.float64)
    shape_of(lr)  # validates sign and finiteness of the whole schedule's updates
    steps = np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1 or np.any(steps < 1) or np.any(steps > lr.size - 1):
        raise ValueError(f"steps must be horizons in 1..{lr.size - 1}")
    eta = lr / lr.max()
    S_tilde = np.full(steps.size, np.nan)
    K = np.full(steps.size, np.nan)
    for j, t in enumerate(steps):
        if eta[t - 1] > 0:
            terms = _terms(eta[:t], 1.0, 1.0)
            S_tilde[j] = 2.0 * terms.S
            K[j] = terms.K
    return pd.DataFrame({"step": steps, "S_tilde": S_tilde, "K": K})
