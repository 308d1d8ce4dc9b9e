"""The canonical sweep table: one row per training run of an LR × batch-size grid.

Columns: ``N`` (non-embedding parameters), ``D`` (training tokens), ``lr`` (peak LR),
``batch_tokens``, ``loss`` (final loss), optionally ``run`` and ``smooth_loss``, plus
``source`` and ``row`` so that errors name the file and row. Readers return a ``Sweep``.

Diverged runs are never dropped: ``mark_divergences`` flags them (``diverged``) by explicit,
counted rules, and the surface model gives them a likelihood of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.core.errors import DataError
from bayescale.core.io import read_csv, where

REQUIRED = ["N", "D", "lr", "loss"]
COLUMNS = ["N", "D", "lr", "batch_tokens", "loss", "smooth_loss", "run", "source", "row"]
SEQ_LEN = 2048
# Above this a batch size is not a plausible count of sequences; below one sequence it is
# not a plausible count of tokens.
MAX_SEQUENCES = 1 << 16


@dataclass
class Sweep:
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    rule_counts: dict[str, int] = field(default_factory=dict)

    @property
    def cells(self) -> pd.DataFrame:
        """One row per (N, D) cell: run counts, diverged runs and the best loss."""
        grouped = self.table.groupby(["N", "D"], sort=True)
        return grouped.agg(
            n_runs=("lr", "size"),
            n_diverged=("diverged", "sum"),
            best_loss=("target", "min"),
        ).reset_index()


def batch_in_tokens(values, unit: str, seq_len: int, rows_at) -> np.ndarray:
    """Batch sizes converted to tokens. ``unit`` is "tokens", "sequences" or "auto";
    ``rows_at(mask)`` names the offending file rows for an error message."""
    values = np.asarray(values, dtype=float)
    bad = ~np.isfinite(values) | (values <= 0) | (np.abs(values - np.round(values)) > 1e-9 * np.maximum(values, 1))
    if bad.any():
        raise DataError(
            f"{rows_at(bad)}: batch size {values[bad][0]!r} is not a positive whole number, so it cannot be a count "
            "of tokens or of sequences"
        )
    if unit == "auto":
        if values.max() <= MAX_SEQUENCES and values.min() < seq_len:
            unit = "sequences"
        elif values.min() >= seq_len and values.max() > MAX_SEQUENCES:
            unit = "tokens"
        else:
            raise DataError(
                f"{rows_at(np.ones(len(values), bool))}: batch sizes {values.min():g}…{values.max():g} could be "
                "tokens or sequences; name the unit (batch_unit='tokens' or 'sequences')"
            )
    if unit == "sequences":
        bad = values > MAX_SEQUENCES
        if bad.any():
            raise DataError(
                f"{rows_at(bad)}: batch size {values[bad][0]:g} is too large to be a count of sequences "
                f"(> {MAX_SEQUENCES}); is this column in tokens?"
            )
        return values * seq_len
    if unit == "tokens":
        bad = values < seq_len
        if bad.any():
            raise DataError(
                f"{rows_at(bad)}: batch size {values[bad][0]:g} tokens is less than one sequence of {seq_len} tokens; "
                "is this column in sequences?"
            )
        return values
    raise ValueError(f"unknown batch unit {unit!r}; choose tokens, sequences or auto")


def from_frame(
    frame: pd.DataFrame,
    batch_column: str = "batch_tokens",
    batch_unit: str = "tokens",
    seq_len: int = SEQ_LEN,
    divergence_ratio: float = 1.5,
    min_runs_per_cell: int = 5,
) -> Sweep:
    """Validate a table with the canonical columns (and ``source``/``row`` if it came from a
    file) and return a ``Sweep`` with divergences marked. The loss the models fit
    (``target``) is ``smooth_loss`` when present, else ``loss``."""
    frame = frame.copy()
    if "source" not in frame.columns:
        frame["source"] = "<table>"
    if "row" not in frame.columns:
        frame["row"] = np.arange(len(frame))
    source = frame["source"].iloc[0] if len(frame) else "<table>"
    missing = [c for c in REQUIRED + [batch_column] if c not in frame.columns]
    if missing:
        found = [c for c in frame.columns if c not in ("source", "row")]
        raise DataError(f"{source}: missing column(s) {missing}; found {found}")
    if not len(frame):
        raise DataError(f"{source}: no runs")

    def rows_at(mask) -> str:
        return where(frame[np.asarray(mask, bool)])

    for column in ["N", "D", "lr", batch_column, "loss"] + (["smooth_loss"] if "smooth_loss" in frame else []):
        values = pd.to_numeric(frame[column], errors="coerce")
        text = frame[column].astype(str).str.strip().str.lower()
        nonnumber = values.isna() & ~text.isin(["nan", "inf", "-inf", "+inf"]) & frame[column].notna()
        if nonnumber.any():
            raise DataError(f"{rows_at(nonnumber)}: column {column!r} holds a non-number ({frame[column][nonnumber].iloc[0]!r})")
        frame[column] = values.astype(float)
    for column in ("N", "D", "lr"):
        bad = ~(np.isfinite(frame[column]) & (frame[column] > 0))
        if bad.any():
            raise DataError(f"{rows_at(bad)}: column {column!r} must be a positive finite number, got {frame[column][bad].iloc[0]:g}")
    frame["batch_tokens"] = batch_in_tokens(frame[batch_column], batch_unit, seq_len, rows_at)
    if "smooth_loss" not in frame.columns:
        frame["smooth_loss"] = np.nan
    if "run" not in frame.columns:
        frame["run"] = [f"run{i}" for i in range(len(frame))]
    table = frame[COLUMNS].reset_index(drop=True)
    table["run"] = table["run"].astype(str)
    table["target"] = np.where(np.isfinite(table["smooth_loss"]), table["smooth_loss"], table["loss"])
    return mark_divergences(table, divergence_ratio, min_runs_per_cell)


def mark_divergences(table: pd.DataFrame, divergence_ratio: float, min_runs_per_cell: int) -> Sweep:
    """Flag diverged runs by two counted rules: a loss that is NaN, infinite or not positive;
    a loss more than ``divergence_ratio`` times the best loss of its cell. Every cell must
    keep ``min_runs_per_cell`` runs that did not diverge."""
    table = table.copy()
    target = table["target"].to_numpy(float)
    nonfinite = ~(np.isfinite(target) & (target > 0))
    cell_best = table.assign(t=np.where(nonfinite, np.nan, target)).groupby(["N", "D"])["t"].transform("min")
    far_above = ~nonfinite & (target > divergence_ratio * cell_best.to_numpy(float))
    table["diverged"] = nonfinite | far_above
    notes = []
    for (n, d), rows in table.groupby(["N", "D"], sort=True):
        kept = int((~rows["diverged"]).sum())
        if kept == 0:
            raise DataError(f"{where(rows)}: every run of the cell N={n:g}, D={d:g} diverged (loss NaN, inf or far above the rest); nothing to fit")
        if kept < min_runs_per_cell:
            raise DataError(
                f"{where(rows)}: the cell N={n:g}, D={d:g} has {kept} runs that did not diverge; "
                f"the model needs at least {min_runs_per_cell} per cell"
            )
    counts = {
        "runs": len(table),
        "diverged_nonfinite": int(nonfinite.sum()),
        f"diverged_above_{divergence_ratio:g}x_cell_best": int(far_above.sum()),
    }
    if nonfinite.any():
        notes.append(f"{int(nonfinite.sum())} runs with NaN/inf/non-positive loss kept as diverged")
    if far_above.any():
        notes.append(f"{int(far_above.sum())} runs with loss > {divergence_ratio:g}× their cell's best kept as diverged")
    return Sweep(table, notes, counts)


def read_sweep_csv(path, batch_unit: str = "auto", seq_len: int = SEQ_LEN, **rules) -> Sweep:
    """A CSV with columns N, D, lr, loss and a batch column: ``batch_tokens`` (tokens),
    ``batch_sequences`` (sequences) or ``batch_size``/``bs`` (unit from ``batch_unit``)."""
    path = Path(path)
    frame = read_csv(path)
    if "smooth loss" in frame.columns and "smooth_loss" not in frame.columns:
        frame = frame.rename(columns={"smooth loss": "smooth_loss"})
    for column, unit in (("batch_tokens", "tokens"), ("batch_sequences", "sequences"), ("batch_size", None), ("bs", None)):
        if column in frame.columns:
            return from_frame(frame, column, unit or batch_unit, seq_len, **rules)
    found = [c for c in frame.columns if c not in ("source", "row")]
    raise DataError(f"{path}: missing a batch-size column (batch_tokens, batch_sequences, batch_size or bs); found {found}")


def read_steplaw_csv(path, seq_len: int = SEQ_LEN, **rules) -> Sweep:
    """The Step Law release: ``bs`` in sequences of 2048 tokens, ``smooth loss`` the smoothed
    final training loss, ``exp_name`` the run; other columns are ignored."""
    path = Path(path)
    frame = read_csv(path)
    frame = frame.rename(columns={"smooth loss": "smooth_loss", "exp_name": "run"})
    return from_frame(frame, "bs", "sequences", seq_len, **rules)


def read_sweep(data, **rules) -> Sweep:
    """A Sweep from a Sweep, a DataFrame with the canonical columns, or a CSV path (the Step
    Law layout is recognised by its ``bs``/``exp_name`` columns)."""
    if isinstance(data, Sweep):
        return data
    if isinstance(data, pd.DataFrame):
        batch = "batch_tokens" if "batch_tokens" in data.columns else "bs"
        unit = "tokens" if batch == "batch_tokens" else "sequences"
        return from_frame(data, batch, unit, **rules)
    path = Path(data)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    header = read_csv(path).columns
    if "exp_name" in header and "bs" in header:
        return read_steplaw_csv(path, **rules)
    return read_sweep_csv(path, **rules)


def near_optimal(table: pd.DataFrame, tolerance: float = 0.0025) -> pd.DataFrame:
    """Runs within ``tolerance`` (relative) of their cell's best target loss (Step Law's filter)."""
    ok = table[~table["diverged"]] if "diverged" in table else table
    best = ok.groupby(["N", "D"])["target"].transform("min")
    return ok[ok["target"] <= best * (1 + tolerance)]


def near_optimal_centres(table: pd.DataFrame, tolerance: float = 0.0025) -> pd.DataFrame:
    """Per cell, the geometric mean LR and batch size of its near-optimal runs and the best loss."""
    near = near_optimal(table, tolerance).assign(log_lr=lambda t: np.log(t["lr"]), log_bs=lambda t: np.log(t["batch_tokens"]))
    out = near.groupby(["N", "D"], sort=True).agg(
        log_lr=("log_lr", "mean"), log_bs=("log_bs", "mean"), best_loss=("target", "min"), n_near=("lr", "size")
    )
    out["lr"] = np.exp(out.pop("log_lr"))
    out["batch_tokens"] = np.exp(out.pop("log_bs"))
    return out.reset_index()
