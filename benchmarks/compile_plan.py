"""Benchmark: compile a suite of >= 100,000 trials and print JSON with seconds and trials/s.

The suite: 2 datasets (300 subjects, 2 sessions each) x 4 models x 10 x 5-fold outer CV
x 15 seeds x 6 search points x 3 inner folds = 114,000 trials. Compilation must take seconds,
not minutes (issue 2, "Compiler and plan"). Run with ``python benchmarks/compile_plan.py``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import polars as pl

from raybench.data.cohort import Cohort
from raybench.plan import compile_suite
from raybench.suite.schema import Suite


def cohort_table(n_subjects: int, seed: int) -> pl.DataFrame:
    """A cohort table with the synthetic generator's columns (no files are needed to plan)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        site = f"site{i % 4}"
        for j in range(2):
            rows.append(
                {
                    "sample_id": f"sub-{i:04d}_ses-{j}",
                    "subject_id": f"sub-{i:04d}",
                    "session_id": f"ses-{j}",
                    "scanner": f"{site}-a",
                    "site": site,
                    "image": f"/data/sub-{i:04d}_ses-{j}.nii.gz",
                    "diagnosis": "AD" if rng.random() < 0.4 else "CN",
                    "age": float(rng.uniform(55, 85)),
                }
            )
    return pl.DataFrame(rows)


def main() -> dict[str, float | int | str]:
    suite = Suite.model_validate(
        {
            "name": "bench-compile",
            "datasets": [
                {"name": f"d{i}", "source": "synthetic", "params": {"subjects": 300}}
                for i in range(2)
            ],
            "task": {"type": "classification", "label": "diagnosis", "positive": "AD"},
            "models": [
                {"name": "r10", "arch": "resnet10", "params": {"dropout": [0.0, 0.2]}},
                {"name": "r18", "arch": "resnet18", "params": {"dropout": [0.0, 0.2]}},
                {"name": "d121", "arch": "densenet121", "params": {"dropout_prob": [0.0, 0.2]}},
                {"name": "cnn", "arch": "classifier", "params": {"dropout": [0.0, 0.2]}},
            ],
            "training": {"epochs": 10, "lr": [1e-2, 1e-3, 1e-4]},
            "validation": {
                "outer": {
                    "strategy": "group_kfold",
                    "k": 5,
                    "repeats": 10,
                    "stratify": ["label", "site"],
                },
                "inner": {"strategy": "group_kfold", "k": 3},
            },
            "seeds": list(range(15)),
            "evaluation": {"perturbations": [{"type": "gaussian_noise", "std": [0.05, 0.1]}]},
        }
    )
    cohorts = {f"d{i}": Cohort(f"d{i}", cohort_table(300, i), f"fp{i}") for i in range(2)}
    t0, c0 = time.perf_counter(), time.process_time()
    plan = compile_suite(suite, cohorts)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    lines = sum(len(json.dumps(t.summary())) for t in plan.trials)
    json_seconds = time.perf_counter() - t1
    n = len(plan.trials)
    return {
        "benchmark": "compile_plan",
        "trials": n,
        "search": plan.meta["counts"]["search"],
        "refit": plan.meta["counts"]["refit"],
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu_seconds, 3),
        "trials_per_s": round(n / seconds),
        "json_lines_seconds": round(json_seconds, 3),
        "json_bytes": lines,
        "target": ">= 100000 trials in seconds",
        "ok": n >= 100_000 and seconds < 30,
    }


if __name__ == "__main__":
    print(json.dumps(main()))
