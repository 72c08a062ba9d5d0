"""Benchmark: per-trial overhead of raybench's runner against plain Ray Tune defaults.

Both run the same trivial trials (no work) on one local Ray with 2 CPUs: plain Ray Tune with its
defaults (``tune.Tuner(fn, param_space=grid)``: one new actor per trial), and raybench's
``run_plan`` (``reuse_actors=True``, specs shipped once, one Parquet commit per trial). The
per-trial overhead is the steady-state wall time per trial, ``(last trial end - first trial
start) / n``, taken from Tune's callbacks in both cases: it leaves out the fixed start-up of a
Tune run (a few seconds, paid once per stage), which is reported separately as ``total_s``.
Target: raybench's per-trial overhead at most a tenth of the baseline's. Prints one JSON object.
Run: ``python -m benchmarks.ray_overhead [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import _trivial
import ray
import ray.cloudpickle
from ray import tune

from raybench.runner import RunOptions, run_plan
from raybench.store import ResultStore


class _Stamps(tune.Callback):
    """Wall-clock times of trial starts and completions (driver side)."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def on_trial_start(self, iteration, trials, trial, **info):
        self.starts.append(time.perf_counter())

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.ends.append(time.perf_counter())

    def per_trial(self) -> float:
        return (max(self.ends) - min(self.starts)) / len(self.ends)


def _plain_tune(n: int, scratch: str) -> tuple[float, float]:
    def trivial(config: dict) -> None:
        tune.report({"done": 1})

    stamps = _Stamps()
    start = time.perf_counter()
    tuner = tune.Tuner(
        trivial,
        param_space={"i": tune.grid_search(list(range(n)))},
        run_config=tune.RunConfig(
            storage_path=scratch, name=f"plain-{n}", verbose=0, callbacks=[stamps]
        ),
    )
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    return time.perf_counter() - start, stamps.per_trial()


def _raybench(n: int, scratch: str) -> tuple[float, float]:
    store = ResultStore(tempfile.mkdtemp(prefix="raybench-bench-"))
    clock = _trivial.TrialClock()

    start = time.perf_counter()
    summary = run_plan(
        _trivial.plan(n),
        {"bench": _trivial.cohort()},
        store,
        RunOptions(trial_fn=_trivial.trial, scratch_dir=Path(scratch), on_event=clock),
    )
    assert summary.ok and len(summary.completed) == n == len(clock.ends)
    return time.perf_counter() - start, (max(clock.ends) - min(clock.starts)) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer trials (noisier)")
    args = parser.parse_args()
    n_plain, n_raybench = (8, 24) if args.quick else (16, 64)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.cloudpickle.register_pickle_by_value(_trivial)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    scratch = tempfile.mkdtemp(prefix="raybench-bench-tune-")
    plain_total, plain = _plain_tune(n_plain, scratch)
    ours_total, ours = _raybench(n_raybench, scratch)
    ray.shutdown()
    ratio = ours / plain
    print(
        json.dumps(
            {
                "benchmark": "ray_overhead",
                "cpus": 2,
                "trials": {"plain_tune_defaults": n_plain, "raybench": n_raybench},
                "total_s": {
                    "plain_tune_defaults": round(plain_total, 3),
                    "raybench": round(ours_total, 3),
                },
                "per_trial_overhead_s": {
                    "plain_tune_defaults": round(plain, 4),
                    "raybench": round(ours, 4),
                },
                "ratio_raybench_to_plain": round(ratio, 4),
                "target": "ratio <= 0.1",
                "meets_target": ratio <= 0.1,
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
