"""Experiment-tracker JSON exports (one file per run with ``config``, ``summary``, ``name``
and ``history``), as in the lr-scheduling dataset.

A cooldown run holds only its cooldown segment; its config's ``resume_from`` names the
parent run's checkpoint (``.../<parent name>/ckpts/<step>``). The parent's history up to
that step is prepended. Resumed runs that log a step twice keep the last value.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.core.errors import DataError

LOSS_KEYS = {"val": ("val", "val_loss"), "train": ("train", "train_loss")}


def load_exports(path, only=None) -> dict[str, dict]:
    """All exports in a directory, keyed by run name, each with its file path added."""
    path = Path(path)
    files = sorted(path.glob("*.json")) if only is None else [path / name for name in only]
    runs = {}
    for file in files:
        try:
            export = json.loads(file.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{file}: not valid JSON ({exc})") from None
        missing = [k for k in ("name", "config", "history") if k not in export]
        if missing:
            raise DataError(f"{file}: not a tracker export, missing key(s) {missing}")
        export["file"] = str(file)
        runs[export["name"]] = export
    if not runs:
        raise DataError(f"{path}: no .json tracker exports")
    return runs


def parent_of(export: dict) -> tuple[str, int] | None:
    """(parent run name, resume step) from ``config.resume_from``, or None."""
    resume = export["config"].get("resume_from")
    if not resume:
        return None
    parts = Path(resume).parts
    if "ckpts" not in parts:
        raise DataError(f"{export['file']}: config.resume_from {resume!r} does not name a checkpoint")
    i = parts.index("ckpts")
    return parts[i - 1], int(parts[i + 1])


def _series(export: dict, group: str, key: str) -> pd.DataFrame:
    history = export["history"].get(group)
    if not history or key not in history:
        raise DataError(f"{export['file']}: history.{group} has no {key!r}")
    return pd.DataFrame({"step": np.asarray(history["iter"], dtype=float), "value": np.asarray(history[key], dtype=float)})


def _segment(export: dict, loss: str) -> pd.DataFrame:
    """One export's own rows: step, lr (logged), loss; the row number is the index in the
    history list that the value came from."""
    group, key = LOSS_KEYS[loss]
    lr = _series(export, "train", "train_lr").rename(columns={"value": "lr"})
    obs = _series(export, group, key).rename(columns={"value": "loss"})
    obs["row"] = np.arange(len(obs))
    lr["row"] = np.arange(len(lr))
    lr["observed"] = False
    obs["observed"] = True
    lr["source"] = f"{export['file']} history.train"
    obs["source"] = f"{export['file']} history.{group}"
    return pd.concat([lr, obs], ignore_index=True)


def stitched(name: str, exports: dict, loss: str = "val", seen=()) -> pd.DataFrame:
    export = exports[name]
    rows = _segment(export, loss)
    parent = parent_of(export)
    if parent is None:
        return rows
    parent_name, resume_step = parent
    if parent_name not in exports:
        raise DataError(
            f"{export['file']}: config.resume_from names parent run {parent_name!r}, which is not among the exports"
        )
    if parent_name in seen:
        raise DataError(f"{export['file']}: resume_from chain loops back to {parent_name!r}")
    before = stitched(parent_name, exports, loss, seen + (name,))
    return pd.concat([before[before["step"] <= resume_step], rows], ignore_index=True)


def to_curve_rows(rows: pd.DataFrame, run: str) -> pd.DataFrame:
    """Merge LR-log rows and loss rows into one row per step: lr interpolated from the LR
    log at loss steps, loss only where measured. Repeated steps keep the last value."""
    lr_log = rows[~rows["observed"]].drop_duplicates("step", keep="last").sort_values("step")
    obs = rows[rows["observed"]].drop_duplicates("step", keep="last").sort_values("step")
    obs = obs.assign(lr=np.interp(obs["step"], lr_log["step"], lr_log["lr"]))
    lr_only = lr_log[~lr_log["step"].isin(obs["step"])].assign(loss=np.nan)
    merged = pd.concat([obs, lr_only], ignore_index=True).sort_values("step", kind="stable")
    merged["run"] = run
    return merged[["run", "step", "lr", "loss", "observed", "source", "row"]].reset_index(drop=True)


def load_export_dirs(path) -> tuple[dict[str, dict], list[str]]:
    """Exports of a folder and every folder below it that holds some (the dataset's root
    keeps them in data/, its gradient-norm runs in data/grad_norm/) by run name; a name
    found twice keeps the first (higher folder first). Returns (exports, notes)."""
    path = Path(path)
    folders = sorted({f.parent for f in path.rglob("*.json")}, key=lambda p: (len(p.parts), p)) or [path]
    exports, notes = {}, []
    for folder in folders:
        for name, export in load_exports(folder).items():
            if name in exports:
                notes.append(f"run {name!r} in {export['file']} repeats {exports[name]['file']}; kept the first")
                continue
            exports[name] = export
    return exports, notes
