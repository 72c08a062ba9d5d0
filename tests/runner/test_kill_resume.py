"""The driver killed with SIGKILL loses at most the trials in flight; SIGINT stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from raybench.store import ResultStore

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "driver_script.py"
N = 8


def _start(results: Path, address: str, sleep: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(results), address, str(N), str(sleep)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_committed(store: ResultStore, at_least: int, proc: subprocess.Popen, timeout=240.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(store.committed_ids()) >= at_least:
            return
        if proc.poll() is not None:
            raise AssertionError(f"driver exited early: {proc.communicate()}")
        time.sleep(0.2)
    raise AssertionError("no trial committed in time")


def _address(ray_session) -> str:
    return ray_session.get_runtime_context().gcs_address


def test_sigkill_then_rerun_has_no_missing_and_no_duplicated_rows(ray_session, tmp_path):
    results = tmp_path / "results"
    store = ResultStore(str(results))
    proc = _start(results, _address(ray_session), sleep=1.0)
    _wait_committed(store, 2, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    first = set(store.committed_ids())
    assert 2 <= len(first) < N  # killed mid-run
    assert (results / ".lock").exists()  # a killed driver cannot release its lock

    rerun = _start(results, _address(ray_session), sleep=0.0)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert f"skipped={len(first)}" in out  # committed trials are not run again
    ids = [f"t{i:02d}" for i in range(N)]
    for table, per_trial in (("trials", 1), ("predictions", 2), ("splits", 6), ("epochs", 4)):
        frame = store.scan(table).collect()
        counts = frame.group_by("trial_id").len()
        assert sorted(counts["trial_id"].to_list()) == ids, table
        assert counts["len"].to_list() == [per_trial] * N, table
    assert store.scan("trials").collect()["status"].to_list() == ["completed"] * N
    leftovers = [p for p in results.rglob("*") if ".tmp" in p.parts and p.is_file()]
    assert leftovers == []
    assert not (results / ".lock").exists()
    # DuckDB reads what polars reads
    duckdb = pytest.importorskip("duckdb")
    n = duckdb.sql(f"select count(*) from read_parquet('{results}/predictions/*.parquet')")
    assert n.fetchall()[0][0] == store.scan("predictions").collect().height == 2 * N


def test_sigint_stops_cleanly_and_prints_the_resume_command(ray_session, tmp_path):
    results = tmp_path / "results"
    store = ResultStore(str(results))
    proc = _start(results, _address(ray_session), sleep=1.5)
    _wait_committed(store, 1, proc)
    os.kill(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Resume with: python driver_script.py" in err
    assert not (results / ".lock").exists()
    done = store.scan("trials").collect()
    assert done.height < N
    assert done.filter(pl.col("status") != "completed").height == 0  # none recorded as failed
