"""W&B: trial runs worth opening, one analysis run per suite, offline, never a secret; read back.

Offline runs are read back from their ``.wandb`` record log with W&B's own protobuf schema
(``wandb.proto.wandb_internal_pb2.Record``; the file is LevelDB's log format behind a 7-byte
W&B header), and ``wandb sync --dry-run`` must count them.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import fakes
import polars as pl
import pytest
from fakes import FAKE_WANDB_KEY

from raybench.runner import RunOptions, run_plan
from raybench.runner.tracking import (
    log_suite_run,
    run_name,
    safe_config,
    sync_command,
    trial_test_metrics,
)

_BLOCK = 32768  # LevelDB log block size
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def records(path: Path) -> Iterator[Any]:
    """The W&B records of one offline run file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, pending = 7, b""
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # block trailer
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            continue
        pending = chunk if kind in (_FULL, _FIRST) else pending + chunk
        if kind in (_FULL, _LAST):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record


def read_run(run_dir: Path, timeout: float = 60) -> dict[str, Any]:
    """Name, job type, tags, group, config, summary keys and artifacts of an offline run.

    W&B's service process may still be appending when ``run.finish()`` returns: wait for the
    run's last record (``exit``).
    """
    deadline = time.monotonic() + timeout
    while True:
        found = list(records(next(run_dir.glob("run-*.wandb"))))
        if any(r.WhichOneof("record_type") == "exit" for r in found):
            break
        assert time.monotonic() < deadline, f"{run_dir}: no exit record after {timeout} s"
        time.sleep(0.5)
    out: dict[str, Any] = {"config": {}, "summary": {}, "artifacts": {}}
    for r in found:
        kind = r.WhichOneof("record_type")
        if kind == "run":
            out |= {
                "name": r.run.display_name,
                "job_type": r.run.job_type,
                "tags": list(r.run.tags),
                "group": r.run.run_group,
            }
            out["config"] |= {u.key: json.loads(u.value_json) for u in r.run.config.update}
        elif kind == "config":
            out["config"] |= {u.key: json.loads(u.value_json) for u in r.config.update}
        elif kind == "summary":
            for u in r.summary.update:
                key = u.key or "/".join(u.nested_key)
                out["summary"][key] = json.loads(u.value_json)
        elif kind == "artifact":
            contents = r.artifact.manifest.contents
            out["artifacts"][r.artifact.name] = {
                "type": r.artifact.type,
                "paths": sorted(c.path for c in contents),
                "refs": sorted(c.ref for c in contents if c.ref),
            }
    return out


def test_safe_config_drops_secret_like_keys():
    spec = fakes.spec("x", wandb={"project": "p", "mode": "offline"})
    spec.config["plugins"] = {"net": "mod:fn", "api_key": "s3cr3t"}
    config = safe_config(spec)
    assert "wandb" not in config and config["trial_id"] == "x"
    assert config["plugins"] == {"net": "mod:fn"}


def test_run_names_are_readable():
    assert run_name(fakes.spec("x")) == "m/fold0/seed0"
    assert run_name(fakes.spec("x", stage="search")) == "m/fold0.0/seed0"


def test_test_metrics_per_perturbation_skip_undefined():
    preds = pl.DataFrame(
        {
            "split": ["test"] * 4 + ["val"],
            "perturbation": ["none", "none", "noise(0.1)", "noise(0.1)", "none"],
            "y_true": [1.0, 0.0, 1.0, 1.0, 1.0],
            "y_pred": [1.0, 0.0, 0.0, 1.0, 0.0],
            "score": [0.9, 0.2, 0.4, 0.6, 0.1],
        }
    )
    out = trial_test_metrics(preds.to_arrow(), ["accuracy", "auc"])
    # auc of the noisy rows is undefined (one class): left out, never logged as NaN
    assert out == {"test/none/accuracy": 1.0, "test/noise(0.1)/accuracy": 0.5, "test/none/auc": 1.0}


