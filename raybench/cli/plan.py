"""``raybench plan SUITE``: show the compiled trial graph, its counts and resource needs."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from raybench.cli.common import DataRootOption, JsonFlag, NoPluginsFlag, console, say
from raybench.cli.prepare import Prepared, prepare

if TYPE_CHECKING:
    from raybench.plan.spec import Plan


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
    from raybench.plan.search import search_budget

    for row in search_budget(plan):
        bound = "up to " if row["algorithm"] == "tpe" else ""
        stopper = plan.meta.get("search_scheduler")
        console.print(
            f"search budget of {row['dataset']} / {row['model']} ({row['algorithm']}): "
            f"{row['points']} points × {row['inner']} inner folds × {row['outer']} outer folds × "
            f"{row['seeds']} seeds = {bound}{row['trials']} search trials"
            + (f" ({stopper} stops some early)" if stopper else ""),
            highlight=False,
        )
    for ds, protocols in plan.meta.get("folds", {}).items():
        for name, folds in protocols.items():
            inner = folds[0]["inner"] if folds else 0
            console.print(
                f"{ds} / {name}: {len(folds)} outer folds"
                + (f" × {inner} inner" if inner else "")
                + f" (split seed {plan.meta.get('split_seed')})",
                highlight=False,
            )
    draws = {
        (t.dataset, t.protocol, t.outer_fold, t.train_fraction, t.train_resample)
        for t in trials
        if t.train_resample is not None
    }
    if draws:
        fractions = ", ".join(f"{f:g}" for f in sorted({d[3] for d in draws}))
        console.print(
            f"training-set draws: {len(draws)} (fractions {fractions}), each searched and "
            "refitted like its whole fold (docs/training-distribution.md)",
            highlight=False,
        )


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} GiB"  # pragma: no cover - the loop returns


def _print_inputs(prep: Prepared) -> None:
    """What each dataset's network receives after preprocessing, and its memory: per sample (the
    cached float32 volume) and for the dataset's whole volume cache."""
    from raybench.data.preprocess import dataset_geometry

    table = Table(title="inputs after preprocessing (per sample)")
    for col in ("dataset", "shape", "voxel (mm)", "orientation", "memory", "cache", "from"):
        table.add_column(col, justify="right" if col in ("memory", "cache") else "left")
    for ds in prep.suite.datasets:
        cohort = prep.cohorts[ds.name]
        g = dataset_geometry(prep.suite, ds, cohort)
        shape = "?" if g.shape is None else "×".join(map(str, g.shape))
        voxel = "varies" if g.spacing is None else "×".join(f"{v:.3g}" for v in g.spacing)
        size = g.bytes_per_sample
        memory = "?" if size is None else _bytes(size)
        cache = "?" if size is None else _bytes(size * cohort.table.height)
        table.add_row(ds.name, shape, voxel, g.orientation, memory, cache, g.how)
    console.print(table)


def plan(
    suite: Annotated[Path, typer.Argument(help="The suite YAML file.")],
    json_: JsonFlag = False,
    data_root: DataRootOption = None,
    no_plugins: NoPluginsFlag = False,
) -> None:
    """Compile SUITE and show its trials: counts per stage and dataset × model, resource needs.

    Nothing is written. With --json, print one JSON object per trial and line (trial_id, stage,
    dataset, model, protocol, outer_fold, inner_fold, seed, params, depends_on).
    """
    prep = prepare(suite, data_root, no_plugins=no_plugins)
    if prep.plugins:
        say(prep.plugins, stderr=json_)
    if json_:
        out = sys.stdout
        for t in prep.plan.trials:
            out.write(json.dumps(t.summary()) + "\n")
        out.flush()
        return
    _print_table(prep.plan)
    _print_inputs(prep)


def register(app: typer.Typer) -> None:
    """Add the ``plan`` command to the root ``app``."""
    app.command("plan")(plan)
