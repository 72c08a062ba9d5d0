"""Shared fixtures of the analysis tests: reference cases and small hierarchical tables."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

REFERENCE = Path(__file__).parent / "reference"


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """Copies of /work/shared/reference (data and expected values), kept inside the repo."""
    return REFERENCE


@pytest.fixture(scope="session")
def load_expected() -> Callable[[str], dict[str, Any]]:
    def load(name: str) -> dict[str, Any]:
        return json.loads((REFERENCE / name).read_text())

    return load


def hierarchical_predictions(
    *,
    models: dict[str, float] | None = None,
    n_sites: int = 4,
    subjects_per_site: int = 10,
    sessions: int = 2,
    folds: int = 3,
    seeds: int = 2,
    site_sd: float = 0.5,
    subject_sd: float = 1.0,
    seed_sd: float = 0.1,
    rng_seed: int = 0,
) -> pl.DataFrame:
    """Binary-classification predictions of several models on the same subjects (docs/results.md).

    Each subject (random effect ``subject_sd``) in a site (``site_sd``) is scanned ``sessions``
    times; subjects are split into ``folds`` outer folds; every model (separation ``models[m]``)
    predicts every test sample of every fold with ``seeds`` seeds (small seed noise), so the
    comparisons are paired by construction.
    """
    models = models or {"a": 1.5, "b": 1.0}
    rng = np.random.default_rng(rng_seed)
    n_subj = n_sites * subjects_per_site
    site = np.repeat(np.arange(n_sites), subjects_per_site)
    label = rng.integers(0, 2, n_subj)
    site_eff = rng.normal(0, site_sd, n_sites)[site]
    subj_eff = rng.normal(0, subject_sd, n_subj)
    fold = rng.permutation(np.arange(n_subj) % folds)
    rows = []
    for j in range(n_subj):
        for k in range(sessions):
            noise = rng.normal(0, 1.0)
            for m, sep in models.items():
                for s in range(seeds):
                    z = (2 * label[j] - 1) * sep + site_eff[j] + subj_eff[j] + noise
                    z += rng.normal(0, seed_sd) + rng.normal(0, 0.5)
                    p = 1 / (1 + np.exp(-z))
                    rows.append(
                        {
                            "trial_id": f"{m}-f{fold[j]}-s{s}",
                            "dataset": "synth",
                            "model": m,
                            "protocol": "outer",
                            "outer_fold": int(fold[j]),
                            "seed": s,
                            "sample_id": f"sub-{j:03d}_ses-{k}",
                            "subject_id": f"sub-{j:03d}",
                            "session_id": f"ses-{k}",
                            "scanner": f"site-{site[j]}-sc",
                            "site": f"site-{site[j]}",
                            "split": "test",
                            "perturbation": "none",
                            "y_true": float(label[j]),
                            "y_pred": float(p >= 0.5),
                            "score": float(p),
                            "loss": float(-np.log(p if label[j] else 1 - p)),
                        }
                    )
    return pl.DataFrame(rows)


@pytest.fixture(scope="session")
def make_predictions() -> Callable[..., pl.DataFrame]:
    """The :func:`hierarchical_predictions` factory, for tests that need other settings."""
    return hierarchical_predictions


@pytest.fixture()
def predictions() -> pl.DataFrame:
    """Two models, 4 sites x 10 subjects x 2 sessions, 3 folds, 2 seeds (640 rows)."""
    return hierarchical_predictions()
