"""Fit time of the final-loss bound law against the authors' per-schedule a/γ + bγ + c
least-squares fits, measured in the same run on the 124M 50k-step grid:

    .venv/bin/python benchmarks/bench_bound.py
"""

from __future__ import annotations

import json
import time
import warnings

from eval_bound import grid_124m, least_squares_lr  # same folder, first on sys.path

from bayescale.bound.final import BoundFinalFit
from bayescale.core.datasets import dataset_path


def main():
    runs = grid_124m(dataset_path("lr-scheduling"))
    repeats = 20
    t0 = time.perf_counter()
    for _ in range(repeats):
        for _, rows in runs.groupby("group"):
            least_squares_lr(rows)
    lsq = (time.perf_counter() - t0) / repeats
    fit = BoundFinalFit()
    fit.fit(runs, seed=1, progress=False)
    r = fit.fit_report
    print(json.dumps({
        "n_runs": len(runs), "n_schedules": int(runs["group"].nunique()),
        "least_squares_seconds": lsq, "bayes_seconds": r["seconds"], "bayes_compile_seconds": r["compile_seconds"],
        "bayes_sampling_seconds": r["sampling_seconds"],
        "ratio_total": r["seconds"] / lsq, "ratio_sampling_only": r["sampling_seconds"] / lsq,
        "rhat_max": r["rhat_max"], "ess_bulk_min": r["ess_bulk_min"], "divergences": r["divergences"],
    }, indent=2))


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main()
