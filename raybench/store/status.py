"""What a results directory holds: the logic behind ``raybench status`` (and ``--json``).

Every trial of the directory is in one state: *completed*, *pruned* (a search trial its scheduler
stopped: finished, not pending) or *failed* (committed and verified),
*damaged* (its ``trials`` file exists but a file of the trial is unreadable, of the wrong schema or
of another row count than recorded: not committed, a run redoes it), or *pending* (planned, not
committed). Trials committed here that the saved plan does not list are *unplanned* (another
suite's, allowed in with ``--allow-suite-change``). A ``tpe`` search template of the plan is not
a trial: it stands for the ``num_samples`` points the runner asks for, whose trials are matched to
it by slot and counted as planned.
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
    trials = _plan_trials(store)
    return None if trials is None else [t["trial_id"] for t in trials]


def _plan_trials(store: ResultStore) -> list[dict[str, Any]] | None:
    """The trial summaries of the saved ``plan.json`` in plan order, or None when there is none."""
    raw = store.read_file("plan.json")
    if raw is None:
        return None
    try:
        plan = json.loads(raw.decode())
        trials = [t for st in plan.get("stages", []) for t in st["trials"]]
        if not all(isinstance(t, dict) and "trial_id" in t for t in trials):
            raise KeyError("trial_id")
        return trials
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ResultsError(
            f"{store.root}/plan.json: unreadable ({exc}); is it a raybench results directory?"
        ) from exc


#: The keys of a search trial's slot: a ``tpe`` template's points share them (docs/search.md).
SLOT = ("dataset", "model", "protocol", "outer_fold", "inner_fold", "seed")


def _search_points(store: ResultStore) -> dict[str, int]:
    """``"dataset/model" -> num_samples`` of the plan's searches (plan.json ``meta``)."""
    raw = store.read_file("plan.json")
    try:
        return (
            dict(json.loads(raw.decode()).get("meta", {}).get("search_points", {})) if raw else {}
        )
    except (ValueError, AttributeError, TypeError):
        return {}


def _templates(
    store: ResultStore, plan: list[dict[str, Any]], inv: Any, statuses: dict[str, str]
) -> tuple[set[str], set[str], int]:
    """(template ids, committed trials of their points, search trials still to run).

    A ``tpe`` template (a search trial without a point) is never run itself: the runner asks
    Optuna for ``num_samples`` points and runs each on the template's inner fold, as trials whose
    ids the plan cannot list. They are matched to their template by slot; each template has run
    when ``num_samples`` of its points are completed or pruned.
    """
    templates = [t for t in plan if t.get("stage") == "search" and t.get("params") is None]
    if not templates:
        return set(), set(), 0
    in_plan = {t["trial_id"] for t in plan}
    extra = [t for t in statuses if t not in in_plan]
    rows = (
        scan_table(store.fs, store.root, "trials", local=store.local, inv=inv)
        .filter(pl.col("trial_id").is_in(extra) & (pl.col("stage") == "search"))
        .select("trial_id", *SLOT)
        .collect()
        .to_dicts()
        if extra
        else []
    )
    of_slot: dict[tuple[Any, ...], list[str]] = {}
    for row in rows:
        of_slot.setdefault(tuple(row[k] for k in SLOT), []).append(row["trial_id"])
    budget = _search_points(store)
    points: set[str] = set()
    to_run = 0
    for t in templates:
        mine = of_slot.get(tuple(t.get(k) for k in SLOT), [])
        points.update(mine)
        done = sum(statuses[i] in ("completed", "pruned") for i in mine)
        to_run += max(int(budget.get(f"{t['dataset']}/{t['model']}", 0)) - done, 0)
    return {t["trial_id"] for t in templates}, points, to_run


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

    Keys: ``results`` (the URI), ``suite`` (name from plan.json), ``planned`` (count; a ``tpe``
    template counts as its ``num_samples`` trials), ``completed`` (count), ``pruned`` (count of
    search trials stopped by the scheduler: finished, not pending), ``failed`` (id -> first line
    of its error), ``damaged`` (id -> ``{"file", "reason"}``), ``pending`` (planned ids neither
    completed nor pruned, damaged ones included; templates aside), ``search_templates`` (count of
    ``tpe`` templates), ``search_pending`` (their trials still to run: the points not yet
    completed or pruned, times their inner folds),
    ``unplanned`` (committed ids the plan does not list, predict entries aside), ``predicted``
    (ids of the committed ``predict`` entries: saved models on other datasets), ``running``
    (the lock's pid, hostname, started_at; ``unreadable: true`` for a garbage lock file; None
    when no run holds it) and ``leakage`` (one dict per subject with two roles in one trial:
    trial_id, subject_id, roles, n_samples).
    """
    root_type = store.fs.get_file_info(store.root).type
    plan_trials = None
    if planned is None and root_type == pafs.FileType.Directory:
        plan_trials = _plan_trials(store)
    plan = list(planned) if planned is not None else None
    if plan_trials is not None:
        plan = [t["trial_id"] for t in plan_trials]
    trials_type = store.fs.get_file_info(f"{store.root}/trials").type
    if plan is None and trials_type != pafs.FileType.Directory:
        raise ResultsError(
            f"{store.uri} is not a raybench results directory (no plan.json, no trials/); pass "
            "the directory that `raybench run` printed, e.g. results/<suite name>"
        )
    inv = store.inventory()
    failed = sorted(t for t, s in inv.statuses.items() if s == "failed")
    completed = sorted(t for t, s in inv.statuses.items() if s == "completed")
    pruned = sorted(t for t, s in inv.statuses.items() if s == "pruned")
    done = set(completed) | set(pruned)  # a pruned trial ran: its scheduler stopped it
    templates, points, search_pending = _templates(store, plan_trials or [], inv, inv.statuses)
    planned_list = [t for t in plan or [] if t not in templates]
    in_plan = set(planned_list) | points
    splits = scan_table(store.fs, store.root, "splits", local=store.local, inv=inv)
    leaks = check_leakage(splits) if completed else pl.DataFrame()
    predicted = predict_entry_ids(store.fs, store.root, local=store.local, inv=inv)
    return {
        "results": store.uri,
        "suite": _suite_name(store),
        "planned": len(planned_list) + len(points) + search_pending,
        "completed": len(completed),
        "pruned": len(pruned),
        "failed": _first_lines(store, inv, failed),
        "damaged": {t: {"file": d.path, "reason": d.reason} for t, d in inv.damaged.items()},
        "pending": [t for t in planned_list if t not in done],
        "search_templates": len(templates),
        "search_pending": search_pending,
        "unplanned": sorted(
            t for t in inv.statuses if plan is not None and t not in in_plan | predicted
        ),
        "predicted": sorted(predicted),
        "running": _running(store),
        "leakage": leaks.to_dicts() if leaks.height else [],
    }
