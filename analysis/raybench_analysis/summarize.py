"""One call from a results directory to the tables a report needs.

:func:`summarize` reads a raybench run (or tables already loaded) and returns tidy polars tables:
per-model metrics with hierarchical bootstrap intervals, paired model comparisons with adjusted
p-values, the variance decomposition, per-site performance, calibration, robustness deltas when the
suite perturbed its inputs, and ranking stability. Every table carries ``method`` and ``unit``
columns; what could not be computed, or what the run lacks (failed or missing trials), is listed
in :attr:`Summary.missing` instead of failing, so a partial run still gets its analysis.
"""

from __future__ import annotations

import io
import json
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from raybench_analysis._frames import AnalysisError, to_polars
from raybench_analysis.bootstrap import bootstrap
from raybench_analysis.calibration import calibration
from raybench_analysis.combine import (
    SOURCE_COLUMN,
    Combined,
    combine,
    compare_across,
    same_subjects,
)
from raybench_analysis.compare import compare
from raybench_analysis.conformal import conformal
from raybench_analysis.contract import raw_rows
from raybench_analysis.explanations import explanations, randomisation_check
from raybench_analysis.external import external_summary
from raybench_analysis.friedman import friedman
from raybench_analysis.io import Results, is_remote, load, write_bytes
from raybench_analysis.learning_curve import resampling_tables
from raybench_analysis.metrics import Metric, calibration_bins, get_metric, metric_by
from raybench_analysis.operating_range import operating_range
from raybench_analysis.ranking import ranking_stability
from raybench_analysis.robustness import robustness
from raybench_analysis.selective import selective
from raybench_analysis.settings import read_saved_suite, resolve_settings
from raybench_analysis.shift import feature_shift
from raybench_analysis.variance import variance_components
from raybench_analysis.vocabulary import DEFAULT_TOLERANCE, EXTERNAL_SPLIT, FINAL_PROTOCOL

__all__ = ["Summary", "read_results", "summarize"]


