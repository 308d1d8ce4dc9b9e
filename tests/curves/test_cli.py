import json

import pandas as pd
import pytest

from bayescale.cli import main
from bayescale.demo import CURVES


def run_cli(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_fit_predict_and_refuse_bad_input_without_losing_the_fit(tmp_path, capsys):
    out = tmp_path / "fit.nc"
    code, stdout, _ = run_cli(["curves", "fit", CURVES, "--law", "annealing", "--out", out,
                               "--runs", "constant_10k,cosine_10k,wsd_10k", "--warmup-steps", 500,
                               "--draws", 200, "--tune", 200, "--chains", 2, "--seed", 1], capsys)
    assert code == 0
    report = json.loads(stdout)
    for key in ("law", "n_points", "seconds", "rhat_max", "ess_bulk_min", "divergences", "params"):
        assert key in report
    assert set(report["params"]) == {"L0", "A", "alpha", "C"} and report["n_points"] == 300

    pred_path = tmp_path / "pred.csv"
    code, _, _ = run_cli(["curves", "predict", out, CURVES, "--out", pred_path, "--runs", "step_10k",
                          "--prob", 0.8], capsys)
    assert code == 0
    pred = pd.read_csv(pred_path)
    assert list(pred.columns) == ["run", "step", "lr", "loss", "mean", "lower", "upper"]
    assert ((pred["loss"] > pred["lower"]) & (pred["loss"] < pred["upper"])).mean() > 0.5

    saved = out.read_bytes()
    bad = tmp_path / "bad.csv"
    bad.write_text("run,step,lr,loss\nx,1,1e-3,3.0\nx,2,1e-3,nan\n")
    code, _, err = run_cli(["curves", "fit", bad, "--law", "annealing", "--out", out], capsys)
    assert code == 2 and "bad.csv, row 3: column 'loss'" in err
    assert out.read_bytes() == saved


def test_unknown_law_is_refused(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["curves", "fit", str(CURVES), "--law", "cubic", "--out", "x.nc"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'cubic'" in capsys.readouterr().err


def test_predict_with_a_foreign_file(tmp_path, capsys):
    fake = tmp_path / "fake.nc"
    fake.write_text("hello")
    code, _, err = run_cli(["curves", "predict", fake, CURVES, "--out", tmp_path / "p.csv"], capsys)
    assert code == 2 and "fake.nc: not a readable netCDF fit" in err
