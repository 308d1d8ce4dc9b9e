"""``bayescale curves fit|predict``: fit a loss-curve law, predict curves with bands from a saved fit."""

from __future__ import annotations

import argparse
import sys
import time
import warnings

from bayescale.core.io import add_sampler_options, print_json, sampler_options
from bayescale.curves.data import read_curves
from bayescale.registry import from_spec, load

LAWS = ("annealing", "multipower")


def say(message: str) -> None:
    print(f"[bayescale] {message}", file=sys.stderr, flush=True)


def add_data_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", help="comma-separated run names to use (default: all)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="a linear warmup from 0 over the first W steps that the file omits")
    parser.add_argument("--min-step", type=int, default=None, help="leave out losses logged before this step")


def read_selected(path, runs: str | None, loss: str = "val"):
    curves = read_curves(path, loss=loss)
    return curves.select(runs.split(",")) if runs else curves


def fit_command(args) -> int:
    config = {"nonfinite": "drop" if args.drop_nonfinite else "error"}
    if args.warmup_steps is not None:
        config["warmup_steps"] = args.warmup_steps
    if args.min_step is not None:
        config["min_step"] = args.min_step
    model = from_spec(args.spec or args.law, **config)
    if model.law != args.law:
        raise ValueError(f"spec {args.spec!r} is for law {model.law!r}, not {args.law!r}")
    curves = read_selected(args.data, args.runs, args.loss)
    sampler = {**model.sampler_config, **sampler_options(args)}
    say(f"fitting the {args.law} law to {len(curves.runs)} runs of {args.data} ({sampler['chains']} chains, "
        f"{sampler['tune']} tuning + {sampler['draws']} draws each)")
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(curves, seed=args.seed, progress=sys.stderr.isatty(), **sampler_options(args))
    for w in caught:
        if issubclass(w.category, UserWarning) and "sampling problems" in str(w.message):
            say(f"WARNING: {w.message}")
    model.save(args.out)
    report = model.fit_report
    print_json({
        "law": model.law,
        "n_runs": len(model.curves.runs),
        "n_points": len(model.obs),
        "seconds": time.perf_counter() - start,
        "compile_seconds": report["compile_seconds"],
        "sampling_seconds": report["sampling_seconds"],
        "sampler": report["sampler"],
        "rhat_max": report["rhat_max"],
        "ess_bulk_min": report["ess_bulk_min"],
        "divergences": report["divergences"],
        "params": {k: float(v) for k, v in model.params_table()["mean"].items()},
        "notes": model.notes,
        "out": str(args.out),
    })
    return 0


def predict_command(args) -> int:
    model = load(args.fit)
    if model.kind != "curves":
        raise ValueError(f"{args.fit}: a {model.kind} fit, not a loss-curve fit")
    curves = read_selected(args.data, args.runs)
    pred = model.predict(curves, prob=args.prob, kind="observation", warmup_steps=args.warmup_steps,
                         min_step=args.min_step)
    pred.to_csv(args.out, index=False)
    say(f"wrote {len(pred)} predictions for {pred['run'].nunique()} runs to {args.out}")
    return 0


def register(sub) -> None:
    curves = sub.add_parser("curves", help="loss-curve laws: fit and predict")
    curves_sub = curves.add_subparsers(dest="curves_command", required=True)

    fit = curves_sub.add_parser("fit", help="fit a curve law; prints a JSON summary")
    fit.add_argument("data", help="per-run CSV directory, tidy CSV, parametric-schedule CSV or tracker JSON directory")
    fit.add_argument("--law", choices=LAWS, required=True)
    fit.add_argument("--out", required=True, help="where to save the fit (netCDF)")
    fit.add_argument("--spec", help="name of a spec shipped in bayescale/resources/specs, or a JSON path (default: the law's name)")
    add_data_options(fit)
    fit.add_argument("--loss", choices=("val", "train"), default="val", help="tracker exports: which loss")
    fit.add_argument("--drop-nonfinite", action="store_true", help="leave out NaN/inf losses instead of failing")
    fit.add_argument("--seed", type=int, default=0)
    add_sampler_options(fit)
    fit.set_defaults(run=fit_command)

    predict = curves_sub.add_parser("predict", help="predict curves with bands for any schedule")
    predict.add_argument("fit", help="a saved curve fit (netCDF)")
    predict.add_argument("data", help="runs to predict: their schedule (lr), with losses where known")
    predict.add_argument("--out", required=True, help="CSV with run, step, lr, loss, mean, lower, upper")
    add_data_options(predict)
    predict.add_argument("--prob", type=float, default=0.9, help="probability inside the band")
    predict.set_defaults(run=predict_command)
