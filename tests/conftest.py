import pytest

from bayescale.core.datasets import DatasetMissing, dataset_path


@pytest.fixture
def dataset():
    """Path of a public dataset, or skip the test when the data directory is absent."""

    def find(name):
        try:
            return dataset_path(name)
        except DatasetMissing as exc:
            pytest.skip(f"public dataset not available: {exc}")

    return find
