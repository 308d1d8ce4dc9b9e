import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

from bayescale.core.errors import DataError
from bayescale.sweep.chinchilla import (
    D_REF,
    N_REF,
    ChinchillaFit,
    local_loss,
    loss,
    raw_coefficients,
    raw_from_local,
    read_loss_table,
    scaled_loss,
)

EPOCH = {"E": 1.817, "A": 482.0, "B": 2085.4, "alpha": 0.3478, "beta": 0.3658}


def test_loss_matches_a_loop():
    N = np.array([1e8, 7e8, 7e10])
    D = np.array([2e9, 1.4e10, 1.4e12])
    expected = [EPOCH["E"] + EPOCH["A"] / n ** EPOCH["alpha"] + EPOCH["B"] / d ** EPOCH["beta"] for n, d in zip(N, D)]
    assert np.allclose(loss(N, D, **EPOCH), expected, rtol=1e-12)


def test_scaled_and_local_forms_are_the_same_law():
    N = np.geomspace(5e7, 5e10, 7)
    D = np.geomspace(1e9, 1e12, 7)
    a, b = EPOCH["A"] / N_REF ** EPOCH["alpha"], EPOCH["B"] / D_REF ** EPOCH["beta"]
    assert np.allclose(raw_coefficients(a, b, EPOCH["alpha"], EPOCH["beta"]), (EPOCH["A"], EPOCH["B"]))
    assert np.allclose(scaled_loss(N, D, EPOCH["E"], a, b, EPOCH["alpha"], EPOCH["beta"]), loss(N, D, **EPOCH))
    N_ref, D_ref = 3e8, 2e10
    L_ref = loss(N_ref, D_ref, **EPOCH)
    s_N = EPOCH["alpha"] * EPOCH["A"] * N_ref ** -EPOCH["alpha"]  # -dL/dlnN at the reference
    s_D = EPOCH["beta"] * EPOCH["B"] * D_ref ** -EPOCH["beta"]
    local = local_loss(N, D, N_ref, D_ref, L_ref, s_N, s_D, EPOCH["alpha"], EPOCH["beta"])
    assert np.allclose(local, loss(N, D, **EPOCH), rtol=1e-12)
    E, A, B = raw_from_local(N_ref, D_ref, L_ref, s_N, s_D, EPOCH["alpha"], EPOCH["beta"])
    assert (E, A, B) == pytest.approx((EPOCH["E"], EPOCH["A"], EPOCH["B"]), rel=1e-9)


def test_epoch_layout_gives_tokens_from_flop(tmp_path):
    path = tmp_path / "c.csv"
    rows = [{"Model Size": n, "Training FLOP": 6 * n * 20 * n, "loss": 3.0} for n in np.geomspace(1e7, 1e9, 8)]
    pd.DataFrame(rows).to_csv(path, index=False)
    table = read_loss_table(path)
    assert np.allclose(table["D"], 20 * table["N"])


@pytest.mark.parametrize("column, value", [("N", 0.0), ("D", -1.0), ("loss", np.nan)])
def test_bad_values_name_the_row(tmp_path, column, value):
    frame = pd.DataFrame({"N": np.geomspace(1e7, 1e9, 8), "D": np.geomspace(1e9, 1e11, 8), "loss": 3.0})
    frame.loc[2, column] = value
    path = tmp_path / "c.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(DataError, match=f"row 4.*'{column}'"):
        read_loss_table(path)


def test_missing_column(tmp_path):
    path = tmp_path / "c.csv"
    pd.DataFrame({"N": [1e8] * 8, "loss": [3.0] * 8}).to_csv(path, index=False)
    with pytest.raises(DataError, match="missing"):
        read_loss_table(path)


@pytest.fixture(scope="module")
def planted():
    rng = np.random.default_rng(0)
    N = np.exp(rng.uniform(np.log(5e7), np.log(1e10), 80))
    D = np.exp(rng.uniform(np.log(1e9), np.log(5e11), 80))
    frame = pd.DataFrame({"N": N, "D": D, "loss": loss(N, D, **EPOCH) * np.exp(rng.normal(0, 0.005, 80))})
    fit = ChinchillaFit()
    fit.fit(frame, draws=300, tune=300, chains=2, seed=2, progress=False)
    return fit, frame


@pytest.mark.slow
def test_recovers_a_planted_law(planted):
    fit, _ = planted
    params = fit.parameters(prob=0.95).set_index("parameter")
    for name in ("alpha", "beta", "E"):
        assert params.loc[name, "lower"] < EPOCH[name] < params.loc[name, "upper"], name


@pytest.mark.slow
def test_numpy_twin_matches_the_pymc_graph(planted):
    fit, frame = planted
    N, D = frame["N"].to_numpy(), frame["D"].to_numpy()
    mean = fit.predict(frame)["mean"].to_numpy()
    draws = {k: fit.draws(k)[:, None] for k in ("E", "a", "b", "alpha", "beta", "sigma", "nu")}
    mu = np.log(scaled_loss(N[None], D[None], *(draws[k] for k in ("E", "a", "b", "alpha", "beta"))))
    z = (np.log(frame["loss"].to_numpy()) - mu) / draws["sigma"]
    numpy_logp = stats.t.logpdf(z, df=draws["nu"]) - np.log(draws["sigma"])
    np.testing.assert_allclose(numpy_logp, fit.idata.log_likelihood["log_loss"].values.reshape(mu.shape), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(mean, np.exp(mu).mean(axis=0))
    with fit.model:
        ppc = pm.sample_posterior_predictive(fit.idata, random_seed=0, progressbar=False,
                                             return_inferencedata=False)["log_loss"].reshape(mu.shape)
    numpy_draws = fit.predict_draws(frame, observed=True)
    assert stats.ks_2samp((ppc - mu).ravel(), (np.log(numpy_draws) - mu).ravel()).pvalue > 1e-3


@pytest.mark.slow
def test_epoch_replication_on_the_chinchilla_points(dataset):
    path = dataset("chinchilla")
    fit = ChinchillaFit()
    fit.fit(path, seed=0, progress=False)
    params = fit.parameters(prob=0.95).set_index("parameter")
    # SCIENCE.md §7, Epoch AI: alpha 0.3478 (0.317-0.373), beta 0.3658 (0.331-0.415), E 1.817
    assert params.loc["alpha", "median"] == pytest.approx(0.3478, abs=0.02)
    assert params.loc["beta", "median"] == pytest.approx(0.3658, abs=0.02)
    assert params.loc["E", "median"] == pytest.approx(1.817, abs=0.05)
    assert params.loc["alpha", "lower"] > 0.29 and params.loc["alpha", "upper"] < 0.40
    assert fit.fit_report["rhat_max"] <= 1.01 and fit.fit_report["divergences"] == 0
