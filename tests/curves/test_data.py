import json

import numpy as np
import pandas as pd
import pytest

from bayescale.core.errors import DataError
from bayescale.curves.data import clean, read_curves, read_tracker_dir


def write(path, text):
    path.write_text(text)
    return path


def test_per_run_csv_directory(tmp_path):
    write(tmp_path / "a.csv", "step,lr,loss\n10,1e-3,3.0\n20,1e-3,2.9\n")
    write(tmp_path / "b.csv", "step,lr,loss\n10,1e-3,3.1\n20,5e-4,2.8\n")
    curves = clean(read_curves(tmp_path))
    assert curves.runs == ["a", "b"]
    assert curves.table["observed"].all()


def test_tidy_csv_with_schedule_only_rows(tmp_path):
    path = write(tmp_path / "t.csv", "run,step,lr,loss\nx,1,1e-3,3.0\nx,2,1e-3,\nx,3,1e-3,2.8\n")
    curves = clean(read_curves(path))
    assert curves.table["observed"].tolist() == [True, False, True]


def test_missing_column_names_file_and_columns(tmp_path):
    path = write(tmp_path / "bad.csv", "run,step,loss\nx,1,3.0\n")
    with pytest.raises(DataError, match=r"bad.csv: missing column\(s\) \['lr'\]"):
        read_curves(path)


@pytest.mark.parametrize("value", ["nan", "inf", "-1"])
def test_non_finite_loss_names_file_column_and_row(tmp_path, value):
    path = write(tmp_path / "c.csv", f"run,step,lr,loss\nx,1,1e-3,3.0\nx,2,1e-3,{value}\n")
    with pytest.raises(DataError, match=r"c.csv, row 3: column 'loss'"):
        clean(read_curves(path))
    kept = clean(read_curves(path), nonfinite="drop")
    assert len(kept.table) == 1 and "dropped 1 rows" in kept.notes[0]


def test_text_in_a_number_column(tmp_path):
    path = write(tmp_path / "c.csv", "run,step,lr,loss\nx,1,fast,3.0\n")
    with pytest.raises(DataError, match=r"row 2: column 'lr' holds a non-number"):
        read_curves(path)


def test_negative_lr(tmp_path):
    path = write(tmp_path / "c.csv", "run,step,lr,loss\nx,1,1e-3,3.0\nx,2,-1e-3,2.9\n")
    with pytest.raises(DataError, match=r"row 3: column 'lr' is negative"):
        clean(read_curves(path))


def test_unsorted_and_repeated_steps_are_repaired_and_reported(tmp_path):
    path = write(tmp_path / "c.csv", "run,step,lr,loss\nx,3,1,2.7\nx,1,1,3.0\nx,2,1,2.95\nx,2,1,2.9\n")
    curves = clean(read_curves(path))
    assert curves.table["step"].tolist() == [1, 2, 3]
    assert curves.table["loss"].tolist() == [3.0, 2.9, 2.7]  # the later (resumed) value of step 2
    assert any("sorted" in n for n in curves.notes) and any("repeated" in n for n in curves.notes)


def test_parametric_schedule_file(tmp_path):
    path = write(
        tmp_path / "p.csv",
        "step,schedule,loss,max_lr,min_lr,total_steps,warmup_steps\n"
        "100,cosine,3.0,2e-4,0,1000,10\n1000,cosine,2.8,2e-4,0,1000,10\n",
    )
    curves = clean(read_curves(path))
    schedule = curves.schedule("cosine")
    assert schedule.total_steps == 1000 and schedule.warmup_steps == 10
    assert curves.table["lr"].iloc[-1] == pytest.approx(0.0, abs=1e-12)


