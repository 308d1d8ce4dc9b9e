"""The main job on the synthetic curves shipped with the package
(``bayescale/resources/demo/synthetic_curves.csv``, made by ``data/make_synthetic_curves.py``):
fit the annealing law on three schedules, predict three held-out ones with bands, and compare
the posterior with the constants that generated the data."""

from __future__ import annotations

import json
import tempfile
import warnings
from importlib.resources import as_file, files
from pathlib import Path

from bayescale.curves.data import read_curves
from bayescale.curves.evaluation import prediction_scores
from bayescale.registry import from_spec

DEMO_DATA = files("bayescale") / "resources" / "demo"
CURVES = DEMO_DATA / "synthetic_curves.csv"
GENERATOR = DEMO_DATA / "synthetic_curves.json"


def run_demo(out_dir=None, seed: int = 0, quick: bool = False) -> dict:
    truth = json.loads(GENERATOR.read_text())
    with as_file(CURVES) as path:
        curves = read_curves(path)
    train = curves.select(truth["train_runs"])
    held_out = curves.select([r for r in curves.runs if r not in truth["train_runs"]])
    out = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="bayescale-demo-"))
    out.mkdir(parents=True, exist_ok=True)

    model = from_spec(truth["law"], warmup_steps=truth["warmup_steps"])
    draws = 300 if quick else 1000
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        model.fit(train, draws=draws, tune=draws, seed=seed, progress=False)
    fit_path = model.save(out / "annealing.nc")
    pred = model.predict(held_out, prob=0.9, kind="observation", seed=seed)
    pred_path = out / "predictions.csv"
    pred.to_csv(pred_path, index=False)

    table = model.params_table()
    return {
        "data": str(CURVES),
        "train_runs": truth["train_runs"],
        "held_out_runs": held_out.runs,
        "n_points": len(model.obs),
        "fit": {k: model.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences", "seconds")},
        "constants": {
            name: {"true": truth["constants_raw_lr"][name], "mean": table.loc[name, "mean"],
                   "q05": table.loc[name, "lower"], "q95": table.loc[name, "upper"]}
            for name in table.index
        },
        "held_out": prediction_scores(pred),
        "files": {"fit": str(fit_path), "predictions": str(pred_path)},
    }
