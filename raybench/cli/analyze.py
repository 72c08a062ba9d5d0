"""``raybench analyze RESULTS_DIR...``: how good is each model, and is one really better?

A thin command over :func:`raybench.cli.summary.analyze_results` (so over
:func:`raybench_analysis.summarize`): it reads the committed trials of a results directory and
the suite saved there, whose ``analysis`` settings and metrics it uses unless a flag overrides
them (checked as the suite's keys: a bad level, order or metric exits 2 with a "did you mean").
It prints the closing tables of ``raybench run`` (the same numbers) and writes every table as
Parquet and the whole summary as JSON under ``--out``. Several directories (a raybench run and
imported results, docs/import.md) are analysed as one: each row keeps the label of its directory,
colliding model names become ``label:model``, and models are compared paired when they were
tested on the same subjects, unpaired (said so) when not.
"""

from __future__ import annotations

from typing import Annotated

import typer

from raybench.cli.common import JsonFlag, say

MetricOption = Annotated[
    str | None,
    typer.Option(
        "--metric",
        help="Metric(s), comma-separated, the first primary (auc, accuracy, mae, dice, ...); "
        "default the saved suite's analysis.metric and evaluation.metrics, else by task.",
    ),
]
HierarchyOption = Annotated[
    str | None,
    typer.Option(
        "--hierarchy",
        help="Resampling levels, outermost first, comma-separated, with subject_id; default "
        "the saved suite's analysis.hierarchy, else site,subject_id.",
    ),
]
AlphaOption = Annotated[
    float | None,
    typer.Option("--alpha", help="1 − confidence level; default the saved suite's, else 0.05."),
]
NBootOption = Annotated[
    int | None,
    typer.Option("--n-boot", help="Bootstrap replicates; default the saved suite's, else 2000."),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")]
OutOption = Annotated[
    str | None,
    typer.Option(
        "--out",
        help="Where to write the tables (default RESULTS_DIR/analysis/; with several "
        "directories, the first one's analysis/combined/).",
    ),
]
LabelsOption = Annotated[
    str | None,
    typer.Option(
        "--labels",
        help="With several results directories: their labels, comma-separated, in order "
        "(default the directory names); colliding model names become label:model.",
    ),
]
ResultsArgument = Annotated[
    list[str],
    typer.Argument(
        help="Results directory (or URI, s3://...) of a run (or of an import); several are "
        "analysed as one.",
    ),
]


def _names(text: str | None) -> list[str] | None:
    """A comma-separated flag as a list (None when not given)."""
    return None if text is None else [w.strip() for w in text.split(",") if w.strip()]


def default_out(results: list[str], name: str) -> str:
    """``RESULTS_DIR/<name>``, or ``FIRST/<name>/combined`` for several directories (a URI
    stays a URI: the tables go to the object store)."""
    from raybench_analysis.io import join_uri

    return join_uri(results[0], name if len(results) == 1 else f"{name}/combined")


def analyze(
    results_dir: ResultsArgument,
    metric: MetricOption = None,
    hierarchy: HierarchyOption = None,
    alpha: AlphaOption = None,
    n_boot: NBootOption = None,
    seed: SeedOption = 0,
    json_: JsonFlag = False,
    out: OutOption = None,
    labels: LabelsOption = None,
) -> None:
    """Analyse RESULTS_DIR: models with intervals, comparisons, variance parts, what is missing.

    Works on a partial run (only committed trials are read). Writes <table>.parquet and
    summary.json under --out; --json prints that summary on stdout instead of the tables.
    Several directories are analysed as one (docs/import.md, "Combining results directories").
    """
    from raybench.cli.summary import analyze_results, print_summary

    out = out if out is not None else default_out(results_dir, "analysis")
    results = results_dir[0] if len(results_dir) == 1 else results_dir
    summary = analyze_results(
        results, out, metric=_names(metric), hierarchy=_names(hierarchy), alpha=alpha,
        n_boot=n_boot, seed=seed, labels=_names(labels),
    )  # fmt: skip
    if json_:
        typer.echo(summary.to_json())
        return
    print_summary(summary)
    say(f"tables written to {out}")


def register(app: typer.Typer) -> None:
    """Add ``raybench analyze`` to the root command."""
    app.command("analyze")(analyze)
