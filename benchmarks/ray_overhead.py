"""Benchmark: per-trial overhead of raybench's runner against plain Ray Tune defaults.

Both run the same trivial trials (no work) on one local Ray with 2 CPUs: plain Ray Tune with its
defaults (``tune.Tuner(fn, param_space=grid)``: one new actor per trial), and raybench's
``run_plan`` (``reuse_actors=True``, specs shipped once, one Parquet commit per trial). Each is
timed at two sizes; the per-trial overhead is the slope ``(t(n_large) - t(n_small)) /
(n_large - n_small)``, which removes the fixed cost of starting a Tune run. Target: raybench's
per-trial overhead at most a tenth of the baseline's. Prints one JSON object.
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


def _plain_tune(n: int, scratch: str) -> float:
    def trivial(config: dict) -> None:
        tune.report({"done": 1})

    start = time.perf_counter()
    tuner = tune.Tuner(
        trivial,
        param_space={"i": tune.grid_search(list(range(n)))},
        run_config=tune.RunConfig(storage_path=scratch, name=f"plain-{n}", verbose=0),
    )
    grid = tuner.fit()
    assert not grid.errors, grid.errors
    return time.perf_counter() - start


def _raybench(n: int, scratch: str) -> float:
    store = ResultStore(tempfile.mkdtemp(prefix="raybench-bench-"))
    start = time.perf_counter()
    summary = run_plan(
        _trivial.plan(n),
        {"bench": _trivial.cohort()},
        store,
        RunOptions(trial_fn=_trivial.trial, scratch_dir=Path(scratch)),
    )
    assert summary.ok and len(summary.completed) == n
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer trials (noisier)")
    args = parser.parse_args()
    small, large = (4, 12) if args.quick else (4, 24)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.cloudpickle.register_pickle_by_value(_trivial)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    scratch = tempfile.mkdtemp(prefix="raybench-bench-tune-")
    times: dict[str, dict[int, float]] = {"plain_tune_defaults": {}, "raybench": {}}
    for n in (small, large):
        times["plain_tune_defaults"][n] = _plain_tune(n, scratch)
        times["raybench"][n] = _raybench(n, scratch)
    ray.shutdown()
    per_trial = {k: (v[large] - v[small]) / (large - small) for k, v in times.items()}
    ratio = per_trial["raybench"] / per_trial["plain_tune_defaults"]
    print(
        json.dumps(
            {
                "benchmark": "ray_overhead",
                "cpus": 2,
                "trials": [small, large],
                "seconds": {
                    k: {str(n): round(t, 3) for n, t in v.items()} for k, v in times.items()
                },
                "per_trial_overhead_s": {k: round(v, 4) for k, v in per_trial.items()},
                "ratio_raybench_to_plain": round(ratio, 4),
                "target": "ratio <= 0.1",
                "meets_target": ratio <= 0.1,
                "load_average": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
