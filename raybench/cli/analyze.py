"""``raybench analyze RESULTS_DIR``: how good is each model, and is one really better?

A thin command over :func:`raybench_analysis.summarize`: it reads the committed trials of a results
directory, prints the models with intervals, the pairwise comparisons with adjusted p-values and
the variance parts, says what is missing from a partial run, and writes every table as Parquet and
the whole summary as JSON.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer
from rich.table import Table

from raybench.cli.common import console, friendly_errors
from raybench.errors import ResultsError

DEFAULT_HIERARCHY = "site,subject_id"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


def _table(title: str, frame: pl.DataFrame, columns: list[tuple[str, str]]) -> Table:
    """A rich table of ``columns`` (frame column, header); method and unit go in the caption."""
    present = [(c, h) for c, h in columns if c in frame.columns]
    caption = "; ".join(
        f"{c}: {', '.join(str(v) for v in frame[c].unique(maintain_order=True).to_list())}"
        for c in ("method", "unit")
        if c in frame.columns
    )
    table = Table(title=title, title_justify="left", caption=caption or None,
                  caption_justify="left")  # fmt: skip
    for c, h in present:
        table.add_column(h, justify="right" if frame.schema[c].is_numeric() else "left")
    for row in frame.iter_rows(named=True):
        table.add_row(*[_fmt(row[c]) for c, _ in present])
    return table


def _interval_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """Add a ``ci`` column "[low, high]" (3 decimals) for printing; the tables keep full values."""
    return frame.with_columns(
        ci=pl.format("[{}, {}]", pl.col("ci_low").round(3), pl.col("ci_high").round(3))
    )


def _hierarchy_from_suite(results_dir: Path) -> str | None:
    """The ``analysis.hierarchy`` of the suite copied into the results directory, if any."""
    path = results_dir / "suite.yaml"
    if not path.is_file():
        return None
    try:
        import yaml

        data = yaml.safe_load(path.read_text())
        levels = data.get("analysis", {}).get("hierarchy")
    except Exception:  # a malformed copy must not stop the analysis; the default applies
        return None
    return ",".join(levels) if isinstance(levels, list) and levels else None


def print_summary(summary: Any) -> None:
    """Print the main tables of a :class:`raybench_analysis.Summary` with rich."""
    s = summary.settings
    console.print(
        f"[bold]metric[/] {s.get('metric')}  [bold]hierarchy[/] {'>'.join(s.get('hierarchy', []))}"
        f"  [bold]alpha[/] {s.get('alpha')}  [bold]bootstrap[/] {s.get('n_boot')} replicates",
        highlight=False,
    )
    if "models" in summary:
        console.print(
            _table(
                f"models: {s.get('metric')} with {100 * (1 - s.get('alpha', 0.05)):g}% intervals",
                _interval_frame(summary["models"]),
                [
                    ("dataset", "dataset"),
                    ("model", "model"),
                    ("estimate", "estimate"),
                    ("ci", "interval"),
                    ("se", "se"),
                    ("n_obs", "n"),
                ],
            )
        )
    comparisons = summary.get("comparisons")
    groups = [] if comparisons is None else comparisons.partition_by("method", maintain_order=True)
    for part in groups:
        console.print(
            _table(
                "pairwise comparisons (a − b)",
                _interval_frame(part),
                [
                    ("dataset", "dataset"),
                    ("model_a", "a"),
                    ("model_b", "b"),
                    ("estimate", "difference"),
                    ("ci", "interval"),
                    ("p_value", "p"),
                    ("p_adjusted", f"p ({s.get('correction')})"),
                ],
            )
        )
    if "variance" in summary:
        console.print(
            _table(
                "variance components of a trial's score",
                summary["variance"],
                [
                    ("dataset", "dataset"),
                    ("model", "model"),
                    ("component", "component"),
                    ("sd", "sd"),
                    ("share", "share"),
                    ("ci_low", "var low"),
                    ("ci_high", "var high"),
                ],
            )
        )
    if "ranking" in summary:
        console.print(
            _table(
                "ranking stability",
                summary["ranking"],
                [
                    ("dataset", "dataset"),
                    ("model", "model"),
                    ("rank", "rank"),
                    ("mean_rank", "mean rank"),
                    ("rank_ci_low", "low"),
                    ("rank_ci_high", "high"),
                    ("p_rank_1", "P(first)"),
                ],
            )
        )
    if "robustness" in summary:
        console.print(
            _table(
                "robustness: metric change under perturbation",
                _interval_frame(summary["robustness"]),
                [
                    ("model", "model"),
                    ("perturbation", "perturbation"),
                    ("clean", "clean"),
                    ("estimate", "delta"),
                    ("ci", "interval"),
                ],
            )
        )
    if summary.missing:
        console.print("[bold yellow]missing or not computed:[/]")
        for note in summary.missing:
            console.print(f"  - {note}", highlight=False, soft_wrap=True)


@friendly_errors
def analyze(
    results_dir: Annotated[Path, typer.Argument(help="Results directory of a run.")],
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="Metric (auc, accuracy, mae, dice, ...); default by task."),
    ] = None,
    hierarchy: Annotated[
        str | None,
        typer.Option(
            "--hierarchy",
            help="Resampling levels from the top, comma-separated; default the suite's "
            f"analysis.hierarchy, else {DEFAULT_HIERARCHY}.",
        ),
    ] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="1 − confidence level.")] = 0.05,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap replicates.")] = 1000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
    json_file: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary as JSON to this file.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Where to write tables (default RESULTS_DIR/analysis/)."),
    ] = None,
) -> None:
    """Analyse RESULTS_DIR: models with intervals, comparisons, variance parts, what is missing.

    Works on a partial run (only committed trials are read). Writes <table>.parquet and
    summary.json under --out.
    """
    from raybench_analysis._frames import AnalysisError
    from raybench_analysis.summarize import read_results, summarize

    if not 0 < alpha < 1:
        raise ResultsError(f"--alpha {alpha} must be between 0 and 1 (e.g. 0.05).")
    if n_boot < 2:
        raise ResultsError(f"--n-boot {n_boot} must be at least 2 (1000 or more is usual).")
    try:
        tables = read_results(results_dir)
    except AnalysisError as exc:
        raise ResultsError(str(exc)) from None
    levels_text = hierarchy or _hierarchy_from_suite(results_dir) or DEFAULT_HIERARCHY
    levels = [level.strip() for level in levels_text.split(",") if level.strip()]
    summary = summarize(
        tables, hierarchy=levels, alpha=alpha, metric=metric, n_boot=n_boot, seed=seed
    )
    summary.settings["source"] = str(results_dir)
    print_summary(summary)
    out_dir = summary.write(out if out is not None else results_dir / "analysis")
    if json_file is not None:
        summary.to_json(json_file)
    console.print(f"tables written to {out_dir}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``raybench analyze`` to the root command."""
    app.command("analyze")(analyze)
