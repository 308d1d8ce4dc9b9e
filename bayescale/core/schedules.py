"""Learning-rate schedules as plain float64 arrays indexed by optimizer step.

A schedule of ``total_steps`` T is an array of T + 1 learning rates, one for each step
0..T, so that features can be evaluated at the horizon T itself (the convex bound needs
η_T > 0 for decay-to-zero shapes). ``Schedule`` also remembers how many leading steps are
the initial linear warmup, because the laws count that warmup by different conventions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

COOLDOWN_SHAPES = ("linear", "cosine", "sqrt", "exp")


@dataclass(frozen=True)
class Schedule:
    lr: np.ndarray
    warmup_steps: int = 0
    name: str = ""

    def __post_init__(self):
        lr = np.asarray(self.lr, dtype=np.float64)
        if lr.ndim != 1 or lr.size < 2:
            raise ValueError(f"schedule {self.name!r}: needs a 1-D array of at least 2 learning rates")
        if not np.all(np.isfinite(lr)):
            raise ValueError(f"schedule {self.name!r}: learning rates must be finite")
        if np.any(lr < 0):
            bad = int(np.flatnonzero(lr < 0)[0])
            raise ValueError(f"schedule {self.name!r}: negative learning rate {lr[bad]:g} at step {bad}")
        if not 0 <= self.warmup_steps < lr.size:
            raise ValueError(f"schedule {self.name!r}: warmup_steps must be in [0, {lr.size - 1}]")
        object.__setattr__(self, "lr", lr)

    @property
    def total_steps(self) -> int:
        return self.lr.size - 1

    @property
    def peak(self) -> float:
        return float(self.lr.max())

    def post_warmup(self) -> np.ndarray:
        """The schedule with the initial warmup replaced by the LR it warms up to.

        The annealing area treats the initial warmup as no annealing at all (rising LR
        there is not a re-warmup)."""
        lr = self.lr.copy()
        lr[: self.warmup_steps] = lr[self.warmup_steps]
        return lr


def _warmup(lr: np.ndarray, warmup_steps: int) -> np.ndarray:
    if warmup_steps:
        lr[:warmup_steps] = lr[warmup_steps] * np.arange(warmup_steps) / warmup_steps
    return lr


def _progress(total_steps: int, start: int) -> np.ndarray:
    """Fraction of the way from step ``start`` to ``total_steps`` for every step (clipped to [0, 1])."""
    t = np.arange(total_steps + 1, dtype=np.float64)
    return np.clip((t - start) / max(total_steps - start, 1), 0.0, 1.0)


def constant(total_steps: int, peak: float = 1.0, warmup_steps: int = 0) -> Schedule:
    lr = np.full(total_steps + 1, float(peak))
    return Schedule(_warmup(lr, warmup_steps), warmup_steps, "constant")


def cosine(total_steps: int, peak: float = 1.0, final: float = 0.0, warmup_steps: int = 0) -> Schedule:
    p = _progress(total_steps, warmup_steps)
    lr = final + (peak - final) * 0.5 * (1.0 + np.cos(np.pi * p))
    return Schedule(_warmup(lr, warmup_steps), warmup_steps, "cosine")


def linear(total_steps: int, peak: float = 1.0, final: float = 0.0, warmup_steps: int = 0) -> Schedule:
    p = _progress(total_steps, warmup_steps)
    lr = peak - (peak - final) * p
    return Schedule(_warmup(lr, warmup_steps), warmup_steps, "linear")


def _cooldown(p: np.ndarray, peak: float, final: float, shape: str) -> np.ndarray:
    if shape == "linear":
        return peak - (peak - final) * p
    if shape == "cosine":
        return final + (peak - final) * 0.5 * (1.0 + np.cos(np.pi * p))
    if shape == "sqrt":
        return peak - (peak - final) * np.sqrt(p)
    if shape == "exp":
        if final <= 0:
            raise ValueError("an exponential cooldown needs final > 0")
        return peak * (final / peak) ** p
    raise ValueError(f"unknown cooldown shape {shape!r}; choose from {COOLDOWN_SHAPES}")


def wsd(
    total_steps: int,
    peak: float = 1.0,
    cooldown: float = 0.2,
    shape: str = "linear",
    final: float = 0.0,
    warmup_steps: int = 0,
) -> Schedule:
    """Warmup-stable-decay: constant at ``peak``, then a cooldown over the last fraction
    ``cooldown`` of the steps."""
    if not 0 < cooldown <= 1:
        raise ValueError(f"cooldown fraction must be in (0, 1], got {cooldown}")
    start = max(warmup_steps, total_steps - int(round(cooldown * total_steps)))
    lr = _cooldown(_progress(total_steps, start), peak, final, shape)
    return Schedule(_warmup(lr, warmup_steps), warmup_steps, f"wsd-{shape}-{cooldown:g}")


def step(
    total_steps: int,
    peak: float = 1.0,
    milestones: tuple[float, ...] = (0.8, 0.9),
    factor: float = 10 ** -0.5,
    warmup_steps: int = 0,
) -> Schedule:
    """Multi-step: multiply by ``factor`` at each milestone (fractions of the horizon);
    the default is the "8-1-1" schedule."""
    t = np.arange(total_steps + 1)
    drops = sum((t >= round(m * total_steps)).astype(int) for m in milestones)
    lr = peak * factor ** np.asarray(drops, dtype=np.float64)
    return Schedule(_warmup(lr, warmup_steps), warmup_steps, "step")


def two_stage(
    total_steps: int, switch_step: int, peak: float = 1.0, second: float = 0.1, warmup_steps: int = 0
) -> Schedule:
    lr = np.where(np.arange(total_steps + 1) < switch_step, float(peak), float(second))
    return Schedule(_warmup(lr, warmup_steps), warmup_steps, "two-stage")


def cyclic(
    total_steps: int,
    cycle_steps: int,
    peak: float = 1.0,
    final: float = 0.0,
    rewarmup_steps: int = 0,
    warmup_steps: int = 0,
) -> Schedule:
    """Cosine with restarts: each cycle of ``cycle_steps`` decays by a cosine from ``peak``
    to ``final``; every cycle after the first starts with a linear re-warmup from ``final``
    over ``rewarmup_steps``."""
    if cycle_steps <= rewarmup_steps:
        raise ValueError("cycle_steps must exceed rewarmup_steps")
    t = np.maximum(np.arange(total_steps + 1) - warmup_steps, 0)
    pos = np.mod(t, cycle_steps)
    rewarming = (pos < rewarmup_steps) & (t >= cycle_steps)
    decay_pos = np.where(t < cycle_steps, pos, pos - rewarmup_steps)
    decay_len = np.where(t < cycle_steps, cycle_steps, cycle_steps - rewarmup_steps)
    decay = final + (peak - final) * 0.5 * (1 + np.cos(np.pi * np.maximum(decay_pos, 0) / decay_len))
    rise = final + (peak - final) * pos / max(rewarmup_steps, 1)
    lr = np.where(rewarming, rise, decay)
    return Schedule(_warmup(lr, warmup_steps), warmup_steps, "cyclic")


def from_logged(
    steps, lr, total_steps: int | None = None, warmup_steps: int = 0, name: str = "", interpolation: str = "previous"
) -> Schedule:
    """A schedule from a logged (possibly sparse) LR, held flat past the ends, with a
    linear warmup from 0 over the first ``warmup_steps`` if the log omits it.

    Between logged steps the LR is either held at the last logged value
    (``"previous"``, the default: a drop logged at step s takes effect at s, so the loss
    logged at s shows none of it, as in real logs) or linearly interpolated (``"linear"``,
    the polyline)."""
    steps = np.asarray(steps, dtype=np.float64)
    lr_logged = np.asarray(lr, dtype=np.float64)
    if total_steps is None:
        total_steps = int(steps.max())
    grid = np.arange(total_steps + 1, dtype=np.float64)
    if interpolation == "linear":
        dense = np.interp(grid, steps, lr_logged)
    elif interpolation == "previous":
        dense = lr_logged[np.clip(np.searchsorted(steps, grid, side="right") - 1, 0, None)]
    else:
        raise ValueError(f"unknown interpolation {interpolation!r}; choose previous or linear")
    return Schedule(_warmup(dense, warmup_steps), warmup_steps, name)


BUILDERS = {
    "constant": constant,
    "cosine": cosine,
    "linear": linear,
    "wsd": wsd,
    "step": step,
    "two_stage": two_stage,
    "cyclic": cyclic,
}


def build(name: str, total_steps: int, **params) -> Schedule:
    """Build a named schedule, e.g. ``build("wsd", 20000, peak=3e-4, cooldown=0.2)``."""
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown schedule {name!r}; choose from {sorted(BUILDERS)}") from None
    return builder(int(total_steps), **params)


def from_spec(spec: dict) -> Schedule:
    """Build from a dict such as ``{"schedule": "cosine", "total_steps": 20000, "peak": 2e-4}``."""
    params = dict(spec)
    return build(params.pop("schedule"), params.pop("total_steps"), **params)
