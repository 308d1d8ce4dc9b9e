"""Wall time of a full posterior fit of a curve law against the authors' fitting method
(Huber on log loss, L-BFGS from several starts) and a bootstrap of that method, all in the
same run; then how fit time scales with the points per curve.

    python benchmarks/bench_curves.py [--law annealing] [--bootstrap 200] [--size 25]

Prints JSON lines. Ratios are against the point fit measured in this same process.
"""

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

from bayescale.core import features, schedules
from bayescale.core.datasets import dataset_path
from bayescale.curves.data import Curves, read_curves
from bayescale.registry import from_spec

TRAIN = ["constant_24000", "cosine_24000", "wsdcon_9"]


def timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def bootstrap_point_fits(model, n_resamples: int, seed: int = 0) -> float:
    """A residual bootstrap of the point fit: ``n_resamples`` refits on the fitted curve plus
    residuals resampled within each run; returns seconds."""
    rng = np.random.default_rng(seed)
    y = model.y.copy()
    fitted = np.log(np.ravel(model.law_mean(model.feats, model.point_fit())))
    residual = y - fitted
    runs = model.feats["run_index"]
    start = time.perf_counter()
    for _ in range(n_resamples):
        resampled = residual.copy()
        for r in np.unique(runs):
            members = np.flatnonzero(runs == r)
            resampled[members] = rng.choice(residual[members], members.size)
        model.y = fitted + resampled
        model.point_fit()
    model.y = y
    return time.perf_counter() - start


def compare_methods(law: str, size: str, n_resamples: int) -> dict:
    curves = read_curves(dataset_path(f"multipower-{size}m")).select(TRAIN)
    model = from_spec(law, warmup_steps=2160)
    model.prepare(curves)
    _, point_seconds = timed(model.point_fit)
    bootstrap_seconds = bootstrap_point_fits(model, n_resamples)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(curves, progress=False, seed=0)
    report = model.fit_report
    return {
        "law": law, "data": f"multipower {size}M training split", "n_points": len(model.obs),
        "point_fit_seconds": point_seconds, "bootstrap_resamples": n_resamples, "bootstrap_seconds": bootstrap_seconds,
        "posterior_seconds": report["seconds"], "compile_seconds": report["compile_seconds"],
        "sampling_seconds": report["sampling_seconds"],
        "posterior_over_point_fit": report["seconds"] / point_seconds,
        "posterior_over_bootstrap": report["seconds"] / bootstrap_seconds,
        "sampling_over_bootstrap": report["sampling_seconds"] / bootstrap_seconds,
        "rhat_max": report["rhat_max"], "ess_bulk_min": report["ess_bulk_min"], "divergences": report["divergences"],
    }


def dense_curves(points_per_curve: int, seed: int = 0) -> Curves:
    """Three noisy training-loss curves logged ``points_per_curve`` times over 10^5 steps,
    drawn from the annealing law with each run's own small shift of L0 and α (as real
    schedules disagree) and 1% noise."""
    rng = np.random.default_rng(seed)
    total = 100_000
    steps = np.linspace(total / points_per_curve, total, points_per_curve).astype(int)
    frames = []
    for run, schedule in {"constant": schedules.constant(total, 3e-4, 1000),
                          "cosine": schedules.cosine(total, 3e-4, 3e-5, 1000),
                          "wsd": schedules.wsd(total, 3e-4, 0.2, warmup_steps=1000)}.items():
        lr = schedule.post_warmup()
        L0, alpha = 2.9 * np.exp(0.002 * rng.standard_normal()), 0.5 * np.exp(0.02 * rng.standard_normal())
        loss = L0 + 0.45 * np.cumsum(lr)[steps] ** -alpha - 0.35 * features.annealing_area(lr, steps, 0.999)
        loss *= np.exp(0.01 * rng.standard_normal(steps.size))
        frames.append(pd.DataFrame({"run": run, "step": steps, "lr": schedule.lr[steps], "loss": loss}))
    return Curves.from_frame(pd.concat(frames, ignore_index=True))


def scaling(law: str) -> list[dict]:
    rows = []
    for n in (1_000, 10_000, 100_000):
        model = from_spec(law, warmup_steps=1000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, seconds = timed(lambda model=model, n=n: model.fit(dense_curves(n), progress=False, seed=0))
        rows.append({"law": law, "points_per_curve": n, "points_in_model": len(model.obs), "seconds": seconds,
                     "sampling_seconds": model.fit_report["sampling_seconds"],
                     **{k: model.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences")},
                     "first_attempt": model.fit_report.get("first_attempt")})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--law", default="annealing", choices=("annealing", "multipower"))
    parser.add_argument("--size", default="25", choices=("25", "100"))
    parser.add_argument("--bootstrap", type=int, default=200)
    parser.add_argument("--skip-scaling", action="store_true")
    args = parser.parse_args()
    print(json.dumps(compare_methods(args.law, args.size, args.bootstrap)), flush=True)
    if not args.skip_scaling:
        for row in scaling(args.law):
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
