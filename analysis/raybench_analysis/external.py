"""External validation: performance on datasets never trained on, and the generalisation gap.

Rows with ``split = "external"`` are the predictions of a run's saved refit models on a dataset
that was never used for training or selection (``validation.external`` or ``raybench predict``;
docs/validation.md). Three questions, each answered with the package's hierarchical bootstrap:

- :func:`external_performance`: how well do the trained models do on each external dataset? The
  interval resamples *that dataset's* sites and subjects (its own hierarchy).
- :func:`generalisation_gap`: how much worse is that than the cross-validated (internal) estimate
  of the same models? internal − external, per model, with an interval from two independent
  hierarchical bootstraps: one of the development test subjects, one of the external subjects.
- :func:`compare_external`: which model does better on the external subjects?
  :func:`raybench_analysis.compare` on them, paired on the same external subjects.

Every estimate has the estimand of :func:`raybench_analysis.summarize`: the metric of each
(outer fold, seed) model on its evaluation set, averaged over seeds, then over folds. Each external
row is attributed to the *development* dataset its model was trained on (from the ``trials``
table's ``refit_trial_id``; with a single development dataset, that one), so a model trained on
two development datasets gives two rows.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import polars as pl
from scipy import stats as sps

from raybench_analysis._frames import AnalysisError, require_columns, to_polars
from raybench_analysis.bootstrap import bootstrap, welch_satterthwaite_df
from raybench_analysis.compare import compare
from raybench_analysis.contract import raw_rows
from raybench_analysis.metrics import Metric
from raybench_analysis.vocabulary import EXTERNAL_SPLIT

__all__ = [
    "compare_external",
    "external_performance",
    "external_rows",
    "external_summary",
    "generalisation_gap",
]

#: Grouping of every external table: the training data, the external dataset, the protocol.
_KEYS = ["development", "dataset", "protocol"]


def _clean(frame: pl.DataFrame) -> pl.DataFrame:
    """The networks' own, unperturbed predictions."""
    frame = raw_rows(frame)
    if "perturbation" in frame.columns:
        frame = frame.filter(pl.col("perturbation") == "none")
    return frame


def external_rows(predictions: Any, trials: Any = None) -> pl.DataFrame:
    """The clean ``split = "external"`` rows, with a ``development`` column (training dataset).

    ``development`` comes from ``trials`` (the dataset of each entry's ``refit_trial_id``, or of
    the trial itself for rows a refit trial wrote); without ``trials``, from the predictions'
    test rows when they hold a single dataset. Rows whose development dataset cannot be told are
    an :class:`AnalysisError`.

    Examples
    --------
    >>> p = pl.DataFrame({"trial_id": ["t", "e"], "dataset": ["dev", "ext"],
    ...                   "split": ["test", "external"], "perturbation": ["none", "none"]})
    >>> external_rows(p).select("development", "dataset").row(0)
    ('dev', 'ext')
    """
    frame = to_polars(predictions, name="predictions")
    require_columns(frame, ["split", "dataset"], name="predictions", why="for external rows")
    rows = _clean(frame.filter(pl.col("split") == EXTERNAL_SPLIT))
    if trials is not None:
        t = to_polars(trials, name="trials")
        if {"trial_id", "dataset"} <= set(t.columns):
            parent = (
                pl.col("refit_trial_id").fill_null(pl.col("trial_id"))
                if "refit_trial_id" in t.columns
                else pl.col("trial_id")
            )
            links = t.select("trial_id", parent.alias("_refit"))
            datasets = t.select(
                pl.col("trial_id").alias("_refit"), pl.col("dataset").alias("development")
            )
            mapping = links.join(datasets, on="_refit", how="left").select(
                "trial_id", "development"
            )
            rows = rows.join(mapping.unique("trial_id"), on="trial_id", how="left")
    if "development" not in rows.columns:
        dev = frame.filter(pl.col("split") == "test")["dataset"].unique().drop_nulls().to_list()
        if len(dev) > 1 and rows.height:
            raise AnalysisError(
                f"external rows: the predictions hold {len(dev)} development datasets {dev}; "
                "pass trials= so each external row is attributed to its model's training data"
            )
        rows = rows.with_columns(development=pl.lit(dev[0] if dev else None, pl.String))
    unknown = rows.filter(pl.col("development").is_null())
    if unknown.height:
        raise AnalysisError(
            f"external rows: {unknown.height} row(s) of trials "
            f"{unknown['trial_id'].unique().to_list()[:3]} have no known development dataset "
            "(their refit trial is not in the trials table)"
        )
    if "protocol" not in rows.columns:
        rows = rows.with_columns(protocol=pl.lit("outer"))
    return rows


