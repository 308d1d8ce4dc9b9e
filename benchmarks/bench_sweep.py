"""Wall time of the default surface-model fit on the full Step Law table against the Step
Law procedure (near-optimal filter, log OLS, 1000 bootstrap resamples) measured in the same
run. One command: ``python benchmarks/bench_sweep.py [--seed 0]``; prints one JSON object."""

from __future__ import annotations

import argparse
import json
import time

from bayescale.core.datasets import dataset_path
from bayescale.registry import from_spec
from bayescale.sweep.data import read_steplaw_csv
from bayescale.sweep.steplaw import fit_steplaw


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sweep = read_steplaw_csv(dataset_path("steplaw"))

    t0 = time.perf_counter()
    fit_steplaw(sweep.table, n_boot=1000, seed=args.seed)
    bootstrap_seconds = time.perf_counter() - t0

    model = from_spec("sweep")
    t0 = time.perf_counter()
    model.fit(sweep, seed=args.seed, progress=False)
    fit_seconds = time.perf_counter() - t0
    report = model.fit_report
    print(json.dumps({
        "n_runs": len(sweep.table),
        "n_cells": len(sweep.cells),
        "bootstrap_1000_seconds": round(bootstrap_seconds, 3),
        "bayes_fit_seconds": round(fit_seconds, 1),
        "bayes_compile_seconds": round(report["compile_seconds"], 1),
        "bayes_sampling_seconds": round(report["sampling_seconds"], 1),
        "ratio_fit_to_bootstrap": round(fit_seconds / bootstrap_seconds, 1),
        "ratio_sampling_to_bootstrap": round(report["sampling_seconds"] / bootstrap_seconds, 1),
        "rhat_max": report["rhat_max"],
        "ess_bulk_min": report["ess_bulk_min"],
        "divergences": report["divergences"],
    }, indent=2))


if __name__ == "__main__":
    main()
