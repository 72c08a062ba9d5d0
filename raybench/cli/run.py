"""``raybench run SUITE``: compile the suite and run its trials on Ray, with live progress."""

from __future__ import annotations

import json
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from raybench.cli.analyze import print_summary
from raybench.cli.common import JsonFlag, console, err_console, friendly_errors
from raybench.data.cohort import Cohort
from raybench.plan.spec import Plan

ResultsOption = Annotated[
    str | None,
    typer.Option(
        "--results",
        help="Results directory or URI (s3://...); default storage.results of the suite, "
        "else results/<suite name>/.",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="Join this Ray cluster ('auto': the cluster of this machine, or HOST:PORT such as "
        "10.0.0.1:6379); default: start a private Ray on this machine, on 127.0.0.1 only.",
    ),
]
MaxConcurrentOption = Annotated[
    int | None,
    typer.Option("--max-concurrent", min=1, help="Trials running at once (default: resources)."),
]
NumCpusOption = Annotated[
    int | None,
    typer.Option("--num-cpus", min=1, help="CPUs of the local Ray (default: all)."),
]
GpusOption = Annotated[
    float | None,
    typer.Option(
        "--gpus",
        min=0.0,
        help="GPUs per trial, overriding the suite's resources.gpu (0: a CPU-only try); "
        "recorded in the trials table.",
    ),
]
DryRunOption = Annotated[
    bool, typer.Option("--dry-run", help="Show what would run (nothing is written or started).")
]
AllowSuiteChangeOption = Annotated[
    bool,
    typer.Option(
        "--allow-suite-change",
        help="Run into a results directory written by another suite, pooling its trials "
        "(without it, only a suite that adds trials is accepted; docs/results.md).",
    ),
]
DataRootOption = Annotated[
    Path | None,
    typer.Option(
        "--data-root", help="Where synthetic cohorts are generated; default ./.raybench-data."
    ),
]


@dataclass(frozen=True)
class Prepared:
    """A suite ready to run: the suite object, its cohorts, its plan and the results URI."""

    suite: Any
    suite_path: Path
    cohorts: dict[str, Cohort]
    plan: Plan
    results: str


def results_uri(suite: Any, results: str | None) -> str:
    """``--results``, else the suite's ``storage.results``, else ``results/<name>`` (absolute)."""
    chosen = results or (suite.storage.results if suite.storage else None)
    chosen = chosen or f"results/{suite.name}"
    return chosen if "://" in chosen else str(Path(chosen).resolve())


def prepare(
    suite_path: Path, results: str | None, data_root: Path | None, materialize: bool
) -> Prepared:
    """Load the suite and its cohorts (generating synthetic data when ``materialize``), compile."""
    from raybench.data import load_cohort
    from raybench.plan import compile_suite
    from raybench.suite import load_suite

    suite = load_suite(suite_path)
    root = (data_root if data_root is not None else Path(".raybench-data")).resolve()
    suite_dir = Path(suite_path).resolve().parent
    cohorts = {
        ds.name: load_cohort(ds, suite_dir, root, materialize=materialize) for ds in suite.datasets
    }
    return Prepared(
        suite, Path(suite_path), cohorts, compile_suite(suite, cohorts), results_uri(suite, results)
    )


def plan_json(plan: Plan) -> bytes:
    """The compiled plan as written to ``plan.json`` (stages of trial summaries)."""
    doc = {
        "suite": plan.suite_name,
        "meta": plan.meta,
        "stages": [
            {"stage": stage, "trials": [t.summary() for t in trials]}
            for stage, trials in plan.stages
        ],
    }
    return json.dumps(doc, indent=1, sort_keys=True, default=str).encode()


def resume_command(
    suite: Path,
    results: str,
    address: str | None,
    data_root: Path | None,
    gpus: float | None = None,
) -> str:
    """The exact command that resumes this run."""
    parts = ["raybench", "run", str(suite), "--results", results]
    if address:
        parts += ["--address", address]
    if gpus is not None:
        parts += ["--gpus", f"{gpus:g}"]
    if data_root is not None:
        parts += ["--data-root", str(data_root)]
    return shlex.join(parts)


