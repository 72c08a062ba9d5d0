"""``raybench plan SUITE``: show the compiled trial graph, its counts and resource needs."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from raybench.cli.common import JsonFlag, console, friendly_errors
from raybench.plan.spec import Plan

DataRootOption = Annotated[
    Path | None,
    typer.Option(
        "--data-root",
        help="Where synthetic cohorts are (or will be) generated; default ./.raybench-data. "
        "Nothing is written by `plan`.",
    ),
]


def load_plan(suite_path: Path, data_root: Path | None = None) -> Plan:
    """Load the suite and its cohorts (without writing anything) and compile the plan."""
    from raybench.data import load_cohort
    from raybench.plan import compile_suite
    from raybench.suite import load_suite

    suite = load_suite(suite_path)
    root = data_root if data_root is not None else Path(".raybench-data")
    suite_dir = Path(suite_path).resolve().parent
    cohorts = {
        ds.name: load_cohort(ds, suite_dir, root, materialize=False) for ds in suite.datasets
    }
    return compile_suite(suite, cohorts)


def _print_table(plan: Plan) -> None:
    counts: Counter[tuple[str, str, str]] = Counter(
        (t.dataset, t.model, t.stage) for t in plan.trials
    )
    pairs = list(dict.fromkeys((t.dataset, t.model) for t in plan.trials))
    table = Table(title=f"plan of suite {plan.suite_name}")
    for col in ("dataset", "model", "search", "refit", "trials"):
        table.add_column(col, justify="left" if col in ("dataset", "model") else "right")
    for ds, model in pairs:
        s, r = counts[(ds, model, "search")], counts[(ds, model, "refit")]
        table.add_row(ds, model, str(s), str(r), str(s + r))
    console.print(table)
    trials = plan.trials
    stage_counts = ", ".join(f"{stage}: {len(ts)}" for stage, ts in plan.stages)
    cpu = sum(float(t.config["resources"]["cpu"]) for t in trials)
    gpu = sum(float(t.config["resources"]["gpu"]) for t in trials)
    console.print(f"stages (run in this order): {stage_counts}")
    console.print(f"total trials: {len(trials)}")
    console.print(f"resource needs: {cpu:g} CPU-trials, {gpu:g} GPU-trials")
    for ds, protocols in plan.meta.get("folds", {}).items():
        for name, folds in protocols.items():
            inner = folds[0]["inner"] if folds else 0
            console.print(
                f"{ds} / {name}: {len(folds)} outer folds"
                + (f" × {inner} inner" if inner else "")
                + f" (split seed {plan.meta.get('split_seed')})",
                highlight=False,
            )


@friendly_errors
def plan(
    suite: Annotated[Path, typer.Argument(help="The suite YAML file.")],
    json_: JsonFlag = False,
    data_root: DataRootOption = None,
) -> None:
    """Compile SUITE and show its trials: counts per stage and dataset × model, resource needs.

    With --json, print one JSON object per trial and line (trial_id, stage, dataset, model,
    protocol, outer_fold, inner_fold, seed, params, depends_on).
    """
    compiled = load_plan(suite, data_root)
    if json_:
        out = sys.stdout
        for t in compiled.trials:
            out.write(json.dumps(t.summary()) + "\n")
        out.flush()
        return
    _print_table(compiled)


def register(app: typer.Typer) -> None:
    """Add the ``plan`` command to the root ``app``."""
    app.command("plan")(plan)