class _Run:
    """What TrialRun uses of a wandb run: ``log`` and a dict-like ``summary``."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict[str, float], int | None]] = []
        self.summary: dict[str, Any] = {}

    def log(self, data: dict[str, float], step: int | None = None) -> None:
        self.logged.append((data, step))
        self.summary |= data  # W&B's default: the summary holds the last logged values


def test_trial_summary_is_that_of_the_selected_epoch():
    from raybench.runner.tracking import TrialRun
    from raybench.store import table_from_rows

    spec = fakes.spec("x")
    spec.config["evaluation"]["metrics"] = ["accuracy"]
    tables = fakes.fake_trial(
        spec,
        fakes.cohort(),
        SimpleNamespace(on_epoch=None, attempt=1, node="n", node_id="i", device="cpu"),
    )
    row = tables["trials"].to_pylist()[0] | {"best_epoch": 0, "val_score": 0.7}
    tables["trials"] = table_from_rows("trials", [row])
    tracker = TrialRun(_Run(), spec)
    for epoch in range(3):
        tracker({"epoch": epoch, "train_loss": 1.0 / (1 + epoch), "flag": True})
    tracker.log_result(tables)
    assert [step for _, step in tracker.run.logged] == [0, 1, 2]
    summary = tracker.run.summary
    assert summary["train_loss"] == 1.0  # epoch 0, the selected one, not the last (1/3)
    assert summary["best_epoch"] == 0 and summary["val_score"] == 0.7
    assert summary["test/none/accuracy"] == 1.0 and "flag" not in summary
    # every outcome column of the trials row is summarised (what the contract gains reaches W&B);
    # identity is in the config, tracebacks and row counts are not summarised
    assert summary["status"] == "completed" and summary["device"] == "cpu"
    assert summary["config_hash"] == row["config_hash"]
    assert not {"traceback", "params", "model"} & set(summary)
    assert not [key for key in summary if key.startswith("rows_")]


@pytest.mark.slow
def test_offline_run_per_trial_without_the_key(ray_session, store, tmp_path):
    wandb = {"project": "raybench-test", "mode": "offline"}
    specs = [fakes.spec("w1", wandb=wandb), fakes.spec("w2", wandb=wandb), fakes.spec("off")]
    for spec in specs:
        spec.config["evaluation"]["metrics"] = ["accuracy"]
    wandb_dir = tmp_path / "results" / "wandb"
    summary = run_plan(
        fakes.plan(("refit", specs)),
        {"toy": fakes.cohort()},
        store,
        RunOptions(trial_fn=fakes.fake_trial, wandb_dir=wandb_dir),
    )
    assert summary.ok
    runs = sorted(p for p in (wandb_dir / "wandb").glob("offline-run-*") if p.is_dir())
    assert len(runs) == 2  # one per trial with tracking; none for the trial without
    seen = {}
    for run_dir in runs:
        run = read_run(run_dir)
        trial_id = run["config"]["trial_id"]
        seen[trial_id] = run
        assert run["name"] == "m/fold0/seed0" and run["group"] == "toy/refit"
        assert trial_id in run["tags"] and "m" in run["tags"]
        assert run["config"]["model"] == "m"  # the suite's model name, not only the arch
        s = run["summary"]
        # the trial's judged values (fakes: best_epoch 1, val_score 0.5, all predictions right)
        assert s["best_epoch"] == 1 and s["val_score"] == 0.5 and s["trial_id"] == trial_id
        assert s["test/none/accuracy"] == 1.0
    assert sorted(seen) == ["w1", "w2"]
    files = [p for p in wandb_dir.rglob("*") if p.is_file()]
    for path in files:
        assert FAKE_WANDB_KEY.encode() not in Path(path).read_bytes(), path


def test_suite_run_offline_tables_figures_artifacts(tmp_path, monkeypatch):
    from raybench_analysis import load, summarize
    from raybench_analysis.report import write_report
    from raybench_analysis.simulate import simulate_predictions, write_results_dir

    monkeypatch.setenv("WANDB_API_KEY", FAKE_WANDB_KEY)
    results = write_results_dir(
        simulate_predictions(n_sites=3, subjects_per_site=6, n_seeds=2, n_folds=2),
        tmp_path / "results",
    )
    summary = summarize(load(results), n_boot=50)
    report = write_report(results, summary=summary)
    wandb_dir = tmp_path / "results" / "wandb"
    settings = {"project": "raybench-test", "mode": "offline", "api_key": FAKE_WANDB_KEY}
    run_dir = log_suite_run(
        "simulated", settings, wandb_dir, summary, report=report, results_dir=str(results)
    )
    assert run_dir is not None and run_dir.parent == wandb_dir / "wandb"
    run = read_run(run_dir)
    assert run["job_type"] == "analysis" and run["name"] == "simulated/analysis"
    assert run["config"]["analysis"]["hierarchy"] == ["site", "subject_id"]
    # every summary table as a wandb.Table, the model estimates in the run summary
    for name in summary:
        assert run["summary"][f"tables/{name}/_type"] == "table-file", name
        assert run["summary"][f"tables/{name}/nrows"] == summary[name].height, name
    for row in summary["models"].iter_rows(named=True):
        assert run["summary"][f"{row['dataset']}/{row['model']}/auc"] == row["estimate"]
    # the report's figures as images, the report and the Parquet results as artifacts
    pngs = {p.stem for p in report.figures if p.suffix == ".png"}
    assert {k.split("/")[1] for k in run["summary"] if k.startswith("figures/")} == pngs
    assert len(list((run_dir / "files" / "media" / "images").rglob("*.png"))) == len(pngs)
    html = run["artifacts"]["simulated-report"]
    assert html["type"] == "report" and "index.html" in html["paths"]
    parquet = run["artifacts"]["simulated-results"]
    n_trials = len(list((results / "trials").glob("*.parquet")))
    assert sum(p.startswith("trials/") for p in parquet["paths"]) == n_trials
    assert all(r.startswith("file://") for r in parquet["refs"])  # referenced in place
    for path in (p for p in wandb_dir.rglob("*") if p.is_file()):
        assert FAKE_WANDB_KEY.encode() not in path.read_bytes(), path
    # W&B's own sync counts the suite run
    command = sync_command(wandb_dir)
    assert command.startswith("wandb sync ") and command.endswith("/offline-run-*")
    done = subprocess.run(
        [str(Path(sys.executable).parent / "wandb"), "sync", "--dry-run", str(run_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "Would sync 1 run(s)" in done.stdout + done.stderr, done.stdout + done.stderr


def test_suite_run_off_when_disabled(tmp_path):
    assert log_suite_run("s", {"mode": "disabled"}, tmp_path, summary=None) is None
    assert not (tmp_path / "wandb").exists()
