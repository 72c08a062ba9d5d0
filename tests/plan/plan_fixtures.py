"""Small suites and hand-built cohort tables for the compiler tests (no files, no I/O)."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from raybench.data.cohort import Cohort
from raybench.suite.schema import Suite


def cohort_table(
    n_subjects: int = 24, n_sites: int = 3, sessions: int = 2, seed: int = 0
) -> pl.DataFrame:
    """A cohort table with the synthetic generator's columns (paths need not exist)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        site = f"site{i % n_sites}"
        dx = "AD" if i % 2 else "CN"
        age = float(np.round(rng.uniform(55, 85), 2))
        for j in range(1 + (i % sessions)):
            rows.append(
                {
                    "sample_id": f"sub-{i:03d}_ses-{j}",
                    "subject_id": f"sub-{i:03d}",
                    "session_id": f"ses-{j}",
                    "scanner": f"{site}-s0",
                    "site": site,
                    "image": f"/data/sub-{i:03d}_ses-{j}_T1w.nii.gz",
                    "diagnosis": dx,
                    "age": age + j,
                    "mask": f"/data/sub-{i:03d}_ses-{j}_mask.nii.gz",
                    "lesion_volume": float(rng.integers(0, 50)),
                }
            )
    return pl.DataFrame(rows)


def cohort(name: str = "synth", table: pl.DataFrame | None = None, fp: str = "fp0") -> Cohort:
    return Cohort(name, cohort_table() if table is None else table, fp)


def make_suite(**overrides: Any) -> Suite:
    """A small classification suite; ``overrides`` replace top-level keys."""
    data: dict[str, Any] = {
        "name": "unit",
        "description": "compiler tests",
        "datasets": [{"name": "synth", "source": "synthetic", "params": {"subjects": 24}}],
        "task": {"type": "classification", "label": "diagnosis", "positive": "AD"},
        "models": [
            {"name": "small", "arch": "classifier"},
            {"name": "res", "arch": "resnet10", "params": {"dropout": [0.0, 0.2]}},
        ],
        "training": {"epochs": 2, "batch_size": 4, "lr": [1.0e-3, 3.0e-4]},
        "validation": {
            "outer": {"strategy": "group_kfold", "k": 3},
            "inner": {"strategy": "group_holdout", "fraction": 0.25},
        },
        "seeds": [0, 1],
        "evaluation": {
            "metrics": ["auc"],
            "perturbations": [{"type": "gaussian_noise", "std": [0.05, 0.1]}],
        },
    }
    data.update(overrides)
    return Suite.model_validate(data)
