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
  overlap of one sample's maps across training seeds, with the same intervals;
- :func:`weak_segmentation`: Dice and HD95 of the maps thresholded at the validation-chosen
  threshold, overall or per site (resampling subjects within each site), with the thresholds;
- :func:`randomisation_check`: Adebayo et al.'s (2018) model-parameter randomisation test, each
  method flagged ``passes``, ``fails`` or ``inconclusive``.

Stability under the suite's perturbations is the ``perturbation_spearman`` metric of
:func:`explanations` (one row per perturbation).

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

__all__ = [
    "RANDOMISATION_THRESHOLD",
    "compare_methods",
    "compare_models",
    "explanations",
    "map_stability",
    "randomisation_check",
    "weak_segmentation",
]

#: One trained model: its scores are averaged over seeds within a fold, then over folds.
_TRAINED = ("outer_fold", "seed")


def _table(data: Any) -> pl.DataFrame:
    """The explanations table of ``data`` (a frame, or :func:`raybench_analysis.load`'s result).

    A ``perturbation`` column (absent from tables written before it existed) reads null as
    ``"none"``: the clean image.
    """
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
    if "perturbation" in frame.columns:
        frame = frame.with_columns(pl.col("perturbation").cast(pl.String).fill_null("none"))
    return frame


def _by(frame: pl.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    """The grouping columns: ``by``, and ``perturbation`` when some rows are of perturbed images
    (the ``perturbation_spearman`` rows: one per perturbation and sample)."""
    names = as_names(by, name="by")
    if "perturbation" in frame.columns and (frame["perturbation"] != "none").any():
        names = [*names, "perturbation"]
    return names


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
    keys = [*_by(frame, by), "model", "method"]
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
    names = _by(frame.filter(pl.col("metric") == metric), by)
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
    names = _by(frame.filter(pl.col("metric") == metric), by)
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


#: Rank correlation between trained and randomised maps at or above which a method fails the
#: model-randomisation check (Adebayo et al. 2018 report no cut-off; 0.5 says "still mostly the
#: same ranking of voxels" and is an argument of :func:`randomisation_check`).
RANDOMISATION_THRESHOLD = 0.5


def randomisation_check(
    data: Any,
    threshold: float = RANDOMISATION_THRESHOLD,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> pl.DataFrame:
    """Does the map depend on the trained weights? The model-parameter randomisation check.

    Each explained test image is explained twice by every refit trial: by the trained network and
    by a copy of it with every layer re-initialised (the ``randomisation_spearman`` rows: the
    Spearman rank correlation of the two maps' voxels). A method whose maps stay correlated
    explains the image (edges, intensity) rather than what the network learned, and fails.

    Parameters
    ----------
    data : polars/pandas DataFrame or the object returned by :func:`raybench_analysis.load`
        The ``explanations`` table.
    threshold : float
        Correlation at or above which the maps count as unchanged.
    levels, by, n_boot, seed, alpha :
        As in :func:`explanations`.

    Returns
    -------
    polars.DataFrame
        The columns of :func:`explanations` for ``metric = "randomisation_spearman"`` (estimate:
        mean rank correlation per trained model, averaged over seeds then folds, with its
        hierarchical interval), plus ``threshold`` and ``status``: ``"fails"`` when the interval
        lies at or above ``threshold`` (``ci_low >= threshold``), ``"passes"`` when it lies below
        (``ci_high < threshold``), ``"inconclusive"`` otherwise.

    Notes
    -----
    Adebayo et al. compare maps of the trained and the randomised network with Spearman rank
    correlation (with and without absolute values), SSIM and the HOG similarity; raybench keeps
    the rank correlation of the maps as each method returns them (gradient and SmoothGrad are
    absolute values already). Integrated Gradients with an all-zero baseline multiplies by the
    input, and gradient maps of a random network keep the image's edges, which is why such
    methods can fail.

    References
    ----------
    Adebayo, J., Gilmer, J., Muelly, M., Goodfellow, I., Hardt, M., & Kim, B. (2018). Sanity
    checks for saliency maps. Advances in Neural Information Processing Systems 31.

    Examples
    --------
    >>> rows = [{"dataset": "d", "model": "m", "method": meth, "metric": "randomisation_spearman",
    ...          "outer_fold": f, "seed": 0, "sample_id": f"s{f}{i}", "subject_id": f"s{f}{i}",
    ...          "value": v + 0.01 * i} for f in (0, 1) for i in range(6)
    ...         for meth, v in (("gradcam", 0.05), ("integrated_gradients", 0.9))]
    >>> out = randomisation_check(pl.DataFrame(rows), n_boot=200)
    >>> out.select("method", "status").rows()
    [('gradcam', 'passes'), ('integrated_gradients', 'fails')]
    """
    if not -1 <= threshold <= 1:
        raise AnalysisError(f"threshold={threshold!r}: a rank correlation in [-1, 1]")
    out = explanations(
        data, "randomisation_spearman", levels=levels, by=by, n_boot=n_boot, seed=seed,
        alpha=alpha,
    )  # fmt: skip
    status = (
        pl.when(pl.col("ci_low") >= threshold)
        .then(pl.lit("fails"))
        .when(pl.col("ci_high") < threshold)
        .then(pl.lit("passes"))
        .otherwise(pl.lit("inconclusive"))
    )
    return out.with_columns(pl.lit(threshold).alias("threshold"), status.alias("status"))


def weak_segmentation(
    data: Any,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    per_site: bool = False,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    alpha: float = DEFAULT_ALPHA,
) -> pl.DataFrame:
    """Weakly supervised segmentation from the maps: Dice and HD95, with the chosen thresholds.

    Each refit trial thresholded every map at a fraction of its maximum chosen on the trial's
    validation samples (the fraction with the best mean Dice there), never on the test fold, and
    scored the test maps of images with a lesion against their masks: the ``dice`` and ``hd95``
    (mm) rows.

    Parameters
    ----------
    data : polars/pandas DataFrame or the object returned by :func:`raybench_analysis.load`
        The ``explanations`` table.
    levels : sequence of str
        Resampling hierarchy, top first (e.g. ``["site", "subject_id"]``). With ``per_site``
        the ``site`` level is dropped: each site's subjects are resampled within it.
    by : column name(s), optional
        Further grouping columns.
    per_site : bool
        One estimate per site (a ``site`` column): does the map find the lesion at every site,
        e.g. where a shortcut artefact is absent?
    n_boot, seed, alpha :
        As in :func:`explanations`.

    Returns
    -------
    polars.DataFrame
        The columns of :func:`explanations` for ``dice`` and ``hd95``, plus ``threshold_mean``,
        ``threshold_min`` and ``threshold_max`` (the fractions the trials chose, per model and
        method).

    Notes
    -----
    The estimand is :func:`explanations`': the mean over the scored images of each trained
    model, averaged over seeds within a fold and then over folds. Images without a lesion have
    no Dice (NaN, counted in ``n_undefined``). Dice follows Dice (1945); HD95 is the 95th
    percentile of the symmetric surface distances (MONAI's ``compute_hausdorff_distance``), a
    robust Hausdorff distance (Huttenlocher, Klanderman & Rucklidge 1993).

    References
    ----------
    Dice, L. R. (1945). Measures of the amount of ecologic association between species. Ecology
    26(3), 297–302.

    Huttenlocher, D. P., Klanderman, G. A., & Rucklidge, W. J. (1993). Comparing images using the
    Hausdorff distance. IEEE TPAMI 15(9), 850–863.

    Zhou, B., Khosla, A., Lapedriza, A., Oliva, A., & Torralba, A. (2016). Learning deep
    features for discriminative localization. CVPR (maps of a classifier as a localiser).

    Examples
    --------
    >>> rows = [{"dataset": "d", "model": "m", "method": "gradcam", "metric": metric,
    ...          "outer_fold": f, "seed": 0, "sample_id": f"s{f}{i}", "subject_id": f"s{f}{i}",
    ...          "site": f"site{i % 2}", "threshold": 0.3 + 0.1 * f,
    ...          "value": 0.5 if metric == "dice" else 4.0}
    ...         for f in (0, 1) for i in range(4) for metric in ("dice", "hd95")]
    >>> out = weak_segmentation(pl.DataFrame(rows), per_site=True, n_boot=200)
    >>> out.select("site", "metric", "estimate", "threshold_mean").rows()[:2]
    [('site0', 'dice', 0.5, 0.35), ('site0', 'hd95', 4.0, 0.35)]
    """
    frame = _table(data).filter(pl.col("metric").is_in(["dice", "hd95"]))
    if frame.is_empty():
        raise AnalysisError(
            "the explanations table has no dice/hd95 rows: the trials ran without "
            "evaluation.explain.threshold_samples"
        )
    names = as_names(by, name="by")
    if per_site:
        require_columns(frame, ["site"], name="explanations", why="per_site=True")
        names = [*names, "site"]
        levels = [lv for lv in levels if lv != "site"] or ["sample_id"]
    out = explanations(frame, levels=levels, by=names, n_boot=n_boot, seed=seed, alpha=alpha)
    keys = [*names, "model", "method"]
    if "threshold" in frame.columns:
        chosen = (
            frame.filter(pl.col("threshold").is_not_null())
            .unique([*keys, "trial_id"] if "trial_id" in frame.columns else [*keys, *_TRAINED])
            .group_by(keys)
            .agg(
                pl.col("threshold").mean().alias("threshold_mean"),
                pl.col("threshold").min().alias("threshold_min"),
                pl.col("threshold").max().alias("threshold_max"),
            )
        )
        out = out.join(chosen, on=keys, how="left")
    return out.sort([*keys, "metric"])
