"""One row per training run: what the bound laws need (base LR, schedule, horizon, model
size, final loss) from tracker exports or from a tidy table, and the run's ``Schedule``.

Tracker exports: ``config.lr`` is the base (peak) LR; ``scheduler`` is "cos" (cosine to
``cos_final_lr``: an absolute LR when positive, else 10% of the peak), or "wsd" (cooldown
over the last ``wsd_fract_decay`` of the steps, shape ``decay_type``, default linear; a
fraction of 0 is a constant LR); ``iterations`` is the horizon; the final loss is
``summary["final-val/loss"]`` (the full evaluation the authors fitted), falling back to the
last logged validation loss; ``batch_size`` is the sequences per step,
``batch_size × acc_steps × world_size`` of the config. Sub-folders (the dataset's ``grad_norm``) are read too; a run
configuration found twice keeps the first (top folder first), as the authors did.

A tidy table (CSV) has one row per run with columns ``run, lr, schedule, total_steps,
loss`` and optionally ``cooldown, decay_type, final_lr`` (fraction of the peak),
``warmup_steps, model_size, batch_size``; ``schedule`` is constant, cosine, linear or wsd.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.core import schedules
from bayescale.core.convex_bound import bound_terms
from bayescale.core.errors import DataError
from bayescale.core.tracker import load_export_dirs, parent_of

RUN_COLUMNS = [
    "run", "schedule", "cooldown", "decay_type", "final_lr", "warmup_steps", "total_steps",
    "lr", "loss", "model_size", "batch_size", "n_layer", "n_embd", "dataset", "parent", "source",
]
SCHEDULES = ("constant", "cosine", "linear", "wsd")
TIDY_REQUIRED = ["run", "lr", "schedule", "total_steps", "loss"]
DEFAULT_COS_FINAL = 0.1


def _base_lr(export: dict) -> float:
    lr = export["config"].get("lr")
    if lr is None or not np.isfinite(float(lr)) or float(lr) <= 0:
        raise DataError(f"{export['file']}: config has no positive base LR ('lr': {lr!r}); the bound laws need it")
    return float(lr)


def _schedule_fields(export: dict, lr: float) -> dict:
    config = export["config"]
    kind = config.get("scheduler")
    if kind == "cos":
        final = config.get("cos_final_lr")
        final_fraction = float(final) / lr if final is not None and float(final) > 0 else DEFAULT_COS_FINAL
        return {"schedule": "cosine", "cooldown": np.nan, "decay_type": "", "final_lr": final_fraction}
    if kind == "wsd":
        fraction = float(config.get("wsd_fract_decay") or 0.0)
        if fraction == 0:
            return {"schedule": "constant", "cooldown": np.nan, "decay_type": "", "final_lr": 1.0}
        return {
            "schedule": "wsd",
            "cooldown": fraction,
            "decay_type": config.get("decay_type") or "linear",
            "final_lr": float(config.get("wsd_final_lr_scale") or 0.0),
        }
    raise DataError(f"{export['file']}: config.scheduler {kind!r} is not one the bound laws know (cos, wsd)")


def _final_loss(export: dict) -> float:
    summary = export.get("summary", {})
    if "final-val/loss" in summary:
        return float(summary["final-val/loss"])
    val = export["history"].get("val", {})
    if val.get("val_loss"):
        return float(val["val_loss"][-1])
    raise DataError(f"{export['file']}: no final validation loss (summary 'final-val/loss' or history.val)")


def _batch_size(config: dict) -> float:
    """Sequences per optimiser step; NaN when the config does not say."""
    if config.get("batch_size") is None:
        return np.nan
    return float(config["batch_size"]) * float(config.get("acc_steps") or 1) * float(config.get("world_size") or 1)


def run_row(export: dict, exports: dict) -> dict:
    """One run's metadata. A cooldown run's parent must be among ``exports``."""
    lr = _base_lr(export)
    config = export["config"]
    parent = parent_of(export)
    if parent is not None and parent[0] not in exports:
        raise DataError(
            f"{export['file']}: config.resume_from names parent run {parent[0]!r}, which is not among the exports"
        )
    if "iterations" not in config:
        raise DataError(f"{export['file']}: config has no 'iterations' (the horizon)")
    return {
        "run": export["name"],
        **_schedule_fields(export, lr),
        "warmup_steps": int(config.get("warmup_steps") or 0),
        "total_steps": int(config["iterations"]),
        "lr": lr,
        "loss": _final_loss(export),
        "model_size": float(export.get("summary", {}).get("parameters", np.nan)),
        "batch_size": _batch_size(config),
        "n_layer": config.get("n_layer"),
        "n_embd": config.get("n_embd"),
        "dataset": config.get("dataset", ""),
        "parent": parent[0] if parent else "",
        "source": export["file"],
    }


def _config_key(row: dict) -> tuple:
    return tuple(row[k] if not (isinstance(row[k], float) and np.isnan(row[k])) else None
                 for k in ("schedule", "cooldown", "decay_type", "final_lr", "total_steps", "lr", "n_layer", "n_embd", "dataset"))


def read_runs(path, diverged_above: float = 1.0, name_pattern: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Run table from a folder of tracker exports (and its sub-folders) or a tidy CSV.
    Returns (table, notes). ``name_pattern`` (a regular expression matched at the start
    of run names) keeps only those runs, before repeated configurations are dropped. Runs whose final loss exceeds the best loss of the same model
    and horizon by more than ``diverged_above`` nats are dropped as diverged, with a note."""
    path = Path(path)
    if path.is_file():
        table, notes = read_tidy(path), []
    elif path.is_dir():
        table, notes = _read_export_dirs(path, name_pattern)
    else:
        raise DataError(f"{path}: no such file or directory")
    best = table.groupby(["model_size", "total_steps"], dropna=False)["loss"].transform("min")
    diverged = table["loss"] > best + diverged_above
    for _, row in table[diverged].iterrows():
        notes.append(f"run {row['run']!r}: final loss {row['loss']:.3f} is {row['loss'] - best[_]:.2f} above the best "
                     f"of its model and horizon; dropped as diverged")
    return table[~diverged].reset_index(drop=True), notes


