"""Benchmark: trial count and compile time of a suite with training-set resampling (>= 100k trials).

The suite: 1 dataset (300 subjects, 2 sessions each) x 2 models x 5-fold outer CV repeated twice
x 20 seeds x (the whole fold + bootstrap draws of 10%, 25%, 50% and 100% of the subjects, 10
each) x (1 refit + 2 search points x 3 inner folds) = 114,800 trials. Every draw gets its own
stratified inner folds, so the compiler splits 410 training pools instead of 10. Run with
``python -m benchmarks compile_resampling``; prints one JSON object.
"""

from __future__ import annotations

import json
import time

from benchmarks.compile_plan import cohort_table
from raybench.data.cohort import Cohort
from raybench.plan import compile_suite
from raybench.suite.schema import Suite


def main() -> dict[str, float | int | str | bool]:
    suite = Suite.model_validate(
        {
            "name": "bench-resampling",
            "datasets": [{"name": "d0", "source": "synthetic", "params": {"subjects": 300}}],
            "task": {"type": "classification", "label": "diagnosis", "positive": "AD"},
            "models": [
                {"name": "r10", "arch": "resnet10"},
                {"name": "cnn", "arch": "classifier"},
            ],
            "training": {"epochs": 10, "lr": [1e-3, 1e-4]},
            "validation": {
                "outer": {"strategy": "group_kfold", "k": 5, "repeats": 2},
                "inner": {"strategy": "group_kfold", "k": 3},
                "train_resampling": {
                    "scheme": "bootstrap",
                    "fractions": [0.1, 0.25, 0.5, 1.0],
                    "repeats": 10,
                },
            },
            "seeds": list(range(20)),
        }
    )
    cohorts = {"d0": Cohort("d0", cohort_table(300, 0), "fp0")}
    t0, c0 = time.perf_counter(), time.process_time()
    plan = compile_suite(suite, cohorts)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    n = len(plan.trials)
    draws = {(t.outer_fold, t.train_fraction, t.train_resample) for t in plan.trials}
    return {
        "benchmark": "compile_resampling",
        "trials": n,
        "search": plan.meta["counts"]["search"],
        "refit": plan.meta["counts"]["refit"],
        "training_pools": len(draws),
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "trials_per_s": round(n / seconds),
        "target": ">= 100000 trials in seconds",
        "ok": n >= 100_000 and seconds < 60,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
