"""What a results directory holds: the logic behind ``raybench status`` (and ``--json``).

Every trial of the directory is in one state: *completed* or *failed* (committed and verified),
*damaged* (its ``trials`` file exists but a file of the trial is unreadable, of the wrong schema or
of another row count than recorded: not committed, a run redoes it), or *pending* (planned, not
committed). Trials committed here that the saved plan does not list are *unplanned* (another
suite's, allowed in with ``--allow-suite-change``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow.fs as pafs
from raybench_analysis.contract import check_leakage

from raybench.errors import ResultsError
from raybench.store.reader import RunLock, predict_entry_ids, scan_table

if TYPE_CHECKING:
    from raybench.store.writer import ResultStore

__all__ = ["planned_ids", "store_status"]


def planned_ids(store: ResultStore) -> list[str] | None:
    """Trial ids of the saved ``plan.json`` in plan order, or None when there is none."""
    raw = store.read_file("plan.json")
    if raw is None:
        return None
    try:
        plan = json.loads(raw.decode())
        return [t["trial_id"] for st in plan.get("stages", []) for t in st["trials"]]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResultsError(
            f"{store.root}/plan.json: unreadable ({exc}); is it a raybench results directory?"
        ) from exc


def _suite_name(store: ResultStore) -> str | None:
    raw = store.read_file("plan.json")
    try:
        return json.loads(raw.decode()).get("suite") if raw else None
    except (ValueError, AttributeError):
        return None


def _first_lines(store: ResultStore, inv: Any, failed: list[str]) -> dict[str, str]:
    if not failed:
        return {}
    frame = (
        scan_table(store.fs, store.root, "trials", local=store.local, inv=inv)
        .filter(pl.col("trial_id").is_in(failed))
        .select("trial_id", "error")
        .collect()
    )
    errors = dict(zip(frame["trial_id"].to_list(), frame["error"].to_list(), strict=True))
    return {t: (errors.get(t) or "").split("\n", 1)[0] for t in failed}


def _running(store: ResultStore) -> dict[str, Any] | None:
    holder = RunLock(store.fs, store.root, store.local, uri=store.uri).holder()
    if holder is None:
        return None
    if not holder:
        return {"pid": None, "hostname": None, "started_at": None, "unreadable": True}
    return {k: holder.get(k) for k in ("pid", "hostname", "started_at")}


def store_status(store: ResultStore, planned: Sequence[str] | None = None) -> dict[str, Any]:
    """The status of ``store`` as a JSON-able dict.

    Keys: ``results`` (the URI), ``suite`` (name from plan.json), ``planned`` (count),
    ``completed`` (count), ``failed`` (id -> first line of its error), ``damaged`` (id ->
    ``{"file", "reason"}``), ``pending`` (planned ids not completed, damaged ones included),
    ``unplanned`` (committed ids the plan does not list, predict entries aside), ``predicted``
    (ids of the committed ``predict`` entries: saved models on other datasets), ``running``
    (the lock's pid, hostname, started_at; ``unreadable: true`` for a garbage lock file; None
    when no run holds it) and ``leakage`` (one dict per subject with two roles in one trial:
    trial_id, subject_id, roles, n_samples).
    """
    root_type = store.fs.get_file_info(store.root).type
    plan = list(planned) if planned is not None else None
    if plan is None and root_type == pafs.FileType.Directory:
        plan = planned_ids(store)
    trials_type = store.fs.get_file_info(f"{store.root}/trials").type
    if plan is None and trials_type != pafs.FileType.Directory:
        raise ResultsError(
            f"{store.uri} is not a raybench results directory (no plan.json, no trials/); pass "
            "the directory that `raybench run` printed, e.g. results/<suite name>"
        )
    inv = store.inventory()
    failed = sorted(t for t, s in inv.statuses.items() if s == "failed")
    completed = sorted(t for t, s in inv.statuses.items() if s == "completed")
    done = set(completed)
    planned_list = plan or []
    in_plan = set(planned_list)
    splits = scan_table(store.fs, store.root, "splits", local=store.local, inv=inv)
    leaks = check_leakage(splits) if completed else pl.DataFrame()
    predicted = predict_entry_ids(store.fs, store.root, local=store.local, inv=inv)
    return {
        "results": store.uri,
        "suite": _suite_name(store),
        "planned": len(planned_list),
        "completed": len(completed),
        "failed": _first_lines(store, inv, failed),
        "damaged": {t: {"file": d.path, "reason": d.reason} for t, d in inv.damaged.items()},
        "pending": [t for t in planned_list if t not in done],
        "unplanned": sorted(
            t for t in inv.statuses if plan is not None and t not in in_plan | predicted
        ),
        "predicted": sorted(predicted),
        "running": _running(store),
        "leakage": leaks.to_dicts() if leaks.height else [],
    }
