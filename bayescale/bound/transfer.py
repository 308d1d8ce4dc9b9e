"""Recipes built on the bound (Schaipp et al. 2025 §5): move a tuned base LR between
schedules, and extend a WSD run from T1 to T2 steps so that its tuned base LR stays
optimal, either by lowering the constant phase after T1 or by lengthening the cooldown."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from bayescale.core import schedules
from bayescale.core.convex_bound import optimal_lr


def transfer_lr(lr_from: float, schedule_from, schedule_to) -> float:
    """The bound's answer: γ_to = γ_from · γ*(to)/γ*(from)."""
    return lr_from * optimal_lr(schedule_to) / optimal_lr(schedule_from)


def extend_by_cooldown(total_steps: int, cooldown: float, new_total_steps: int, shape: str = "linear") -> float:
    """Cooldown fraction c2 of WSD(T2, c2) with the same γ* as WSD(T1, c)."""
    target = optimal_lr(schedules.wsd(total_steps, cooldown=cooldown, shape=shape))

    def gap(c):
        return np.log(optimal_lr(schedules.wsd(new_total_steps, cooldown=c, shape=shape)) / target)

    if gap(1.0) < 0:
        raise ValueError(f"no cooldown length keeps γ* from {total_steps} to {new_total_steps} steps: even linear decay needs a smaller LR")
    return float(brentq(gap, 1.0 / new_total_steps, 1.0, xtol=1e-6))


def lowered_constant(total_steps: int, cooldown: float, new_total_steps: int, level: float) -> schedules.Schedule:
    """WSD(T1, c) extended to T2: LR 1 until T1(1−c) (the steps already run), ``level``
    from there to T2(1−c), then a linear cooldown to zero at T2."""
    switch = total_steps - int(round(cooldown * total_steps))
    cool = new_total_steps - int(round(cooldown * new_total_steps))
    knots = [0, switch, switch + 1, cool, new_total_steps]
    return schedules.from_logged(knots, [1.0, 1.0, level, level, 0.0], total_steps=new_total_steps,
                                 name=f"wsd-extended-{level:.3g}", interpolation="linear")


def extend_by_lowering(total_steps: int, cooldown: float, new_total_steps: int) -> tuple[float, schedules.Schedule]:
    """Highest level ρ of the lowered constant phase that keeps γ* of WSD(T1, c) for the
    extended run (γ* in units of the original peak 1)."""
    target = optimal_lr(schedules.wsd(total_steps, cooldown=cooldown))

    def gap(level):
        return np.log(optimal_lr(lowered_constant(total_steps, cooldown, new_total_steps, level)) / target)

    # γ* is not monotone in the level (it peaks near 0.1–0.2): take the highest root
    levels = np.linspace(1.0, 0.05, 20)
    signs = np.array([gap(x) for x in levels]) >= 0
    if not signs.any():
        raise ValueError(f"no constant level keeps γ* from {total_steps} to {new_total_steps} steps")
    i = int(np.argmax(signs))
    level = 1.0 if i == 0 else float(brentq(gap, levels[i], levels[i - 1], xtol=1e-6))
    return level, lowered_constant(total_steps, cooldown, new_total_steps, level)
