"""Issue 4's "Must show" on the lr-scheduling runs, one command:

    .venv/bin/python benchmarks/eval_bound.py [--quick]

1. posterior γ* per cooldown fraction at 50k steps on the 124M runs (fit on the 50k runs)
   against SCIENCE.md §4's least-squares values;
2. leave-one-fraction-out: refit without one WSD cooldown fraction, predict its γ*;
   interval coverage and median |ln error| against the per-fraction least-squares γ*;
3. the 2-D law's extrapolation error to the largest horizon and model size, held out;
4. the whole-curve law on the 124M 50k-step runs at base LRs 5e-4, 1e-3, 2e-3: fitted on
   the first half of each run, its error on the held-out second half.
Prints JSON; sampling diagnostics of every fit included. ``--sections`` runs a subset.
"""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
from scipy.optimize import curve_fit

from bayescale.bound.curve import BoundCurveFit, curve_table
from bayescale.bound.data import read_runs, schedule_label
from bayescale.bound.final import BoundFinalFit
from bayescale.bound.size_horizon import Bound2DFit, extrapolation_error
from bayescale.core.datasets import dataset_path

PUBLISHED = {0.1: 7.4e-4, 0.2: 8.6e-4, 0.4: 1.05e-3, 0.8: 1.43e-3, 0.994: 1.68e-3}
SIZE_124M = 123587328.0
CURVE_LRS = (5e-4, 1e-3, 2e-3)
SECTIONS = ("gamma_star", "lofo", "2d", "curve")


def grid_124m(path):
    runs, _ = read_runs(path)
    runs = runs[(runs["model_size"] == SIZE_124M) & (runs["dataset"] == "slimpajama") & (runs["total_steps"] == 50000)]
    return runs.assign(group=runs.apply(schedule_label, axis=1)).reset_index(drop=True)


def least_squares_lr(runs) -> float:
    """The authors' fit: a/γ + bγ + c by bounded least squares, γ* = √(a/b)."""
    (a, b, _), _ = curve_fit(lambda x, a, b, c: a / x + b * x + c, runs["lr"], runs["loss"], p0=[1e-5, 10, 3],
                             bounds=([0, 0, 0], [np.inf] * 3))
    return float(np.sqrt(a / b))


def report(fit):
    r = fit.fit_report
    return {k: r[k] for k in ("rhat_max", "ess_bulk_min", "divergences", "seconds")}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer draws (diagnostics will be weaker)")
    parser.add_argument("--prob", type=float, default=0.9)
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    if sections - set(SECTIONS):
        parser.error(f"unknown sections {sorted(sections - set(SECTIONS))}; choose from {SECTIONS}")
    sampling = {"draws": 300, "tune": 300, "chains": 2} if args.quick else {}  # else the laws' sampler_config
    sampling.update(seed=1, progress=False)
    path = dataset_path("lr-scheduling")
    runs = grid_124m(path)
    out = {"prob": args.prob}

    if "gamma_star" in sections:
        out["gamma_star_50k"] = gamma_star_50k(runs, args.prob, sampling)
    if "lofo" in sections:
        out["leave_one_fraction_out"] = leave_one_fraction_out(runs, args.prob, sampling)
    if "2d" in sections:
        out["extrapolation_2d"] = extrapolation_2d(path, args.prob, sampling)
    if "curve" in sections:
        out["whole_curve"] = whole_curve(path, args.prob, sampling)
    print(json.dumps(out, indent=2, default=float))


def gamma_star_50k(runs, prob, sampling):
    fit = BoundFinalFit()
    fit.fit(runs, **sampling)
    rows = []
    for c, published in PUBLISHED.items():
        r = fit.optimum({"schedule": "wsd", "cooldown": c, "decay_type": "linear", "total_steps": 50000,
                         "warmup_steps": 300}, prob)["lr"]
        lsq = least_squares_lr(runs[runs["group"] == f"wsd-linear-{c:g}"])
        rows.append({"cooldown": c, "published": published, "least_squares": lsq, **r})
    return {"fit": report(fit), "n_runs": len(runs), "rows": rows}


def leave_one_fraction_out(runs, prob, sampling):
    lofo = []
    for c in PUBLISHED:
        group = f"wsd-linear-{c:g}"
        held = BoundFinalFit()
        held.fit(runs[runs["group"] != group], **sampling)
        r = held.optimum({"schedule": "wsd", "cooldown": c, "decay_type": "linear", "total_steps": 50000,
                          "warmup_steps": 300}, prob)["lr"]
        target = least_squares_lr(runs[runs["group"] == group])
        lofo.append({"cooldown": c, "target_least_squares": target, **r, "fit": report(held),
                     "covered": r["lower"] <= target <= r["upper"], "abs_ln_error": abs(np.log(r["median"] / target))})
    return {
        "rows": lofo,
        "coverage": float(np.mean([r["covered"] for r in lofo])),
        "median_abs_ln_error": float(np.median([r["abs_ln_error"] for r in lofo])),
    }


def extrapolation_2d(path, prob, sampling):
    multi, _ = read_runs(path, name_pattern=Bound2DFit().model_config["name_pattern"])
    multi = multi[multi["dataset"] == "slimpajama"].reset_index(drop=True)
    table, model = extrapolation_error(multi, prob, **sampling)
    return {
        "fit": report(model),
        "n_fit": len(model.data), "n_held_out": len(table),
        "held_out": table.drop(columns=["run"]).to_dict(orient="records"),
        "median_abs_rel_error": float(table["rel_error"].abs().median()),
        "max_abs_rel_error": float(table["rel_error"].abs().max()),
        "coverage": float(table["covered"].mean()),
        "exponents": model.exponents(prob).to_dict(orient="records"),
    }


def whole_curve(path, prob, sampling):
    runs, _ = read_runs(path)
    runs = runs[(runs["model_size"] == SIZE_124M) & (runs["dataset"] == "slimpajama") & (runs["total_steps"] == 50000)
                & runs["lr"].isin(CURVE_LRS)]
    model = BoundCurveFit()
    model.fit(curve_table(path, runs["run"].tolist()), **sampling)
    per_run = model.holdout_error(prob).merge(runs[["run", "lr"]], on="run")
    per_run["group"] = per_run["run"].map(runs.assign(group=runs.apply(schedule_label, axis=1)).set_index("run")["group"])
    return {
        "fit": report(model), "n_runs": len(per_run), "n_fit_points": len(model.fit_rows),
        "n_held_out_points": int(per_run["n"].sum()),
        "posterior": model.summary(prob)[["mean", "sd"]].to_dict(orient="index")
        | {"L_inf": {"mean": float(model.draws("L_inf").mean()), "sd": float(model.draws("L_inf").std())}},
        "mean_rel_error": float(np.average(per_run["mean_rel_error"], weights=per_run["n"])),
        "median_run_mean_rel_error": float(per_run["mean_rel_error"].median()),
        "max_rel_error": float(per_run["worst_rel_error"].max()),
        "coverage": float(np.average(per_run["coverage"], weights=per_run["n"])),
        "runs": per_run.drop(columns=["run"]).to_dict(orient="records"),
    }


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        main()
