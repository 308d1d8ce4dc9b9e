"""Schedule features at observed steps: forward area S1, annealing area S2 (closed form,
numpy and a PyTensor twin in λ) and the multi-power-law decay term.

All functions take the dense LR array (one value per step from 0) and the observed steps,
which must be strictly increasing integers within the array.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytensor.tensor as pt


def _check_steps(lr: np.ndarray, steps) -> np.ndarray:
    steps = np.asarray(steps)
    if steps.ndim != 1 or steps.size == 0:
        raise ValueError("steps must be a non-empty 1-D array")
    if not np.issubdtype(steps.dtype, np.integer):
        if not np.all(steps == np.round(steps)):
            raise ValueError("steps must be integers")
        steps = steps.astype(np.int64)
    if np.any(np.diff(steps) <= 0):
        raise ValueError("steps must be strictly increasing")
    if steps[0] < 0 or steps[-1] >= lr.size:
        raise ValueError(f"steps must lie in [0, {lr.size - 1}]")
    return steps


def _lr_changes(lr: np.ndarray, steps):
    """Checked steps, the drops d_k = η_{k−1} − η_k, the steps k where the LR changes up to
    the last observed step, and the observed-step interval j of each (t_{j−1} < k ≤ t_j)."""
    steps = _check_steps(lr, steps)
    d = np.zeros_like(lr)
    d[1:] = lr[:-1] - lr[1:]
    k = np.flatnonzero(d[: steps[-1] + 1])
    return steps, d, k, np.searchsorted(steps, k, side="left")


def forward_area(lr, steps) -> np.ndarray:
    """S1(t) = Σ_{i≤t} η_i at each observed step."""
    lr = np.asarray(lr, dtype=np.float64)
    return np.cumsum(lr)[_check_steps(lr, steps)]


@dataclass(frozen=True)
class AnnealingTerms:
    """What S2 needs at the observed steps, with λ left free.

    ``drop``/``drop_segment``/``drop_offset`` list every LR change d_k, the observed step
    segment j it falls in (t_{j-1} < k ≤ t_j) and t_j − k; ``gaps`` are t_j − t_{j-1}.
    """

    steps: np.ndarray
    total_drop: np.ndarray  # η_0 − η_{t_j}
    drop: np.ndarray
    drop_segment: np.ndarray
    drop_offset: np.ndarray
    gaps: np.ndarray

    @classmethod
    def from_schedule(cls, lr, steps) -> AnnealingTerms:
        lr = np.asarray(lr, dtype=np.float64)
        steps, d, k, segment = _lr_changes(lr, steps)
        return cls(
            steps=steps,
            total_drop=lr[0] - lr[steps],
            drop=d[k],
            drop_segment=segment,
            drop_offset=(steps[segment] - k).astype(np.float64),
            gaps=np.diff(steps, prepend=0).astype(np.float64),
        )

    def momentum(self, lam: float) -> np.ndarray:
        """m_t at the observed steps: segment sums, then carried across segments."""
        segment_sum = np.bincount(
            self.drop_segment, self.drop * lam**self.drop_offset, minlength=self.steps.size
        )
        m = np.empty_like(segment_sum)
        carry = 0.0
        for j, (gap, seg) in enumerate(zip(lam**self.gaps, segment_sum)):
            carry = carry * gap + seg
            m[j] = carry
        return m

    def area(self, lam: float) -> np.ndarray:
        if not 0 <= lam < 1:
            raise ValueError(f"λ must be in [0, 1), got {lam}")
        return (self.total_drop - lam * self.momentum(lam)) / (1.0 - lam)

    def area_pt(self, lam):
        """PyTensor twin of ``area`` for a symbolic λ. The carry uses the lower-triangular
        matrix P_ji = λ^(t_j − t_i), so memory grows as J² for J observed steps."""
        J = self.steps.size
        contributions = self.drop * lam ** self.drop_offset
        segment_sum = pt.zeros(J, dtype="float64")[self.drop_segment].inc(contributions)
        exponents = (self.steps[:, None] - self.steps[None, :]).astype(np.float64)
        lower = exponents >= 0
        carry = pt.switch(lower, lam ** np.where(lower, exponents, 0.0), 0.0)
        m = pt.dot(carry, segment_sum)
        return (self.total_drop - lam * m) / (1.0 - lam)


def annealing_area(lr, steps, lam: float = 0.999) -> np.ndarray:
    """S2(t) = Σ_{i≤t} m_i with m_t = λ m_{t−1} + (η_{t−1} − η_t), closed form."""
    return AnnealingTerms.from_schedule(lr, steps).area(lam)


@dataclass(frozen=True)
class DecayTerms:
    """The multi-power-law decay sum LD(t) = B Σ_k d_k G(η_k^(−γ) S_k(t)) with the LR
    changes merged into groups, as a dense (observed step × group) matrix of areas.

    The changes up to the schedule's first peak (the warmup's rises) count as fully relaxed,
    G = 1: they add B·(η_0 − η_min(t, peak)) to LD. The law describes the response to LR
    decreases; with this convention the released constants give the published PredE.

    Later changes are grouped within each interval between observed steps (so no group
    straddles an observed step) into at most ``max_group`` consecutive changes; a group acts
    as one drop of its summed size at its drop-weighted mean position. Groups of a single
    change are exact (sudden drops stay exact)."""

    drop: np.ndarray  # summed drop per group
    lr_at: np.ndarray  # η at the group's position
    area: np.ndarray  # S_k(t_j) for each observed step j and group k; 0 where k > t_j
    warmup_drop: np.ndarray  # the warmup's (negative) drops up to each observed step, G = 1

    @classmethod
    def from_schedule(cls, lr, steps, max_group: int = 64) -> DecayTerms:
        lr = np.asarray(lr, dtype=np.float64)
        steps, d, k, segment = _lr_changes(lr, steps)
        peak = int(np.argmax(lr))
        warmup_drop = lr[0] - lr[np.minimum(steps, peak)]
        after_peak = k > peak
        k, segment = k[after_peak], segment[after_peak]
        # group id: split each segment's run of changes into chunks of max_group
        rank_in_segment = np.arange(k.size) - np.searchsorted(segment, segment, side="left")
        new_group = np.ones(k.size, dtype=bool)
        new_group[1:] = (segment[1:] != segment[:-1]) | (rank_in_segment[1:] % max_group == 0)
        group = np.cumsum(new_group) - 1
        n_groups = int(group[-1]) + 1 if k.size else 0
        weight = np.abs(d[k])
        drop = np.bincount(group, d[k], minlength=n_groups)
        position = np.bincount(group, weight * k, minlength=n_groups) / np.bincount(group, weight, minlength=n_groups)
        s1 = np.cumsum(lr)
        grid = np.arange(lr.size, dtype=np.float64)
        lr_at = np.interp(position, grid, lr)
        # S_k(t) = S1(t) − S1(k − 1), with S1 interpolated at fractional k
        before = np.interp(position - 1.0, grid, s1, left=0.0)
        area = s1[steps][:, None] - before[None, :]
        group_segment = np.zeros(n_groups, dtype=np.int64)
        group_segment[group] = segment
        area = np.where(group_segment[None, :] <= np.arange(steps.size)[:, None], area, 0.0)
        return cls(drop=drop, lr_at=lr_at, area=area, warmup_drop=warmup_drop)

    def loss_drop(self, B, C, beta, gamma, xp=np):
        """LD at the observed steps for scalar constants; ``xp`` is numpy or pytensor.tensor."""
        x = (self.lr_at ** (-gamma))[None, :] * self.area
        g = 1.0 - (C * x + 1.0) ** (-beta)
        return B * (xp.dot(g, self.drop) + self.warmup_drop)

    def loss_drop_draws(self, B, C, beta, gamma, chunk: int = 16) -> np.ndarray:
        """LD for arrays of posterior draws of the constants: (draws, observed steps)."""
        B, C, beta, gamma = (np.ravel(v) for v in (B, C, beta, gamma))
        out = np.empty((B.size, self.area.shape[0]))
        for start in range(0, B.size, chunk):
            part = slice(start, start + chunk)
            x = self.lr_at[None, None, :] ** (-gamma[part, None, None]) * self.area[None]
            g = 1.0 - (C[part, None, None] * x + 1.0) ** (-beta[part, None, None])
            out[part] = B[part, None] * (g @ self.drop + self.warmup_drop)
        return out


def multipower_decay_exact(lr, steps, B, C, beta, gamma) -> np.ndarray:
    """Reference O(J·K) evaluation of LD(t) with no grouping (for tests); the changes up to
    the first peak count with G = 1."""
    lr = np.asarray(lr, dtype=np.float64)
    steps = _check_steps(lr, steps)
    s1 = np.cumsum(lr)
    peak = int(np.argmax(lr))
    out = np.zeros(steps.size)
    for j, t in enumerate(steps):
        total = 0.0
        for kk in range(1, t + 1):
            dk = lr[kk - 1] - lr[kk]
            if kk <= peak:
                total += dk
            elif dk != 0.0:
                area = s1[t] - s1[kk - 1]
                total += dk * (1.0 - (C * lr[kk] ** (-gamma) * area + 1.0) ** (-beta))
        out[j] = B * total
    return out
