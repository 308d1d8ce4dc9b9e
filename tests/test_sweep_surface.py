import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bayescale import cli
from bayescale.data.curves import DataError
from bayescale.fitting import SamplingWarning, load
from bayescale.laws.surface import SurfaceFit, linex, surface_loss
from bayescale.specs import from_spec
from bayescale.steplaw import fit_steplaw, published_optimum

SYNTHETIC = Path(__file__).resolve().parents[1] / "data" / "make_synthetic_sweep.py"


def test_linex_matches_closed_form_and_its_limit():
    u = np.linspace(-3, 3, 61)
    for k in (-1.5, -0.2, 0.7, 2.0):
        expected = [(np.exp(k * x) - 1 - k * x) / k**2 for x in u]
        assert np.allclose(linex(u, k), expected, rtol=1e-10, atol=1e-14)
    assert np.allclose(linex(u, 0.0), u**2 / 2)
    assert np.allclose(linex(u, 1e-7), u**2 / 2, rtol=1e-6)


def test_surface_minimum_sits_at_the_optimum_on_the_ridge():
    log_lr, log_bs = np.log(2e-3), np.log(5e5)
    shape = {"a_lr": 0.03, "k_lr": 1.0, "a_bs": 0.02, "k_bs": -0.3, "gamma": 0.4}
    lr = np.exp(log_lr + np.linspace(-2, 2, 401))
    at_opt_bs = surface_loss(lr, np.exp(log_bs), log_lr, log_bs, 2.5, **shape)
    assert at_opt_bs.min() == pytest.approx(2.5)
    assert np.argmin(at_opt_bs) == 200
    # at a 2x larger batch the best LR moves up by 2^gamma
    bs = 2 * np.exp(log_bs)
    shifted = surface_loss(lr, bs, log_lr, log_bs, 2.5, **shape)
    assert np.log(lr[np.argmin(shifted)]) == pytest.approx(log_lr + shape["gamma"] * np.log(2), abs=0.011)
    # k_lr > 0: steeper above the optimum than below
    above = surface_loss(np.exp(log_lr + 1), np.exp(log_bs), log_lr, log_bs, 2.5, **shape)
    below = surface_loss(np.exp(log_lr - 1), np.exp(log_bs), log_lr, log_bs, 2.5, **shape)
    assert above > below > 2.5


def test_ridge_bends_with_the_batch():
    log_lr, log_bs = np.log(2e-3), np.log(5e5)
    shape = {"a_lr": 0.03, "k_lr": 0.0, "a_bs": 0.02, "k_bs": 0.0, "gamma": 0.4, "bend": -0.3}
    lr = np.exp(log_lr + np.linspace(-3, 3, 601))
    for y in (-1.0, 1.0, 2.0):
        best = lr[np.argmin(surface_loss(lr, np.exp(log_bs + y), log_lr, log_bs, 2.5, **shape))]
        assert np.log(best) - log_lr == pytest.approx(0.4 * y - 0.3 * y * y, abs=0.011)


def test_centre_scatter_is_the_rms_gap_between_measured_centres_and_optima():
    rows = [{"N": 1e8, "D": D, "lr": 2.0**-k, "batch_tokens": 2.0**j, "loss": 2.0 + 0.004 * ((k - 9) ** 2 + (j - 18) ** 2)}
            for D in (1e9, 4e9) for k in range(6, 13) for j in range(16, 21)]
    model = SurfaceFit()
    model.prepare(pd.DataFrame(rows))
    # both cells measure their centre at (2^-9, 2^18); two posterior draws of the optima
    log_lr = np.log(2.0**-9) + np.array([[0.1, -0.3], [0.0, 0.0]])
    log_bs = np.log(2.0**18) + np.array([[0.2, 0.2], [0.0, 0.4]])
    model.draws = {"log_lr_opt": log_lr, "log_bs_opt": log_bs}.get
    assert np.allclose(model.centre_scatter(), [[np.sqrt(0.05), 0.2], [0.0, np.sqrt(0.08)]])


def test_runs_outside_the_window_and_diverged_runs_are_censored_and_counted():
    rows = [{"N": 1e8, "D": 1e9, "lr": 2.0**-k, "batch_tokens": 2.0**18, "loss": 2.0 + 0.004 * (k - 9) ** 2} for k in range(5, 14)]
    rows.append({"N": 1e8, "D": 1e9, "lr": 2.0**-4, "batch_tokens": 2.0**18, "loss": np.nan})
    model = SurfaceFit()
    model.prepare(pd.DataFrame(rows))
    censored = model.censored()
    loss = pd.DataFrame(rows)["loss"].to_numpy()
    assert censored[-1] and not censored[np.nanargmin(loss)]
    assert (censored[:-1] == (loss[:-1] > 2.0 * 1.01)).all()
    counts = model.rule_counts()
    assert counts["censored_diverged"] == 1 and counts["censored_above_0.01_window"] == int((loss[:-1] > 2.02).sum())


def test_published_steplaw_at_the_seed_blog_point():
    # SCIENCE.md §6: Step Law gives 5.4e-4 at (N, D) = (4.7e9, 1e11)
    assert published_optimum(4.7e9, 1e11)["lr"] == pytest.approx(5.4e-4, rel=0.01)


