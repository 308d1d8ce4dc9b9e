"""Where public datasets live on this machine: ``BAYESCALE_DATA_DIR`` or, failing that, a
``shared/datasets`` folder beside the working directory or the repository. Nothing is
downloaded; datasets are read from a local copy."""

from __future__ import annotations

import os
from pathlib import Path

DATASETS = {
    "multipower-25m": "multipower/csv_25",
    "multipower-100m": "multipower/csv_100",
    "tissue-fig2": "tissue-fig2/tissue_fig2_cosine_constant_20k.csv",
    "lr-scheduling": "lr-scheduling/data",
    "steplaw": "steplaw/dense_lr_bs_loss.csv",
    "steplaw-bootstrap": "steplaw/bootstrap_fits.csv",
    "chinchilla": "chinchilla/svg_extracted_data.csv",
}


class DatasetMissing(FileNotFoundError):
    pass


def data_dir() -> Path | None:
    env = os.environ.get("BAYESCALE_DATA_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for candidate in (Path.cwd() / "../shared/datasets", repo / "../shared/datasets"):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def dataset_path(name: str) -> Path:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    root = data_dir()
    if root is None:
        raise DatasetMissing("no data directory: set BAYESCALE_DATA_DIR to the folder holding the public datasets")
    path = root / DATASETS[name]
    if not path.exists():
        raise DatasetMissing(f"dataset {name!r} not found at {path}")
    return path
