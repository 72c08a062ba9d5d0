"""Shared builders of the store's tests: one trial's four tables, as a real run writes them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa
import pytest

from raybench.plan.spec import TrialSpec
from raybench.store import collect_provenance, table_from_rows, trial_row


def _spec(trial_id: str) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id,
        stage="refit",
        dataset="synth",
        model="cnn",
        protocol="outer",
        outer_fold=1,
        inner_fold=None,
        seed=7,
        params={"lr": 0.001},
        candidates=(),
        config={"task": {"type": "classification"}, "suite": "s1"},
        train_ids=("a",),
        val_ids=("b",),
        test_ids=("c",),
        config_hash="h" * 64,
        data_fingerprint="f" * 64,
    )


def _outcome() -> SimpleNamespace:
    now = datetime.now(UTC)
    return SimpleNamespace(
        best_epoch=1,
        val_score=0.75,
        train_seconds=1.5,
        eval_seconds=0.25,
        device="cpu",
        n_train=1,
        n_val=1,
        n_test=1,
        started_at=now,
        finished_at=now,
    )


def _tables(trial_id: str) -> dict[str, pa.Table]:
    spec = _spec(trial_id)
    pred = {
        "trial_id": trial_id,
        "dataset": "synth",
        "model": "cnn",
        "protocol": "outer",
        "outer_fold": 1,
        "seed": 7,
        "sample_id": "c",
        "subject_id": "sc",
        "session_id": "1",
        "scanner": "x",
        "site": "s",
        "split": "test",
        "perturbation": "none",
        "perturbation_type": "none",
        "y_true": 1.0,
        "y_pred": 1.0,
        "score": 0.8,
        "probs": [0.2, 0.8],
        "loss": 0.22,
    }
    return {
        "predictions": table_from_rows("predictions", [pred]),
        "epochs": table_from_rows(
            "epochs",
            [
                {
                    "trial_id": trial_id,
                    "epoch": 0,
                    "split": "train",
                    "loss": 0.5,
                    "lr": 1e-3,
                    "seconds": 0.1,
                }
            ],
        ),
        "splits": table_from_rows(
            "splits",
            [
                {
                    "trial_id": trial_id,
                    "sample_id": s,
                    "subject_id": f"s{s}",
                    "session_id": "1",
                    "site": "s",
                    "role": r,
                }
                for s, r in (("a", "train"), ("b", "val"), ("c", "test"))
            ],
        ),
        "explanations": table_from_rows(
            "explanations",
            [
                {
                    **{k: pred[k] for k in list(pred)[:11]},
                    "method": "gradcam",
                    "target": "AD",
                    "metric": "auroc",
                    "value": 0.9,
                    "map_path": f"maps/{trial_id}/c_gradcam.nii.gz",
                }
            ],
        ),
        "features": table_from_rows(
            "features",
            [
                {
                    "trial_id": trial_id,
                    "origin": "test",
                    "sample_id": "c",
                    "label": "AD",
                    "features": [0.5, 1.5],
                }
            ],
        ),
        "trials": trial_row(spec, _outcome(), collect_provenance()),
    }


@pytest.fixture()
def make_tables() -> Callable[[str], dict[str, pa.Table]]:
    """``make_tables(trial_id)``: the tables of one completed trial, ready to commit."""
    return _tables
