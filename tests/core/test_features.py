import numpy as np
import pytest

from bayescale.core import features, schedules


def loop_s1(lr):
    out, total = [], 0.0
    for eta in lr:
        total += eta
        out.append(total)
    return np.array(out)


def loop_s2(lr, lam):
    """S2 straight from its definition: m_t = λ m_{t−1} + (η_{t−1} − η_t), S2 = Σ m."""
    m = area = 0.0
    out = []
    for t in range(len(lr)):
        m = lam * m + (lr[t - 1] - lr[t] if t else 0.0)
        area += m
        out.append(area)
    return np.array(out)


SCHEDULES = [
    schedules.cosine(3000, warmup_steps=200),
    schedules.wsd(3000, cooldown=0.3, shape="exp", final=0.01),
    schedules.step(3000),
    schedules.cyclic(3000, 700, final=0.1, rewarmup_steps=50),
]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
@pytest.mark.parametrize("lam", [0.0, 0.9, 0.999])
def test_areas_match_plain_loops(schedule, lam):
    steps = np.arange(3, schedule.lr.size, 37)
    ref = loop_s2(schedule.lr, lam)[steps]
    got = features.annealing_area(schedule.lr, steps, lam)
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(features.forward_area(schedule.lr, steps), loop_s1(schedule.lr)[steps], rtol=1e-12)


def test_long_schedule_does_not_overflow():
    s = schedules.cosine(200_000, peak=1.0)
    steps = np.arange(1, 200_001, 499)
    got = features.annealing_area(s.lr, steps, 0.99)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, loop_s2(s.lr, 0.99)[steps], rtol=1e-10)


def test_rewarmup_gives_negative_area():
    lr = np.concatenate([np.full(100, 0.1), np.full(200, 1.0)])  # a rise, no drop
    got = features.annealing_area(lr, np.arange(0, 300, 10), 0.99)
    assert got.min() < 0
    np.testing.assert_allclose(got, loop_s2(lr, 0.99)[::10], rtol=1e-10)


def test_pytensor_twin_matches_numpy_value_and_gradient():
    import pytensor
    import pytensor.tensor as pt

    s = schedules.cyclic(2000, 500, final=0.05, rewarmup_steps=40)
    steps = np.arange(5, 2001, 45)
    terms = features.AnnealingTerms.from_schedule(s.lr, steps)
    lam = pt.dscalar("lam")
    area = terms.area_pt(lam)
    value = pytensor.function([lam], area)(0.995)
    np.testing.assert_allclose(value, loop_s2(s.lr, 0.995)[steps], rtol=1e-10)
    grad = pytensor.function([lam], pytensor.grad(area.sum(), lam))(0.995)
    h = 1e-7
    numeric = (terms.area(0.995 + h).sum() - terms.area(0.995 - h).sum()) / (2 * h)
    assert grad == pytest.approx(numeric, rel=1e-5)


def test_steps_must_be_strictly_increasing():
    with pytest.raises(ValueError, match="strictly increasing"):
        features.annealing_area(np.ones(10), [1, 3, 3])


PARAMS = {"B": 0.1, "C": 0.1, "beta": 0.6, "gamma": 0.6}


@pytest.mark.parametrize(
    "schedule",
    [schedules.wsd(3000, cooldown=0.3, final=0.05), schedules.step(3000), schedules.cosine(3000, final=0.01),
     schedules.cosine(3000, final=0.01, warmup_steps=300), schedules.cyclic(3000, 1000, final=0.1, rewarmup_steps=100, warmup_steps=50)],
    ids=lambda s: f"{s.name}-warmup{s.warmup_steps}",
)
def test_grouped_decay_sum_is_exact_with_groups_of_one(schedule):
    steps = np.arange(10, 3001, 97)
    exact = features.multipower_decay_exact(schedule.lr, steps, **PARAMS)
    grouped = features.DecayTerms.from_schedule(schedule.lr, steps, max_group=1).loss_drop(**PARAMS)
    np.testing.assert_allclose(grouped, exact, rtol=1e-10, atol=1e-14)


def test_warmup_counts_as_fully_relaxed():
    # the warmup's rise adds B·(η_peak − η_0) at once; everything after the peak is unchanged
    warm = schedules.wsd(3000, cooldown=0.3, final=0.05, warmup_steps=300)
    steps = np.arange(400, 3001, 97)
    with_warmup = features.DecayTerms.from_schedule(warm.lr, steps, max_group=1).loss_drop(**PARAMS)
    without = features.DecayTerms.from_schedule(warm.post_warmup(), steps, max_group=1).loss_drop(**PARAMS)
    np.testing.assert_allclose(with_warmup, without - PARAMS["B"] * warm.peak, rtol=1e-12)


def test_grouped_decay_sum_is_close_with_coarse_groups():
    s = schedules.cosine(3000, final=0.01)
    steps = np.arange(10, 3001, 97)
    exact = features.multipower_decay_exact(s.lr, steps, **PARAMS)
    grouped = features.DecayTerms.from_schedule(s.lr, steps, max_group=64).loss_drop(**PARAMS)
    assert np.max(np.abs(grouped - exact)) < 2e-3 * exact.max()


def test_decay_draws_match_single_evaluations():
    s = schedules.wsd(500, cooldown=0.5, final=0.1)
    terms = features.DecayTerms.from_schedule(s.lr, np.arange(5, 501, 25), max_group=8)
    draws = {k: np.array([v, 1.3 * v]) for k, v in PARAMS.items()}
    out = terms.loss_drop_draws(**draws)
    np.testing.assert_allclose(out[1], terms.loss_drop(**{k: 1.3 * v for k, v in PARAMS.items()}), rtol=1e-12)