def _metric(metric: str | Metric | None, frame: pl.DataFrame) -> str | Metric:
    """``metric``, or the task's default read from the columns (auc, dice, else mae)."""
    if metric is not None:
        return metric
    for column, name in (("score", "auc"), ("dice", "dice")):
        if column in frame.columns and frame[column].null_count() < frame.height:
            return name
    return "mae"


def _levels(levels: Sequence[str], frame: pl.DataFrame) -> list[str]:
    return [lv for lv in levels if lv in frame.columns]


def _external_levels(levels: Sequence[str], rows: pl.DataFrame) -> list[str]:
    """The hierarchy of one external dataset: without top levels that hold a single unit.

    A top level with one unit (a one-site external cohort; generated samples, all of site
    ``generated``) carries no between-unit variation: resampling one unit of one gives a
    few-cluster t interval with 0 degrees of freedom, i.e. none. Such a level is dropped with a
    warning, so the interval resamples the next level (that site's subjects) and answers the
    narrower question "another sample of subjects like these"; its ``unit`` column says so.
    """
    kept = _levels(levels, rows)
    while len(kept) > 1 and rows[kept[0]].n_unique() == 1:
        warnings.warn(
            f"external dataset {rows['dataset'][0]!r} has one {kept[0]} "
            f"({rows[kept[0]][0]!r}): its interval resamples {kept[1]} only (an interval over "
            f"that {kept[0]}'s units, not over {kept[0]}s)",
            stacklevel=3,
        )
        kept = kept[1:]
    return kept


def _has_two_models(rows: pl.DataFrame) -> bool:
    """Whether some external dataset has predictions of two models or more (to compare)."""
    most = rows.group_by("dataset").agg(pl.col("model").n_unique())["model"].max()
    return most is not None and most >= 2


def _per_dataset(rows: pl.DataFrame, levels: Sequence[str], fn: Any) -> pl.DataFrame:
    """``fn(part, levels)`` on each external dataset's rows with its own hierarchy, stacked.

    ``fn`` returns ``None`` for a dataset it has nothing to say about.
    """
    parts = [
        fn(part, _external_levels(levels, part))
        for _, part in rows.sort("dataset").group_by("dataset", maintain_order=True)
    ]
    return pl.concat([p for p in parts if p is not None], how="diagonal_relaxed")


