"""``bayescale bound fit|optimum``: the final-loss bound law from tracker exports or a run
table, and the best base LR of a schedule from a saved fit."""

from __future__ import annotations

import time

from bayescale.core.io import add_sampler_options, print_json, sampler_options
from bayescale.registry import from_spec, load

SCHEDULE_CHOICES = ["cosine", "wsd", "linear", "constant"]


def register(subparsers) -> None:
    bound = subparsers.add_parser("bound", help="convex-bound laws: best base LR per schedule and horizon")
    sub = bound.add_subparsers(dest="bound_command", required=True)

    fit = sub.add_parser("fit", help="fit the final-loss bound law")
    fit.add_argument("data", help="folder of tracker JSON exports, or a CSV run table (run, lr, schedule, total_steps, loss, …)")
    fit.add_argument("--out", required=True, help="where to write the fit (netCDF)")
    fit.add_argument("--seed", type=int, default=0)
    fit.add_argument("--spec", default="bound_final", help="model spec name or path (default: bound_final)")
    fit.add_argument("--model-size", type=float, default=None, help="fit the runs of this model size only")
    add_sampler_options(fit)
    fit.set_defaults(run=run_fit)

    optimum = sub.add_parser("optimum", help="best base LR and the loss there for a schedule and horizon")
    optimum.add_argument("fit", help="a fit written by `bayescale bound fit`")
    optimum.add_argument("--schedule", required=True, choices=SCHEDULE_CHOICES)
    optimum.add_argument("--cooldown", type=float, default=None, help="WSD cooldown fraction (required for wsd)")
    optimum.add_argument("--decay-type", default="linear", help="WSD cooldown shape: linear, cosine, sqrt")
    optimum.add_argument("--final-lr", type=float, default=0.0, help="final LR of cosine/linear as a fraction of the peak")
    optimum.add_argument("--warmup", type=int, default=None, help="warmup steps (default: the fit's runs' median)")
    optimum.add_argument("--steps", type=int, required=True, help="horizon T in steps")
    optimum.add_argument("--prob", type=float, default=0.9, help="central interval probability")
    optimum.add_argument("--json", action="store_true", help="print JSON")
    optimum.set_defaults(run=run_optimum)


def run_fit(args) -> int:
    model = from_spec(args.spec, **({"model_size": args.model_size} if args.model_size else {}))
    t0 = time.perf_counter()
    model.fit(args.data, seed=args.seed, progress=False, **sampler_options(args))
    model.save(args.out)
    report = model.fit_report
    print_json({
        "n_runs": len(model.data),
        "schedules": model.groups,
        "horizons": sorted(int(t) for t in model.data["total_steps"].unique()),
        "seconds": time.perf_counter() - t0,
        "rhat_max": report["rhat_max"],
        "ess_bulk_min": report["ess_bulk_min"],
        "divergences": report["divergences"],
        "out": str(args.out),
        "notes": [n for n in model.notes if "repeats" not in n],
        "repeated_runs_dropped": sum("repeats" in n for n in model.notes),
    })
    return 0


def schedule_from_args(args, fit) -> dict:
    if args.schedule == "wsd" and args.cooldown is None:
        raise ValueError("--schedule wsd needs --cooldown (fraction of the steps, e.g. 0.2)")
    if not 0 < args.prob < 1:
        raise ValueError(f"--prob must be in (0, 1), got {args.prob}")
    warmup = args.warmup if args.warmup is not None else int(fit.data["warmup_steps"].median())
    return {
        "schedule": args.schedule,
        "total_steps": args.steps,
        "cooldown": args.cooldown if args.schedule == "wsd" else float("nan"),
        "decay_type": args.decay_type if args.schedule == "wsd" else "",
        "final_lr": 1.0 if args.schedule == "constant" else args.final_lr,
        "warmup_steps": warmup,
    }


def run_optimum(args) -> int:
    fit = load(args.fit)
    if not hasattr(fit, "optimum"):
        raise ValueError(f"{args.fit}: a {fit.law} fit, not a bound fit")
    result = fit.optimum(schedule_from_args(args, fit), args.prob)
    if args.json:
        print_json(result)
    else:
        lr, loss = result["lr"], result["loss"]
        print(f"{result['group']} at {args.steps} steps: best LR {lr['mean']:.3g} [{lr['lower']:.3g}, {lr['upper']:.3g}], "
              f"loss {loss['mean']:.4f} [{loss['lower']:.4f}, {loss['upper']:.4f}] ({args.prob:.0%} interval"
              f"{'' if result['in_fit'] else '; schedule not in the fit, drawn from the population of schedules'})")
    return 0
