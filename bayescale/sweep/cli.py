"""``bayescale sweep fit|optimum|check``: the loss-surface model of an LR × batch-size grid."""

from __future__ import annotations

import sys

from bayescale.core.io import add_sampler_options, print_json, sampler_options
from bayescale.registry import from_spec, load
from bayescale.sweep.convexity import convexity_check


def register(subparsers) -> None:
    sweep = subparsers.add_parser("sweep", help="optimal LR and batch size from a sweep grid")
    sub = sweep.add_subparsers(dest="sweep_command", required=True)

    fit = sub.add_parser("fit", help="fit the loss-surface model to a sweep CSV")
    fit.add_argument("data", help="sweep CSV (canonical columns, or the Step Law layout)")
    fit.add_argument("--out", required=True, help="where to save the fit (.nc)")
    fit.add_argument("--seed", type=int, default=None)
    fit.add_argument("--spec", default="sweep", help="model spec name or JSON path (default: sweep)")
    add_sampler_options(fit)
    fit.set_defaults(run=run_fit)

    optimum = sub.add_parser("optimum", help="η*, B*, L* at a model size and token count")
    optimum.add_argument("fit", help="a fit saved by `sweep fit`")
    optimum.add_argument("--N", type=float, required=True, help="non-embedding parameters")
    optimum.add_argument("--D", type=float, required=True, help="training tokens")
    optimum.add_argument("--prob", type=float, default=0.9, help="interval probability (default 0.9)")
    optimum.add_argument("--json", action="store_true", help="print JSON")
    optimum.set_defaults(run=run_optimum)

    check = sub.add_parser("check", help="posterior predictive check of convexity in log LR")
    check.add_argument("fit", help="a fit saved by `sweep fit`")
    check.add_argument("--json", action="store_true", help="print JSON")
    check.add_argument("--seed", type=int, default=0)
    check.set_defaults(run=run_check)


def _load(path):
    fit = load(path)
    if fit.kind != "sweep":
        raise ValueError(f"{path}: a {fit.kind}/{fit.law} fit, not a sweep fit")
    return fit


def run_fit(args) -> int:
    model = from_spec(args.spec)
    model.fit(args.data, seed=args.seed, progress=sys.stderr.isatty(), **sampler_options(args))
    model.save(args.out)
    report = model.fit_report
    print_json(
        {
            "n_runs": len(model.data),
            "n_cells": len(model.cells),
            "rules": model.rule_counts(),
            **{k: report[k] for k in ("seconds", "compile_seconds", "sampling_seconds", "rhat_max", "ess_bulk_min", "divergences")},
            "out": str(args.out),
        }
    )
    return 0


def run_optimum(args) -> int:
    if not (args.N > 0 and args.D > 0):
        raise ValueError(f"--N and --D must be positive, got N={args.N:g}, D={args.D:g}")
    if not 0 < args.prob < 1:
        raise ValueError(f"--prob must be between 0 and 1, got {args.prob}")
    table = _load(args.fit).optimum(args.N, args.D, prob=args.prob)
    result = {name: {k: float(v) for k, v in row.items()} for name, row in table.iterrows()}
    if args.json:
        print_json(result)
    else:
        print(f"N={args.N:.3g}  D={args.D:.3g}  ({args.prob:.0%} intervals)")
        for name, row in result.items():
            print(f"  {name:13s} {row['mean']:.4g}  [{row['lower']:.4g}, {row['upper']:.4g}]")
    return 0


def run_check(args) -> int:
    table, shapes = convexity_check(_load(args.fit), seed=args.seed)
    if args.json:
        print_json({"slices": table.to_dict(orient="records"), "shape_comparison": shapes})
    else:
        print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        print(f"flexible minus bowl, exact LOO over {shapes['points']} points: elpd {shapes['elpd_diff']:.1f} "
              f"(se {shapes['elpd_diff_se']:.1f}); P(concave stretch in the shared profile) {shapes['p_concave_profile']:.3f}")
    return 0
