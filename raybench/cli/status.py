"""``raybench status DIR``: what a results directory holds — done, failed, pending, leakage."""

from __future__ import annotations

import json
from typing import Annotated, Any

import polars as pl
import pyarrow.fs as pafs
import typer
from rich.table import Table

from raybench.cli.common import JsonFlag, console, friendly_errors
from raybench.errors import LeakageError, ResultsError


def _read_json(store: Any, name: str) -> dict[str, Any] | None:
    path = f"{store.root}/{name}"
    try:
        with store.fs.open_input_stream(path) as stream:
            return json.loads(stream.read().decode())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: unreadable ({exc}); is it a raybench results file?") from exc


def leaked_subjects(splits: pl.LazyFrame) -> pl.DataFrame:
    """Rows (trial_id, subject_id, roles) of subjects with more than one role in one trial."""
    return (
        splits.group_by("trial_id", "subject_id")
        .agg(pl.col("role").unique().sort().alias("roles"))
        .filter(pl.col("roles").list.len() > 1)
        .sort("trial_id", "subject_id")
        .collect()
    )


def collect_status(uri: str) -> dict[str, Any]:
    """Status of the results at ``uri`` as a JSON-able dict (see ``raybench status --help``)."""
    from raybench.store import ResultStore

    store = ResultStore(uri)
    info = store.fs.get_file_info(store.root)
    plan = _read_json(store, "plan.json") if info.type == pafs.FileType.Directory else None
    trials_dir = store.fs.get_file_info(f"{store.root}/trials").type
    if plan is None and trials_dir != pafs.FileType.Directory:
        raise ResultsError(
            f"{uri} is not a raybench results directory (no plan.json, no trials/); pass the "
            "directory that `raybench run` printed, e.g. results/<suite name>"
        )
    statuses = store.statuses()
    failed_ids = sorted(t for t, s in statuses.items() if s == "failed")
    errors: dict[str, str | None] = {}
    if failed_ids:
        frame = (
            store.scan("trials")
            .filter(pl.col("trial_id").is_in(failed_ids))
            .select("trial_id", "error")
            .collect()
        )
        errors = dict(zip(frame["trial_id"].to_list(), frame["error"].to_list(), strict=True))
    planned = [t["trial_id"] for st in (plan or {}).get("stages", []) for t in st["trials"]]
    completed = sorted(t for t, s in statuses.items() if s == "completed")
    pending = [t for t in planned if statuses.get(t) != "completed"]
    leaks = leaked_subjects(store.scan("splits")) if completed else pl.DataFrame()
    lock = _read_json(store, ".lock")
    return {
        "results": uri,
        "suite": (plan or {}).get("suite"),
        "planned": len(planned),
        "completed": len(completed),
        "failed": {
            t: (errors.get(t) or "").splitlines()[0] if errors.get(t) else "" for t in failed_ids
        },
        "pending": pending,
        "running": {k: lock.get(k) for k in ("pid", "hostname", "started_at")} if lock else None,
        "leakage": leaks.to_dicts() if leaks.height else [],
    }


@friendly_errors
def status(
    results: Annotated[str, typer.Argument(help="Results directory (or URI) of a run.")],
    json_: JsonFlag = False,
) -> None:
    """Summarise a results directory: completed, failed, pending, leakage.

    Failed trials are listed with the first line of their error, pending ones come from plan.json.
    Exit code 2 when a subject has two roles (train/val/test) in one trial.
    """
    st = collect_status(results)
    if json_:
        print(json.dumps(st, default=str))
    else:
        table = Table(
            title=f"results {results}" + (f" (suite {st['suite']})" if st["suite"] else "")
        )
        for col in ("planned", "completed", "failed", "pending"):
            table.add_column(col, justify="right")
        table.add_row(
            str(st["planned"]),
            str(st["completed"]),
            str(len(st["failed"])),
            str(len(st["pending"])),
        )
        console.print(table)
        for trial_id, error in st["failed"].items():
            console.print(f"[red]failed[/] {trial_id}: {error}", highlight=False)
        if st["running"]:
            r = st["running"]
            console.print(
                f"a run holds this directory: pid {r['pid']} on {r['hostname']}", highlight=False
            )
        if not st["leakage"]:
            console.print("leakage check: no subject has two roles in any trial")
    if st["leakage"]:
        first = st["leakage"][0]
        raise LeakageError(
            f"{len(st['leakage'])} subject(s) appear with several roles in one trial, e.g. "
            f"subject {first['subject_id']} in trial {first['trial_id']} as {first['roles']}; "
            "these results are not valid: check the splits and rerun the affected trials"
        )


def register(app: typer.Typer) -> None:
    """Add the ``status`` command to the root ``app``."""
    app.command("status")(status)