def test_directory_of_parametric_and_per_run_files(tmp_path):
    write(tmp_path / "p.csv", "step,schedule,loss,max_lr,min_lr,total_steps,warmup_steps\n"
          "100,cosine,3.0,2e-4,0,1000,10\n1000,cosine,2.8,2e-4,0,1000,10\n")
    write(tmp_path / "a.csv", "step,lr,loss\n10,1e-3,3.0\n20,1e-3,2.9\n")
    curves = clean(read_curves(tmp_path))
    assert sorted(curves.runs) == ["a", "cosine"]
    assert curves.schedule("cosine").total_steps == 1000


def test_directory_with_one_run_in_two_files_is_refused(tmp_path):
    write(tmp_path / "cosine.csv", "step,lr,loss\n10,1e-3,3.0\n20,1e-3,2.9\n")
    write(tmp_path / "p.csv", "step,schedule,loss,max_lr,min_lr,total_steps,warmup_steps\n"
          "100,cosine,3.0,2e-4,0,1000,10\n1000,cosine,2.8,2e-4,0,1000,10\n")
    with pytest.raises(DataError, match=r"p.csv: run 'cosine' is also in .*cosine.csv"):
        read_curves(tmp_path)


def export(name, train_iters, lrs, val_iters, losses, resume_from=None):
    return {
        "name": name,
        "config": {"lr": max(lrs), "resume_from": resume_from},
        "summary": {},
        "history": {
            "train": {"iter": train_iters, "train_lr": lrs, "train_loss": [3.0] * len(lrs)},
            "val": {"iter": val_iters, "val_loss": losses},
        },
    }


def test_tracker_cooldown_is_stitched_onto_its_parent(tmp_path):
    parent = export("stable", [50, 100, 150, 200], [1.0] * 4, [100, 200], [3.0, 2.9])
    child = export("cool", [150, 200, 250], [0.5, 0.25, 0.0], [100, 200, 250], [2.95, 2.8, 2.7],
                   resume_from="/x/stable/ckpts/100")
    (tmp_path / "stable.json").write_text(json.dumps(parent))
    (tmp_path / "cool.json").write_text(json.dumps(child))
    curves = clean(read_tracker_dir(tmp_path))
    rows = curves.run_table("cool")
    observed = rows[rows["observed"]]
    assert observed["step"].tolist() == [100, 200, 250]
    assert observed["loss"].tolist() == [2.95, 2.8, 2.7]  # the child's repeat of step 100 wins
    assert rows.set_index("step")["lr"][50] == 1.0  # parent's LR before the resume point
    assert any("prepended parent run 'stable'" in n for n in curves.notes)


def test_tracker_missing_parent(tmp_path):
    child = export("cool", [150], [0.5], [150], [2.9], resume_from="/x/gone/ckpts/100")
    (tmp_path / "cool.json").write_text(json.dumps(child))
    with pytest.raises(DataError, match=r"cool.json: config.resume_from names parent run 'gone'"):
        read_tracker_dir(tmp_path)


def test_real_multipower_files(dataset):
    curves = clean(read_curves(dataset("multipower-25m")))
    assert len(curves.runs) == 9
    schedule = curves.schedule("wsdcon_9", warmup_steps=2160)
    assert schedule.lr[7999] == pytest.approx(3e-4) and schedule.lr[8000] == pytest.approx(9e-5)
    assert schedule.lr[1080] == pytest.approx(1.5e-4)


def test_real_tracker_exports(dataset):
    curves = clean(read_tracker_dir(dataset("lr-scheduling")))
    runs = [r for r in curves.runs if r.startswith("ann124-0.2") and "iter50000" in r and "lr0.001_" in r]
    assert runs
    rows = curves.run_table(runs[0])
    observed = rows[rows["observed"]]
    assert observed["step"].min() == 0 and observed["step"].max() >= 49800
    assert np.all(np.diff(observed["step"]) > 0)


def test_real_tissue_file(dataset):
    curves = clean(read_curves(dataset("tissue-fig2")))
    assert sorted(curves.runs) == ["constant", "cosine"]
    assert clean(read_curves(dataset("tissue-fig2").parent)).table.equals(curves.table)
    assert isinstance(curves.table, pd.DataFrame)
