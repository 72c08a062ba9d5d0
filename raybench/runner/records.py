"""Rows the runner writes itself, and provenance: a failed trial's ``trials`` row.

Completed trials are written by the worker from the training's outcome (``trial_row`` of the
store); a trial that failed after its retries, or a refit whose search trials all failed, is
written here by the driver: one ``trials`` row with ``status="failed"``, the first line of the
error, the traceback and the attempts, so that failures are data (docs/results.md).
"""

from __future__ import annotations

import json
import platform
import socket
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from raybench.plan.spec import TrialSpec


def versions() -> dict[str, str | None]:
    """Versions of raybench, torch, monai, ray and python (None for a package not installed)."""
    import importlib.metadata as md

    out: dict[str, str | None] = {"python_version": platform.python_version()}
    for pkg in ("raybench", "torch", "monai", "ray"):
        try:
            out[f"{pkg}_version"] = md.version(pkg)
        except md.PackageNotFoundError:
            out[f"{pkg}_version"] = None
    return out


def trials_schema() -> pa.Schema | None:
    """The store's fixed ``trials`` schema (None until the store module provides one)."""
    try:
        from raybench.store import schemas
    except ImportError:
        return None
    for name in ("TRIALS", "TRIALS_SCHEMA", "trials"):
        schema = getattr(schemas, name, None)
        if isinstance(schema, pa.Schema):
            return schema
    return None


def failed_row(
    spec: TrialSpec,
    error: str,
    traceback: str,
    attempts: int,
    *,
    started_at: datetime | None = None,
) -> pa.Table:
    """The one-row ``trials`` table of a failed trial (columns of docs/results.md)."""
    now = datetime.now(UTC)
    task = (spec.config.get("task") or {}).get("type")
    row: dict[str, Any] = {
        "trial_id": spec.trial_id,
        "suite": spec.config.get("suite"),
        "dataset": spec.dataset,
        "model": spec.model,
        "task": task,
        "stage": spec.stage,
        "protocol": spec.protocol,
        "outer_fold": spec.outer_fold,
        "inner_fold": spec.inner_fold,
        "seed": spec.seed,
        "params": json.dumps(spec.params, sort_keys=True) if spec.params is not None else None,
        "status": "failed",
        "error": error,
        "traceback": traceback,
        "attempts": int(attempts),
        "started_at": started_at or now,
        "finished_at": now,
        "train_seconds": None,
        "eval_seconds": None,
        "node": socket.gethostname(),
        "device": None,
        **versions(),
        "git_commit": None,
        "config_hash": spec.config_hash,
        "data_fingerprint": spec.data_fingerprint,
        "n_train": len(spec.train_ids),
        "n_val": len(spec.val_ids),
        "n_test": len(spec.test_ids),
        "best_epoch": None,
        "val_score": None,
    }
    schema = trials_schema()
    if schema is None:
        return pa.Table.from_pylist([row])
    return pa.Table.from_pylist([{f.name: row.get(f.name) for f in schema}], schema=schema)
