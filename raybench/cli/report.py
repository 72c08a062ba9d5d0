"""``raybench report RESULTS_DIR...``: one self-contained HTML report of a run, figures beside it.

A thin command over :func:`raybench_analysis.report.write_report`. Its settings are those of
``raybench analyze``: :func:`raybench_analysis.summarize` reads the suite saved in the results
directory, and the same flags override it, so the report's numbers are those of ``analyze``.
Several directories make one report of their combined analysis (as ``raybench analyze`` with the
same directories).
"""

from __future__ import annotations

import json
import shlex
import webbrowser
from pathlib import Path
from typing import Annotated, Any

import typer

from raybench.cli.analyze import (
    AlphaOption,
    HierarchyOption,
    LabelsOption,
    MetricOption,
    NBootOption,
    SeedOption,
    _names,
)
from raybench.cli.common import JsonFlag, say


def _write(results_dir: str | list[str], out: Path | None, **overrides: Any) -> tuple[Any, Any]:
    """Summarise as ``raybench analyze`` does, write the report; return (report, summary).

    The saved suite's settings apply, each replaced by an override that is not None. A list of
    directories is reported as one combined analysis.
    """
    from raybench_analysis import summarize
    from raybench_analysis.report import write_report

    given = {k: v for k, v in overrides.items() if v is not None}
    summary = summarize(results_dir, **given)
    labels = given.get("labels")
    return write_report(results_dir, out, summary=summary, labels=labels), summary


def report(
    results_dir: Annotated[
        list[str],
        typer.Argument(help="Results directory (or URI) of a run; several make one report."),
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="The HTML file (default RESULTS_DIR/report/index.html; with several "
            "directories the first one's report/combined/index.html); figures go in figures/ "
            "beside it.",
        ),
    ] = None,
    open_: Annotated[bool, typer.Option("--open", help="Open the report in a browser.")] = False,
    metric: MetricOption = None,
    hierarchy: HierarchyOption = None,
    alpha: AlphaOption = None,
    n_boot: NBootOption = None,
    seed: SeedOption = 0,
    json_: JsonFlag = False,
    labels: LabelsOption = None,
) -> None:
    """Write the HTML report of RESULTS_DIR: provenance, models, comparisons, figures, methods.

    The file loads nothing from another host (figures and styles are inline) and works on a
    partial run, listing what is missing. Each figure is also written as PNG and SVG. The
    numbers are those of `raybench analyze` with the same flags.
    """
    from raybench.errors import ResultsError

    first = results_dir[0]
    remote = "://" in first and not first.startswith("file://")
    if remote and out is None:
        raise ResultsError(f"{first} is remote: give --out FILE.html for the report.")
    written, _ = _write(
        first if len(results_dir) == 1 else results_dir,
        out,
        labels=_names(labels),
        metric=_names(metric),
        hierarchy=_names(hierarchy),
        alpha=alpha,
        n_boot=n_boot,
        seed=seed,
    )
    if json_:
        doc = {
            "report": str(written.path),
            "figures": [str(p) for p in written.figures],
            "sections": written.sections,
            "missing": written.missing,
            "seconds": written.seconds,
        }
        typer.echo(json.dumps(doc))
    else:
        say(
            f"report: {written.path} ({len(written.figures) // 2} figures in "
            f"{written.path.parent / 'figures'})"
        )
    if open_:
        webbrowser.open(written.path.resolve().as_uri())


def report_after_run(results: str, suite: Any, wandb_dir: Path | None = None) -> None:
    """End ``raybench run``: the report, the suite's W&B analysis run, the ``wandb sync`` hint.

    The settings are those ``raybench analyze`` uses. The report and the W&B run are bonuses
    there: a failure is printed, never raised, so a finished run keeps its exit status.
    ``wandb_dir`` is where the trial runs were written (the suite run goes beside them).
    """
    from raybench.runner.tracking import log_suite_run, sync_command

    written = summary = None
    try:
        if "://" in results and not results.startswith("file://"):
            from raybench_analysis import summarize  # the report is a local file: on request

            summary = summarize(results)
            say(f"report: raybench report {shlex.quote(results)} --out report.html")
        else:
            written, summary = _write(results, None)
            say(f"report: {written.path}")
    except Exception as exc:  # never fail a finished run on its report
        say(f"report unavailable: {exc}", stderr=True)
    tracking = getattr(getattr(suite, "tracking", None), "wandb", None)
    if tracking is None or tracking.mode == "disabled" or wandb_dir is None:
        return
    if summary is not None:
        try:
            log_suite_run(
                suite.name,
                tracking.model_dump(),
                wandb_dir,
                summary,
                report=written,
                results_dir=None if "://" in results else results,
            )
        except Exception as exc:  # W&B trouble must not fail the run either
            say(f"W&B analysis run not written: {exc}", stderr=True)
    if tracking.mode == "offline":
        say(f"W&B runs were written offline; upload them with: {sync_command(wandb_dir)}")


def register(app: typer.Typer) -> None:
    """Add ``raybench report`` to the root command."""
    app.command("report")(report)
