"""Chaos: 40 short trials while trainable workers are killed four times and the driver once.

The run's own retries absorb the killed workers (their trials are recorded with ``attempts`` > 1);
the killed driver loses only the trials in flight; the rerun resumes. In the end every trial is
committed exactly once, all completed, and the predictions equal an undisturbed run's.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import fakes
import polars as pl
import pytest

from raybench.runner import RunOptions, run_plan
from raybench.store import ResultStore

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent / "driver_script.py"
N = 40
SLEEP = 1.0
WORKER_KILLS = 4
ROWS_PER_TRIAL = {"trials": 1, "predictions": 2, "splits": 6, "epochs": 4}


def _driver(results: Path, address: str, pid_dir: Path) -> subprocess.Popen:
    args = [str(results), address, str(N), str(SLEEP), str(pid_dir), "3"]
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _is_ray_worker(pid: int) -> bool:
    try:
        return b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill_a_running_worker(pid_dir: Path, store: ResultStore, rng: random.Random) -> str | None:
    """SIGKILL a worker process running an uncommitted trial; return that trial's id."""
    newest: dict[int, tuple[int, str]] = {}
    for path in pid_dir.iterdir():
        ns, pid, trial_id = path.name.split(".", 2)
        if int(ns) > newest.get(int(pid), (0, ""))[0]:
            newest[int(pid)] = (int(ns), trial_id)
    committed = set(store.committed_ids())
    running = sorted(
        (pid, trial_id)
        for pid, (_, trial_id) in newest.items()
        if trial_id not in committed and _is_ray_worker(pid)
    )
    if not running:
        return None
    pid, trial_id = rng.choice(running)  # a worker of this test's Ray (it dropped the file)
    os.kill(pid, signal.SIGKILL)
    return trial_id


def _predictions(store: ResultStore) -> pl.DataFrame:
    return store.scan("predictions").collect().sort("trial_id", "sample_id", "perturbation")


def test_killed_workers_and_driver_lose_nothing(ray_session, tmp_path):
    rng = random.Random(12)
    address = ray_session.get_runtime_context().gcs_address
    results, pid_dir = tmp_path / "chaos", tmp_path / "pids"
    pid_dir.mkdir()
    store = ResultStore(str(results))
    driver = _driver(results, address, pid_dir)
    killed: list[str] = []
    deadline = time.monotonic() + 300
    while len(killed) < WORKER_KILLS or len(store.committed_ids()) < 4 * WORKER_KILLS + 2:
        assert driver.poll() is None, f"driver ended early: {driver.communicate()}"
        assert time.monotonic() < deadline, "the chaos run made no progress"
        due = len(killed) < WORKER_KILLS and len(store.committed_ids()) >= 4 * len(killed) + 1
        victim = _kill_a_running_worker(pid_dir, store, rng) if due else None
        if victim is not None:
            killed.append(victim)
        time.sleep(0.2)
    driver.kill()  # the driver, once, mid-run
    driver.communicate(timeout=60)
    first = set(store.committed_ids())
    assert len(first) < N, "the run ended before the driver was killed: make the trials longer"

    resume = _driver(results, address, pid_dir)
    out, err = resume.communicate(timeout=300)
    assert resume.returncode == 0, err
    assert f"skipped={len(first)}" in out

    ids = sorted(f"t{i:02d}" for i in range(N))
    for table, per_trial in ROWS_PER_TRIAL.items():
        counts = store.scan(table).collect().group_by("trial_id").len().sort("trial_id")
        assert counts["trial_id"].to_list() == ids, table
        assert counts["len"].to_list() == [per_trial] * N, table
    trials = store.scan("trials").collect()
    assert trials["status"].to_list() == ["completed"] * N
    attempts = dict(zip(trials["trial_id"], trials["attempts"], strict=True))
    assert min(attempts.values()) >= 1
    assert any(attempts[trial_id] >= 2 for trial_id in killed), (killed, attempts)
    assert not list(results.glob("*/.tmp/*")) and not (results / ".scratch").exists()

    calm = ResultStore(str(tmp_path / "calm"))
    specs = [fakes.spec(f"t{i:02d}") for i in range(N)]
    summary = run_plan(
        fakes.plan(("refit", specs)),
        {"toy": fakes.cohort()},
        calm,
        RunOptions(trial_fn=fakes.fake_trial),
    )
    assert summary.ok
    assert _predictions(store).equals(_predictions(calm))