def external_performance(
    predictions: Any,
    metric: str | Metric | None = None,
    levels: Sequence[str] = ("site", "subject_id"),
    *,
    trials: Any = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    scheme: str = "cluster",
    interval: str = "t",
) -> pl.DataFrame:
    """Performance of the trained models on each external dataset, with hierarchical intervals.

    Parameters
    ----------
    predictions, trials : DataFrame
        The ``predictions`` table (and the ``trials`` table, to attribute each external row to
        its development dataset; see :func:`external_rows`).
    metric : str or Metric, optional
        Default: ``auc`` when there are scores, ``dice`` for segmentation, else ``mae``.
    levels : sequence of str
        The hierarchy resampled, from the top; the external dataset's own sites and subjects.
    alpha, n_boot, seed, scheme, interval
        As in :func:`raybench_analysis.bootstrap`.

    Returns
    -------
    polars.DataFrame
        One row per (``development``, ``dataset``, ``protocol``, ``model``): the columns of
        :func:`raybench_analysis.bootstrap` (``metric, estimate, se, ci_low, ci_high, df,
        n_<level>, n_obs, n_boot, method, unit``, ``n_outer_fold``, ``n_seed``).

    Notes
    -----
    θ_ext = (1/K) Σ_k (1/S_k) Σ_s M(external rows of the fold-k, seed-s model): every model sees
    every external subject, and each replicate scores all models on the same resampled external
    sites and subjects (cluster bootstrap, Field & Welsh 2007; few-cluster t interval, Cameron,
    Gelbach & Miller 2008). A ``final`` protocol (one refit on the whole development dataset)
    has its own rows.

    References
    ----------
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
    Field, C. A. & Welsh, A. H. (2007). Bootstrapping clustered data. Journal of the Royal
        Statistical Society B 69(3), 369–390.
    Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2008). Bootstrap-based improvements for
        inference with clustered errors. Review of Economics and Statistics 90(3), 414–427.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> ext = simulate_predictions(models={"m": 1.0}, n_sites=4, subjects_per_site=10,
    ...                            dataset="ext", seed=1).predictions
    >>> ext = ext.with_columns(split=pl.lit("external"), development=pl.lit("synth"))
    >>> out = external_performance(ext, n_boot=200)
    >>> out.select("development", "dataset", "model", "unit").row(0)
    ('synth', 'ext', 'm', 'site>subject_id')
    """
    frame = to_polars(predictions, name="predictions")
    rows = frame if "development" in frame.columns else external_rows(frame, trials)
    rows = _clean(rows.filter(pl.col("split") == EXTERNAL_SPLIT))
    if "protocol" not in rows.columns:
        rows = rows.with_columns(protocol=pl.lit("outer"))
    if rows.height == 0:
        raise AnalysisError("no external predictions (split = 'external') to analyse")
    m = _metric(metric, rows)
    return _per_dataset(
        rows,
        levels,
        lambda part, lv: bootstrap(
            part,
            metric=m,
            levels=lv,
            by=[*_KEYS, "model"],
            n_boot=n_boot,
            seed=seed,
            alpha=alpha,
            scheme=scheme,  # type: ignore[arg-type]
            interval=interval,  # type: ignore[arg-type]
        ),
    )


