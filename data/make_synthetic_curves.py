"""Write the embedded demo dataset: loss curves drawn from the annealing law.

    python data/make_synthetic_curves.py

Writes ``bayescale/resources/demo/synthetic_curves.csv`` (run, step, lr, loss; loss logged every 100 steps) and
``synthetic_curves.json`` (everything needed to regenerate it). The first three runs are
the training runs of the demo; the others are held out. Each run gets its own small shift
of L0 and α (the misfit between schedules that the curve models expect), and Student-t
noise on log loss.
"""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.core import features, schedules

OUT = Path(__file__).resolve().parent.parent / "bayescale" / "resources" / "demo"  # shipped with the package
PARAMS = {
    "law": "annealing",
    "constants_raw_lr": {"L0": 2.9, "A": 0.45, "alpha": 0.5, "C": 0.35, "lam": 0.999},
    "peak_lr": 3e-4,
    "warmup_steps": 500,
    "log_every": 100,
    "noise": {"nu": 4.0, "sigma_log_loss": 0.002, "L0_run_sd": 0.002, "alpha_run_sd": 0.02},
    "seed": 20261122,
    "runs": {
        "constant_10k": {"schedule": "constant", "total_steps": 10000},
        "cosine_10k": {"schedule": "cosine", "total_steps": 10000, "final": 3e-5},
        "wsd_10k": {"schedule": "wsd", "total_steps": 10000, "cooldown": 0.2, "shape": "linear"},
        "step_10k": {"schedule": "step", "total_steps": 10000},
        "wsd_sqrt_10k": {"schedule": "wsd", "total_steps": 10000, "cooldown": 0.3, "shape": "sqrt"},
        "cosine_20k": {"schedule": "cosine", "total_steps": 20000, "final": 3e-5},
    },
    "train_runs": ["constant_10k", "cosine_10k", "wsd_10k"],
}


def annealing_loss(schedule, steps, c) -> np.ndarray:
    lr = schedule.post_warmup()
    return c["L0"] + c["A"] * np.cumsum(lr)[steps] ** (-c["alpha"]) - c["C"] * features.annealing_area(
        lr, steps, c["lam"]
    )


def main() -> None:
    rng = np.random.default_rng(PARAMS["seed"])
    noise = PARAMS["noise"]
    frames = []
    for run, spec in PARAMS["runs"].items():
        schedule = schedules.from_spec({**spec, "peak": PARAMS["peak_lr"], "warmup_steps": PARAMS["warmup_steps"]})
        steps = np.arange(PARAMS["log_every"], schedule.total_steps + 1, PARAMS["log_every"])
        constants = dict(PARAMS["constants_raw_lr"])
        constants["L0"] *= np.exp(noise["L0_run_sd"] * rng.standard_normal())
        constants["alpha"] *= np.exp(noise["alpha_run_sd"] * rng.standard_normal())
        clean = annealing_loss(schedule, steps, constants)
        loss = clean * np.exp(noise["sigma_log_loss"] * rng.standard_t(noise["nu"], steps.size))
        frames.append(pd.DataFrame({"run": run, "step": steps, "lr": schedule.lr[steps], "loss": loss}))
    pd.concat(frames).to_csv(OUT / "synthetic_curves.csv", index=False, float_format="%.6g")
    (OUT / "synthetic_curves.json").write_text(json.dumps(PARAMS, indent=2) + "\n")


if __name__ == "__main__":
    main()
