"""Shared input and output: CSV reading that keeps the file and line of every row, the
place of a row in an error message, and the CLI's JSON printing and sampler flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from bayescale.core.errors import DataError


def read_csv(path) -> pd.DataFrame:
    """A CSV with ``source`` (the path) and ``row`` (the 1-based file line) columns added.
    Empty cells become NaN; a written "nan" or "inf" stays text so it can be told apart."""
    path = Path(path)
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    frame["source"] = str(path)
    frame["row"] = np.arange(2, len(frame) + 2)  # 1-based file line, after the header
    return frame


def where(rows: pd.DataFrame) -> str:
    """"file, row n (and k more rows)" for rows carrying ``source`` and ``row``."""
    first = rows.iloc[0]
    more = f" (and {len(rows) - 1} more rows)" if len(rows) > 1 else ""
    return f"{first['source']}, row {first['row']}{more}"


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=float))


def add_sampler_options(parser) -> None:
    """--draws, --tune, --chains, --sampler, --target-accept: each overrides the law's
    sampler_config when given."""
    parser.add_argument("--draws", type=int, default=None, help="draws per chain (default: the law's)")
    parser.add_argument("--tune", type=int, default=None, help="tuning steps per chain (default: the law's)")
    parser.add_argument("--chains", type=int, default=None, help="chains (default: the law's)")
    parser.add_argument("--sampler", choices=("auto", "nutpie", "pymc"), default=None, help="default: nutpie when installed")
    parser.add_argument("--target-accept", type=float, default=None, help="NUTS target acceptance (default: the law's)")


def sampler_options(args) -> dict:
    return {key: value for key in ("draws", "tune", "chains", "sampler", "target_accept")
            if (value := getattr(args, key, None)) is not None}
