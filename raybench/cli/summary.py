"""The analysis of a results directory as ``raybench run`` and ``raybench analyze`` show it.

One path for both commands: :func:`analyze_results` calls :func:`raybench_analysis.summarize` on
the directory (its settings from the saved suite, CLI flags as overrides) and saves every table
under ``analysis/``; :func:`print_summary` prints the closing tables. So the run's closing tables
and a later ``raybench analyze`` of the same directory are the same tables, and both are saved.

What the tables say: each comparison table is titled by its method, the primary one (the paired
bootstrap, whose estimand is the models table's) marked; counts are named by what they count
(sites, subjects, predictions); a method or unit line is printed once, not under every table
that shares it; variance components are given as standard deviations with intervals on that
scale; every table has a dataset column; notes are plain text.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from raybench.cli.common import console, say

if TYPE_CHECKING:
    import polars as pl
    from raybench_analysis import Summary

#: Notes printed before pointing to summary.json for the rest (which lists them all).
MAX_NOTES = 20

#: A console as wide as any table, to measure a table's natural width.
_WIDE = Console(width=10_000)

#: The interval columns of a table.
CI = ("ci_low", "ci_high")

#: Count columns of the tables and what they count, in print order.
COUNTS = (("n_site", "sites"), ("n_subject_id", "subjects"), ("n_obs", "predictions"))


def analyze_results(
    results: str | Path | list[str], out: str | Path | None = None, **overrides: Any
) -> Summary:
    """Summarise ``results`` with :func:`raybench_analysis.summarize`, save it, return it.

    ``overrides`` (``metric``, ``hierarchy``, ``alpha``, ``n_boot``, ``seed``, ``labels``)
    replace the saved suite's settings (None keeps them). The tables go to ``out`` (default
    ``<results>/analysis``) as ``<table>.parquet`` and ``summary.json``. A list of directories
    is analysed as one (``out`` is then required).
    """
    from raybench_analysis import summarize
    from raybench_analysis.io import join_uri

    summary = summarize(results, **{k: v for k, v in overrides.items() if v is not None})
    several = isinstance(results, list)
    summary.settings["source"] = " + ".join(map(str, results)) if several else str(results)
    if several and out is None:
        raise ValueError("analyze_results: several results directories need out=")
    summary.write(out if out is not None else join_uri(str(results), "analysis"))
    return summary


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        if value != 0 and abs(value) < 10 ** (-digits):
            return f"{value:.1e}"
        return f"{value:.{digits}f}"
    return str(value)


#: A column of a printed table: a frame column, or a (low, high) pair shown as "[low, high]".
Column = str | tuple[str, str]


class _Printer:
    """Prints tables; a caption (method and unit) only when it differs from the last one shown."""

    def __init__(self, several_metrics: bool) -> None:
        self.last_caption: str | None = None
        self.several_metrics = several_metrics

    def table(
        self,
        title: str,
        frame: pl.DataFrame,
        columns: list[tuple[Column, str]],
    ) -> None:
        """Print ``columns`` (those ``frame`` has) of ``frame`` under ``title``."""
        present = [(c, h) for c, h in columns if self._shows(frame, c)]
        text = _caption(frame)
        shown = text if text and text != self.last_caption else None
        self.last_caption = text or self.last_caption
        table = Table(title=title, title_justify="left", caption=shown, caption_justify="left",
                      box=box.SIMPLE_HEAD, pad_edge=False)  # fmt: skip
        for c, h in present:
            numeric = isinstance(c, tuple) or frame.schema[c].is_numeric()
            table.add_column(h, justify="right" if numeric else "left", no_wrap=True)
        for row in frame.iter_rows(named=True):
            table.add_row(*[_cell(row, c) for c, _ in present])
        # at its natural width: a narrow terminal wraps lines rather than rich cutting numbers
        natural = Measurement.get(_WIDE, _WIDE.options, table).maximum
        Console(width=max(natural, console.width), highlight=False).print(table)

    def _shows(self, frame: pl.DataFrame, column: Column) -> bool:
        if isinstance(column, tuple):
            return all(c in frame.columns for c in column)
        return column in frame.columns and (column != "metric" or self.several_metrics)


def _cell(row: dict[str, Any], column: Column) -> str:
    if isinstance(column, tuple):
        return f"[{_fmt(row[column[0]])}, {_fmt(row[column[1]])}]"
    return _fmt(row[column])


def _caption(frame: pl.DataFrame) -> str | None:
    parts = [
        f"{c}: {' | '.join(str(v) for v in frame[c].unique(maintain_order=True).to_list())}"
        for c in ("method", "unit")
        if c in frame.columns
    ]
    return "; ".join(parts) or None


def _with_dataset(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with a dataset column first (``–`` when the predictions had none)."""
    import polars as pl

    if "dataset" in frame.columns:
        return frame
    return frame.with_columns(dataset=pl.lit("–")).select("dataset", pl.exclude("dataset"))


