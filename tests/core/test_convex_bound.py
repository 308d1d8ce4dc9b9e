"""The convex bound: O(T) evaluation against the O(T²) reference and SCIENCE.md §4."""


import numpy as np
import pytest

from bayescale.core import convex_bound, schedules


@pytest.mark.parametrize(
    "schedule",
    [
        schedules.cosine(300),
        schedules.wsd(300, cooldown=0.2),
        schedules.wsd(257, cooldown=0.5, shape="sqrt", warmup_steps=20),
        schedules.constant(120),
        schedules.step(200),
        schedules.cyclic(300, cycle_steps=100, final=0.05, rewarmup_steps=10),
        schedules.linear(150, final=0.1),
    ],
    ids=lambda s: s.name,
)
def test_telescoped_terms_match_direct_sum(schedule):
    fast = convex_bound.bound_terms(schedule, D=2.0, G=0.5)
    slow = convex_bound.bound_terms_direct(schedule, D=2.0, G=0.5)
    for name in ("t1", "t2", "t3", "S"):
        assert getattr(fast, name) == pytest.approx(getattr(slow, name), rel=1e-12)


def test_gamma_star_minimises_omega():
    terms = convex_bound.bound_terms(schedules.wsd(1000, cooldown=0.3))
    grid = np.geomspace(terms.gamma_star / 3, terms.gamma_star * 3, 20001)
    best = grid[np.argmin(terms.omega(grid))]
    assert best == pytest.approx(terms.gamma_star, rel=1e-3)
    assert terms.omega(terms.gamma_star) == pytest.approx(terms.omega_star, rel=1e-12)


@pytest.mark.parametrize("T, ratio", [(200, 1.91), (400, 1.90), (4000, 1.89)])
def test_cosine_over_wsd_gamma_star(T, ratio):
    r = convex_bound.optimal_lr(schedules.cosine(T)) / convex_bound.optimal_lr(schedules.wsd(T, cooldown=0.2))
    assert round(r, 2) == ratio


@pytest.mark.parametrize("build", [schedules.cosine, lambda T: schedules.wsd(T, cooldown=0.2)])
def test_gamma_star_scales_as_inverse_sqrt_T(build):
    T = np.array([100, 1000, 10000, 100000])
    slope = np.polyfit(np.log(T), np.log([convex_bound.optimal_lr(build(t)) for t in T]), 1)[0]
    assert slope == pytest.approx(-0.49, abs=0.01)


def test_sqrt_T_omega_star_grows_for_constant_flat_for_wsd():
    T = [100, 1000, 10000, 100000]
    constant = [round(np.sqrt(t) * convex_bound.optimal_bound(schedules.constant(t)), 2) for t in T]
    assert constant == [2.49, 2.91, 3.28, 3.62]
    wsd = [np.sqrt(t) * convex_bound.optimal_bound(schedules.wsd(t, cooldown=0.2)) for t in T]
    assert max(wsd) - min(wsd) < 0.08
    assert wsd[-1] == pytest.approx(2.16, abs=0.005)


def test_theory_lr_transfer_linear_decay_vs_wsd():
    T = 400
    linear = np.log(convex_bound.optimal_lr(schedules.linear(T)))
    gaps = [linear - np.log(convex_bound.optimal_lr(schedules.wsd(T, cooldown=c))) for c in (0.1, 0.2, 0.4, 0.6, 0.8)]
    assert np.allclose(gaps, [0.78, 0.67, 0.50, 0.35, 0.18], atol=0.006)


def test_a_million_step_schedule_gives_finite_terms():
    # its speed is measured in benchmarks/, not asserted here
    terms = convex_bound.bound_terms(schedules.wsd(10**6, cooldown=0.2, warmup_steps=1000))
    assert np.isfinite(terms.gamma_star)


def test_shape_terms_are_the_bound_at_each_horizon():
    schedule = schedules.wsd(400, cooldown=0.25, warmup_steps=10)
    steps = [20, 150, 300, 399, 400]
    table = convex_bound.shape_terms(schedule, steps)
    for t, row in zip(steps, table.itertuples()):
        direct = convex_bound.bound_terms_direct(schedule.lr[: t + 1] / schedule.peak)
        assert row.S_tilde == pytest.approx(2 * direct.S, rel=1e-12)
        assert row.K == pytest.approx(direct.K, rel=1e-12)
    # during a warmup from zero the first step has η = 0: no bound there
    assert np.isnan(convex_bound.shape_terms(schedule, [1])["K"].iloc[0])


def test_bound_refuses_zero_lr_at_the_horizon():
    lr = schedules.wsd(100, cooldown=0.2).lr
    with pytest.raises(ValueError, match="zero learning rate at the horizon"):
        convex_bound.bound_terms(np.append(lr, 0.0))  # the zero at step T now falls on the last update


def test_bound_refuses_negative_lr():
    lr = np.ones(50)
    lr[10] = -0.1
    with pytest.raises(ValueError, match="negative learning rate"):
        convex_bound.bound_terms(lr)