def test_steplaw_procedure_recovers_planted_power_laws():
    rng = np.random.default_rng(1)
    rows = []
    for N in (1e8, 2e8, 4e8):
        for D in (1e9, 4e9, 1.6e10):
            lr_opt, bs_opt = 2.0 * N**-0.7 * D**0.3, 0.5 * D**0.6
            for _ in range(4):  # four near-optimal runs per cell, jittered
                rows.append({"N": N, "D": D, "lr": lr_opt * np.exp(rng.normal(0, 0.01)),
                             "batch_tokens": bs_opt * np.exp(rng.normal(0, 0.01)), "target": 2.0, "diverged": False})
    fit = fit_steplaw(pd.DataFrame(rows), n_boot=200, seed=0)
    assert fit.lr_coef[0] == pytest.approx([np.log(2.0), -0.7, 0.3], abs=0.02)
    assert fit.bs_coef[0] == pytest.approx([np.log(0.5), 0.6], abs=0.02)
    pred = fit.predict(3e8, 8e9)
    assert pred.loc["lr", "lower"] < 2.0 * 3e8**-0.7 * 8e9**0.3 < pred.loc["lr", "upper"]


def test_unknown_prior_name_is_refused():
    with pytest.raises(ValueError, match="no parameter named"):
        SurfaceFit(priors={"nonsense": {"dist": "Normal", "kwargs": {}}})


def test_spec_is_the_surface_model():
    model = from_spec("sweep")
    assert isinstance(model, SurfaceFit)
    assert model.config["window"] == 0.01


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    import runpy

    out = tmp_path_factory.mktemp("synthetic")
    runpy.run_path(str(SYNTHETIC), run_name="not_main")["main"](["--out", str(out), "--seed", "3"])
    return out


@pytest.fixture(scope="module")
def fitted(synthetic, tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.nc"
    code = cli.main(["sweep", "fit", str(synthetic / "convex.csv"), "--out", str(path), "--seed", "1",
                     "--draws", "300", "--tune", "300", "--chains", "2"])
    assert code == 0
    return path


@pytest.mark.slow
def test_cli_fit_recovers_planted_optima(fitted, synthetic, capsys):
    fit = load(fitted)
    params = json.loads((synthetic / "convex.params.json").read_text())
    law = params["lr_law"]
    cells = fit.cell_optima(prob=0.95)
    n = np.log(cells["N"] / law["N_ref"])
    d = np.log(cells["D"] / law["D_ref"])
    planted_lr = np.exp(law["lr0"] + law["lr_N"] * n + law["lr_D"] * d)
    assert (np.abs(np.log2(cells["lr"] / planted_lr)) < 0.25).all()
    assert ((cells["lr_lower"] < planted_lr) & (planted_lr < cells["lr_upper"])).mean() >= 0.75
    assert fit.fit_report["divergences"] == 0


@pytest.mark.slow
def test_cli_optimum_json(fitted, capsys):
    capsys.readouterr()
    assert cli.main(["sweep", "optimum", str(fitted), "--N", "2e8", "--D", "5e9", "--prob", "0.8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"lr", "batch_tokens", "loss"}
    for q in out.values():
        assert q["lower"] < q["mean"] < q["upper"]


@pytest.mark.slow
@pytest.mark.parametrize("N, D", [("0", "1e10"), ("1e9", "-5")])
def test_cli_optimum_refuses_nonpositive_sizes(fitted, capsys, N, D):
    assert cli.main(["sweep", "optimum", str(fitted), "--N", N, "--D", D, "--json"]) == 2
    assert "must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_check_json_has_the_table_and_the_shape_comparison(fitted, capsys):
    capsys.readouterr()
    assert cli.main(["sweep", "check", str(fitted), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    slices, shapes = pd.DataFrame(out["slices"]), out["shape_comparison"]
    assert {"N", "D", "batch_tokens", "statistic", "p_value", "p_concave", "elpd_diff", "elpd_diff_se", "verdict"} <= set(slices)
    assert slices["elpd_diff"].sum() == pytest.approx(shapes["elpd_diff"])
    assert slices["loo_points"].sum() == shapes["points"]
    assert 0 <= shapes["p_concave_profile"] <= 1


@pytest.mark.slow
def test_predicted_loss_rises_away_from_the_optimum(fitted):
    fit = load(fitted)
    opt = fit.optimum(2e8, 5e9).loc[:, "mean"]
    at = fit.predict_loss(2e8, 5e9, opt["lr"], opt["batch_tokens"])["mean"]
    off = fit.predict_loss(2e8, 5e9, 8 * opt["lr"], opt["batch_tokens"])["mean"]
    assert off > at


def test_fit_on_a_cell_with_too_few_runs_is_refused(synthetic):
    frame = pd.read_csv(synthetic / "convex.csv")
    first = frame[["N", "D"]].iloc[0]
    in_cell = (frame["N"] == first["N"]) & (frame["D"] == first["D"])
    frame = pd.concat([frame[~in_cell], frame[in_cell].head(3)])
    with pytest.raises(DataError, match="at least 5"):
        SurfaceFit().fit(frame, draws=10, tune=10, chains=1)


def test_cli_fit_bad_file_exits_2(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    pd.DataFrame({"N": [1e8], "D": [1e9], "lr": [1e-3], "loss": [2.5]}).to_csv(path, index=False)
    assert cli.main(["sweep", "fit", str(path), "--out", str(tmp_path / "x.nc")]) == 2
    assert "batch-size column" in capsys.readouterr().err


@pytest.mark.slow
def test_full_steplaw_fit_meets_sampling_thresholds(tmp_path):
    from bayescale.data.registry import DatasetMissing, dataset_path

    try:
        path = dataset_path("steplaw")
    except DatasetMissing as exc:
        pytest.skip(f"steplaw data not available: {exc}")
    model = from_spec("sweep")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SamplingWarning)
        model.fit(path, seed=0, progress=False)
    assert model.fit_report["rhat_max"] <= 1.01
    assert model.fit_report["ess_bulk_min"] >= 400
    assert model.fit_report["divergences"] == 0
