import numpy as np
import pytest

from bayescale.core import schedules


def test_constant_with_warmup_rises_linearly_from_zero():
    s = schedules.constant(100, peak=2.0, warmup_steps=10)
    assert s.lr.size == 101
    np.testing.assert_allclose(s.lr[:10], 2.0 * np.arange(10) / 10)
    assert np.all(s.lr[10:] == 2.0)
    assert np.all(s.post_warmup() == 2.0)


def test_cosine_ends_at_final_and_is_monotone_after_warmup():
    s = schedules.cosine(1000, peak=1.0, final=0.1, warmup_steps=100)
    assert s.lr[100] == pytest.approx(1.0)
    assert s.lr[-1] == pytest.approx(0.1)
    assert np.all(np.diff(s.lr[100:]) <= 1e-15)
    # half-way through the decay the cosine is at the mid-point
    assert s.lr[550] == pytest.approx(0.55)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt", "exp"])
def test_wsd_is_flat_then_cools_down_over_the_last_fraction(shape):
    s = schedules.wsd(1000, peak=1.0, cooldown=0.2, shape=shape, final=0.01)
    assert np.all(s.lr[:800] == 1.0)
    assert s.lr[-1] == pytest.approx(0.01)
    assert np.all(np.diff(s.lr[800:]) < 0)


def test_wsd_sqrt_shape_value():
    s = schedules.wsd(1000, peak=1.0, cooldown=0.5, shape="sqrt")
    assert s.lr[625] == pytest.approx(1 - np.sqrt(0.25))


def test_step_schedule_is_8_1_1_by_default():
    s = schedules.step(1000, peak=1.0)
    assert s.lr[799] == 1.0
    assert s.lr[800] == pytest.approx(10**-0.5)
    assert s.lr[900] == pytest.approx(0.1)


def test_two_stage_and_linear():
    s = schedules.two_stage(100, switch_step=60, peak=3.0, second=0.3)
    assert s.lr[59] == 3.0 and s.lr[60] == 0.3
    lin = schedules.linear(100, peak=1.0)
    assert lin.lr[50] == pytest.approx(0.5) and lin.lr[-1] == 0.0


def test_cyclic_rewarms_after_each_cycle():
    s = schedules.cyclic(300, cycle_steps=100, peak=1.0, final=0.0, rewarmup_steps=10)
    assert s.lr[0] == 1.0
    assert s.lr[99] < 0.01
    assert s.lr[100] == pytest.approx(0.0)
    assert s.lr[105] == pytest.approx(0.5)
    assert s.lr[110] == pytest.approx(1.0)
    assert np.all(np.diff(s.lr[110:200]) < 0)


def test_from_logged_holds_the_last_logged_value_and_adds_the_declared_warmup():
    s = schedules.from_logged([20, 30, 40], [1.0, 1.0, 0.5], warmup_steps=10)
    assert s.total_steps == 40
    np.testing.assert_allclose(s.lr[:10], np.arange(10) / 10)
    assert np.all(s.lr[10:40] == 1.0) and s.lr[40] == 0.5
    linear = schedules.from_logged([20, 30, 40], [1.0, 1.0, 0.5], interpolation="linear")
    assert linear.lr[35] == pytest.approx(0.75)


def test_bad_schedules_raise():
    with pytest.raises(ValueError, match="negative learning rate"):
        schedules.Schedule(np.array([1.0, -1.0]))
    with pytest.raises(ValueError, match="unknown schedule"):
        schedules.build("triangle", 10)
    with pytest.raises(ValueError, match="cooldown fraction"):
        schedules.wsd(10, cooldown=0.0)
    with pytest.raises(ValueError, match="final > 0"):
        schedules.wsd(10, shape="exp")


def test_from_spec_round_trip():
    spec = {"schedule": "cosine", "total_steps": 200, "peak": 2e-4, "warmup_steps": 20, "final": 0.0}
    s = schedules.from_spec(spec)
    assert s.warmup_steps == 20 and s.peak == pytest.approx(2e-4)