def print_summary(summary: Summary) -> None:
    """Print the closing tables of a :class:`raybench_analysis.Summary`."""
    s = summary.settings
    metrics = s.get("metrics")
    if not metrics:  # nothing to analyse yet (no predictions): only the notes say why
        print_notes(summary.missing)
        return
    printer = _Printer(several_metrics=len(metrics) > 1)
    shown = ", ".join(f"{m} (primary)" if i == 0 else m for i, m in enumerate(metrics))
    origin = s.get("origin", {})
    from_suite = [k for k, v in origin.items() if v == "suite"]
    say(
        f"metrics {shown}; hierarchy {'>'.join(s.get('hierarchy', []))}; alpha {s.get('alpha')};"
        f" bootstrap {s.get('n_boot')} replicates"
        + (f" (from the saved suite: {', '.join(from_suite)})" if from_suite else "")
    )
    for label, path in (s.get("sources") or {}).items():
        say(f"results {label}: {path}")
    level = f"{100 * (1 - s.get('alpha', 0.05)):g}%"
    if "models" in summary:
        printer.table(
            f"models: estimates with {level} intervals",
            _with_dataset(summary["models"]),
            [("dataset", "dataset"), ("metric", "metric"), ("model", "model"),
             ("source_dir", "results"), ("estimate", "estimate"), (CI, "interval"), *COUNTS],
        )  # fmt: skip
    if "comparisons" in summary:
        _print_comparisons(printer, _with_dataset(summary["comparisons"]), s, level)
    if "variance" in summary:
        printer.table(
            "variance components of a trial's score (standard deviations)",
            _with_dataset(summary["variance"]),
            [("dataset", "dataset"), ("metric", "metric"), ("model", "model"),
             ("component", "component"), ("sd", "sd"), (("sd_ci_low", "sd_ci_high"), f"sd {level}"),
             ("share", "share of variance")],
        )  # fmt: skip
    if "ranking" in summary:
        printer.table(
            "ranking stability (rank 1 = best; ties share their ranks)",
            _with_dataset(summary["ranking"]),
            [("dataset", "dataset"), ("metric", "metric"), ("model", "model"), ("rank", "rank"),
             ("mean_rank", "mean rank"), ("rank_ci_low", "low"), ("rank_ci_high", "high"),
             ("p_rank_1", "P(first)")],
        )  # fmt: skip
    if "robustness" in summary:
        printer.table(
            "robustness: metric change under perturbation",
            _with_dataset(summary["robustness"]),
            [("dataset", "dataset"), ("metric", "metric"), ("model", "model"),
             ("perturbation", "perturbation"), ("clean", "clean"), ("estimate", "change"),
             (CI, "interval")],
        )  # fmt: skip
    if "operating_ranges" in summary:
        printer.table(
            "operating ranges: severities within tolerance of the clean metric (FWER alpha)",
            _with_dataset(summary["operating_ranges"]),
            [("dataset", "dataset"), ("metric", "metric"), ("model", "model"),
             ("perturbation_type", "type"), ("tolerance", "tolerance"), ("range_low", "from"),
             ("range_high", "to"), ("tested_high", "tested to"), ("censored_high", "censored")],
        )  # fmt: skip
    _print_uncertainty(printer, summary, level)
    _print_learning_curves(printer, summary, level)
    _print_external(printer, summary, level)
    _print_feature_shift(printer, summary)
    _print_explanations(printer, summary, level)
    print_notes(summary.missing)


