"""Fit each curve law on the multi-power-law paper's training split and score it on the
held-out schedules (SCIENCE.md §3): PredE, WorstE, 90% band coverage, sampling diagnostics.

    python benchmarks/eval_multipower.py [--sizes 25 100] [--laws annealing multipower]
"""

import argparse
import json
import warnings

from bayescale.core.datasets import dataset_path
from bayescale.curves.data import read_curves
from bayescale.curves.evaluation import prediction_scores
from bayescale.registry import from_spec

TRAIN = ["constant_24000", "cosine_24000", "wsdcon_9"]
WARMUP_STEPS = 2160


def evaluate(size: str, law: str, seed: int = 0, config: dict | None = None, **fit_options) -> dict:
    curves = read_curves(dataset_path(f"multipower-{size}m"))
    model = from_spec(law, warmup_steps=WARMUP_STEPS, **(config or {}))
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        model.fit(curves.select(TRAIN), seed=seed, progress=False, **fit_options)
    test = curves.select([r for r in curves.runs if r not in TRAIN])
    scores = prediction_scores(model.predict(test, prob=0.9, kind="observation"))
    point = model.point_fit()
    return {
        "size": f"{size}M",
        "law": law,
        **scores,
        **{k: model.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences", "seconds")},
        "params": {k: float(v) for k, v in model.params_table()["mean"].items()},
        "point_fit_params": {k: float(v) for k, v in model.raw_params(point).items()},
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", nargs="+", default=["25", "100"])
    parser.add_argument("--laws", nargs="+", default=["annealing", "multipower"])
    parser.add_argument("--config", type=json.loads, default={}, help="JSON model_config overrides")
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    for size in args.sizes:
        for law in args.laws:
            print(json.dumps(evaluate(size, law, config=args.config, draws=args.draws)), flush=True)


if __name__ == "__main__":
    main()
