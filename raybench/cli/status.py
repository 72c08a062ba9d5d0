"""``raybench status DIR``: what a results directory holds (logic in ``ResultStore.status``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from raybench.cli.common import JsonFlag, console
from raybench.errors import LeakageError, ResultsError


def collect_status(uri: str) -> dict[str, Any]:
    """Status of the results at ``uri`` as a JSON-able dict (:meth:`ResultStore.status`)."""
    from raybench.store import ResultStore

    return ResultStore(uri).status()


def _print(results: str, st: dict[str, Any]) -> None:
    title = f"results {results}" + (f" (suite {st['suite']})" if st["suite"] else "")
    table = Table(title=title)
    counts = {
        "planned": st["planned"],
        "completed": st["completed"],
        "failed": len(st["failed"]),
        "damaged": len(st["damaged"]),
        "pending": len(st["pending"]) + st["search_pending"],
    }
    if st["pruned"]:
        counts["pruned"] = st["pruned"]
    if st["unplanned"]:
        counts["not in plan"] = len(st["unplanned"])
    if st.get("predicted"):
        counts["predicted (models on other data)"] = len(st["predicted"])
    for col in counts:
        table.add_column(col, justify="right")
    table.add_row(*(str(n) for n in counts.values()))
    console.print(table)
    for trial_id, error in st["failed"].items():
        console.print(f"[red]failed[/] {trial_id}: {error}", highlight=False)
    for trial_id, damage in st["damaged"].items():
        console.print(
            f"[red]damaged[/] {trial_id}: {damage['file']}: {damage['reason']}", highlight=False
        )
    running = st["running"]
    if running and running.get("unreadable"):
        console.print(
            f"the lock file {results}/.lock is unreadable (empty or not a raybench lock): if no "
            "raybench run is using this directory, delete it",
            highlight=False,
        )
    elif running:
        console.print(
            f"a run holds this directory: pid {running['pid']} on {running['hostname']}",
            highlight=False,
        )
    if not st["leakage"]:
        console.print("leakage check: no subject has two roles in any trial")


def status(
    results: Annotated[str, typer.Argument(help="Results directory (or URI) of a run.")],
    json_: JsonFlag = False,
) -> None:
    """Summarise a results directory: completed, failed, damaged, pending, leakage.

    Failed trials are listed with the first line of their error, damaged ones with the file that
    failed the integrity check (a run redoes them); pending ones come from plan.json.
    Exit code 2 when a subject has two roles (train/val/test) in one trial, or a trial is damaged.
    """
    st = collect_status(results)
    if json_:
        print(json.dumps(st, default=str))
    else:
        _print(results, st)
    if st["leakage"]:
        first = st["leakage"][0]
        raise LeakageError(
            f"{len(st['leakage'])} subject(s) appear with several roles in one trial, e.g. "
            f"subject {first['subject_id']} in trial {first['trial_id']} as {first['roles']}; "
            "these results are not valid: check the splits and rerun the affected trials"
        )
    if st["damaged"]:
        trial_id, damage = next(iter(st["damaged"].items()))
        raise ResultsError(
            f"{len(st['damaged'])} trial(s) damaged, e.g. {trial_id}: {damage['file']}: "
            f"{damage['reason']}. Run the same `raybench run` command again to redo them."
        )


def register(app: typer.Typer) -> None:
    """Add the ``status`` command to the root ``app``."""
    app.command("status")(status)
