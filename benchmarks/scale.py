"""Benchmark: the runner and the readers at 1,000 and 10,000 trials (100,000 with ``--huge``).

For each size ``n``, trivial trials (``benchmarks/_trivial.py``: no work, one ``trials`` row
committed per trial) run on one local Ray with 2 CPUs as a plan of two stages (``n/2`` each, the
second after the first, as search then refit), through ``run_plan`` with its default executor
(long-lived Ray actors, :mod:`raybench.runner.pool`). Measured:

- ``per_trial_ms``: steady-state wall time per trial, ``(last trial end - first trial start) /
  trials`` within each stage (driver clock, from ``run_plan``'s events), the worse stage;
- ``startup_s``: from a stage's start to its first trial's start, first and second stage;
- ``driver_rss_mb``: the plan's own memory (the input, built first), the driver's before and after
  the run, and ``rss_kb_per_trial``, the driver's growth per trial during the run;
- ``scan_s``: reading the results as ``raybench status`` does (inventory, failed trials'
  errors, leakage audit) and as ``raybench_analysis.load`` does (plus collecting the ``trials``
  table), before and after ``raybench compact``, and the compaction's own time.

At 1,000 trials the same trials also run through plain Ray Tune with its defaults
(``tune.Tuner(fn, param_space=grid)``: one new actor per trial) for ``ratio_to_plain_tune``
(skip with ``--no-plain``), and through raybench's former executor (one Tune run per stage,
``RunOptions(executor="tune")``) with ``--tune-executor``. Prints one JSON object.
Run: ``.venv/bin/python -m benchmarks.scale [--sizes 1000 10000] [--huge] [--no-plain]
[--no-scans]`` (``--no-scans``: the runner only, without reading and compacting the results).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _trivial
import ray
import ray.cloudpickle
from ray_overhead import _plain_tune

from raybench.plan.spec import Plan
from raybench.runner import RunOptions, run_plan
from raybench.store import ResultStore


def rss_mb() -> float:
    """The resident memory of this process now (Linux ``/proc``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class StageClock:
    """``on_event`` callback: per stage, its start and its trials' start and end times."""

    def __init__(self) -> None:
        self.stage_start: dict[str, float] = {}
        self.starts: dict[str, list[float]] = {}
        self.ends: dict[str, list[float]] = {}

    def __call__(self, event: dict) -> None:
        now, stage = time.perf_counter(), event.get("stage")
        if event["type"] == "stage_start":
            self.stage_start[stage] = now
            self.starts[stage], self.ends[stage] = [], []
        elif event["type"] == "trial_start":
            self.starts[stage].append(now)
        elif event["type"] == "trial_done":
            self.ends[stage].append(now)

    def per_trial(self) -> float:
        """The worse stage's steady-state seconds per trial."""
        return max(
            (max(self.ends[s]) - min(self.starts[s])) / len(self.ends[s])
            for s in self.ends
            if self.ends[s]
        )

    def startup(self) -> list[float]:
        return [round(min(self.starts[s]) - self.stage_start[s], 3) for s in self.stage_start]


def two_stage_plan(n: int) -> Plan:
    specs = _trivial.plan(n).stages[0][1]
    half = n // 2
    return Plan(suite_name="bench", stages=(("search", specs[:half]), ("refit", specs[half:])))


def time_scans(root: str) -> dict[str, float]:
    """Seconds to read the results as ``raybench status`` and ``raybench_analysis.load`` do."""
    from raybench_analysis import load

    start = time.perf_counter()
    status = ResultStore(root).status(planned=[])
    status_s = time.perf_counter() - start
    start = time.perf_counter()
    results = load(root)
    height = results.trials.collect().height
    load_s = time.perf_counter() - start
    assert height == status["completed"], (height, status["completed"])
    return {"status_s": round(status_s, 3), "load_s": round(load_s, 3)}


def run_size(n: int, scratch: str, executor: str = "pool", scans: bool = True) -> dict:
    root = tempfile.mkdtemp(prefix=f"raybench-scale-{n}-")
    clock = StageClock()
    gc.collect()
    bare = rss_mb()
    plan = two_stage_plan(n)  # the input: its memory is the plan's, not the runner's
    gc.collect()
    before = rss_mb()
    start = time.perf_counter()
    summary = run_plan(
        plan,
        {"bench": _trivial.cohort()},
        ResultStore(root),
        RunOptions(
            trial_fn=_trivial.trial,
            scratch_dir=Path(scratch),
            on_event=clock,
            executor=executor,  # type: ignore[arg-type]
            compact_after=0,  # the readers are timed on the per-trial files, then compacted
        ),
    )
    total = time.perf_counter() - start
    gc.collect()
    after = rss_mb()
    assert summary.ok and len(summary.completed) == n, summary.as_dict()
    out = {
        "trials": n,
        "executor": executor,
        "total_s": round(total, 2),
        "per_trial_ms": round(1000 * clock.per_trial(), 2),
        "startup_s": clock.startup(),
        "driver_rss_mb": {
            "plan": round(before - bare, 1),
            "before": round(before, 1),
            "after": round(after, 1),
        },
        "rss_kb_per_trial": round(1024 * (after - before) / n, 2),
    }
    if executor == "pool" and scans:
        from raybench.store.compact import compact

        timed = {"per_trial_files": time_scans(root)}
        done = compact(ResultStore(root))
        timed["compact_s"] = round(done.seconds, 3)
        timed["compacted"] = time_scans(root)
        out["scan_s"] = timed
    shutil.rmtree(root, ignore_errors=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--huge", action="store_true", help="also 100,000 trials (long)")
    parser.add_argument("--no-plain", action="store_true", help="skip plain Ray Tune at 1k")
    parser.add_argument(
        "--tune-executor", action="store_true", help="also raybench's Tune executor at 1k"
    )
    parser.add_argument("--no-scans", action="store_true", help="time the runner only")
    args = parser.parse_args()
    sizes = [*args.sizes, *([100_000] if args.huge else [])]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.cloudpickle.register_pickle_by_value(_trivial)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    scratch = tempfile.mkdtemp(prefix="raybench-scale-tune-")
    report: dict = {"benchmark": "scale", "cpus": 2, "sizes": []}
    for n in sizes:
        report["sizes"].append(run_size(n, scratch, scans=not args.no_scans))
        print(json.dumps(report["sizes"][-1]), file=sys.stderr, flush=True)  # progress
    if args.tune_executor:
        report["tune_executor_1k"] = run_size(1000, scratch, executor="tune")
    if not args.no_plain:
        plain_total, plain = _plain_tune(1000, scratch)
        ours = next((s for s in report["sizes"] if s["trials"] == 1000), None)
        report["plain_tune_1k"] = {
            "total_s": round(plain_total, 2),
            "per_trial_ms": round(1000 * plain, 2),
        }
        if ours is not None:
            report["ratio_to_plain_tune"] = round(ours["per_trial_ms"] / (1000 * plain), 4)
    ray.shutdown()
    report["target"] = (
        "per_trial_ms <= 20 at every size, rss_kb_per_trial <= 5, a later stage starting in <= 2 s"
    )
    report["meets_target"] = all(
        s["per_trial_ms"] <= 20 and s["rss_kb_per_trial"] <= 5 and max(s["startup_s"][1:]) <= 2
        for s in report["sizes"]
    )
    report["load_average"] = os.getloadavg()[0]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
