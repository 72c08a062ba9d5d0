"""One call from a results directory to the tables a report needs.

:func:`summarize` reads a raybench run (or tables already loaded) and returns tidy polars tables:
per-model metrics with hierarchical bootstrap intervals, paired model comparisons with adjusted
p-values, the variance decomposition, per-site performance, calibration, robustness deltas when the
suite perturbed its inputs, and ranking stability. Every table carries ``method`` and ``unit``
columns; what could not be computed, or what the run lacks (failed or missing trials), is listed
in :attr:`Summary.missing` instead of failing, so a partial run still gets its analysis.
"""

from __future__ import annotations

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
from raybench_analysis.compare import compare
from raybench_analysis.friedman import friedman
from raybench_analysis.io import Results, load
from raybench_analysis.metrics import Metric, calibration_bins, get_metric, metric_by
from raybench_analysis.ranking import ranking_stability
from raybench_analysis.robustness import robustness
from raybench_analysis.variance import variance_components

__all__ = ["Summary", "read_results", "summarize"]

#: Default metric per task when ``metric=None``.
DEFAULT_METRIC = {"classification": "auc", "regression": "mae", "segmentation": "dice"}


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

    def write(self, out_dir: str | Path) -> Path:
        """Write the tables as ``<name>.parquet`` and all as ``summary.json`` in ``out_dir``."""
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
        for row in failed.head(10).iter_rows(named=True):
            notes.append(
                f"trial {row['trial_id']} ({row.get('model')}, fold {row.get('outer_fold')}, seed "
                f"{row.get('seed')}) failed: {row.get('error') or 'no error message'}"
            )
        if failed.height > 10:
            notes.append(f"... and {failed.height - 10} more failed trials")
    keys = [c for c in ("dataset", "protocol", "model", "outer_fold", "seed") if c in refit.columns]
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
                "/".join(f"{k}={v}" for k, v in r.items()) for r in absent.head(5).to_dicts()
            )
            notes.append(
                f"{absent.height} of {full.height} (dataset, protocol, model, fold, seed) cells "
                f"have no completed trial (e.g. {cells}); estimates use the cells present"
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
    for w in caught[:3]:
        notes.append(f"{name}: {w.message}")
    if len(caught) > 3:
        notes.append(f"{name}: ... and {len(caught) - 3} more warnings of the same kind")
    return out


def summarize(
    results: Any,
    hierarchy: Sequence[str] = ("site", "subject_id"),
    alpha: float = 0.05,
    metric: str | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    correction: str = "holm",
    scheme: str = "cluster",
    interval: str = "t",
    strata: str | Sequence[str] | None = None,
) -> Summary:
    """The analysis of a benchmark run as tidy tables, each with its method and resampling unit.

    Parameters
    ----------
    results:
        A results directory (docs/results.md), the object returned by ``raybench_analysis.load``
        (anything with ``.predictions`` and optionally ``.trials``), a mapping with
        ``"predictions"`` (and ``"trials"``), or a predictions DataFrame (polars or pandas).
    hierarchy:
        Resampling levels from the top, e.g. ``["site", "subject_id"]`` (the suite's
        ``analysis.hierarchy``). Levels absent from the predictions are dropped with a note.
    alpha:
        1 - confidence level of every interval, and level of the adjusted tests.
    metric:
        Metric name (:data:`raybench_analysis.metrics.METRICS`); default by task: ``auc``
        (classification), ``mae`` (regression), ``dice`` (segmentation).
    n_boot, seed:
        Bootstrap replicates and generator seed shared by all sections.
    correction:
        Multiplicity correction of the pairwise comparisons (``"holm"``, ``"fdr_bh"``, ``"none"``).
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
        (:func:`raybench_analysis.variance_components`), ``sites`` (per site,
        resampling the levels below ``site``), ``calibration`` and ``reliability``
        (classification: ECE with interval; reliability bins), ``robustness`` (perturbed runs),
        ``ranking`` (:func:`ranking_stability`), ``friedman`` and ``friedman_ranks`` (with two
        datasets or more: :func:`raybench_analysis.friedman` on the per-dataset estimates); and
        ``missing`` notes.

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
    if not 0 < alpha < 1:
        raise AnalysisError(f"summarize: alpha={alpha!r} must be in (0, 1).")
    if isinstance(results, str | Path):
        results = read_results(results)
    trials, predictions, source = _tables_from(results)
    notes = [n for n in getattr(results, "missing", ()) if isinstance(n, str)]
    notes += _grid_notes(trials, predictions)
    if predictions.height == 0:
        notes.append("no predictions yet: no committed trial has written its predictions")
        return Summary({}, notes, {"source": source})
    task = _infer_task(trials, predictions)
    metric = metric or DEFAULT_METRIC.get(task, "auc")
    m = get_metric(metric)
    levels = [c for c in hierarchy if c in predictions.columns]
    for c in hierarchy:
        if c not in predictions.columns:
            notes.append(f"hierarchy level {c!r} is not a predictions column; resampled without it")
    test = (
        predictions.filter(pl.col("split") == "test")
        if "split" in predictions.columns
        else predictions
    )
    clean = (
        test.filter(pl.col("perturbation") == "none") if "perturbation" in test.columns else test
    )
    by = [c for c in ("dataset",) if c in clean.columns]
    common = {"n_boot": n_boot, "seed": seed}
    st = [strata] if isinstance(strata, str) else list(strata or ())
    resampling = {"scheme": scheme, "interval": interval, "strata": st}
    # the estimand of compare(): per (fold, seed) metric, seeds then folds averaged
    cells = [c for c in ("outer_fold", "seed") if c in clean.columns]
    boot = {**common, **resampling, "average_over": cells or None}
    settings = {"source": source, "task": task, "metric": m.label(), "hierarchy": levels}
    settings |= {"alpha": alpha, "n_boot": n_boot, "seed": seed, "correction": correction}
    settings |= {"scheme": scheme, "interval": interval, "strata": st, "average_over": cells}
    tables: dict[str, pl.DataFrame | None] = {}

    tables["models"] = _section(
        "models", notes, bootstrap, clean, metric=m, levels=levels, by=[*by, "model"],
        alpha=alpha, **boot,
    )  # fmt: skip
    n_models = clean["model"].n_unique()
    if n_models >= 2:
        tables["comparisons"] = _section(
            "comparisons", notes, compare, clean, metric=m, levels=levels, by=by or None,
            method=("bootstrap", "corrected_ttest"), correction=correction, alpha=alpha,
            **common, **resampling,
        )  # fmt: skip
        tables["ranking"] = _section(
            "ranking", notes, ranking_stability, clean, m, levels, alpha=alpha, by=by,
            scheme=scheme, strata=st, **common,
        )  # fmt: skip
    else:
        notes.append("comparisons and ranking: only one model in the predictions")
    models_table = tables["models"]
    if models_table is not None and "dataset" in models_table.columns:
        n_datasets = models_table["dataset"].n_unique()
        if n_datasets >= 2 and n_models >= 2:
            res = _section(
                "friedman", notes, friedman, models_table, higher_is_better=m.higher_is_better,
                alpha=alpha, value_col="estimate",
            )  # fmt: skip
            if res is not None:
                tables["friedman"], tables["friedman_ranks"] = res.test, res.ranks
    tables["variance"] = _variance_section(clean, m, by, alpha, notes, common)
    if "site" in levels:
        below = levels[levels.index("site") + 1 :]
        tables["sites"] = _section(
            "sites", notes, bootstrap, clean, metric=m, levels=below, by=[*by, "model", "site"],
            alpha=alpha, **{**boot, "strata": None},
        )  # fmt: skip
    if task == "classification":
        tables["calibration"] = _section(
            "calibration", notes, bootstrap, clean, metric=get_metric("ece"), levels=levels,
            by=[*by, "model"], alpha=alpha, **boot,
        )  # fmt: skip
        tables["reliability"] = _section("reliability", notes, _reliability, clean, by)
    if "perturbation" in test.columns and (test["perturbation"] != "none").any():
        tables["robustness"] = _section(
            "robustness", notes, robustness, test, m, levels, alpha=alpha, **common, **resampling
        )
    return Summary({k: v for k, v in tables.items() if v is not None}, notes, settings)


def _variance_section(
    clean: pl.DataFrame,
    metric: Metric,
    by: list[str],
    alpha: float,
    notes: list[str],
    common: dict[str, Any],
) -> pl.DataFrame | None:
    """Seed, split and test-sample parts of the per-trial score (A2's variance_components)."""
    keys = [*by, "model", "outer_fold", "seed"]
    if not {"outer_fold", "seed"} <= set(clean.columns):
        notes.append("variance: predictions lack outer_fold or seed columns")
        return None
    scores = metric_by(clean, metric, by=keys).rename({"estimate": "score"})
    kwargs: dict[str, Any] = {"by": [*by, "model"], "alpha": alpha, "n_boot": common["n_boot"]}
    kwargs["random_state"] = common["seed"]
    if metric.name in ("accuracy", "auc") and not metric.params and "subject_id" in clean.columns:
        kwargs |= {"predictions": clean, "metric": metric.name, "sample": "subject_id"}
    else:
        notes.append(
            f"variance: no test-sample part for metric {metric.label()} (available for accuracy "
            "and auc); seed and split parts only"
        )
    return _section("variance", notes, variance_components, scores, "score", **kwargs)


def _reliability(clean: pl.DataFrame, by: list[str], n_bins: int = 10) -> pl.DataFrame:
    """Reliability bins (positive-class convention) per model, seeds and folds pooled."""
    parts = []
    for key, part in clean.group_by([*by, "model"], maintain_order=True):
        bins = calibration_bins(part["y_true"], part["score"], n_bins=n_bins,
                                convention="positive_class")  # fmt: skip
        info = dict(zip([*by, "model"], key, strict=True))
        parts.append(bins.with_columns(**{k: pl.lit(v) for k, v in info.items()}))
    out = pl.concat(parts, how="vertical")
    return out.select(*by, "model", pl.exclude([*by, "model"])).with_columns(
        method=pl.lit(f"reliability bins ({n_bins} equal-width, positive class)"),
        unit=pl.lit("image"),
    )
