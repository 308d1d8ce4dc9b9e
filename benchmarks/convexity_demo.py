"""The convexity check on the two synthetic sweeps of ``data/make_synthetic_sweep.py``: a
convex one and one with a planted concave stretch over the octave above each optimum.
Prints, per sweep, the surface fit's diagnostics, the per-slice table and a summary with the
exact-LOO comparison of the flexible curve and the bowl (elpd difference and se; positive
favours the flexible curve).

    python benchmarks/convexity_demo.py [--draws 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import pandas as pd

from bayescale.registry import from_spec
from bayescale.sweep.convexity import convexity_check

HERE = Path(__file__).resolve().parents[1] / "data"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import runpy

    out = Path(tempfile.mkdtemp())
    runpy.run_path(str(HERE / "make_synthetic_sweep.py"), run_name="demo")["main"](["--out", str(out), "--seed", str(args.seed)])
    pd.set_option("display.width", 200)
    for name in ("convex", "concave"):
        model = from_spec("sweep")
        model.fit(out / f"{name}.csv", draws=args.draws, tune=args.draws, chains=2, seed=args.seed, progress=False)
        table, shapes = convexity_check(model, seed=args.seed)
        print(f"== {name}: surface fit", json.dumps({k: model.fit_report[k] for k in ("rhat_max", "ess_bulk_min", "divergences")}))
        print(table.round(4).to_string(index=False))
        print(json.dumps({
            "sweep": name,
            "slices": len(table),
            "not_convex_here": int((table["verdict"] == "not convex here").sum()),
            "ppc_p_below_0.05": int((table["p_value"] < 0.05).sum()),
            "p_concave_above_0.9": int((table["p_concave"] > 0.9).sum()),
            "median_p_concave": float(table["p_concave"].median()),
            "slices_elpd_diff_above_2se": int((table["elpd_diff"] > 2 * table["elpd_diff_se"]).sum()),
            **shapes,
        }), flush=True)


if __name__ == "__main__":
    main()
