"""The canonical loss-curve table (run, step, lr, loss) and its readers.

Every reader returns ``Curves``: the table, with ``source`` and ``row`` columns so that
errors can name the file and row and an ``observed`` column (False for rows that only log
the LR: an empty loss cell, or a schedule to predict); the schedule parameters of runs
whose file describes the schedule instead of logging the LR; and ``notes``, what was done
to dirty data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.core import schedules
from bayescale.core.errors import DataError
from bayescale.core.io import read_csv, where
from bayescale.core.tracker import (
    LOSS_KEYS,
    load_exports,
    parent_of,
    stitched,
    to_curve_rows,
)

COLUMNS = ["run", "step", "lr", "loss"]
KEEP = COLUMNS + ["observed", "source", "row"]
SCHEDULE_PARAM_COLUMNS = ["schedule", "max_lr", "min_lr", "total_steps", "warmup_steps"]


@dataclass
class Curves:
    table: pd.DataFrame
    specs: dict[str, dict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, specs: dict | None = None) -> Curves:
        """Curves from an in-memory table with at least run, step and lr (loss optional)."""
        missing = [c for c in ("run", "step", "lr") if c not in frame.columns]
        if missing:
            raise DataError(f"table: missing column(s) {missing}")
        table = frame.copy()
        if "loss" not in table.columns:
            table["loss"] = np.nan
        if "observed" not in table.columns:
            table["observed"] = table["loss"].notna()
        if "source" not in table.columns:
            table["source"] = "table"
            table["row"] = np.arange(len(table))
        table["run"] = table["run"].astype(str)
        return cls(table[KEEP].reset_index(drop=True), dict(specs or {}))

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(self.table["run"]))

    def select(self, runs) -> Curves:
        if runs is None:
            return self
        missing = [r for r in runs if r not in set(self.table["run"])]
        if missing:
            raise DataError(f"no run named {missing}; available: {self.runs}")
        table = self.table[self.table["run"].isin(runs)]
        return Curves(table.reset_index(drop=True), {r: s for r, s in self.specs.items() if r in runs}, self.notes)

    def run_table(self, run: str) -> pd.DataFrame:
        return self.table[self.table["run"] == run]

    def schedule(self, run: str, warmup_steps: int = 0) -> schedules.Schedule:
        """The dense schedule of one run: built from its parameters if the file gave them,
        else interpolated from the logged LR, with a declared warmup if the file omits it."""
        if run in self.specs:
            return schedules.from_spec(self.specs[run])
        rows = self.run_table(run)
        return schedules.from_logged(rows["step"], rows["lr"], warmup_steps=warmup_steps, name=run)


def clean(curves: Curves, nonfinite: str = "error") -> Curves:
    """Check the table and repair what can be repaired on purpose, recording each repair.

    - non-finite step or lr, negative lr or step: error.
    - an observed loss that is NaN, infinite or not positive (a diverged run): error
      (``nonfinite="error"``) or the row is dropped (``"drop"``).
    - unsorted steps: sorted. Repeated steps (resumed runs): the last logged row is kept.
    """
    table = curves.table.copy()
    notes = list(curves.notes)
    for column in ("step", "lr"):
        bad = table[~np.isfinite(table[column].to_numpy(dtype=float))]
        if len(bad):
            raise DataError(f"{where(bad)}: column {column!r} is not a finite number")
    bad = table[table["lr"] < 0]
    if len(bad):
        raise DataError(f"{where(bad)}: column 'lr' is negative ({bad['lr'].iloc[0]:g}); learning rates must be >= 0")
    bad = table[table["step"] < 0]
    if len(bad):
        raise DataError(f"{where(bad)}: column 'step' is negative")
    loss = table["loss"].to_numpy(dtype=float)
    bad_mask = table["observed"].to_numpy(bool) & ~(np.isfinite(loss) & (loss > 0))
    if bad_mask.any():
        bad = table[bad_mask]
        if nonfinite == "error":
            raise DataError(
                f"{where(bad)}: column 'loss' is NaN, infinite or not positive; "
                "drop those rows or pass --drop-nonfinite to leave them out"
            )
        table = table[~bad_mask]
        notes.append(f"dropped {int(bad_mask.sum())} rows with non-finite or non-positive loss ({where(bad)})")
    table["step"] = table["step"].astype(np.int64)
    pieces = []
    for run, rows in table.groupby("run", sort=False):
        if not rows["step"].is_monotonic_increasing:
            notes.append(f"run {run!r}: steps were not in order; sorted them ({rows['source'].iloc[0]})")
            rows = rows.sort_values("step", kind="stable")
        repeated = rows["step"].duplicated(keep="last")
        if repeated.any():
            notes.append(
                f"run {run!r}: {int(repeated.sum())} repeated steps (a resumed run?); kept the last logged value "
                f"of each ({where(rows[repeated])})"
            )
            rows = rows[~repeated]
        pieces.append(rows)
    return Curves(pd.concat(pieces, ignore_index=True), curves.specs, notes)


def _require(frame: pd.DataFrame, path: Path, columns) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; found {[c for c in frame.columns if c not in ('source', 'row')]}")
    for column in columns:
        if column in ("run", "schedule"):
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        written_nan = frame[column].astype(str).str.strip().str.lower() == "nan"
        bad = frame[values.isna() & frame[column].notna() & ~written_nan]
        if len(bad):
            raise DataError(f"{where(bad)}: column {column!r} holds a non-number ({bad[column].iloc[0]!r})")
        if column == "loss":
            frame["observed"] = frame[column].notna()
        frame[column] = values


def read_csv_dir(path) -> Curves:
    """A directory of per-run CSVs with columns step, lr, loss (the run is the file stem), or of
    files that describe their schedules by parameters (``read_parametric_csv``)."""
    path = Path(path)
    files = sorted(path.glob("*.csv"))
    if not files:
        raise DataError(f"{path}: no .csv files")
    parts, sources = [], {}
    for file in files:
        frame = read_csv(file)
        if {"schedule", "max_lr"} <= set(frame.columns):
            part = read_parametric_csv(file, frame)
        else:
            _require(frame, file, ["step", "lr", "loss"])
            part = Curves(frame.assign(run=file.stem)[KEEP])
        for run in part.runs:
            if run in sources:
                raise DataError(f"{file}: run {run!r} is also in {sources[run]}; give each run one name")
            sources[run] = file
        parts.append(part)
    specs = {run: spec for part in parts for run, spec in part.specs.items()}
    return Curves(pd.concat([part.table for part in parts], ignore_index=True), specs)


def read_tidy_csv(path, frame: pd.DataFrame | None = None) -> Curves:
    """One CSV with columns run, step, lr, loss (loss may be empty for a schedule to predict)."""
    path = Path(path)
    frame = read_csv(path) if frame is None else frame
    if "loss" not in frame.columns and {"run", "step", "lr"} <= set(frame.columns):
        frame["loss"] = np.nan
        frame["observed"] = False
    _require(frame, path, COLUMNS)
    frame["run"] = frame["run"].astype(str)
    return Curves(frame[KEEP])


def read_parametric_csv(path, frame: pd.DataFrame | None = None) -> Curves:
    """A CSV that describes each run's schedule by parameters (columns schedule, max_lr,
    min_lr, total_steps, warmup_steps) next to step and loss. The run is ``run`` if present,
    else the schedule name."""
    path = Path(path)
    frame = read_csv(path) if frame is None else frame
    _require(frame, path, ["step", "loss"] + SCHEDULE_PARAM_COLUMNS)
    frame["run"] = frame["run"].astype(str) if "run" in frame.columns else frame["schedule"].astype(str)
    specs = {}
    lr = np.empty(len(frame))
    for run, rows in frame.groupby("run", sort=False):
        params = rows[SCHEDULE_PARAM_COLUMNS].drop_duplicates()
        if len(params) > 1:
            raise DataError(f"{where(rows)}: run {run!r} has more than one set of schedule parameters")
        p = params.iloc[0]
        spec = {
            "schedule": str(p["schedule"]),
            "total_steps": int(p["total_steps"]),
            "peak": float(p["max_lr"]),
            "warmup_steps": int(p["warmup_steps"]),
        }
        if spec["schedule"] in ("cosine", "linear", "wsd", "cyclic"):
            spec["final"] = float(p["min_lr"])
        try:
            sched = schedules.from_spec(spec)
        except (ValueError, TypeError) as exc:
            raise DataError(f"{where(rows)}: cannot build schedule {spec}: {exc}") from None
        steps = rows["step"].to_numpy(dtype=np.int64)
        if steps.max() > sched.total_steps:
            raise DataError(f"{where(rows)}: step {steps.max()} is past total_steps {sched.total_steps}")
        lr[frame.index.get_indexer(rows.index)] = sched.lr[steps]
        specs[run] = spec
    frame["lr"] = lr
    return Curves(frame[KEEP], specs)


def read_curves(path, **tracker_options) -> Curves:
    """Read any supported curve file or directory (format from its content)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    if path.is_dir():
        if any(path.glob("*.json")):
            return read_tracker_dir(path, **tracker_options)
        return read_csv_dir(path)
    if path.suffix == ".json":
        return read_tracker_dir(path.parent, only=[path.name], **tracker_options)
    frame = read_csv(path)
    if {"schedule", "max_lr"} <= set(frame.columns):
        return read_parametric_csv(path, frame)
    if "run" in frame.columns:
        return read_tidy_csv(path, frame)
    _require(frame, path, ["step", "lr", "loss"])
    frame["run"] = path.stem
    return Curves(frame[KEEP])


def read_tracker_dir(path, only=None, loss: str = "val") -> Curves:
    """Curves from tracker exports: one run per export, cooldown runs stitched onto their
    parents. ``loss`` is "val" (default) or "train"."""
    if loss not in LOSS_KEYS:
        raise DataError(f"unknown loss {loss!r}; choose from {sorted(LOSS_KEYS)}")
    path = Path(path)
    exports = load_exports(path)
    names = list(exports) if only is None else [load_exports(path, only=[n]).popitem()[0] for n in only]
    notes = []
    frames = []
    for name in names:
        rows = stitched(name, exports, loss)
        n_repeated = int(rows[rows["observed"]]["step"].duplicated().sum())
        if n_repeated:
            notes.append(f"run {name!r}: {n_repeated} repeated {loss} steps (resumed run); kept the last value of each")
        parent = parent_of(exports[name])
        if parent:
            notes.append(f"run {name!r}: prepended parent run {parent[0]!r} up to step {parent[1]}")
        frames.append(to_curve_rows(rows, name))
    return Curves(pd.concat(frames, ignore_index=True), notes=notes)
