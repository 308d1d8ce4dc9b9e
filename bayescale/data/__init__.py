"""Readers that turn public and user files into bayescale's canonical tables."""

from bayescale.data.curves import Curves, DataError, read_curves
from bayescale.data.registry import data_dir, dataset_path

__all__ = ["Curves", "DataError", "data_dir", "dataset_path", "read_curves"]
