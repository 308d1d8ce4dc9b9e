"""Held-out evaluation on the Step Law sweep: the surface model against the Step Law
procedure, on the same folds.

- leave-one-cell-out: fit on all cells but one, predict that cell's η* and B*;
- extrapolation: fit on the cells of the two smallest model sizes, predict the two largest.

The target of each held-out cell is its near-optimal centre (geometric mean LR and batch
size of the runs within 0.25% of its best smoothed loss). Reported per method and quantity:
coverage of the 90% intervals and the median |log2 error| of the point prediction (posterior
mean for the surface model, OLS fit for Step Law). The surface model answers twice: ``bayes``
is its optimum (η*, B*), ``bayes_centre`` the near-optimal centre a sweep of the held-out
cell would measure (``SurfaceFit.centre``: the optimum plus the scatter of the training
cells' measured centres around their fitted optima). Usage:

    python benchmarks/eval_steplaw.py [--folds loco,extrapolation] [--draws 500] [--out results.csv]
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

from bayescale.core.datasets import dataset_path
from bayescale.core.fit import SamplingWarning
from bayescale.registry import from_spec
from bayescale.sweep.data import near_optimal_centres, read_steplaw_csv
from bayescale.sweep.steplaw import fit_steplaw

PROB = 0.9


def folds(table: pd.DataFrame, which):
    cells = table[["N", "D"]].drop_duplicates().sort_values(["N", "D"]).to_numpy()
    if "extrapolation" in which:
        sizes = np.sort(table["N"].unique())
        train = table["N"].isin(sizes[:2])
        test = [(N, D) for N, D in cells if N in sizes[-2:]]
        yield "extrapolation", table[train], test
    if "loco" in which:
        for N, D in cells:
            held = (table["N"] == N) & (table["D"] == D)
            yield "loco", table[~held], [(N, D)]


def evaluate(which, draws, tune, chains, seed, out=None) -> tuple[pd.DataFrame, list]:
    sweep = read_steplaw_csv(dataset_path("steplaw"))
    table = sweep.table
    centres = near_optimal_centres(table).set_index(["N", "D"])
    rows, reports = [], []
    for fold, train, test in folds(table, which):
        model = from_spec("sweep")
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SamplingWarning)
            model.fit(train, draws=draws, tune=tune, chains=chains, seed=seed, progress=False)
        report = {k: model.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences")}
        reports.append({"fold": fold, "held_out": [list(map(float, c)) for c in test], **report,
                        "seconds": time.perf_counter() - t0, "warned": any(issubclass(w.category, SamplingWarning) for w in caught)})
        baseline = fit_steplaw(train, n_boot=1000, seed=seed)
        for N, D in test:
            truth = centres.loc[(N, D)]
            predictions = {"bayes": model.optimum(N, D, prob=PROB), "bayes_centre": model.centre(N, D, prob=PROB),
                           "steplaw": baseline.predict(N, D, prob=PROB)}
            for method, pred in predictions.items():
                for quantity in ("lr", "batch_tokens"):
                    p = pred.loc[quantity]
                    rows.append({
                        "fold": fold, "N": N, "D": D, "method": method, "quantity": quantity,
                        "target": truth[quantity], "mean": p["mean"], "lower": p["lower"], "upper": p["upper"],
                        "covered": bool(p["lower"] <= truth[quantity] <= p["upper"]),
                        "log2_error": float(np.log2(p["mean"] / truth[quantity])),
                    })
        print(json.dumps(reports[-1]), flush=True)
        if out:
            pd.DataFrame(rows).to_csv(out, index=False)
    return pd.DataFrame(rows), reports


def summary(results: pd.DataFrame) -> pd.DataFrame:
    results = results.assign(
        abs_log2_error=results["log2_error"].abs(), interval_octaves=np.log2(results["upper"] / results["lower"])
    )
    return results.groupby(["fold", "quantity", "method"]).agg(
        cells=("covered", "size"),
        coverage_90=("covered", "mean"),
        median_abs_log2_error=("abs_log2_error", "median"),
        mean_log2_error=("log2_error", "mean"),
        median_interval_octaves=("interval_octaves", "median"),
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", default="loco,extrapolation")
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write per-cell results to this CSV")
    args = parser.parse_args(argv)
    results, reports = evaluate(args.folds.split(","), args.draws, args.tune, args.chains, args.seed, args.out)
    pd.set_option("display.width", 200)
    print(summary(results).round(3).to_string())
    worst = max(reports, key=lambda r: r["rhat_max"])
    print(f"sampling over {len(reports)} fits: max R-hat {worst['rhat_max']:.3f}, "
          f"min bulk ESS {min(r['ess_bulk_min'] for r in reports):.0f}, "
          f"divergences {sum(r['divergences'] for r in reports)}")


if __name__ == "__main__":
    main()
