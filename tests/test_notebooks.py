"""Every notebook runs from top to bottom on the public datasets it reads."""

from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
DATASET_OF = {"bound.ipynb": "lr-scheduling", "curves.ipynb": "multipower-25m", "steplaw.ipynb": "steplaw"}


# the sweep notebook takes 1–3 minutes on 2 cores (surface fit 85 s plus the convexity check)
@pytest.mark.parametrize("name", [p.name for p in sorted(NOTEBOOKS.glob("*.ipynb"))])
def test_notebook_executes(name, dataset):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    assert name in DATASET_OF, f"register the dataset {name} reads in DATASET_OF"
    dataset(DATASET_OF[name])
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbclient.NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
