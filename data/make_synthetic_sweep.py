"""Write two synthetic LR × batch-size sweeps from the surface model's own family:
``convex.csv`` (the bowl plus noise) and ``concave.csv`` (the same, plus a concave cap over
the octave just above each cell's optimal LR, like the seed blog's stretch between
log2 η = −12 and −11). Each CSV gets a ``.params.json`` beside it with the generating values.

    python data/make_synthetic_sweep.py [--out data/synthetic_sweep] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.sweep.surface import surface_loss

PARAMS = {
    "cells": [[1e8, 2e9], [1e8, 8e9], [3e8, 6e9], [3e8, 2.4e10]],
    "lr_law": {"lr0": -7.0, "lr_N": -0.5, "lr_D": 0.3, "N_ref": 1.7e8, "D_ref": 7e9},
    "bs_law": {"bs0": 12.5, "bs_N": 0.0, "bs_D": 0.6},
    "loss_law": {"E": 1.8, "A": 400.0, "B": 2000.0, "alpha": 0.34, "beta": 0.36},
    "shape": {"a_lr": 0.035, "k_lr": 1.0, "a_bs": 0.03, "k_bs": 0.25, "gamma": 0.33},
    "noise_sd": 0.002,
    "log2_lr_offsets": [x / 2 for x in range(-6, 6)],  # half-octave grid around the law's optimum
    "log2_bs_offsets": [-2, -1, 0, 1, 2],
    "concave_cap": {"height": 0.01, "from_octaves_above_optimum": 0.0, "width_octaves": 1.0},
}


def cap(x, height, start, width):
    """A concave parabola over [start, start + width] (log2 LR), zero outside."""
    t = (x - start) / width
    return np.where((t >= 0) & (t <= 1), height * (1 - (2 * t - 1) ** 2), 0.0)


def make(params, concave: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lr_law, bs_law, loss_law = params["lr_law"], params["bs_law"], params["loss_law"]
    rows = []
    for N, D in params["cells"]:
        n, d = np.log(N / lr_law["N_ref"]), np.log(D / lr_law["D_ref"])
        log_lr_opt = lr_law["lr0"] + lr_law["lr_N"] * n + lr_law["lr_D"] * d
        log_bs_opt = bs_law["bs0"] + bs_law["bs_N"] * n + bs_law["bs_D"] * d
        loss_opt = loss_law["E"] + loss_law["A"] / N ** loss_law["alpha"] + loss_law["B"] / D ** loss_law["beta"]
        # the grid sits on round powers of two, as real sweeps do
        lr_centre, bs_centre = np.round(log_lr_opt / np.log(2) * 2) / 2, np.round(log_bs_opt / np.log(2))
        for dl in params["log2_lr_offsets"]:
            for db in params["log2_bs_offsets"]:
                lr, bs = 2.0 ** (lr_centre + dl), 2.0 ** (bs_centre + db)
                loss = surface_loss(lr, bs, log_lr_opt, log_bs_opt, loss_opt, **params["shape"])
                if concave:
                    c = params["concave_cap"]
                    ridge = (log_lr_opt + params["shape"]["gamma"] * (np.log(bs) - log_bs_opt)) / np.log(2)
                    loss = loss + cap(np.log2(lr), c["height"], ridge + c["from_octaves_above_optimum"], c["width_octaves"])
                rows.append({"N": N, "D": D, "lr": lr, "batch_tokens": bs, "loss": loss + rng.normal(0, params["noise_sd"])})
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent / "synthetic_sweep"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name, concave in (("convex", False), ("concave", True)):
        make(PARAMS, concave, args.seed).to_csv(out / f"{name}.csv", index=False)
        params = {**PARAMS, "concave": concave, "seed": args.seed}
        if not concave:
            params.pop("concave_cap")
        (out / f"{name}.params.json").write_text(json.dumps(params, indent=2))
        print(out / f"{name}.csv")


if __name__ == "__main__":
    main()
