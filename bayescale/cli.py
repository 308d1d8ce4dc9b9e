"""Command-line interface: the ``curves``, ``sweep`` and ``bound`` command groups, and
``bayescale compare`` and ``bayescale demo``."""

from __future__ import annotations

import argparse
import sys

from bayescale.bound import cli as bound_cli
from bayescale.compare import compare_fits, load_fits
from bayescale.core.errors import DataError
from bayescale.core.fit import FitFileError
from bayescale.core.io import print_json
from bayescale.curves import cli as curves_cli
from bayescale.demo import run_demo
from bayescale.sweep import cli as sweep_cli

COMMAND_GROUPS = (curves_cli, sweep_cli, bound_cli)


def compare_command(args) -> int:
    table = compare_fits(load_fits(args.fits), leave_one_run_out_scores=not args.no_run_out, seed=args.seed)
    print(table.to_string())
    return 0


def demo_command(args) -> int:
    print_json(run_demo(out_dir=args.out, seed=args.seed, quick=args.quick))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bayescale", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)

    compare = sub.add_parser("compare", help="PSIS-LOO and leave-one-run-out comparison of fits")
    compare.add_argument("fits", nargs="+")
    compare.add_argument("--no-run-out", action="store_true", help="skip the leave-one-run-out refits")
    compare.add_argument("--seed", type=int, default=0)
    compare.set_defaults(run=compare_command)

    demo = sub.add_parser("demo", help="fit the annealing law to the shipped synthetic curves and predict held-out schedules")
    demo.add_argument("--out", default=None, help="directory for the fits and predictions (default: a temp dir)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="fewer draws (for a smoke test)")
    demo.set_defaults(run=demo_command)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (DataError, FitFileError, ValueError, FileNotFoundError, KeyError) as exc:
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"bayescale: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
