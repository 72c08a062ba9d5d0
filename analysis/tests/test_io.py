"""load() on real Parquet results directories (complete, partial, in progress); check_leakage()."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from raybench_analysis import check_leakage, load
from raybench_analysis._frames import AnalysisError
from raybench_analysis.io import SCHEMAS


def _write(root: Path, table: str, trial_id: str, frame: pl.DataFrame, tmp: bool = False) -> None:
    folder = root / table / (".tmp" if tmp else "")
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / f"{trial_id}.parquet")


def _trial(trial_id: str, subjects: list[str], roles: list[str]) -> dict[str, pl.DataFrame]:
    n = len(subjects)
    return {
        "trials": pl.DataFrame({"trial_id": [trial_id], "model": ["m"], "status": ["completed"]}),
        "predictions": pl.DataFrame(
            {
                "trial_id": [trial_id] * n,
                "sample_id": [f"{s}_1" for s in subjects],
                "subject_id": subjects,
                "y_true": [1.0] * n,
                "score": [0.5] * n,
            }
        ),
        "epochs": pl.DataFrame({"trial_id": [trial_id], "epoch": [0], "loss": [0.7]}),
        "splits": pl.DataFrame(
            {
                "trial_id": [trial_id] * n,
                "sample_id": [f"{s}_1" for s in subjects],
                "subject_id": subjects,
                "role": roles,
            }
        ),
    }


@pytest.fixture()
def results_dir(tmp_path: Path) -> Path:
    for tid in ("t1", "t2"):
        for table, frame in _trial(tid, ["a", "b", "c"], ["train", "val", "test"]).items():
            _write(tmp_path, table, tid, frame)
    # t3 crashed before committing: predictions written, no trials file
    _write(tmp_path, "predictions", "t3", _trial("t3", ["x"], ["test"])["predictions"])
    # t4 is half-written under .tmp
    for table, frame in _trial("t4", ["y"], ["test"]).items():
        _write(tmp_path, table, "t4", frame, tmp=True)
    return tmp_path


def test_only_committed_trials(results_dir):
    res = load(results_dir)
    assert res.committed == ("t1", "t2")
    assert isinstance(res.predictions, pl.LazyFrame)
    preds = res.predictions.collect()
    assert sorted(preds["trial_id"].unique().to_list()) == ["t1", "t2"]
    assert preds.height == 6
    assert res.splits.collect().height == 6
    assert res.epochs.collect().height == 2
    assert any("predictions: 1 file(s) of uncommitted trials skipped" in m for m in res.missing)
    assert "2 committed trials" in repr(res)


def test_partial_directory_gives_empty_frames_with_schema(tmp_path):
    _write(tmp_path, "trials", "t1", _trial("t1", ["a"], ["test"])["trials"])
    res = load(tmp_path)
    assert res.committed == ("t1",)
    epochs = res.epochs.collect()
    assert epochs.height == 0
    assert dict(epochs.schema) == SCHEMAS["epochs"]
    assert res.predictions.collect_schema()["probs"] == pl.List(pl.Float64)
    assert any(m.startswith("predictions: no Parquet file") for m in res.missing)
    empty = load(tmp_path / "trials" / "..")  # same dir through another path
    assert empty.committed == ("t1",)


def test_lazy_aggregation_pushes_down(results_dir):
    res = load(results_dir)
    plan = res.predictions.group_by("trial_id").agg(pl.col("score").mean()).explain()
    assert "Parquet" in plan or "PARQUET" in plan.upper()
    out = res.predictions.group_by("trial_id").agg(pl.len()).sort("trial_id").collect()
    assert out["len"].to_list() == [3, 3]


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(AnalysisError, match="does not exist"):
        load(tmp_path / "nope")


def test_check_leakage(results_dir):
    res = load(results_dir)
    assert check_leakage(res).height == 0
    leaky = pl.DataFrame(
        {
            "trial_id": ["t1", "t1", "t1", "t2"],
            "sample_id": ["a_1", "a_2", "b_1", "a_1"],
            "subject_id": ["a", "a", "b", "a"],
            "role": ["train", "test", "test", "train"],
        }
    )
    out = check_leakage(leaky)
    assert out.columns == ["trial_id", "subject_id", "roles", "n_samples"]
    assert out.rows() == [("t1", "a", "test,train", 2)]
    assert check_leakage(leaky.to_pandas()).rows() == out.rows()
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['role'\]"):
        check_leakage(leaky.drop("role"))
