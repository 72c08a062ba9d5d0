"""Explanations as a benchmark axis: localisation and faithfulness of attribution maps, summarised.

The ``explanations`` table (docs/results.md, docs/explanations.md) holds one row per (refit trial,
explained test sample, method, metric). This module summarises it the way predictions are
summarised, through the same machinery, never a copy of it:

- :func:`explanations`: per model × method × metric, the mean over samples of each trained model
  (one ``outer_fold`` × ``seed`` cell), averaged over seeds within a fold and then over folds, with
  the hierarchical bootstrap interval of :func:`raybench_analysis.bootstrap` (``average_over``);
- :func:`compare_methods` and :func:`compare_models`: paired differences (same samples, same
  resamples) with Holm or BH adjusted p-values, through :func:`raybench_analysis.compare`;
- :func:`map_stability`: "retrain it, does the explanation stay?": rank correlation and top-k%
  overlap of one sample's maps across training seeds, with the same intervals.

Every model and seed of one test fold explains the same samples (the draw depends on the fold
only), so methods and models are paired sample by sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, as_names, require_columns, to_polars
from raybench_analysis.bootstrap import bootstrap
from raybench_analysis.compare import compare
from raybench_analysis.metrics import Metric, _mean_finalize
from raybench_analysis.vocabulary import DEFAULT_ALPHA, DEFAULT_N_BOOT, EXPLANATION_METRICS

__all__ = ["compare_methods", "compare_models", "explanations", "map_stability"]

#: One trained model: its scores are averaged over seeds within a fold, then over folds.
_TRAINED = ("outer_fold", "seed")


def _table(data: Any) -> pl.DataFrame:
    """The explanations table of ``data`` (a frame, or :func:`raybench_analysis.load`'s result)."""
    frame = getattr(data, "explanations", data)
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    frame = to_polars(frame, name="explanations")
    require_columns(
        frame,
        ["model", "method", "metric", "value", "sample_id", *_TRAINED],
        name="explanations",
        why="to summarise explanations",
    )
    return frame


def _finite(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows with a finite value (NaN values are undefined scores: see the ``note`` column)."""
    return frame.filter(pl.col("value").is_not_null() & pl.col("value").is_finite())


def _metrics(frame: pl.DataFrame, metrics: str | Sequence[str] | None) -> list[str]:
    present = sorted(frame.get_column("metric").unique().to_list())
    chosen = as_names(metrics, name="metrics") if metrics is not None else present
    unknown = [m for m in chosen if m not in present]
    if unknown:
        raise AnalysisError(f"metrics {unknown} are not in the explanations table; found {present}")
    return chosen


def explanations(
    data: Any,
    metrics: str | Sequence[str] | None = None,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
    **options: Any,
) -> pl.DataFrame:
    """Per model × method × metric: the estimate with its hierarchical bootstrap interval.

    Parameters
    ----------
    data : polars/pandas DataFrame or the object returned by :func:`raybench_analysis.load`
        The ``explanations`` table.
    metrics : str or sequence, optional
        Metrics to summarise (default: all present).
    levels : sequence of str
        Resampling hierarchy, top first (as in :func:`raybench_analysis.bootstrap`).
    by : column name(s), optional
        Further grouping columns (default: per dataset; add ``"protocol"`` when a results
        directory mixes protocols).
    n_boot, seed, alpha :
        Replicates, seed and 1 − interval level.
    options :
        ``scheme``, ``interval`` and ``strata`` of :func:`raybench_analysis.bootstrap`.

    Returns
    -------
    polars.DataFrame
        The columns of :func:`raybench_analysis.bootstrap` grouped by ``by``, ``model``,
        ``method`` (the attribution method) and ``metric`` (the explanation metric), with the
        bootstrap's own ``method`` renamed ``interval_method``, plus ``higher_is_better`` and
        ``n_undefined`` (rows with a NaN value, left out).

    Examples
    --------
    >>> import polars as pl
    >>> rows = [{"dataset": "d", "model": "m", "method": "gradcam", "metric": "auroc",
    ...          "outer_fold": f, "seed": 0, "sample_id": f"s{f}{i}", "subject_id": f"s{f}{i}",
    ...          "value": 0.5 + 0.1 * i} for f in (0, 1) for i in range(4)]
    >>> out = explanations(pl.DataFrame(rows), n_boot=200)
    >>> round(out["estimate"][0], 3), out["higher_is_better"][0]
    (0.65, True)
    """
    frame = _table(data)
    keys = [*as_names(by, name="by"), "model", "method"]
    require_columns(frame, [*keys, *levels], name="explanations", why="to group and resample")
    out = []
    for metric in _metrics(frame, metrics):
        rows = frame.filter(pl.col("metric") == metric)
        finite = _finite(rows)
        undefined = rows.join(finite, on=[*keys, "metric", *_TRAINED, "sample_id"], how="anti")
        if finite.is_empty():
            continue
        # bootstrap names its interval method `method`: the attribution method travels as _method
        summary = bootstrap(
            finite.rename({"method": "_method"}),
            value="value",
            levels=levels,
            by=[*keys[:-1], "_method"],
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            average_over=_TRAINED,
            **options,
        )
        counts = undefined.group_by(keys).agg(pl.len().cast(pl.Int64).alias("n_undefined"))
        summary = (
            summary.rename({"method": "interval_method", "_method": "method"})
            .with_columns(
                pl.lit(metric).alias("metric"),
                pl.lit(EXPLANATION_METRICS.get(metric, True)).alias("higher_is_better"),
            )
            .join(counts, on=keys, how="left")
            .with_columns(pl.col("n_undefined").fill_null(0))
        )
        out.append(summary)
    if not out:
        raise AnalysisError("the explanations table holds no finite value to summarise")
    return pl.concat(out, how="diagonal_relaxed").sort([*keys, "metric"])


def _mean_value() -> Metric:
    """The mean of ``value`` as a metric :func:`raybench_analysis.compare` can pair."""

    def stats(frame: pl.DataFrame) -> np.ndarray:
        v = frame.get_column("value").cast(pl.Float64).to_numpy()
        return np.column_stack([np.ones_like(v), v])

    return Metric("mean(value)", ("value",), "sums", stats, _mean_finalize)


def _paired(frame: pl.DataFrame, unit: str, within: list[str]) -> pl.DataFrame:
    """Rows of the (fold, seed, sample)s where every ``unit`` has a finite value, per group."""
    finite = _finite(frame)
    n_units = finite.group_by(within).agg(pl.col(unit).n_unique().alias("_n"))
    complete = (
        finite.group_by([*within, *_TRAINED, "sample_id"])
        .agg(pl.col(unit).n_unique().alias("_k"))
        .join(n_units, on=within)
        .filter(pl.col("_k") == pl.col("_n"))
        .select([*within, *_TRAINED, "sample_id"])
    )
    return finite.join(complete, on=[*within, *_TRAINED, "sample_id"])


def _compare(
    frame: pl.DataFrame, metric: str, unit: str, by: list[str], **kwargs: Any
) -> pl.DataFrame:
    """Pairs of ``unit`` values (``"model"`` or ``"method"``) within each group of the other."""
    rows = frame.filter(pl.col("metric") == metric)
    other = "method" if unit == "model" else "model"
    paired = _paired(rows, unit, [*by, other])
    if paired.is_empty():
        raise AnalysisError(f"metric {metric!r}: no sample has a finite value for every {unit}")
    # compare pairs the values of its `model` column and names its test `method`: the roles move
    if unit == "method":
        paired = paired.rename({"model": "_model"}).rename({"method": "model"})
        group = "_model"
    else:
        paired = paired.rename({"method": "_method"})
        group = "_method"
    out = compare(
        paired,
        metric=_mean_value(),
        by=[*by, group],
        perturbation=None,
        method=kwargs.pop("test", "bootstrap"),
        **kwargs,
    ).rename({"method": "test"})
    if unit == "method":
        out = out.rename({"model_a": "method_a", "model_b": "method_b", "_model": "model"})
    else:
        out = out.rename({"_method": "method"})
    return out.with_columns(
        pl.lit(metric).alias("metric"),
        pl.lit(EXPLANATION_METRICS.get(metric, True)).alias("higher_is_better"),
    )


def compare_methods(
    data: Any,
    metric: str = "auroc",
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    correction: str = "holm",
    **kwargs: Any,
) -> pl.DataFrame:
    """Paired differences between attribution methods of each model on the same samples.

    Samples where a method's value is NaN are left out for every method of that model. ``test``
    is :func:`raybench_analysis.compare`'s ``method`` (``"bootstrap"``, default, or
    ``"corrected_ttest"``); other arguments (``n_boot``, ``seed``, ``alpha``, ...) go to it too.
    It scores each method per (fold, seed), averages over seeds then folds, and adjusts the
    p-values over the pairs.

    Returns
    -------
    polars.DataFrame
        :func:`raybench_analysis.compare`'s columns with ``method_a``/``method_b`` (the pair),
        ``model``, ``metric``, ``higher_is_better``, and compare's ``method`` renamed ``test``.
    """
    frame = _table(data)
    names = as_names(by, name="by")
    return _compare(frame, metric, "method", names, levels=levels, correction=correction, **kwargs)


def compare_models(
    data: Any,
    metric: str = "auroc",
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    correction: str = "holm",
    **kwargs: Any,
) -> pl.DataFrame:
    """Paired differences between models explained with the same method on the same samples.

    As :func:`compare_methods`, with the roles swapped: one comparison per ``method``; the result
    has ``model_a``/``model_b`` and ``method``.
    """
    frame = _table(data)
    names = as_names(by, name="by")
    return _compare(frame, metric, "model", names, levels=levels, correction=correction, **kwargs)


def _pair_scores(a: np.ndarray, b: np.ndarray, top: float) -> tuple[float, float]:
    """Spearman rank correlation of two maps and the overlap of their top ``top`` fractions."""
    from scipy.stats import spearmanr

    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return float("nan"), float("nan")
    rho = spearmanr(a, b).statistic
    k = max(1, round(top * a.size))
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return float(rho), len(top_a & top_b) / k


def map_stability(
    maps: Any,
    top: float = 0.1,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> pl.DataFrame:
    """Retrain it, does the explanation stay? Similarity of one sample's maps across seeds.

    Parameters
    ----------
    maps : polars/pandas DataFrame
        One row per kept map: ``model``, ``method``, ``outer_fold``, ``seed``, ``sample_id``, the
        ``levels`` and ``by`` columns, and ``map`` (the flattened map, a list of floats; read the
        NIfTI files at the ``explanations`` table's ``map_path``, e.g. with nibabel).
    top : float
        Fraction of the voxels that counts as a map's most relevant part (0.1: top 10%).
    levels, by, n_boot, seed, alpha :
        As in :func:`explanations`.

    Returns
    -------
    polars.DataFrame
        Per ``by`` × model × method × ``quantity`` (``spearman``: rank correlation of the voxel
        attributions; ``top_overlap``: shared share of the top-``top`` voxels), the mean over
        samples of the mean over seed pairs, with the hierarchical bootstrap interval of
        :func:`raybench_analysis.bootstrap`, and ``n_pairs`` (seed pairs per sample).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> base = [rng.random(64) for _ in range(6)]
    >>> rows = [{"dataset": "d", "model": "m", "method": "gradcam", "outer_fold": 0, "seed": s,
    ...          "sample_id": f"x{i}", "subject_id": f"x{i}", "map": (b + 0.01 * s).tolist()}
    ...         for i, b in enumerate(base) for s in (0, 1)]
    >>> out = map_stability(pl.DataFrame(rows), n_boot=200)
    >>> [(q, round(e, 6)) for q, e in out.select("quantity", "estimate").rows()]
    [('spearman', 1.0), ('top_overlap', 1.0)]
    """
    if not 0 < top <= 1:
        raise AnalysisError(f"top={top!r}: a fraction of the voxels in (0, 1]")
    frame = to_polars(maps, name="maps")
    keys = [*as_names(by, name="by"), "model", "method"]
    unit = ["outer_fold", "sample_id"]
    require_columns(
        frame,
        [*keys, *unit, *levels, "seed", "map"],
        name="maps",
        why="to compare maps across seeds",
    )
    rows = []
    for group in frame.partition_by([*keys, *unit], maintain_order=True):
        arrays = [np.asarray(m, dtype=float) for m in group.sort("seed").get_column("map")]
        pairs = [
            _pair_scores(arrays[i], arrays[j], top)
            for i in range(len(arrays))
            for j in range(i + 1, len(arrays))
            if arrays[i].shape == arrays[j].shape
        ]
        if not pairs:
            continue
        first = group.row(0, named=True)
        for q, quantity in enumerate(("spearman", "top_overlap")):
            rows.append(
                {
                    **{c: first[c] for c in dict.fromkeys([*keys, *unit, *levels])},
                    "quantity": quantity,
                    "value": float(np.mean([p[q] for p in pairs])),
                    "n_pairs": len(pairs),
                }
            )
    if not rows:
        raise AnalysisError("no sample has maps of two seeds of one model and method")
    per_sample = _finite(pl.DataFrame(rows)).rename({"method": "_method"})
    summary = bootstrap(
        per_sample,
        value="value",
        levels=levels,
        by=[*keys[:-1], "_method", "quantity"],
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
    )
    pairs = per_sample.group_by([*keys[:-1], "_method", "quantity"]).agg(
        pl.col("n_pairs").mean().alias("n_pairs")
    )
    return (
        summary.join(pairs, on=[*keys[:-1], "_method", "quantity"])
        .drop("metric")
        .rename({"method": "interval_method", "_method": "method"})
        .sort([*keys, "quantity"])
    )
