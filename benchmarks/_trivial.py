"""Shared pieces of the runner benchmarks: trivial and CPU-bound trials as raybench plans."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow as pa

from raybench.data.cohort import Cohort
from raybench.plan.spec import Plan, TrialSpec


def cohort() -> Cohort:
    table = pl.DataFrame(
        {
            c: [f"{c}{i}" for i in range(4)]
            for c in ("sample_id", "subject_id", "session_id", "scanner", "site", "image")
        }
    )
    return Cohort(name="bench", table=table, fingerprint="0" * 64)


def spec(trial_id: str, work: float = 0.0, calibration: float = 0.0) -> TrialSpec:
    config = {
        "suite": "bench",
        "task": {"type": "classification"},
        "work": work,
        "calibration": calibration,
        "resources": {"cpu": 1, "gpu": 0, "max_retries": 0, "custom": {}},
        "wandb": None,
    }
    return TrialSpec(
        trial_id=trial_id,
        stage="refit",
        dataset="bench",
        model="m",
        protocol="outer",
        outer_fold=0,
        inner_fold=None,
        seed=0,
        params={},
        candidates=(),
        config=config,
        train_ids=("sample_id0",),
        val_ids=("sample_id1",),
        test_ids=("sample_id2",),
    )


def plan(n: int, work: float = 0.0, calibration: float = 0.0) -> Plan:
    return Plan(
        suite_name="bench",
        stages=(("refit", tuple(spec(f"t{i:04d}", work, calibration) for i in range(n))),),
    )


def burn(seconds_of_work: float, calibration: float) -> float:
    """Single-threaded pure-Python work: ``seconds_of_work`` at the calibrated speed."""
    n = int(seconds_of_work * calibration)
    acc = 0
    for i in range(n):
        acc += i * i % 7
    return float(acc)


def calibrate(n: int = 2_000_000) -> float:
    """Loop iterations per second of :func:`burn` in this process."""
    t = time.perf_counter()
    burn(n, 1.0)
    return n / (time.perf_counter() - t)


def trial(spec: TrialSpec, cohort: Cohort, ctx: Any) -> dict[str, pa.Table]:
    """A raybench trial doing ``config["work"]`` seconds of CPU work, committing a trials row."""
    from raybench.store import table_from_rows

    started = datetime.now(UTC)
    if spec.config["work"]:
        burn(spec.config["work"], spec.config["calibration"])
    now = datetime.now(UTC)
    row = {
        "trial_id": spec.trial_id,
        "suite": "bench",
        "stage": "refit",
        "status": "completed",
        "attempts": ctx.attempt,
        "started_at": started,
        "finished_at": now,
        "node": ctx.node,
    }
    return {"trials": table_from_rows("trials", [row])}


@dataclass
class TrialClock:
    """A ``run_plan`` ``on_event`` callback stamping each trial's start and end (driver clock)."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)

    def __call__(self, event: dict) -> None:
        if event["type"] == "trial_start":
            self.starts.append(time.perf_counter())
        elif event["type"] == "trial_done":
            self.ends.append(time.perf_counter())