def _print_external(printer: _Printer, summary: Summary, level: str) -> None:
    """Issue 16's tables, when saved models were evaluated on external datasets."""
    keys = [("development", "trained on"), ("dataset", "external"), ("protocol", "protocol")]
    if "external" in summary:
        printer.table(
            f"external validation: estimates with {level} intervals",
            summary["external"],
            [*keys, ("metric", "metric"), ("model", "model"), ("estimate", "estimate"),
             (CI, "interval"), *COUNTS],
        )  # fmt: skip
    if "generalisation_gap" in summary:
        printer.table(
            "generalisation gap (internal − external)",
            summary["generalisation_gap"],
            [*keys, ("metric", "metric"), ("model", "model"), ("internal", "internal"),
             ("external", "external"), ("estimate", "gap"), (CI, f"{level} interval"),
             ("p_value", "p")],
        )  # fmt: skip
    if "external_comparisons" in summary:
        printer.table(
            "pairwise comparisons on the external subjects (a − b)",
            summary["external_comparisons"],
            [*keys, ("metric", "metric"), ("model_a", "a"), ("model_b", "b"),
             ("estimate", "difference"), (CI, f"{level} interval"), ("p_value", "p"),
             ("p_adjusted", "p (adjusted)")],
        )  # fmt: skip


def _print_feature_shift(printer: _Printer, summary: Summary) -> None:
    """Issue 10's feature distance, when networks were scored on a generated dataset."""
    if "feature_shift" in summary:
        printer.table(
            "feature distance: generated vs real test images (real halves: no shift)",
            summary["feature_shift"],
            [("dataset", "generated"), ("development", "from"), ("model", "model"),
             ("seed", "seed"), ("distance", "distance"), ("halves", "real halves"),
             ("halves_p", "p"), ("generated", "real vs generated"), ("generated_p", "p"),
             ("n_half", "images")],
        )  # fmt: skip


def _print_uncertainty(printer: _Printer, summary: Summary, level: str) -> None:
    """Issue 9's tables, when the trials recorded uncertainty variants (docs/uncertainty.md)."""
    tables = (
        ("uncertainty_calibration", "calibration of each prediction variant",
         [("quantity", "quantity"), ("convention", "convention")]),
        ("selective", "selective prediction: referring the least certain cases",
         [("uncertainty", "uncertainty"), ("quantity", "quantity"), ("coverage", "coverage")]),
        ("conformal", "split-conformal sets (alpha 0.1, calibrated on validation rows)",
         [("site", "site"), ("quantity", "quantity")]),
    )  # fmt: skip
    for name, title, middle in tables:
        if name in summary:
            printer.table(
                title,
                _with_dataset(summary[name]),
                [("dataset", "dataset"), ("model", "model"), ("variant", "variant"), *middle,
                 ("estimate", "estimate"), (CI, f"{level} interval")],
            )  # fmt: skip