@dataclass
class Summary(Mapping[str, pl.DataFrame]):
    """The tables of :func:`summarize`, by name, plus notes on what is missing.

    Behaves as a read-only dict of polars DataFrames (``summary["models"]``). Tables: ``models``,
    ``comparisons``, ``variance``, ``sites``, ``calibration``, ``reliability``, ``robustness``,
    ``ranking`` (those that apply to the run). ``missing`` lists, in words, the trials and
    analyses that are absent and why; ``settings`` the arguments used.
    """

    tables: dict[str, pl.DataFrame]
    missing: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, name: str) -> pl.DataFrame:
        return self.tables[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.tables)

    def __len__(self) -> int:
        return len(self.tables)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict: ``settings``, ``missing`` and every table as a list of row dicts."""
        return {
            "settings": self.settings,
            "missing": list(self.missing),
            "tables": {k: [_jsonable(r) for r in v.to_dicts()] for k, v in self.tables.items()},
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The summary as JSON (NaN written as null); also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=2, allow_nan=False)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_text(text)
        return text

    def write(self, out_dir: str | Path) -> str | Path:
        """Write the tables as ``<name>.parquet`` and all as ``summary.json`` in ``out_dir``.

        ``out_dir``: a local folder (returned as a Path) or a filesystem URI such as
        ``s3://bucket/run/analysis`` (returned as given; each file is one object).
        """
        if is_remote(str(out_dir)):
            for name, table in self.tables.items():
                buffer = io.BytesIO()
                table.write_parquet(buffer)
                write_bytes(str(out_dir), f"{name}.parquet", buffer.getvalue())
            write_bytes(str(out_dir), "summary.json", self.to_json().encode())
            return str(out_dir)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, table in self.tables.items():
            table.write_parquet(out / f"{name}.parquet")
        self.to_json(out / "summary.json")
        return out


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, float) and not math.isfinite(v):
            out[k] = None
        elif isinstance(v, datetime | date):
            out[k] = v.isoformat()
        elif isinstance(v, list):
            out[k] = [None if isinstance(x, float) and not math.isfinite(x) else x for x in v]
        else:
            out[k] = v
    return out


def read_results(results_dir: str | Path) -> Results:
    """Open a results directory with :func:`raybench_analysis.load`, refusing one with no trial.

    Returns the :class:`raybench_analysis.io.Results` of the committed trials (local path or
    pyarrow URI). Raises :class:`AnalysisError` when the directory does not exist or holds no
    committed trial (no ``trials/*.parquet``): it is then not a raybench results directory.
    """
    results = load(results_dir)
    if not results.committed:
        raise AnalysisError(
            f"results: {str(results_dir)!r} is not a raybench results directory: no committed "
            "trial (trials/*.parquet) found. Point to the folder that `raybench run` wrote "
            "(default results/<suite>/), see docs/results.md."
        )
    return results


def _tables_from(results: Any) -> tuple[pl.DataFrame | None, pl.DataFrame, str]:
    """(trials or None, predictions, source description) from any accepted ``results``."""
    if isinstance(results, Mapping) and "predictions" in results:
        trials = results.get("trials")
        trials = None if trials is None else to_polars(trials, name="trials")
        return trials, to_polars(results["predictions"], name="predictions"), "tables"
    if hasattr(results, "predictions"):  # the object returned by raybench_analysis.load
        trials = getattr(results, "trials", None)
        trials = None if trials is None else to_polars(trials, name="trials")
        source = str(getattr(results, "root", "loaded results"))
        return trials, to_polars(results.predictions, name="predictions"), source
    return None, to_polars(results, name="results"), "predictions"


def _infer_task(trials: pl.DataFrame | None, predictions: pl.DataFrame) -> str:
    if trials is not None and "task" in trials.columns and trials["task"].n_unique() == 1:
        return str(trials["task"][0])
    if "score" in predictions.columns and predictions["score"].null_count() < predictions.height:
        return "classification"
    if "dice" in predictions.columns and predictions["dice"].null_count() < predictions.height:
        return "segmentation"
    return "regression"


def _grid_notes(trials: pl.DataFrame | None, predictions: pl.DataFrame) -> list[str]:
    """Failed trials, missing (dataset, model, fold, seed) cells, trials without predictions."""
    notes: list[str] = []
    if trials is None or trials.height == 0:
        return notes
    refit = trials.filter(pl.col("stage") == "refit") if "stage" in trials.columns else trials
    if "status" in refit.columns:
        failed = refit.filter(pl.col("status") != "completed")
        for row in failed.iter_rows(named=True):  # every one: summary.json's list is complete
            notes.append(
                f"trial {row['trial_id']} ({row.get('model')}, fold {row.get('outer_fold')}, seed "
                f"{row.get('seed')}) failed: {row.get('error') or 'no error message'}"
            )
    keys = [c for c in ("dataset", "protocol", "model", "outer_fold", "seed") if c in refit.columns]
    if "protocol" in refit.columns:  # the final refit has no test fold: not a cell of the grid
        refit = refit.filter(pl.col("protocol").fill_null("") != FINAL_PROTOCOL)
    if len(keys) >= 3:
        done = refit.filter(pl.col("status") == "completed") if "status" in refit.columns else refit
        full = None
        for k in keys:
            col = refit.select(pl.col(k).unique())
            full = col if full is None else full.join(col, how="cross")
        absent = (
            full.join(done.select(keys).unique(), on=keys, how="anti") if full is not None else None
        )
        if absent is not None and absent.height:
            cells = ", ".join(
                "/".join(f"{k}={v}" for k, v in r.items()) for r in absent.sort(keys).to_dicts()
            )
            notes.append(
                f"{absent.height} of {full.height} (dataset, protocol, model, fold, seed) cells "
                f"have no completed trial ({cells}); estimates use the cells present"
            )
    if predictions.height and "trial_id" in predictions.columns:
        completed = (
            refit.filter(pl.col("status") == "completed") if "status" in refit.columns else refit
        )
        lacking = completed.join(predictions.select("trial_id").unique(), on="trial_id", how="anti")
        if lacking.height:
            notes.append(f"{lacking.height} completed trial(s) have no predictions file")
    return notes


def _section(
    name: str, notes: list[str], func: Any, *args: Any, **kwargs: Any
) -> pl.DataFrame | None:
    """Run one analysis; a data problem becomes a note in ``missing`` rather than a failure."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = func(*args, **kwargs)
        except AnalysisError as exc:
            notes.append(f"{name}: not computed ({exc})")
            return None
    notes.extend(f"{name}: {w.message}" for w in caught)  # all: summary.json's list is complete
    return out


def summarize(
    results: Any,
    hierarchy: Sequence[str] | None = None,
    alpha: float | None = None,
    metric: str | Sequence[str] | None = None,
    *,
    n_boot: int | None = None,
    seed: int = 0,
    correction: str = "holm",
    scheme: str = "cluster",
    interval: str = "t",
    strata: str | Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
) -> Summary:
    """The analysis of a benchmark run as tidy tables, each with its method and resampling unit.

    ``summarize(results_dir)`` with no other argument computes what ``raybench run`` printed and
    ``raybench analyze`` prints: the metrics, hierarchy, ``alpha`` and ``n_boot`` come from the
    suite saved in the results directory (:func:`raybench_analysis.settings.read_saved_suite`),
    and each argument given overrides one of them, checked as the suite's keys are
    (:func:`raybench_analysis.settings.resolve_settings`).

    Parameters
    ----------
    results:
        A results directory (docs/results.md), the object returned by ``raybench_analysis.load``
        (anything with ``.predictions`` and optionally ``.trials``), a mapping with
        ``"predictions"`` (and ``"trials"``), or a predictions DataFrame (polars or pandas).
        Only a results directory (local or a URI) has a saved suite; other inputs use the
        defaults.
        A list of two or more results directories is analysed as one
        (:func:`raybench_analysis.combine.combine`): every table gains a ``source_dir`` column,
        models named alike in several directories become ``label:model``, the first
        directory's saved settings are used (a note names any disagreement) and
        ``comparisons`` comes from :func:`raybench_analysis.combine.compare_across` (paired
        when two models were tested on the same subjects, unpaired when not, column
        ``pairing``).
    hierarchy:
        Resampling levels from the top, e.g. ``["site", "subject_id"]``; default the suite's
        ``analysis.hierarchy``, else ``site, subject_id``. Levels must be known, outermost first
        and include ``subject_id``; levels absent from the predictions are dropped with a note.
    alpha:
        1 - confidence level of every interval, and level of the adjusted tests; default the
        suite's ``analysis.alpha``, else 0.05.
    metric:
        A metric name or a list of them, the first primary; default the suite's
        ``analysis.metric`` then its ``evaluation.metrics``, else by task: ``auc``
        (classification), ``mae`` (regression), ``dice`` (segmentation). Each must fit the task.
        Every metric gets its rows in each metric-dependent table (column ``metric``).
    n_boot, seed:
        Bootstrap replicates (default the suite's ``analysis.n_boot``, else 2000) and generator
        seed shared by all sections.
    correction:
        Multiplicity correction of the pairwise comparisons (``"holm"``, ``"fdr_bh"``, ``"none"``).
    labels:
        With several directories, their labels (default the directory names).
    scheme, interval, strata:
        Bootstrap resampling scheme (``"cluster"`` or ``"two_stage"``), interval (``"t"``,
        ``"t_bc"`` or ``"percentile"``) and strata columns, passed to
        :func:`raybench_analysis.bootstrap`, :func:`raybench_analysis.compare`,
        :func:`ranking_stability` (scheme, strata) and :func:`robustness`. The ``sites`` table
        ignores ``strata`` (it resamples within one site).

    Returns
    -------
    Summary
        Tables ``models`` (``dataset, model, metric, estimate, se, ci_low, ci_high, ..., method,
        unit``: :func:`raybench_analysis.bootstrap` on the clean test predictions; with
        ``outer_fold`` and ``seed`` columns the metric of each (fold, seed) test set, averaged
        over seeds, then over folds, so that differences of the ``models`` estimates are the
        ``comparisons`` estimates), ``comparisons`` (:func:`raybench_analysis.compare`: paired
        hierarchical bootstrap and corrected resampled t-test, adjusted p-values), ``variance``
        (:func:`raybench_analysis.variance_components`, with ``sd_ci_low``/``sd_ci_high``: the
        interval of the variance on the scale of ``sd``, within what the metric's range allows),
        ``sites`` (per site, resampling the levels below ``site``), ``calibration`` and
        ``reliability`` (classification: ECE with interval; reliability bins), ``robustness``
        (perturbed runs), ``operating_ranges`` and ``operating_curve`` (perturbations tested at
        severities, metrics in [0, 1]: :func:`raybench_analysis.operating_range` with tolerance
        ``DEFAULT_TOLERANCE``), ``ranking`` (:func:`ranking_stability`), ``friedman`` and
        ``friedman_ranks`` (with two datasets or more: :func:`raybench_analysis.friedman` on the
        per-dataset estimates); with training-set draws (``validation.train_resampling``: the
        other tables keep the whole-fold trials), ``learning_curve``, ``learning_curve_fit``
        and ``sampling_variance`` (:func:`raybench_analysis.learning_curve.resampling_tables`);
        with external rows (``split = "external"``), ``external``,
        ``generalisation_gap`` and ``external_comparisons``
        (:func:`raybench_analysis.external_summary`, primary metric);
        ``explanations`` and ``randomisation`` (when the trials explained test images:
        :func:`raybench_analysis.explanations` and :func:`raybench_analysis.randomisation_check`);
        ``feature_shift`` (networks scored on a generated dataset stored penultimate features:
        :func:`raybench_analysis.feature_shift`);
        and ``missing`` notes. ``settings`` holds what was used:
        ``metric`` (primary), ``metrics``, ``hierarchy``, ``alpha``, ``n_boot``, ... and
        ``origin`` (argument, suite or default, per setting).

    Notes
    -----
    Every section estimates the performance of *the trained models of this run* on new patients
    (new sites when ``site`` is the top level), except the corrected t-test of ``comparisons``
    and the ``variance`` table, which speak of the training procedure (Bates, Hastie &
    Tibshirani 2023). See docs/statistics.md for the estimand and assumptions of each method.

    References
    ----------
    Bates, S., Hastie, T., & Tibshirani, R. (2023). Cross-validation: what does it estimate and
    how well does it do it? Journal of the American Statistical Association, 119(546), 1434–1445.

    Varoquaux, G., & Colliot, O. (2023). Evaluating machine learning models and their diagnostic
    value. In Machine Learning for Brain Disorders (pp. 601–630). Springer.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> run = simulate_predictions(n_sites=4, subjects_per_site=8, n_seeds=2, n_folds=2)
    >>> s = summarize({"trials": run.trials, "predictions": run.predictions}, n_boot=100)
    >>> s["models"].select("model", "unit").rows()[0]
    ('model_a', 'site>subject_id')
    >>> "ranking" in s and "robustness" not in s
    True
    """
    saved: dict[str, Any] = {}
    combined: Combined | None = None
    notes: list[str] = []
    if _several(results):
        combined = combine([r if hasattr(r, "predictions") else read_results(r) for r in results],
                           labels)  # fmt: skip
        results = combined.results
        given = {"metric": metric, "hierarchy": hierarchy, "alpha": alpha, "n_boot": n_boot}
        saved, disagree = combined.settings(given)
        notes += combined.notes + disagree
    elif isinstance(results, str | Path):
        results = read_results(results)
    root = getattr(results, "root", None)
    if combined is None and isinstance(root, str | Path):
        saved = read_saved_suite(root)
    trials, predictions, source = _tables_from(results)
    all_draws = predictions
    if "train_resample" in predictions.columns:  # draws of training subjects: own tables below
        predictions = predictions.filter(pl.col("train_resample").is_null())
    notes += [n for n in getattr(results, "missing", ()) if isinstance(n, str)]
    if combined is not None and trials is not None:  # each directory's own grid of trials
        for (label,), part in trials.group_by(SOURCE_COLUMN, maintain_order=True):
            own = all_draws.filter(pl.col(SOURCE_COLUMN) == label)
            notes += [f"{label}: {n}" for n in _grid_notes(part, own)]
    else:
        notes += _grid_notes(trials, all_draws)
    if predictions.height == 0:
        notes.append("no predictions yet: no committed trial has written its predictions")
        return Summary({}, notes, {"source": source})
    cfg = resolve_settings(saved, _infer_task(trials, predictions), metric=metric,
                           hierarchy=hierarchy, alpha=alpha, n_boot=n_boot)  # fmt: skip
    levels = [c for c in cfg.hierarchy if c in predictions.columns]
    for c in cfg.hierarchy:
        if c not in predictions.columns:
            notes.append(f"hierarchy level {c!r} is not a predictions column; resampled without it")
    test = raw_rows(  # the networks' own predictions; uncertainty variants are analysed apart
        predictions.filter(pl.col("split") == "test")
        if "split" in predictions.columns
        else predictions
    )
    clean = (
        test.filter(pl.col("perturbation") == "none") if "perturbation" in test.columns else test
    )
    st = [strata] if isinstance(strata, str) else list(strata or ())
    # the estimand of compare(): per (fold, seed) metric, seeds then folds averaged
    cells = [c for c in ("outer_fold", "seed") if c in clean.columns]
    run = _Run(
        clean=clean,
        test=test,
        levels=levels,
        by=[c for c in ("dataset",) if c in clean.columns],
        alpha=cfg.alpha,
        common={"n_boot": cfg.n_boot, "seed": seed},
        resampling={"scheme": scheme, "interval": interval, "strata": st},
        average_over=cells or None,
        correction=correction,
        notes=notes,
        combined=combined is not None,
    )
    metrics = [get_metric(name) for name in cfg.metrics]
    settings = {"source": source, "task": cfg.task, "metric": metrics[0].label()}
    settings |= {"metrics": [m.label() for m in metrics], "hierarchy": levels, "alpha": cfg.alpha}
    settings |= {"n_boot": cfg.n_boot, "seed": seed, "correction": correction, "scheme": scheme}
    settings |= {"interval": interval, "strata": st, "average_over": cells, "origin": cfg.origin}
    parts: dict[str, list[pl.DataFrame]] = {}
    for m in metrics:
        tag = f" [{m.label()}]" if len(metrics) > 1 else ""
        for name, table in _metric_tables(run, m, tag).items():
            if table is not None:
                parts.setdefault(name, []).append(_with_metric(table, m))
    tables = {name: pl.concat(ts, how="diagonal_relaxed") for name, ts in parts.items()}
    if cfg.task == "classification":
        extra = {
            "calibration": _section(
                "calibration", notes, bootstrap, clean, metric=get_metric("ece"), levels=levels,
                by=[*run.by, "model"], alpha=cfg.alpha, **run.boot,
            ),
            "reliability": _section("reliability", notes, _reliability, clean, run.by),
        }  # fmt: skip
        extra |= _uncertainty_sections(predictions, levels, cfg.alpha, notes, run.common)
        tables |= {k: v for k, v in extra.items() if v is not None}
    tables |= _external_sections(predictions, trials, metrics[0], levels, cfg.alpha, run)
    if combined is not None:
        tables = _with_sources(tables, clean)
        settings |= {"sources": combined.sources, "renamed": combined.renamed.to_dicts()}
        notes.extend(_pairing_notes(tables.get("comparisons")))
    curves = resampling_tables(all_draws, metrics[0], levels, cfg.alpha, cfg.n_boot, seed)
    notes += curves.pop("notes", [])
    tables |= curves
    explained = _explanation_sections(results, cfg.hierarchy, cfg.alpha, notes, run.common)
    tables |= {k: v for k, v in explained.items() if v is not None}
    shift = _feature_section(results, notes, seed)
    if shift is not None:
        tables["feature_shift"] = shift
    return Summary(tables, notes, settings)


def _several(results: Any) -> bool:
    """True for a list or tuple of results directories (or loaded results): a combined analysis."""
    return isinstance(results, list | tuple) and all(
        isinstance(r, str | Path) or hasattr(r, "predictions") for r in results
    )


def _with_sources(tables: dict[str, pl.DataFrame], clean: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """Each table with a ``model`` column gains the ``source_dir`` of its model, after ``model``."""
    where = clean.select("model", SOURCE_COLUMN).unique(subset="model")
    out = {}
    for name, table in tables.items():
        if "model" in table.columns and SOURCE_COLUMN not in table.columns:
            table = table.join(where, on="model", how="left", maintain_order="left")
            cols = table.columns
            at = cols.index("model") + 1
            table = table.select([*cols[:at], SOURCE_COLUMN, *cols[at:-1]])
        out[name] = table
    return out


def _pairing_notes(comparisons: pl.DataFrame | None) -> list[str]:
    """In words: which pairs were compared paired across folds, which unpaired (and why)."""
    if comparisons is None or "pairing" not in comparisons.columns:
        return []
    notes = []
    rows = comparisons.filter(pl.col("method").str.contains("bootstrap"))
    for kind, text in (
        ("same subjects", "tested on the same subjects in other folds: paired bootstrap of the "
         "difference of their own-fold estimates; no corrected t-test (it needs the same folds)"),
        ("unpaired", "tested on different subjects: paired comparison refused; compared "
         "unpaired (difference of independent hierarchical bootstraps)"),
    ):  # fmt: skip
        pairs = rows.filter(pl.col("pairing") == kind).select("model_a", "model_b").unique()
        if pairs.height:
            listed = ", ".join(f"{a} vs {b}" for a, b in pairs.sort("model_a", "model_b").rows())
            notes.append(f"comparisons: {listed} {text}")
    return notes


def _external_sections(
    predictions: pl.DataFrame,
    trials: pl.DataFrame | None,
    metric: Metric,
    levels: list[str],
    alpha: float,
    run: _Run,
) -> dict[str, pl.DataFrame]:
    """Issue 16's tables (primary metric), when saved models were evaluated on external data:
    ``external``, ``generalisation_gap`` and ``external_comparisons``
    (:func:`raybench_analysis.external_summary`)."""
    if "split" not in predictions.columns or not (predictions["split"] == EXTERNAL_SPLIT).any():
        return {}
    out = _section(
        "external", run.notes, external_summary, predictions, metric, levels, trials=trials,
        alpha=alpha, **run.common,
    )  # fmt: skip
    return out or {}


@dataclass(frozen=True)
class _Run:
    """What every metric's sections share: the filtered predictions and the resampling settings."""

    clean: pl.DataFrame
    test: pl.DataFrame
    levels: list[str]
    by: list[str]
    alpha: float
    common: dict[str, Any]
    resampling: dict[str, Any]
    average_over: list[str] | None
    correction: str
    notes: list[str]
    combined: bool = False

    @property
    def boot(self) -> dict[str, Any]:
        """Arguments of :func:`bootstrap` for the per-model estimand of :func:`compare`."""
        return {**self.common, **self.resampling, "average_over": self.average_over}


def _with_metric(table: pl.DataFrame, m: Metric) -> pl.DataFrame:
    """``table`` with a ``metric`` column (the tables that lack one get the metric's label)."""
    return table if "metric" in table.columns else table.with_columns(metric=pl.lit(m.label()))


def _metric_tables(run: _Run, m: Metric, tag: str) -> dict[str, pl.DataFrame | None]:
    """The sections that depend on the metric ``m``; ``tag`` names it in notes when several."""
    clean, levels, by, alpha, notes = run.clean, run.levels, run.by, run.alpha, run.notes
    tables: dict[str, pl.DataFrame | None] = {}
    tables["models"] = _section(
        f"models{tag}", notes, bootstrap, clean, metric=m, levels=levels, by=[*by, "model"],
        alpha=alpha, **run.boot,
    )  # fmt: skip
    n_models = clean["model"].n_unique()
    if n_models >= 2:
        tables["comparisons"] = _section(
            f"comparisons{tag}", notes, compare_across if run.combined else compare, clean,
            metric=m, levels=levels, by=by or None, method=("bootstrap", "corrected_ttest"),
            correction=run.correction, alpha=alpha, **run.common, **run.resampling,
        )  # fmt: skip
    if n_models >= 2 and run.combined and not same_subjects(clean, by):
        notes.append(f"ranking{tag}: not computed: the directories tested on different subjects")
    elif n_models >= 2:
        tables["ranking"] = _section(
            f"ranking{tag}", notes, ranking_stability, clean, m, levels, alpha=alpha, by=by,
            scheme=run.resampling["scheme"], strata=run.resampling["strata"], **run.common,
        )  # fmt: skip
    elif _ONE_MODEL not in notes:
        notes.append(_ONE_MODEL)
    models_table = tables["models"]
    if models_table is not None and "dataset" in models_table.columns:
        n_datasets = models_table["dataset"].n_unique()
        if n_datasets >= 2 and n_models >= 2:
            res = _section(
                f"friedman{tag}", notes, friedman, models_table,
                higher_is_better=m.higher_is_better, alpha=alpha, value_col="estimate",
            )  # fmt: skip
            if res is not None:
                tables["friedman"], tables["friedman_ranks"] = res.test, res.ranks
    tables["variance"] = _variance_section(clean, m, by, alpha, notes, run.common, tag)
    if "site" in levels:
        below = levels[levels.index("site") + 1 :]
        tables["sites"] = _section(
            f"sites{tag}", notes, bootstrap, clean, metric=m, levels=below,
            by=[*by, "model", "site"], alpha=alpha, **{**run.boot, "strata": None},
        )  # fmt: skip
    test = run.test
    if "perturbation" in test.columns and (test["perturbation"] != "none").any():
        tables["robustness"] = _section(
            f"robustness{tag}", notes, robustness, test, m, levels, alpha=alpha,
            by=[*by, "model"], **run.common, **run.resampling,
        )  # fmt: skip
        tables |= _operating_ranges(run, m, tag)
    return tables


def _operating_ranges(run: _Run, m: Metric, tag: str) -> dict[str, pl.DataFrame | None]:
    """Operating ranges (``DEFAULT_TOLERANCE``) of the perturbation types tested at severities,
    for metrics in [0, 1]; another tolerance or metric: call :func:`operating_range` directly."""
    if "severity" not in run.test.columns or run.test["severity"].null_count() == run.test.height:
        return {}
    if m.value_range != (0.0, 1.0):
        run.notes.append(
            f"operating_ranges{tag}: no default tolerance for {m.label()}; call "
            "raybench_analysis.operating_range(results, tolerance=...) with one in its units"
        )
        return {}
    out = _section(
        f"operating_ranges{tag}", run.notes, operating_range, run.test, DEFAULT_TOLERANCE, m,
        run.alpha, levels=run.levels, by=[*run.by, "model"], **run.common, **run.resampling,
    )  # fmt: skip
    if out is None:
        return {}
    return {"operating_ranges": out.ranges, "operating_curve": out.curve}


_ONE_MODEL = "comparisons and ranking: only one model in the predictions"


def _uncertainty_sections(
    predictions: pl.DataFrame,
    levels: list[str],
    alpha: float,
    notes: list[str],
    common: dict[str, Any],
) -> dict[str, pl.DataFrame | None]:
    """Issue 9's tables, when trials recorded uncertainty variants (``evaluation.uncertainty``):
    calibration and selective prediction of every variant's unperturbed test rows, and conformal
    coverage (alpha 0.1) calibrated on each trial's validation rows, per site when known."""
    if "variant" not in predictions.columns or not (predictions["variant"] != "raw").any():
        return {}
    rows = predictions.filter(pl.col("perturbation") == "none")
    test = rows.filter(pl.col("split") == "test")
    args = {"levels": levels, "alpha": alpha, **common}
    return {
        "uncertainty_calibration": _section(
            "uncertainty_calibration", notes, calibration, test,
            quantities=["ece", "brier", "slope", "intercept"], **args,
        ),
        "selective": _section("selective", notes, selective, test, **args),
        "conformal": _section(
            "conformal", notes, conformal, rows, alpha=0.1,
            by="site" if "site" in rows.columns else None, ci_alpha=alpha, **common,
            levels=[lv for lv in levels if lv != "site"],  # per site: resample within it
        ),
    }  # fmt: skip


def _feature_section(results: Any, notes: list[str], seed: int) -> pl.DataFrame | None:
    """Issue 10's feature distance, when networks were scored on a generated dataset: the MMD
    and Fréchet distance of generated vs real test images next to the real-halves yardstick
    (:func:`raybench_analysis.feature_shift`)."""
    frame = results.get("features") if isinstance(results, Mapping) else None
    frame = getattr(results, "features", frame)
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    if frame is None or len(frame) == 0:
        return None
    out = _section("feature_shift", notes, feature_shift, frame, seed=seed)
    return out if out is None or out.height else None


def _explanation_sections(
    results: Any,
    hierarchy: Sequence[str],
    alpha: float,
    notes: list[str],
    common: dict[str, Any],
) -> dict[str, pl.DataFrame | None]:
    """Issue 8's tables, when the trials explained test images (``evaluation.explanations``):
    every explanation metric per model × method with its hierarchical interval, and the
    model-randomisation check (docs/explanations.md)."""
    frame = results.get("explanations") if isinstance(results, Mapping) else None
    frame = getattr(results, "explanations", frame)
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    if frame is None or len(frame) == 0:
        return {}
    frame = to_polars(frame, name="explanations")
    levels = [c for c in hierarchy if c in frame.columns] or ["sample_id"]
    by = [c for c in ("dataset",) if c in frame.columns]
    args = {"levels": levels, "by": by, "alpha": alpha, **common}
    out = {"explanations": _section("explanations", notes, explanations, frame, **args)}
    if (frame["metric"] == "randomisation_spearman").any():
        out["randomisation"] = _section("randomisation", notes, randomisation_check, frame, **args)
    return out


def _variance_section(
    clean: pl.DataFrame,
    metric: Metric,
    by: list[str],
    alpha: float,
    notes: list[str],
    common: dict[str, Any],
    tag: str = "",
) -> pl.DataFrame | None:
    """Seed, split and test-sample parts of the per-trial score (A2's variance_components)."""
    keys = [*by, "model", "outer_fold", "seed"]
    if not {"outer_fold", "seed"} <= set(clean.columns):
        notes.append(f"variance{tag}: predictions lack outer_fold or seed columns")
        return None
    scores = metric_by(clean, metric, by=keys).rename({"estimate": "score"})
    kwargs: dict[str, Any] = {"by": [*by, "model"], "alpha": alpha, "n_boot": common["n_boot"]}
    kwargs["random_state"] = common["seed"]
    if metric.name in ("accuracy", "auc") and not metric.params and "subject_id" in clean.columns:
        kwargs |= {"predictions": clean, "metric": metric.name, "sample": "subject_id"}
    else:
        notes.append(
            f"variance{tag}: no test-sample part for metric {metric.label()} (available for "
            "accuracy and auc); seed and split parts only"
        )
    table = _section(f"variance{tag}", notes, variance_components, scores, "score", **kwargs)
    return None if table is None else _sd_interval(table, metric)


def _sd_interval(table: pl.DataFrame, metric: Metric) -> pl.DataFrame:
    """Add ``sd_ci_low``/``sd_ci_high``: the variance interval as an interval of the ``sd``.

    A variance is at least 0, and a score confined to ``[lo, hi]`` has a variance of at most
    ``((hi - lo) / 2)²`` (half its values at each end): the interval is clipped to that before
    the square root, so it is on the scale of ``sd`` and possible for the metric.
    """
    lo, hi = metric.value_range
    top = ((hi - lo) / 2) ** 2 if math.isfinite(hi - lo) else math.inf
    bound = [pl.col(c).clip(0.0, top).sqrt().alias(f"sd_{c}") for c in ("ci_low", "ci_high")]
    return table.with_columns(bound)


def _reliability(clean: pl.DataFrame, by: list[str], n_bins: int = 10) -> pl.DataFrame:
    """Reliability bins (positive-class convention) per model, seeds and folds pooled."""
    parts = []
    keys = [*by, "model"]  # groups in sorted order: the table does not depend on file order
    for key, part in clean.sort(keys, maintain_order=True).group_by(keys, maintain_order=True):
        bins = calibration_bins(part["y_true"], part["score"], n_bins=n_bins,
                                convention="positive_class")  # fmt: skip
        info = dict(zip([*by, "model"], key, strict=True))
        parts.append(bins.with_columns(**{k: pl.lit(v) for k, v in info.items()}))
    out = pl.concat(parts, how="vertical")
    return out.select(*by, "model", pl.exclude([*by, "model"])).with_columns(
        method=pl.lit(f"reliability bins ({n_bins} equal-width, positive class)"),
        unit=pl.lit("image"),
    )