def generalisation_gap(
    predictions: Any,
    metric: str | Metric | None = None,
    levels: Sequence[str] = ("site", "subject_id"),
    *,
    trials: Any = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> pl.DataFrame:
    """Internal − external performance of each model, with an interval from two bootstraps.

    Parameters
    ----------
    predictions, trials, metric, levels, alpha, n_boot, seed
        As in :func:`external_performance`; the internal estimate reads the clean ``test`` rows
        of the development dataset (same protocol, same models).

    Returns
    -------
    polars.DataFrame
        One row per (``development``, ``dataset``, ``protocol``, ``model``): ``metric``,
        ``internal``, ``internal_se``, ``internal_df``, ``external``, ``external_se``,
        ``external_df``, ``estimate`` (internal − external), ``se``, ``df``, ``ci_low``,
        ``ci_high``, ``p_value`` (of "no gap"), ``n_internal``, ``n_external`` (rows),
        ``method``, ``unit``. A positive gap is a loss on external data for a metric where higher
        is better (AUC), a gain for an error (MAE).

    Notes
    -----
    The two estimates come from disjoint sets of subjects (the leakage audit makes sure), drawn
    independently, and the models are held fixed, so the gap is a difference of two independent
    estimates: Var(θ̂_int − θ̂_ext) = Var(θ̂_int) + Var(θ̂_ext). Each variance is the cluster
    bootstrap's (its own sites and subjects resampled; Efron & Tibshirani 1993, ch. 13 and
    §6.4; Field & Welsh 2007), with the few-cluster correction of :func:`bootstrap`. The interval
    is gap ± t_{ν, 1−α/2} · se with se = √(se_int² + se_ext²) and ν the Welch–Satterthwaite
    degrees of freedom ν = se⁴ / (se_int⁴/ν_int + se_ext⁴/ν_ext) of the two few-cluster t
    intervals (ν_int = G_int − 1, ν_ext = G_ext − 1). Its coverage and power are in
    docs/validation.md (simulation in ``analysis/validation/external_gap.py``).

    The internal estimate is that of the trained fold models on their own test folds, not of the
    training procedure; with ``validation.final`` (a single model) there is no internal
    estimate and no gap.

    References
    ----------
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.
    Field, C. A. & Welsh, A. H. (2007). Bootstrapping clustered data. Journal of the Royal
        Statistical Society B 69(3), 369–390.
    Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance
        components. Biometrics Bulletin 2(6), 110–114.
    Welch, B. L. (1947). The generalization of "Student's" problem when several different
        population variances are involved. Biometrika 34(1–2), 28–35.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> dev = simulate_predictions(models={"m": 2.0}, n_sites=8, subjects_per_site=10, seed=0)
    >>> ext = simulate_predictions(models={"m": 0.2}, n_sites=8, subjects_per_site=10,
    ...                            dataset="ext", seed=1).predictions
    >>> both = pl.concat([dev.predictions, ext.with_columns(split=pl.lit("external"))])
    >>> gap = generalisation_gap(both, n_boot=300)
    >>> gap.select("development", "dataset", "model").row(0)
    ('synth', 'ext', 'm')
    >>> bool(gap["estimate"][0] > 0 and gap["ci_low"][0] > 0)
    True
    """
    frame = to_polars(predictions, name="predictions")
    ext_rows = external_rows(frame, trials)
    m = _metric(metric, ext_rows)
    external = external_performance(ext_rows, m, levels, alpha=alpha, n_boot=n_boot, seed=seed + 1)
    test = _clean(frame.filter(pl.col("split") == "test"))
    if "protocol" not in test.columns:
        test = test.with_columns(protocol=pl.lit("outer"))
    pairs = external.select(["development", "protocol", "model"]).unique()
    test = test.rename({"dataset": "development"}).join(
        pairs, on=["development", "protocol", "model"], how="semi"
    )
    if test.height == 0:
        raise AnalysisError(
            "generalisation gap: no test rows of the external rows' models (development dataset, "
            "protocol, model); a final refit alone has no internal estimate"
        )
    internal = bootstrap(
        test,
        metric=m,
        levels=_levels(levels, test),
        by=["development", "protocol", "model"],
        n_boot=n_boot,
        seed=seed,
        alpha=alpha,
    )
    joined = external.join(
        internal.select(
            "development",
            "protocol",
            "model",
            pl.col("estimate").alias("internal"),
            pl.col("se").alias("internal_se"),
            pl.col("df").alias("internal_df"),
            pl.col("n_obs").alias("n_internal"),
        ),
        on=["development", "protocol", "model"],
        how="inner",
    )
    rows = []
    for r in joined.sort([*_KEYS, "model"]).iter_rows(named=True):
        gap = r["internal"] - r["estimate"]
        se = math.hypot(r["internal_se"], r["se"])
        df = welch_satterthwaite_df(r["internal_se"], r["internal_df"], r["se"], r["df"])
        half = sps.t.ppf(1 - alpha / 2, df) * se if math.isfinite(se * df) and df > 0 else math.nan
        p = 2 * sps.t.sf(abs(gap) / se, df) if se > 0 and math.isfinite(se * df) else math.nan
        rows.append(
            {
                **{k: r[k] for k in [*_KEYS, "model", "metric"]},
                "internal": r["internal"],
                "internal_se": r["internal_se"],
                "internal_df": r["internal_df"],
                "external": r["estimate"],
                "external_se": r["se"],
                "external_df": r["df"],
                "estimate": gap,
                "se": se,
                "df": df,
                "ci_low": gap - half,
                "ci_high": gap + half,
                "p_value": p,
                "n_internal": r["n_internal"],
                "n_external": r["n_obs"],
                "method": "independent cluster bootstraps of the internal and external subjects, "
                "Welch–Satterthwaite t interval",
                "unit": r["unit"],
            }
        )
    return pl.DataFrame(rows)


def compare_external(
    predictions: Any,
    metric: str | Metric | None = None,
    levels: Sequence[str] = ("site", "subject_id"),
    *,
    trials: Any = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
    correction: str = "holm",
) -> pl.DataFrame:
    """Paired comparisons of the models on the same external subjects.

    :func:`raybench_analysis.compare` (paired cluster bootstrap, multiplicity-corrected) on the
    clean external rows of each (``development``, ``dataset``, ``protocol``): every model is
    scored on the same resampled external sites and subjects in every replicate. Returns the
    columns of :func:`compare` with ``development``, ``dataset`` and ``protocol`` first.

    References
    ----------
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
        University Press, §3.8.
    Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scandinavian
        Journal of Statistics 6(2), 65–70.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> ext = simulate_predictions(models={"a": 2.0, "b": 0.5}, n_sites=4, subjects_per_site=10,
    ...                            dataset="ext", seed=3).predictions
    >>> ext = ext.with_columns(split=pl.lit("external"), development=pl.lit("synth"))
    >>> out = compare_external(ext, n_boot=200)
    >>> out.select("dataset", "model_a", "model_b").row(0), bool(out["estimate"][0] != 0)
    (('ext', 'a', 'b'), True)
    """
    frame = to_polars(predictions, name="predictions")
    rows = frame if "development" in frame.columns else external_rows(frame, trials)
    rows = _clean(rows.filter(pl.col("split") == EXTERNAL_SPLIT))
    if "protocol" not in rows.columns:
        rows = rows.with_columns(protocol=pl.lit("outer"))
    if not _has_two_models(rows):
        raise AnalysisError("external comparisons: no external dataset has two models to compare")
    m = _metric(metric, rows)
    return _per_dataset(
        rows.with_columns(split=pl.lit("test")),  # compare() scores test rows
        levels,
        lambda part, lv: (
            None
            if part["model"].n_unique() < 2
            else compare(
                part,
                metric=m,
                levels=lv,
                by=_KEYS,
                method="bootstrap",
                n_boot=n_boot,
                seed=seed,
                alpha=alpha,
                correction=correction,
            )
        ),
    )


def external_summary(
    predictions: Any,
    metric: str | Metric | None = None,
    levels: Sequence[str] = ("site", "subject_id"),
    *,
    trials: Any = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, pl.DataFrame]:
    """The external tables of a run, as :func:`raybench_analysis.summarize` shows them.

    ``{"external": external_performance(...), "generalisation_gap": ..., "external_comparisons":
    ...}``; a table that cannot be computed (one model, no internal estimate) is left out, and
    the result is empty when the predictions hold no external rows.
    """
    frame = to_polars(predictions, name="predictions")
    if "split" not in frame.columns or not (frame["split"] == EXTERNAL_SPLIT).any():
        return {}
    rows = external_rows(frame, trials)
    args: dict[str, Any] = {"alpha": alpha, "n_boot": n_boot, "seed": seed}
    out = {"external": external_performance(rows, metric, levels, **args)}
    test = frame.filter(pl.col("split") == "test")
    if test.height:
        out["generalisation_gap"] = generalisation_gap(frame, metric, levels, trials=trials, **args)
    if _has_two_models(rows):
        out["external_comparisons"] = compare_external(rows, metric, levels, **args)
    return out
