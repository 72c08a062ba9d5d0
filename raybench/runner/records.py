"""The rows the driver writes itself: a failed trial's ``trials`` row.

Completed trials are written by the worker (the store's ``trial_row`` of the training outcome); a
trial that failed after its retries, or a refit whose search trials all failed, is written here by
the driver: one ``trials`` row with ``status="failed"``, the first line of the error, the traceback
and the attempts, so that failures are data (docs/results.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from raybench.plan.spec import TrialSpec
from raybench.runner.resources import override_column
from raybench.store import collect_provenance, spec_columns, table_from_rows


def failed_row(
    spec: TrialSpec,
    error: str,
    traceback: str,
    attempts: int,
    *,
    started_at: datetime | None = None,
    status: str = "failed",
) -> pa.Table:
    """The one-row ``trials`` table of a failed trial (schema of the store).

    ``status="pruned"``: a search trial stopped by the suite's scheduler (docs/search.md); its
    ``error`` says who stopped it and when.
    """
    now = datetime.now(UTC)
    row: dict[str, Any] = {
        **spec_columns(spec),
        "status": status,
        "error": error,
        "traceback": traceback,
        "attempts": int(attempts),
        "started_at": started_at or now,
        "finished_at": now,
        "n_train": len(spec.train_ids),
        "n_val": len(spec.val_ids),
        "n_test": len(spec.test_ids),
        "resources_override": override_column(spec),
        **collect_provenance(),
    }
    return table_from_rows("trials", [row])
