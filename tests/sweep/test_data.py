import numpy as np
import pandas as pd
import pytest

from bayescale.core.errors import DataError
from bayescale.sweep.data import (
    batch_in_tokens,
    from_frame,
    near_optimal_centres,
    read_steplaw_csv,
    read_sweep,
)


def grid(n_lr=6, n_bs=3, cells=((1e8, 1e9), (2e8, 4e9)), seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for N, D in cells:
        for lr in 2.0 ** np.arange(-12, -12 + n_lr):
            for bs in 2.0 ** np.arange(17, 17 + n_bs):
                loss = 2.5 + 0.03 * (np.log2(lr) + 9) ** 2 + 0.02 * (np.log2(bs) - 18) ** 2 + rng.normal(0, 1e-3)
                rows.append({"N": N, "D": D, "lr": lr, "batch_tokens": bs, "loss": loss})
    return pd.DataFrame(rows)


def write(tmp_path, frame, name="sweep.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_canonical_table_and_divergence_counts():
    frame = grid()
    frame.loc[3, "loss"] = np.nan
    frame.loc[5, "loss"] = 9.0
    frame.loc[7, "loss"] = np.inf
    sweep = from_frame(frame)
    assert list(sweep.table.columns[:5]) == ["N", "D", "lr", "batch_tokens", "loss"]
    assert len(sweep.table) == len(frame), "diverged runs must be kept"
    assert sweep.rule_counts["diverged_nonfinite"] == 2
    assert sweep.rule_counts["diverged_above_1.5x_cell_best"] == 1
    assert sweep.table["diverged"].sum() == 3
    assert sweep.cells["n_diverged"].sum() == 3


def test_steplaw_reader_converts_sequences_to_tokens(tmp_path):
    frame = grid().rename(columns={"batch_tokens": "bs"})
    frame["bs"] = frame["bs"] / 2048
    frame["smooth loss"] = frame["loss"] - 0.01
    frame["exp_name"] = [f"r{i}" for i in range(len(frame))]
    frame["h"] = 1024  # extra columns are ignored
    sweep = read_sweep(write(tmp_path, frame))
    assert np.allclose(sweep.table["batch_tokens"], frame["bs"] * 2048)
    assert np.allclose(sweep.table["target"], frame["smooth loss"])
    assert sweep.table["run"].iloc[0] == "r0"


@pytest.mark.parametrize("column", ["N", "D", "lr", "loss", "batch_tokens"])
def test_missing_column_is_named(tmp_path, column):
    path = write(tmp_path, grid().drop(columns=column))
    with pytest.raises(DataError, match="missing"):
        read_sweep(path)


@pytest.mark.parametrize("column", ["N", "D"])
@pytest.mark.parametrize("value", [0.0, -1e9])
def test_nonpositive_size_names_row(tmp_path, column, value):
    frame = grid()
    frame.loc[4, column] = value
    with pytest.raises(DataError, match=rf"row 6.*'{column}'"):
        read_sweep(write(tmp_path, frame))


@pytest.mark.parametrize("bad", [0.5, -64, 0.0])
def test_batch_that_is_no_count(tmp_path, bad):
    frame = grid()
    frame.loc[2, "batch_tokens"] = bad
    with pytest.raises(DataError, match="cannot be a count of tokens or of sequences"):
        read_sweep(write(tmp_path, frame))


def test_batch_units():
    where = lambda mask: "here"
    assert np.allclose(batch_in_tokens([16, 512], "sequences", 2048, where), [16 * 2048, 512 * 2048])
    assert np.allclose(batch_in_tokens([16, 512], "auto", 2048, where), [16 * 2048, 512 * 2048])
    assert np.allclose(batch_in_tokens([2**17, 2**21], "auto", 2048, where), [2**17, 2**21])
    with pytest.raises(DataError, match="less than one sequence"):
        batch_in_tokens([32, 2**20], "tokens", 2048, where)
    with pytest.raises(DataError, match="too large to be a count of sequences"):
        batch_in_tokens([2**20], "sequences", 2048, where)
    with pytest.raises(DataError, match="could be tokens or sequences"):
        batch_in_tokens([4096, 8192], "auto", 2048, where)


def test_cell_with_too_few_runs(tmp_path):
    frame = grid()
    small = frame[(frame["N"] == 2e8)].head(3)
    frame = pd.concat([frame[frame["N"] == 1e8], small])
    with pytest.raises(DataError, match="3 runs that did not diverge.*at least 5"):
        read_sweep(write(tmp_path, frame))


def test_all_runs_diverged_in_a_cell(tmp_path):
    frame = grid()
    frame.loc[frame["N"] == 2e8, "loss"] = np.nan
    with pytest.raises(DataError, match="every run of the cell N=2e\\+08"):
        read_sweep(write(tmp_path, frame))


def test_near_optimal_centre_is_geometric_mean():
    frame = grid(cells=((1e8, 1e9),))
    frame["loss"] = 3.0
    frame.loc[[0, 4], "loss"] = 2.0  # two best runs, equal loss
    centres = near_optimal_centres(from_frame(frame).table)
    expected = np.exp(np.log(frame.loc[[0, 4], "lr"]).mean())
    assert centres["lr"].iloc[0] == pytest.approx(expected)
    assert centres["n_near"].iloc[0] == 2


def test_real_steplaw_file(dataset):
    path = dataset("steplaw")
    sweep = read_steplaw_csv(path)
    assert len(sweep.cells) == 14 or len(sweep.cells) == 15
    assert sweep.table["batch_tokens"].min() == 16 * 2048
    assert 150 <= sweep.table["diverged"].sum() <= 200  # SCIENCE.md: ~180 runs diverged (loss > 4)
    assert (sweep.table.loc[sweep.table["diverged"], "target"] > 4).all()