def _read_export_dirs(path: Path, name_pattern: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    exports, notes = load_export_dirs(path)
    rows, seen = [], {}
    for export in exports.values():
        if name_pattern and not re.match(name_pattern, export["name"]):
            continue
        row = run_row(export, exports)
        key = _config_key(row)
        if key in seen:
            notes.append(f"run {row['run']!r} ({row['source']}) repeats the configuration of {seen[key]!r}; kept the first")
            continue
        seen[key] = row["run"]
        rows.append(row)
    return tidy_runs(pd.DataFrame(rows, columns=RUN_COLUMNS), str(path)), notes


def read_tidy(path) -> pd.DataFrame:
    path = Path(path)
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DataError(f"{path}: not a readable CSV table ({exc})") from None
    missing = [c for c in TIDY_REQUIRED if c not in table.columns]
    if missing:
        raise DataError(f"{path}: a run table needs columns {TIDY_REQUIRED}; missing {missing}")
    return tidy_runs(table, str(path))


def tidy_runs(table: pd.DataFrame, source: str = "table") -> pd.DataFrame:
    """Check and complete a run table given as a DataFrame (same columns as the CSV)."""
    table = table.copy()
    defaults = {"cooldown": np.nan, "decay_type": "", "final_lr": np.nan, "warmup_steps": 0, "model_size": np.nan,
                "batch_size": np.nan, "n_layer": np.nan, "n_embd": np.nan, "dataset": "", "parent": "", "source": source}
    for column, value in defaults.items():
        if column not in table.columns:
            table[column] = value
    for i, row in table.iterrows():
        where = f"{source}, row {i} (run {row['run']!r})"
        lr = pd.to_numeric(pd.Series([row["lr"]]), errors="coerce").iloc[0]
        if not np.isfinite(lr) or lr <= 0:
            raise DataError(f"{where}: no positive base LR in column 'lr' ({row['lr']!r})")
        if row["schedule"] not in SCHEDULES:
            raise DataError(f"{where}: schedule {row['schedule']!r} is not one of {SCHEDULES}")
        if row["schedule"] == "wsd" and not 0 < float(row["cooldown"]) <= 1:
            raise DataError(f"{where}: a wsd run needs a cooldown fraction in (0, 1] in column 'cooldown'")
        if not np.isfinite(float(row["loss"])):
            raise DataError(f"{where}: loss {row['loss']!r} is not a finite number")
    table["lr"] = table["lr"].astype(float)
    table["total_steps"] = table["total_steps"].astype(int)
    table["warmup_steps"] = table["warmup_steps"].fillna(0).astype(int)
    table["decay_type"] = table["decay_type"].fillna("").astype(str)
    final_default = table["schedule"].map({"cosine": 0.0, "linear": 0.0, "wsd": 0.0, "constant": 1.0})
    table["final_lr"] = table["final_lr"].astype(float).fillna(final_default)
    for column in ("cooldown", "model_size", "batch_size", "n_layer", "n_embd", "loss"):
        table[column] = pd.to_numeric(table[column], errors="coerce").astype(float)
    for column in ("run", "schedule", "dataset", "parent", "source"):
        table[column] = table[column].fillna("").astype(str)
    return table[RUN_COLUMNS].reset_index(drop=True)


def schedule_label(row) -> str:
    """A name for the schedule family (shape without horizon or base LR)."""
    if row["schedule"] == "wsd":
        return f"wsd-{row['decay_type'] or 'linear'}-{float(row['cooldown']):g}"
    if row["schedule"] == "cosine":
        return f"cosine-{round(float(row['final_lr']), 2):g}"
    return str(row["schedule"])


def schedule_for(row, total_steps: int | None = None) -> schedules.Schedule:
    """The run's schedule shape (peak 1) from its row, optionally at another horizon."""
    T = int(row["total_steps"] if total_steps is None else total_steps)
    warmup = int(row.get("warmup_steps", 0) or 0)
    final = float(row["final_lr"]) if np.isfinite(float(row["final_lr"])) else 0.0
    kind = row["schedule"]
    if kind == "constant":
        return schedules.constant(T, warmup_steps=warmup)
    if kind == "cosine":
        return schedules.cosine(T, final=final, warmup_steps=warmup)
    if kind == "linear":
        return schedules.linear(T, final=final, warmup_steps=warmup)
    if kind == "wsd":
        return schedules.wsd(T, cooldown=float(row["cooldown"]), shape=row["decay_type"] or "linear",
                             final=final, warmup_steps=warmup)
    raise DataError(f"run {row['run']!r}: unknown schedule {kind!r}")


def run_terms(runs: pd.DataFrame) -> pd.DataFrame:
    """S̃_T and K_T at each run's own horizon, for a run table; runs sharing a schedule and
    horizon share one evaluation."""
    out = np.empty((len(runs), 2))
    cache: dict[tuple, tuple[float, float]] = {}
    for i, (_, row) in enumerate(runs.iterrows()):
        key = (schedule_label(row), int(row["total_steps"]), int(row.get("warmup_steps", 0) or 0))
        if key not in cache:
            schedule = schedule_for(row)
            try:
                terms = bound_terms(schedule)
            except ValueError as exc:
                raise ValueError(f"run {row['run']!r}: {exc}") from None
            cache[key] = (2.0 * terms.S, terms.K)
        out[i] = cache[key]
    return pd.DataFrame({"S_tilde": out[:, 0], "K": out[:, 1]}, index=runs.index)
