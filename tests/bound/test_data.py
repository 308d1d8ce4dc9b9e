"""Run tables for the bound laws: tracker exports and tidy tables, and bad input."""

import json

import numpy as np
import pandas as pd
import pytest

from bayescale.bound.data import read_runs, schedule_for, schedule_label
from bayescale.core.errors import DataError
from bayescale.core.tracker import load_exports


def export(name, lr=1e-3, scheduler="wsd", fraction=0.2, iterations=1000, resume_from=None, loss=3.0):
    config = {"lr": lr, "scheduler": scheduler, "wsd_fract_decay": fraction, "decay_type": "linear",
              "iterations": iterations, "warmup_steps": 10, "resume_from": resume_from, "n_layer": 2, "n_embd": 64,
              "dataset": "toy"}
    if lr is None:
        del config["lr"]
    steps = list(range(0, iterations + 1, 100))
    return {"name": name, "config": config, "summary": {"final-val/loss": loss, "parameters": 1e6},
            "history": {"train": {"iter": steps, "train_lr": [lr or 0.0] * len(steps), "train_loss": [4.0] * len(steps)},
                        "val": {"iter": steps, "val_loss": [4.0] * len(steps)}}}


def write(folder, *exports):
    folder.mkdir(exist_ok=True)
    for e in exports:
        (folder / f"{e['name']}.json").write_text(json.dumps(e))
    return folder


def test_exports_become_run_rows(tmp_path):
    parent = export("stable", fraction=0.0, iterations=2000, loss=3.3)
    child = export("ann", resume_from="/x/stable/ckpts/800", loss=3.1)
    runs, _ = read_runs(write(tmp_path / "d", parent, child))
    row = runs.set_index("run").loc["ann"]
    assert (row["schedule"], row["cooldown"], row["lr"], row["total_steps"], row["loss"]) == ("wsd", 0.2, 1e-3, 1000, 3.1)
    assert row["parent"] == "stable"
    assert runs.set_index("run").loc["stable", "schedule"] == "constant"
    assert schedule_label(row) == "wsd-linear-0.2"
    assert schedule_for(row).total_steps == 1000


def test_exports_in_a_subfolder_are_found_from_the_dataset_root(tmp_path):
    (tmp_path / "root").mkdir()
    write(tmp_path / "root" / "data", export("a"), export("b", lr=2e-3))
    runs, _ = read_runs(tmp_path / "root")
    assert sorted(runs["run"]) == ["a", "b"]
    with pytest.raises(DataError, match="no .json tracker exports"):
        read_runs(write(tmp_path / "empty"))


def test_batch_size_is_sequences_per_optimiser_step(tmp_path):
    plain = export("plain")
    accumulated = export("accumulated", lr=2e-3)
    accumulated["config"].update(batch_size=50, acc_steps=4, world_size=2)
    runs, _ = read_runs(write(tmp_path / "d", plain, accumulated))
    batch = runs.set_index("run")["batch_size"]
    assert batch["accumulated"] == 400
    assert np.isnan(batch["plain"])


def test_run_without_base_lr_is_refused(tmp_path):
    folder = write(tmp_path / "d", export("nolr", lr=None))
    with pytest.raises(DataError, match=r"nolr\.json: config has no positive base LR"):
        read_runs(folder)


def test_run_whose_parent_is_missing_is_refused(tmp_path):
    folder = write(tmp_path / "d", export("orphan", resume_from="/x/gone-parent/ckpts/800"))
    with pytest.raises(DataError, match=r"orphan\.json: config.resume_from names parent run 'gone-parent'"):
        read_runs(folder)


def test_tidy_table_without_base_lr_is_refused(tmp_path):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"run": ["a", "b"], "lr": [1e-3, np.nan], "schedule": ["cosine", "cosine"],
                  "total_steps": [1000, 1000], "loss": [3.0, 3.1]}).to_csv(path, index=False)
    with pytest.raises(DataError, match=r"row 1 \(run 'b'\): no positive base LR"):
        read_runs(path)


def test_tidy_table_wsd_needs_a_cooldown(tmp_path):
    path = tmp_path / "runs.csv"
    pd.DataFrame({"run": ["a"], "lr": [1e-3], "schedule": ["wsd"], "total_steps": [1000], "loss": [3.0]}).to_csv(path, index=False)
    with pytest.raises(DataError, match="cooldown fraction"):
        read_runs(path)


def test_diverged_runs_are_dropped_with_a_note(tmp_path):
    folder = write(tmp_path / "d", export("a", loss=3.0), export("b", lr=2e-3, loss=7.5))
    runs, notes = read_runs(folder)
    assert list(runs["run"]) == ["a"]
    assert any("'b'" in n and "diverged" in n for n in notes)


def test_real_124m_grid_schedules_match_the_logged_lr(dataset):
    path = dataset("lr-scheduling")
    runs, _ = read_runs(path)
    exports = load_exports(path)
    name = "ann124-0.2_slimpajama_llama_norm_nlayers12_nhead12_lr0.001_sched_wsd_warmup300_decay_linear_0.2_iter50000_bs50x2_ws2_seed0_data_seed1337"
    row = runs.set_index("run").loc[name]
    train = exports[name]["history"]["train"]
    steps = np.asarray(train["iter"])
    logged = np.asarray(train["train_lr"], float) / row["lr"]
    built = schedule_for(row).lr[steps]
    assert np.max(np.abs(built - logged)) < 2e-3
    assert row["loss"] == pytest.approx(2.965991, abs=1e-5)