def _print_learning_curves(printer: _Printer, summary: Summary, level: str) -> None:
    """Issue 10's tables, when training sets were drawn (docs/training-distribution.md)."""
    if "learning_curve" in summary:
        printer.table(
            f"learning curve: metric by training subjects, {level} intervals",
            _with_dataset(summary["learning_curve"]),
            [("dataset", "dataset"), ("model", "model"), ("train_fraction", "fraction"),
             ("n_train", "subjects"), ("n_draws", "draws"), ("estimate", "estimate"),
             (CI, "interval")],
        )  # fmt: skip
    if "learning_curve_fit" in summary:
        printer.table(
            "inverse power law a − b·n^(−c) fitted to the curve",
            _with_dataset(summary["learning_curve_fit"]),
            [("dataset", "dataset"), ("model", "model"), ("a", "plateau a"),
             (("a_ci_low", "a_ci_high"), f"a {level}"), ("c", "decay c"),
             (("c_ci_low", "c_ci_high"), f"c {level}"), ("n_max", "largest n")],
        )  # fmt: skip
    if "sampling_variance" in summary:
        printer.table(
            "sampling variance: spread over draws of training subjects (standard deviations)",
            _with_dataset(summary["sampling_variance"]).with_columns(
                sd_low=summary["sampling_variance"]["ci_low"].sqrt(),
                sd_high=summary["sampling_variance"]["ci_high"].sqrt(),
            ),
            [("dataset", "dataset"), ("model", "model"), ("train_fraction", "fraction"),
             ("n_train", "subjects"), ("component", "component"), ("sd", "sd"),
             (("sd_low", "sd_high"), f"sd {level}")],
        )  # fmt: skip


#: The explanation metrics the closing summary shows (summary.json and analysis/ hold them all).
EXPLANATION_HEADLINE = ("auroc", "mass_accuracy", "dice", "hd95", "deletion_auc",
                        "perturbation_spearman")  # fmt: skip


def _print_explanations(printer: _Printer, summary: Summary, level: str) -> None:
    """Issue 8's tables, when the trials explained test images (docs/explanations.md)."""
    import polars as pl

    if "explanations" in summary:
        frame = summary["explanations"].filter(pl.col("metric").is_in(EXPLANATION_HEADLINE))
        printer.table(
            "explanations: localisation, weakly supervised segmentation, faithfulness, stability",
            _with_dataset(frame.rename({"method": "attribution", "metric": "score"})),
            [("dataset", "dataset"), ("model", "model"), ("attribution", "attribution"),
             ("perturbation", "perturbation"), ("score", "score"), ("estimate", "estimate"),
             (CI, f"{level} interval"), ("n_undefined", "undefined")],
        )  # fmt: skip
    if "randomisation" in summary:
        printer.table(
            "model-randomisation check: rank correlation of trained and randomised maps",
            _with_dataset(summary["randomisation"].rename({"method": "attribution"})),
            [("dataset", "dataset"), ("model", "model"), ("attribution", "attribution"),
             ("estimate", "spearman"), (CI, f"{level} interval"), ("status", "status")],
        )  # fmt: skip


def _print_comparisons(
    printer: _Printer, comparisons: pl.DataFrame, settings: dict[str, Any], level: str
) -> None:
    """One table per method, titled by it; the paired bootstrap (the models' estimand) primary."""
    parts = comparisons.partition_by("method", maintain_order=True)
    primary = next((i for i, p in enumerate(parts) if "bootstrap" in p["method"][0]), 0)
    for i, part in enumerate(parts):
        mark = " (primary)" if i == primary else ""
        printer.table(
            f"pairwise comparisons (a − b){mark}: {part['method'][0]}",
            part.drop("method"),
            [("dataset", "dataset"), ("metric", "metric"), ("model_a", "a"), ("model_b", "b"),
             ("pairing", "pairing"), ("estimate", "difference"), (CI, f"{level} interval"),
             ("p_value", "p"),
             ("p_adjusted", f"p ({settings.get('correction')})"), *COUNTS],
        )  # fmt: skip


def print_notes(notes: list[str]) -> None:
    """What is missing or was not computed, as plain text (summary.json lists every note)."""
    if not notes:
        return
    say("missing or not computed:")
    for note in notes[:MAX_NOTES]:
        say(f"  - {note}")
    if len(notes) > MAX_NOTES:
        say(f"  ... and {len(notes) - MAX_NOTES} more: see analysis/summary.json")
