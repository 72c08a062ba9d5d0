"""``raybench run`` end to end: real suite, synthetic NIfTI cohort, MONAI training, Ray, Parquet."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from raybench.cli.main import app

pytestmark = pytest.mark.slow

SUITE = """
name: tiny
datasets:
  - name: synth
    source: synthetic
    params: {sites: 2, subjects: 12, shape: [16, 16, 16], effect: 1.0, seed: 0}
task: {type: classification, label: diagnosis, positive: AD}
models:
  - {name: cnn, arch: classifier, params: {channels: [[4, 8]], strides: [[2, 2]]}}
training: {epochs: 1, batch_size: 4, lr: [1.0e-3, 1.0e-2]}
validation:
  outer: {strategy: group_kfold, k: 2, stratify: [label]}
  inner: {strategy: group_holdout, fraction: 0.25}
seeds: [0]
evaluation: {metrics: [auc], selection_metric: auc}
"""


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("suite") / "tiny.yaml"
    path.write_text(SUITE)
    return path


def _run(suite: Path, results: Path, data_root: Path, *extra: str):
    args = ["run", str(suite), "--results", str(results), "--data-root", str(data_root), "--json"]
    return CliRunner().invoke(app, [*args, *extra])


def _predictions(results: Path) -> pl.DataFrame:
    frame = pl.read_parquet(str(results / "predictions" / "*.parquet"))
    return frame.sort("trial_id", "sample_id", "perturbation")


def test_run_status_resume_and_determinism(ray_session, suite_file, tmp_path):
    data_root, first, second = tmp_path / "data", tmp_path / "r1", tmp_path / "r2"

    dry = _run(suite_file, first, data_root, "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout.strip().splitlines()[-1])["stages"] == [
        {"stage": "search", "trials": 4, "to_run": 4},
        {"stage": "refit", "trials": 2, "to_run": 2},
    ]
    assert not first.exists()

    res = _run(suite_file, first, data_root)
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    assert (summary["completed"], summary["failed"], summary["skipped"]) == (6, 0, 0)
    assert (first / "suite.yaml").read_text() == SUITE
    plan = json.loads((first / "plan.json").read_text())
    assert [s["stage"] for s in plan["stages"]] == ["search", "refit"]

    trials = pl.read_parquet(str(first / "trials" / "*.parquet"))
    assert trials["status"].to_list() == ["completed"] * 6
    refits = trials.filter(pl.col("stage") == "refit")
    assert all(json.loads(p)["lr"] in (1e-3, 1e-2) for p in refits["params"])  # point chosen
    assert set(trials["device"]) == {"cpu"} and trials["ray_version"].null_count() == 0
    duckdb = pytest.importorskip("duckdb")
    for table in ("trials", "predictions", "epochs", "splits"):
        n = duckdb.sql(f"select count(*) from read_parquet('{first}/{table}/*.parquet')")
        assert n.fetchall()[0][0] == pl.read_parquet(str(first / table / "*.parquet")).height > 0

    status = CliRunner().invoke(app, ["status", str(first), "--json"])
    assert status.exit_code == 0, status.output
    st = json.loads(status.stdout)
    assert (st["planned"], st["completed"], st["pending"], st["leakage"]) == (6, 6, [], [])

    again = _run(suite_file, first, data_root)  # resume: nothing left to run
    assert json.loads(again.stdout.strip().splitlines()[-1])["skipped"] == 6

    other = _run(suite_file, second, data_root)  # determinism: same predictions, bit for bit
    assert other.exit_code == 0, other.output
    a, b = _predictions(first), _predictions(second)
    assert a.height > 0 and a.equals(b)


def test_status_reports_leakage_and_bad_directories(tmp_path):
    from raybench.store import ResultStore, table_from_rows

    store = ResultStore(str(tmp_path / "leaky"))
    store.commit(
        "t1",
        {
            "trials": table_from_rows("trials", [{"trial_id": "t1", "status": "completed"}]),
            "splits": table_from_rows(
                "splits",
                [
                    {"trial_id": "t1", "sample_id": "a1", "subject_id": "sub-a", "role": "train"},
                    {"trial_id": "t1", "sample_id": "a2", "subject_id": "sub-a", "role": "test"},
                ],
            ),
        },
    )
    res = CliRunner().invoke(app, ["status", str(tmp_path / "leaky")])
    assert res.exit_code == 2
    assert "subject sub-a in trial t1" in res.output

    res = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert res.exit_code == 2 and "not a raybench results directory" in res.output
