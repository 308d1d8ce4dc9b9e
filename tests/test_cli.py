import json

from bayescale.cli import main


def test_demo_runs_the_main_job(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["train_runs"] == ["constant_10k", "cosine_10k", "wsd_10k"]
    assert set(report["constants"]) == {"L0", "A", "alpha", "C"}
    assert report["held_out"]["n_points"] == 400
    assert (tmp_path / "annealing.nc").exists() and (tmp_path / "predictions.csv").exists()
