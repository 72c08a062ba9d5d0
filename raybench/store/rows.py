"""The ``trials`` row of a completed trial, and the provenance that goes into it.

Provenance answers "what produced this number?": package versions, the git commit of the raybench
checkout, the host and the device. It never holds environment variables or any other secret.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from raybench.plan.spec import TrialSpec
from raybench.store.schemas import table_from_rows

__all__ = [
    "BACKEND_COLUMNS",
    "collect_provenance",
    "config_hash",
    "git_commit",
    "resample_columns",
    "spec_columns",
    "trial_row",
]

#: ``trials`` columns of the numerics a trial ran with (``TrialOutcome.backends``; docs/search.md).
BACKEND_COLUMNS: tuple[str, ...] = (
    "amp",
    "cudnn_deterministic",
    "cudnn_benchmark",
    "deterministic_algorithms",
)


class _Outcome(Protocol):  # raybench.training.TrialOutcome, without importing torch here
    best_epoch: int | None
    val_score: float | None
    train_seconds: float
    eval_seconds: float
    device: str
    n_train: int
    n_val: int
    n_test: int


@functools.cache
def git_commit() -> str | None:
    """Commit of the git checkout raybench is imported from (None when not in git)."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "-C", str(here), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if len(commit) == 40 else None


def _version(package: str) -> str | None:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return None


def collect_provenance() -> dict[str, Any]:
    """Versions (raybench, torch, monai, ray, python), git commit and hostname of this process."""
    return {
        "raybench_version": _version("raybench"),
        "torch_version": _version("torch"),
        "monai_version": _version("monai"),
        "ray_version": _version("ray"),
        "python_version": platform.python_version(),
        "git_commit": git_commit(),
        "node": socket.gethostname(),
    }


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a resolved trial config."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def spec_columns(spec: TrialSpec) -> dict[str, Any]:
    """The ``trials`` columns that come from the trial's spec alone (identity, config, data)."""
    return {
        "trial_id": spec.trial_id,
        "suite": spec.config.get("suite"),
        "dataset": spec.dataset,
        "model": spec.model,
        "task": (spec.config.get("task") or {}).get("type"),
        "stage": spec.stage,
        "protocol": spec.protocol,
        "outer_fold": spec.outer_fold,
        "inner_fold": spec.inner_fold,
        "seed": spec.seed,
        "params": json.dumps(spec.params or {}, sort_keys=True, default=str),
        "config_hash": spec.config_hash or config_hash(spec.config),
        "data_fingerprint": spec.data_fingerprint,
        **resample_columns(spec),
    }


def resample_columns(spec: TrialSpec) -> dict[str, Any]:
    """The columns of the trial's draw of training subjects (docs/training-distribution.md)."""
    return {
        "train_fraction": spec.train_fraction,
        "train_resample": spec.train_resample,
        "n_train_subjects": spec.n_train_subjects,
    }


def trial_row(
    spec: TrialSpec,
    outcome: _Outcome,
    provenance: dict[str, Any],
    *,
    attempts: int = 1,
) -> pa.Table:
    """The one-row ``trials`` table of a completed trial (columns of docs/results.md).

    ``provenance`` is :func:`collect_provenance` of the worker (its keys are copied; ``node`` is
    the worker's hostname); timings, device and selection come from ``outcome``.
    """
    allowed = {
        "raybench_version",
        "torch_version",
        "monai_version",
        "ray_version",
        "python_version",
        "git_commit",
        "node",
    }
    prov = {k: v for k, v in provenance.items() if k in allowed}
    row = {
        **spec_columns(spec),
        "status": "completed",
        "error": None,
        "traceback": None,
        "attempts": attempts,
        "started_at": getattr(outcome, "started_at", None),
        "finished_at": getattr(outcome, "finished_at", None),
        "train_seconds": outcome.train_seconds,
        "eval_seconds": outcome.eval_seconds,
        "device": outcome.device,
        **{key: getattr(outcome, "backends", {}).get(key) for key in BACKEND_COLUMNS},
        "n_train": outcome.n_train,
        "n_val": outcome.n_val,
        "n_test": outcome.n_test,
        "best_epoch": outcome.best_epoch,
        "val_score": outcome.val_score,
        "model_sha256": getattr(outcome, "model_sha256", None),
        **prov,
    }
    return table_from_rows("trials", [row])
