"""``raybench run SUITE``: compile the suite and run its trials on Ray, with live progress."""

from __future__ import annotations

import json
import shlex
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from raybench.cli.common import (
    CacheDirOption,
    DataRootOption,
    JsonFlag,
    NoPluginsFlag,
    console,
    err_console,
    say,
)
from raybench.cli.prepare import prepare
from raybench.cli.report import report_after_run

if TYPE_CHECKING:
    from raybench.cli.prepare import Prepared
    from raybench.suite import Suite

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


def results_uri(suite: Suite, results: str | None) -> str:
    """``--results``, else the suite's ``storage.results``, else ``results/<name>`` (absolute)."""
    chosen = results or (suite.storage.results if suite.storage else None)
    chosen = chosen or f"results/{suite.name}"
    return chosen if "://" in chosen else str(Path(chosen).resolve())


def resume_command(
    suite: Path,
    results: str,
    address: str | None,
    data_root: Path | None,
    gpus: float | None = None,
    cache_dir: Path | None = None,
) -> str:
    """The exact command that resumes this run."""
    parts = ["raybench", "run", str(suite), "--results", results]
    if address:
        parts += ["--address", address]
    if gpus is not None:
        parts += ["--gpus", f"{gpus:g}"]
    if data_root is not None:
        parts += ["--data-root", str(data_root)]
    if cache_dir is not None:
        parts += ["--cache-dir", str(cache_dir)]
    return shlex.join(parts)


def _closing_analysis(results: str, show: bool) -> None:
    """``raybench analyze``'s analysis of the results, saved under analysis/, printed if ``show``.

    A results URI (``s3://...``) is read and written through its filesystem. A run that finished
    is never failed by its analysis: a problem is reported (on stderr) and ``raybench analyze``
    can be run later.
    """
    from raybench_analysis import AnalysisError
    from raybench_analysis.io import join_uri

    from raybench.cli.summary import analyze_results, print_summary
    from raybench.errors import RaybenchError

    local = results.removeprefix("file://")
    try:
        summary = analyze_results(local)
    except (AnalysisError, RaybenchError, OSError) as exc:  # OSError: an unreachable store
        say(f"analysis summary unavailable: {exc}", stderr=True)
        return
    if show:
        print_summary(summary)
        say(f"tables written to {join_uri(local, 'analysis')} (again: raybench analyze "
            f"{shlex.quote(local)})")  # fmt: skip


def _dry_run(prep: Prepared, results: str, json_: bool) -> None:
    from raybench.store import ResultStore

    store = ResultStore(results)
    try:
        done = set(store.completed_ids())
    except Exception:
        done = set()
    stages = [
        {"stage": stage, "trials": len(ts), "to_run": sum(t.trial_id not in done for t in ts)}
        for stage, ts in prep.plan.stages
    ]
    if json_:
        print(json.dumps({"results": results, "stages": stages}))
        return
    for s in stages:
        console.print(f"{s['stage']}: {s['to_run']} of {s['trials']} trials would run")
    say(f"results: {results} (dry run: nothing started or written)")


def run(
    suite: Annotated[Path, typer.Argument(help="The suite YAML file.")],
    results: ResultsOption = None,
    address: AddressOption = None,
    max_concurrent: MaxConcurrentOption = None,
    dry_run: DryRunOption = False,
    data_root: DataRootOption = None,
    cache_dir: CacheDirOption = None,
    num_cpus: NumCpusOption = None,
    gpus: GpusOption = None,
    allow_suite_change: AllowSuiteChangeOption = False,
    json_: JsonFlag = False,
    no_plugins: NoPluginsFlag = False,
) -> None:
    """Run SUITE's trials on Ray; a rerun resumes with only the trials not yet completed.

    The closing tables (those of `raybench analyze`) are saved under RESULTS/analysis/.
    Exit codes: 0 all completed, 1 some failed (see `raybench status`),
    2 bad suite, dataset or results directory, 130 interrupted (Ctrl+C).
    """
    from raybench.plan.spec import plan_json
    from raybench.runner import RunOptions, run_plan
    from raybench.runner.progress import RichProgress
    from raybench.store import ResultStore

    prep = prepare(suite, data_root, materialize=not dry_run, no_plugins=no_plugins)
    if prep.plugins:
        say(prep.plugins, stderr=True)
    uri = results_uri(prep.suite, results)
    store = ResultStore(uri)
    check = store.check_suite(
        Path(suite).read_bytes(),
        [t.trial_id for t in prep.plan.trials],
        allow_change=allow_suite_change,
    )
    if check.changed:
        say(f"note: {check.message}", stderr=True)
    if dry_run:
        _dry_run(prep, uri, json_)
        return
    local = "://" not in uri or uri.startswith("file://")
    wandb_dir = (
        Path(uri.removeprefix("file://")) / "wandb"
        if local
        else Path(tempfile.gettempdir()) / "raybench-wandb" / prep.suite.name
    )
    progress = RichProgress(console=err_console)

    def on_event(event: dict[str, Any]) -> None:
        if event.get("type") == "run_start":
            err_console.print(event["cluster"].describe(), highlight=False, markup=False)
            say(f"results: {uri}", stderr=True)
        elif event.get("type") == "compacted":
            done = event["result"]
            say(
                f"compacted {done.trials} trial(s) into {done.batches} batch file(s) per table "
                f"in {done.seconds:.1f} s (docs/scale.md)",
                stderr=True,
            )
        progress(event)

    options = RunOptions(
        address=address,
        num_cpus=num_cpus,
        gpus=gpus,
        max_concurrent=max_concurrent,
        cache_dir=cache_dir,
        wandb_dir=wandb_dir,
        resume_command=resume_command(suite, uri, address, data_root, gpus, cache_dir),
        files={"suite.yaml": Path(suite).read_bytes(), "plan.json": plan_json(prep.plan)},
        on_event=on_event,
    )
    with progress:
        summary = run_plan(prep.plan, prep.cohorts, store, options)
    if json_:
        print(json.dumps(summary.as_dict()))
        _closing_analysis(uri, show=False)
    else:
        console.print(
            f"{len(summary.completed)} completed, {len(summary.failed)} failed, "
            f"{len(summary.skipped)} already done, in {summary.seconds:.1f} s",
            highlight=False,
        )
        for trial_id, error in summary.failed.items():
            console.print(f"  [red]failed[/] {trial_id}: {error}", highlight=False)
        say(f"results: {uri}")
        _closing_analysis(uri, show=True)
        report_after_run(uri, prep.suite, wandb_dir)
    if not summary.ok:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the ``run`` command to the root ``app``."""
    app.command("run")(run)
