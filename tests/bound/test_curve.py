"""The whole-curve bound law: synthetic curves from a known law (recovered, tail predicted,
saved and reloaded), bad input, and the 124M runs (slow)."""

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

from bayescale.bound.curve import BoundCurveFit, curve_table
from bayescale.bound.data import read_runs
from bayescale.core import convex_bound, schedules
from bayescale.core.errors import DataError
from bayescale.registry import load

T = 3000
TRUTH = {"L_inf": 2.5, "A": 0.5, "p": 0.6, "B": 10.0, "sigma": 0.003}
SPECS = [
    {"schedule": "cosine", "cooldown": np.nan, "decay_type": "", "final_lr": 0.0},
    {"schedule": "wsd", "cooldown": 0.5, "decay_type": "linear", "final_lr": 0.0},
    {"schedule": "constant", "cooldown": np.nan, "decay_type": "", "final_lr": 1.0},
]


def synthetic_curves(seed=0):
    """y_t = L_inf + A·(γ S̃_t)^(−p) + B·γ·K_t + noise in raw units, so that the fitted
    (scaled) law must recover the scale-free L_inf and p."""
    rng = np.random.default_rng(seed)
    steps = np.arange(150, T + 1, 30)
    parts = []
    for spec in SPECS:
        schedule = schedules.build(spec["schedule"], T, **({"cooldown": spec["cooldown"]} if spec["schedule"] == "wsd" else {}))
        terms = convex_bound.shape_terms(schedule, steps)
        for lr in (5e-4, 2e-3):
            mean = (TRUTH["L_inf"] + TRUTH["A"] * (lr * terms["S_tilde"]) ** -TRUTH["p"]
                    + TRUTH["B"] * lr * terms["K"])
            parts.append(pd.DataFrame({
                "run": f"{spec['schedule']}-{lr:g}", "step": steps,
                "loss": mean + TRUTH["sigma"] * rng.standard_normal(steps.size),
                "split": np.where(steps <= 0.6 * T, "fit", "test"),
                **spec, "warmup_steps": 0, "total_steps": T, "lr": lr,
            }))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    model = BoundCurveFit()
    model.fit(synthetic_curves(), draws=300, tune=400, chains=2, seed=2, progress=False)
    path = tmp_path_factory.mktemp("curve") / "curve.nc"
    model.save(path)
    return model, path


def test_curve_fit_recovers_the_known_law(fitted):
    model, _ = fitted
    report = model.fit_report
    assert report["rhat_max"] <= 1.01 and report["divergences"] == 0
    for name in ("L_inf", "p"):
        lo, hi = np.quantile(model.draws(name), [0.01, 0.99])
        assert lo <= TRUTH[name] <= hi, (name, lo, hi)
    assert np.median(model.draws("sigma")) == pytest.approx(TRUTH["sigma"], rel=0.2)


def test_curve_fit_predicts_the_held_out_tail(fitted):
    model, _ = fitted
    errors = model.holdout_error(prob=0.9)
    assert set(errors["run"]) == {f"{s['schedule']}-{lr:g}" for s in SPECS for lr in (5e-4, 2e-3)}
    # noise is 0.1% of the loss: the tail (including WSD's cooldown, outside the fit) is
    # predicted to within that, and the 90% bands cover about 90% of it
    assert errors["mean_rel_error"].max() < 0.0015
    assert 0.75 <= errors["coverage"].mean() <= 0.99


def test_curve_fit_reloads_with_its_held_out_part(fitted):
    model, path = fitted
    again = load(path)
    assert len(again.all_data) == len(model.all_data)
    pd.testing.assert_frame_equal(again.bands(), model.bands())


def test_curve_table_needs_the_schedule_columns():
    with pytest.raises(DataError, match="needs columns"):
        BoundCurveFit().prepare(synthetic_curves().drop(columns=["total_steps"]))


def test_curve_step_where_the_bound_is_undefined_is_refused():
    table = synthetic_curves().assign(warmup_steps=100)
    table.loc[0, "step"] = 1  # the first update of a warmup from zero has η = 0
    with pytest.raises(DataError, match="undefined at step 1"):
        BoundCurveFit().prepare(table)


@pytest.mark.slow
def test_real_124m_curves_tail_within_two_percent(dataset):
    path = dataset("lr-scheduling")
    runs, _ = read_runs(path)
    runs = runs[(runs["model_size"] == 123587328.0) & (runs["dataset"] == "slimpajama")
                & (runs["total_steps"] == 50000) & runs["lr"].isin([5e-4, 1e-3, 2e-3])]
    model = BoundCurveFit()
    model.fit(curve_table(path, runs["run"].tolist()), seed=1, progress=False, draws=1000, tune=1000)
    report = model.fit_report
    assert report["rhat_max"] <= 1.01 and report["ess_bulk_min"] >= 400 and report["divergences"] == 0
    errors = model.holdout_error()
    assert errors["mean_rel_error"].median() < 0.02


def test_numpy_twin_matches_the_pymc_graph(fitted):
    # the numpy curve used for bands and predictions, at the fitted steps, against the
    # model's compiled logp at the posterior draws and its posterior predictive draws
    model, _ = fitted
    rows = model.fit_rows
    mu, sigma = model._draws_at(rows, observed=False), model.draws("sigma")[:, None]
    nu = model.model_config["nu"]
    numpy_logp = stats.t.logpdf((rows["loss"].to_numpy() - mu) / sigma, df=nu) - np.log(sigma)
    np.testing.assert_allclose(numpy_logp, model.idata.log_likelihood["loss"].values.reshape(mu.shape), rtol=1e-6, atol=1e-8)
    with model.model:
        ppc = pm.sample_posterior_predictive(model.idata, random_seed=0, progressbar=False,
                                             return_inferencedata=False)["loss"].reshape(mu.shape)
    z_numpy = (model._draws_at(rows, observed=True) - mu) / sigma
    assert stats.ks_2samp(((ppc - mu) / sigma).ravel(), z_numpy.ravel()).pvalue > 1e-3
    prediction = model.predict(rows, kind="observation")
    assert list(prediction.columns[-3:]) == ["mean", "lower", "upper"] and len(prediction) == len(rows)
