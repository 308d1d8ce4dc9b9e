"""The bound laws as Bayesian fits: a small synthetic fit that must recover γ*, its save /
load round trip and the CLI on it; real-data fits are marked slow."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pymc as pm
import pytest
from scipy import stats

from bayescale import cli, registry
from bayescale.bound import transfer
from bayescale.bound.data import read_runs
from bayescale.bound.final import BoundFinalFit
from bayescale.bound.size_horizon import Bound2DFit
from bayescale.core import convex_bound, diagnostics, schedules
from bayescale.core.errors import DataError
from bayescale.registry import load

T = 2000


def synthetic_runs(seed=0):
    """Final losses from the bound itself: L = 3 + θ1/(γ S̃) + θ2 γ K with known θ."""
    rng = np.random.default_rng(seed)
    rows = []
    for spec in ({"schedule": "cosine", "final_lr": 0.0}, {"schedule": "wsd", "cooldown": 0.2},
                 {"schedule": "wsd", "cooldown": 0.6}):
        schedule = schedules.build(spec["schedule"], T, **{k: v for k, v in spec.items() if k in ("final_lr", "cooldown")}
                                   and {("final" if k == "final_lr" else k): v for k, v in spec.items() if k != "schedule"})
        terms = convex_bound.bound_terms(schedule)
        for lr in np.geomspace(1e-4, 3e-3, 6):
            loss = 3.0 + 0.5 / (lr * 2 * terms.S) + 4.0 * lr * terms.K + rng.normal(0, 0.002)
            rows.append({"run": f"{spec['schedule']}-{spec.get('cooldown', 0)}-{lr:.2e}", "lr": lr, "total_steps": T,
                         "loss": loss, **spec})
    return pd.DataFrame(rows)


def true_gamma_star(schedule):
    terms = convex_bound.bound_terms(schedule)
    return np.sqrt(0.5 / (2 * terms.S) / (4.0 * terms.K))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    model = BoundFinalFit()
    model.fit(synthetic_runs(), draws=400, tune=600, chains=2, seed=3, progress=False)
    path = tmp_path_factory.mktemp("fit") / "bound.nc"
    model.save(path)
    return model, path


def test_synthetic_fit_recovers_gamma_star(fitted):
    # Three families with no true spread between them push the pooling scales towards 0
    # (2 divergences and bulk ESS ≈ 390 of 800 draws here); only γ* recovery is checked.
    model, _ = fitted
    result = model.optimum({"schedule": "wsd", "cooldown": 0.2, "total_steps": T}, prob=0.95)
    truth = true_gamma_star(schedules.wsd(T, cooldown=0.2))
    assert result["in_fit"]
    assert result["lr"]["lower"] <= truth <= result["lr"]["upper"]
    assert abs(np.log(result["lr"]["median"] / truth)) < 0.1


def test_saved_fit_reloads_and_cli_prints_the_optimum(fitted, capsys):
    model, path = fitted
    again = load(path)
    assert again.groups == model.groups
    code = cli.main(["bound", "optimum", str(path), "--schedule", "wsd", "--cooldown", "0.2", "--steps", str(T), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["lr"]) >= {"mean", "lower", "upper"} and set(out["loss"]) >= {"mean", "lower", "upper"}
    assert out["lr"]["lower"] < out["lr"]["mean"] < out["lr"]["upper"]


def test_saved_fit_loads_in_a_fresh_process(fitted):
    # a fresh process that imports only the registry's load finds the law by the file's name
    _, path = fitted
    code = "import sys; from bayescale.registry import load; print(load(sys.argv[1]).law)"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "final"


def test_cli_optimum_wsd_without_cooldown_is_a_one_line_error(fitted, capsys):
    _, path = fitted
    code = cli.main(["bound", "optimum", str(path), "--schedule", "wsd", "--steps", "1000", "--json"])
    assert code == 2
    assert "needs --cooldown" in capsys.readouterr().err


def test_cli_fit_refuses_a_table_without_base_lr(tmp_path, capsys):
    table = synthetic_runs().assign(lr=np.nan)
    table.to_csv(tmp_path / "runs.csv", index=False)
    code = cli.main(["bound", "fit", str(tmp_path / "runs.csv"), "--out", str(tmp_path / "x.nc")])
    assert code == 2
    assert "no positive base LR" in capsys.readouterr().err


def test_specs_build_the_bound_laws():
    for name, law in (("bound_final", "final"), ("bound_2d", "2d"), ("bound_curve", "curve")):
        assert registry.from_spec(name).law == law


def test_theory_transfer_and_run_extension():
    cos, wsd = schedules.cosine(4000), schedules.wsd(4000, cooldown=0.2)
    assert transfer.transfer_lr(1e-3, cos, wsd) == pytest.approx(1e-3 / 1.89, rel=0.01)
    c2 = transfer.extend_by_cooldown(4000, 0.2, 8000)
    assert convex_bound.optimal_lr(schedules.wsd(8000, cooldown=c2)) == pytest.approx(convex_bound.optimal_lr(wsd), rel=1e-4)
    assert 0.2 < c2 < 1
    level, extended = transfer.extend_by_lowering(4000, 0.2, 8000)
    assert 0 < level < 1
    assert convex_bound.optimal_lr(extended) == pytest.approx(convex_bound.optimal_lr(wsd), rel=1e-4)


@pytest.mark.slow
def test_real_124m_gamma_star_at_50k_near_published(dataset):
    path = dataset("lr-scheduling")
    runs, _ = read_runs(path)
    runs = runs[(runs["model_size"] == 123587328.0) & (runs["dataset"] == "slimpajama") & (runs["total_steps"] == 50000)]
    model = BoundFinalFit()
    model.fit(runs, seed=1, progress=False)
    assert diagnostics.problems(model.fit_report) == []
    for c, published in {0.1: 7.4e-4, 0.2: 8.6e-4, 0.4: 1.05e-3, 0.8: 1.43e-3}.items():
        lr = model.optimum({"schedule": "wsd", "cooldown": c, "total_steps": 50000, "warmup_steps": 300})["lr"]
        assert abs(np.log(lr["median"] / published)) < 0.1


def test_2d_law_needs_every_runs_batch_size_or_none():
    runs = synthetic_runs().assign(model_size=np.repeat([1e7, 2e7, 4e7], 6), total_steps=np.tile([1000, 2000], 9))
    Bound2DFit().prepare(runs)  # no batch sizes: B = 1 for every run
    with pytest.raises(DataError, match="batch_size"):
        Bound2DFit().prepare(runs.assign(batch_size=[200.0] * 17 + [np.nan]))


@pytest.mark.slow
def test_real_2d_law_samples_cleanly_and_widens_bands_for_a_new_size(dataset):
    path = dataset("lr-scheduling")
    runs, _ = read_runs(path, name_pattern=Bound2DFit().model_config["name_pattern"])
    runs = runs[runs["dataset"] == "slimpajama"].reset_index(drop=True)
    model = Bound2DFit()
    model.fit(runs, seed=1, progress=False)
    assert diagnostics.problems(model.fit_report) == []
    seen = runs[runs["model_size"] == runs["model_size"].max()].iloc[:1]
    new_size = seen.assign(model_size=2 * seen["model_size"])
    width = {name: np.ptp(np.quantile(model.predict_draws(frame), [0.05, 0.95], axis=0)) for name, frame in
             (("seen", seen), ("new", new_size))}
    assert width["new"] > width["seen"]  # a size not in the fit draws a fresh size discrepancy


def check_numpy_twin(model):
    """The numpy law used for predictions, at the fitted runs (their families' and sizes'
    fitted deviations), against the model's compiled logp at the posterior draws and its
    posterior predictive draws."""
    mu = model.predict_draws(model.data)
    sigma, nu = model.draws("sigma")[:, None], model.model_config["nu"]
    numpy_logp = stats.t.logpdf((model.data["loss"].to_numpy() - mu) / sigma, df=nu) - np.log(sigma)
    pymc_logp = model.idata.log_likelihood["loss"].values.reshape(mu.shape)
    np.testing.assert_allclose(numpy_logp, pymc_logp, rtol=1e-6, atol=1e-8)
    with model.model:
        ppc = pm.sample_posterior_predictive(model.idata, random_seed=0, progressbar=False,
                                             return_inferencedata=False)["loss"].reshape(mu.shape)
    z_pymc, z_numpy = (ppc - mu) / sigma, (model.predict_draws(model.data, observed=True) - mu) / sigma
    assert stats.ks_2samp(z_pymc.ravel(), z_numpy.ravel()).pvalue > 1e-3
    assert stats.ks_2samp(z_pymc.ravel(), 1.3 * z_numpy.ravel()).pvalue < 1e-6  # the check can fail


def test_numpy_twin_matches_the_pymc_graph(fitted):
    check_numpy_twin(fitted[0])


def test_2d_numpy_twin_matches_the_pymc_graph():
    # a short fit: the twin must match at whatever draws the sampler gives
    runs = synthetic_runs().assign(model_size=np.repeat([1e7, 2e7, 4e7], 6), total_steps=np.tile([1000, 2000], 9))
    model = Bound2DFit()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(runs, draws=150, tune=150, chains=2, seed=0, progress=False)
    check_numpy_twin(model)
    prediction = model.predict(runs.iloc[:3], kind="observation")
    assert list(prediction.columns[-3:]) == ["mean", "lower", "upper"] and len(prediction) == 3