def _print_analysis(results: str, suite: Any) -> None:
    """The analysis package's summary, if it is installed and the run has results."""
    try:
        from raybench_analysis import summarize
    except ImportError:
        return
    try:
        summary = summarize(
            results,
            hierarchy=list(suite.analysis.hierarchy),
            alpha=suite.analysis.alpha,
            metric=suite.analysis.metric,
            n_boot=suite.analysis.n_boot,
        )
    except Exception as exc:  # the analysis is a bonus here: never fail a finished run on it
        err_console.print(f"analysis summary unavailable: {exc}", highlight=False)
        return
    print_summary(summary)
    console.print(f"full analysis: raybench analyze {shlex.quote(results)}", highlight=False)


def _dry_run(prep: Prepared, json_: bool) -> None:
    from raybench.store import ResultStore

    store = ResultStore(prep.results)
    try:
        done = set(store.completed_ids())
    except Exception:
        done = set()
    stages = [
        {"stage": stage, "trials": len(ts), "to_run": sum(t.trial_id not in done for t in ts)}
        for stage, ts in prep.plan.stages
    ]
    if json_:
        print(json.dumps({"results": prep.results, "stages": stages}))
        return
    for s in stages:
        console.print(f"{s['stage']}: {s['to_run']} of {s['trials']} trials would run")
    console.print(f"results: {prep.results} (dry run: nothing started or written)")


@friendly_errors
def run(
    suite: Annotated[Path, typer.Argument(help="The suite YAML file.")],
    results: ResultsOption = None,
    address: AddressOption = None,
    max_concurrent: MaxConcurrentOption = None,
    dry_run: DryRunOption = False,
    data_root: DataRootOption = None,
    num_cpus: NumCpusOption = None,
    gpus: GpusOption = None,
    allow_suite_change: AllowSuiteChangeOption = False,
    json_: JsonFlag = False,
) -> None:
    """Run SUITE's trials on Ray; a rerun resumes with only the trials not yet completed.

    Exit codes: 0 all completed, 1 some failed (see `raybench status`),
    2 bad suite, dataset or results directory, 130 interrupted (Ctrl+C).
    """
    from raybench.runner import RunOptions, run_plan
    from raybench.runner.progress import RichProgress
    from raybench.store import ResultStore

    prep = prepare(suite, results, data_root, materialize=not dry_run)
    store = ResultStore(prep.results)
    check = store.check_suite(
        Path(suite).read_bytes(),
        [t.trial_id for t in prep.plan.trials],
        allow_change=allow_suite_change,
    )
    if check.changed:
        err_console.print(f"note: {check.message}", highlight=False, markup=False)
    if dry_run:
        _dry_run(prep, json_)
        return
    local = "://" not in prep.results or prep.results.startswith("file://")
    wandb_dir = (
        Path(prep.results.removeprefix("file://")) / "wandb"
        if local
        else Path(tempfile.gettempdir()) / "raybench-wandb" / prep.suite.name
    )
    root = (data_root if data_root is not None else Path(".raybench-data")).resolve()
    progress = RichProgress(console=err_console)

    def on_event(event: dict[str, Any]) -> None:
        if event.get("type") == "run_start":
            err_console.print(event["cluster"].describe(), highlight=False, markup=False)
            err_console.print(f"results: {prep.results}", highlight=False)
        progress(event)

    options = RunOptions(
        address=address,
        num_cpus=num_cpus,
        gpus=gpus,
        max_concurrent=max_concurrent,
        cache_dir=root / "cache",
        wandb_dir=wandb_dir,
        resume_command=resume_command(suite, prep.results, address, data_root, gpus),
        files={"suite.yaml": Path(suite).read_bytes(), "plan.json": plan_json(prep.plan)},
        on_event=on_event,
    )
    with progress:
        summary = run_plan(prep.plan, prep.cohorts, store, options)
    if json_:
        print(json.dumps(summary.as_dict()))
    else:
        console.print(
            f"{len(summary.completed)} completed, {len(summary.failed)} failed, "
            f"{len(summary.skipped)} already done, in {summary.seconds:.1f} s",
            highlight=False,
        )
        for trial_id, error in summary.failed.items():
            console.print(f"  [red]failed[/] {trial_id}: {error}", highlight=False)
        console.print(f"results: {prep.results}", highlight=False)
        _print_analysis(prep.results, prep.suite)
    if not summary.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to the root ``app``."""
    app.command("run")(run)
