"""How stable is a leaderboard? Ranks of models over hierarchical bootstrap samples.

A single ranking of models by a metric hides how easily it would change on another sample of
patients or sites. Following challengeR (Wiesenfarth et al. 2021), every model is re-scored on the
same bootstrap samples and ranked within each; the spread of each model's rank is the answer. The
samples are drawn on the right unit: sites, then subjects within the drawn sites (the same draw
for every model, so the comparison stays paired), never images as if they were independent.

The resampling engine here (:func:`resample_weights`, :func:`replicate_metric`) is shared with
:mod:`raybench_analysis.robustness`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from raybench_analysis._frames import AnalysisError, require_columns, to_polars
from raybench_analysis.bootstrap import (
    SCHEMES,
    build_hierarchy,
    cell_evaluators,
    draw_counts,
    nested_means,
)
from raybench_analysis.contract import raw_rows
from raybench_analysis.metrics import Metric, get_metric

__all__ = ["ResampleScheme", "ranking_stability", "replicate_metric", "resample_weights"]


@dataclass(frozen=True)
class ResampleScheme:
    """Bootstrap weights of every row of a predictions table.

    ``weights[b, unit_index[i]]`` is the number of times row ``i``'s bottom unit was drawn in
    replicate ``b`` (replicate 0 of :func:`replicate_metric` is the original sample). ``unit`` names
    the scheme, e.g. ``"site>subject_id"`` or ``"sample_id (iid)"``.
    """

    unit_index: np.ndarray
    weights: np.ndarray
    unit: str
    n_units: dict[str, int]
    resampling: str = "cluster bootstrap"
    n_top: int = 0
    n_strata: int = 1


def resample_weights(
    frame: pl.DataFrame,
    levels: Sequence[str],
    n_boot: int,
    seed: int = 0,
    *,
    scheme: str = "cluster",
    strata: Sequence[str] = (),
) -> ResampleScheme:
    """Draw ``n_boot`` hierarchical bootstrap samples of the units of ``frame``.

    Parameters
    ----------
    frame:
        Rows to resample (e.g. predictions); must hold the ``levels`` columns.
    levels:
        The hierarchy from the top, e.g. ``["site", "subject_id"]``: draw sites with replacement
        and keep their subjects whole (``scheme="cluster"``, default) or redraw as many subjects
        with replacement within each drawn site as it has (``scheme="two_stage"``, conservative).
        Every row of a drawn bottom unit comes along (all its sessions, seeds and models). ``[]``
        resamples ``sample_id`` (images) i.i.d., the naive scheme.
    n_boot:
        Number of bootstrap samples.
    seed:
        Seed of the generator.
    scheme, strata:
        As in :func:`raybench_analysis.bootstrap`.

    Returns
    -------
    ResampleScheme
        ``unit_index`` (row -> bottom unit) and ``weights`` ``(n_boot, n_units)``.

    Notes
    -----
    The metric depends on a draw only through how often each bottom unit is drawn, so these
    counts are drawn directly by the same engine as :func:`raybench_analysis.bootstrap`: the
    cluster scheme gives every subject the count of its site; the two-stage scheme, drawing a site
    ``c`` times and each time ``n_s`` of its subjects with replacement, gives them multinomial
    counts ``Multinomial(c n_s, 1/n_s)`` (Davison & Hinkley 1997, section 3.8; Field & Welsh 2007).

    References
    ----------
    Davison, A. C., & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
    University Press.

    Field, C. A., & Welsh, A. H. (2007). Bootstrapping clustered data. Journal of the Royal
    Statistical Society: Series B, 69(3), 369–390.

    Examples
    --------
    >>> df = pl.DataFrame({"site": ["a", "a", "b", "b"], "subject_id": ["1", "2", "3", "4"]})
    >>> s = resample_weights(df, ["site", "subject_id"], n_boot=3, seed=0)
    >>> s.weights.shape, s.weights.sum(axis=1).tolist()  # 2 sites of 2 subjects: 4 draws each
    ((3, 4), [4.0, 4.0, 4.0])
    >>> bool(np.all(s.weights[:, 0] == s.weights[:, 1]))  # a site's subjects come along together
    True
    """
    if int(n_boot) != n_boot or n_boot < 1:
        raise AnalysisError(f"n_boot={n_boot!r} must be a positive integer (e.g. 2000).")
    levels = list(levels) if levels else []
    cols = levels or ["sample_id"]
    require_columns(frame, cols, name="predictions", why="as resampling levels")
    hierarchy = build_hierarchy(frame, cols, tuple(strata))
    rng = np.random.default_rng(seed)
    counts = np.vstack(list(draw_counts(hierarchy, int(n_boot), rng, scheme=scheme)))
    unit = ">".join(levels) if levels else "sample_id (iid)"
    n_units = dict(zip(cols, hierarchy.sizes, strict=True))
    kind = hierarchy.resampling(scheme) if levels else "iid bootstrap"
    return ResampleScheme(
        hierarchy.unit,
        counts.astype(np.float64),
        unit,
        n_units,
        kind,
        hierarchy.n_top,
        hierarchy.n_strata,
    )


def replicate_metric(
    frame: pl.DataFrame,
    metric: Metric,
    scheme: ResampleScheme,
    rows: np.ndarray,
    within: Sequence[str] = ("outer_fold", "seed"),
) -> np.ndarray:
    """The metric on the original sample (index 0) and on every bootstrap sample (1..B).

    ``rows`` selects the rows of ``frame`` (as indexed by ``scheme``). The metric is computed in
    each cell of the ``within`` columns present (by default one trained model: an outer fold and
    a seed), every cell under the same resampled units, then averaged over the last column
    within the others (seeds within a fold), then over the next (folds): the same estimand as
    ``bootstrap(average_over=("outer_fold", "seed"))`` and ``compare``, the mean performance of
    the trained models (Forman & Scholz 2010).
    """
    cols = [c for c in within if c in frame.columns]
    # only the columns read: gathering every column per cell dominated the time (issue 11)
    wanted = [*metric.columns, *metric.optional, *cols]
    read = [c for c in dict.fromkeys(wanted) if c in frame.columns]
    part = frame.select(read)[rows]
    idx = scheme.unit_index[rows]
    w_all = np.vstack([np.ones((1, scheme.weights.shape[1])), scheme.weights])
    if not cols:
        return metric.evaluate(part, w_all[:, idx])
    require_columns(part, metric.columns, why=f"by metric {metric.name!r}")
    return nested_means(cell_evaluators(part, metric, cols, idx, w_all.shape[1]), w_all)[()]


def _split_by(frame: pl.DataFrame, by: list[str]) -> list[tuple[dict[str, Any], np.ndarray]]:
    if not by:
        return [({}, np.arange(frame.height))]
    with_idx = frame.select(by).with_row_index("__row")
    out = []
    for key, part in with_idx.group_by(by, maintain_order=True):
        out.append((dict(zip(by, key, strict=True)), part["__row"].to_numpy()))
    return out


def clean_predictions(predictions: Any, name: str = "predictions") -> pl.DataFrame:
    """Predictions as polars, test split only, unperturbed rows only (when those columns exist)."""
    frame = to_polars(predictions, name=name)
    if "split" in frame.columns:
        frame = frame.filter(pl.col("split") == "test")
    frame = raw_rows(frame)
    if "perturbation" in frame.columns:
        frame = frame.filter(pl.col("perturbation") == "none")
    if frame.height == 0:
        raise AnalysisError(
            f"{name}: no clean test rows (split='test', perturbation='none'); check that the "
            "results hold refit trials evaluated on their test folds."
        )
    return frame


def ranking_stability(
    predictions: Any,
    metric: str | Metric = "auc",
    levels: Sequence[str] = ("site", "subject_id"),
    n_boot: int = 1000,
    seed: int = 0,
    *,
    alpha: float = 0.05,
    by: Sequence[str] = ("dataset",),
    scheme: str = "cluster",
    strata: Sequence[str] = (),
) -> pl.DataFrame:
    """Distribution of each model's rank over paired hierarchical bootstrap samples.

    Parameters
    ----------
    predictions:
        Predictions table (docs/results.md). Only ``split == "test"`` and ``perturbation ==
        "none"`` rows are used when those columns exist.
    metric:
        A metric name of :data:`raybench_analysis.metrics.METRICS` or a ``Metric``; its
        ``higher_is_better`` sets the direction (rank 1 = best).
    levels:
        Resampling hierarchy from the top (see :func:`resample_weights`); ``[]`` is the naive
        image-level bootstrap.
    n_boot, seed:
        Bootstrap samples and generator seed.
    alpha:
        The rank interval is the ``alpha/2`` and ``1-alpha/2`` percentiles.
    by:
        Rank separately within these columns (those absent are ignored), e.g. per dataset.
    scheme, strata:
        Resampling scheme (``"cluster"``, default, or ``"two_stage"``) and strata, as in
        :func:`raybench_analysis.bootstrap`.

    Returns
    -------
    polars.DataFrame
        One row per model (and ``by`` group): ``by`` columns, ``model``, ``metric``, ``estimate``
        (on the full data), ``rank`` (on the full data), ``mean_rank``, ``rank_ci_low``,
        ``rank_ci_high``, ``p_rank_1`` .. ``p_rank_K`` (share of samples where the model has that
        rank; models tied over several ranks share each of them equally, so the shares of a rank sum
        to 1 over the models), ``n_boot``, ``method`` (``"bootstrap_rank, "`` and
        the resampling scheme), ``unit``.

    Notes
    -----
    Each bootstrap sample ``b`` draws units on ``levels`` once; every model's metric ``θ_m^b`` is
    computed on that same sample (per outer fold × seed, averaged over seeds within each fold,
    then over folds, as :func:`compare`) and the models are ranked by ``θ^b`` (average ranks
    for ties). ``p_rank_k = (1/B) Σ_b w_mk^b`` where ``w_mk^b`` is 1 when
    model ``m`` alone takes rank ``k`` and ``1/t`` when it is one of ``t`` models tied over ranks
    that include ``k``. This is the
    "bootstrap and rank" stability analysis of challengeR, on the clustered unit.

    References
    ----------
    Wiesenfarth, M., Reinke, A., Landman, B. A., Eisenmann, M., Aguilera Saiz, L., Cardoso, M. J.,
    Maier-Hein, L., & Kopp-Schneider, A. (2021). Methods and open-source toolkit for analyzing and
    visualizing challenge results. Scientific Reports, 11, 2369.

    Maier-Hein, L., Eisenmann, M., Reinke, A., et al. (2018). Why rankings of biomedical image
    analysis competitions should be interpreted with care. Nature Communications, 9, 5217.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> run = simulate_predictions(n_sites=4, subjects_per_site=10, n_seeds=2, n_folds=2,
    ...                            models={"weak": 0.5, "strong": 3.0})
    >>> out = ranking_stability(run.predictions, "auc", n_boot=200)
    >>> out.select("model", "rank", "p_rank_1").row(0)
    ('strong', 1.0, 1.0)
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"ranking_stability: alpha={alpha!r} must be in (0, 1).")
    m = get_metric(metric)
    frame = clean_predictions(predictions)
    require_columns(frame, ["model", *m.columns], name="predictions", why="for the ranking")
    by_cols = [c for c in by if c in frame.columns]
    if scheme not in SCHEMES:
        raise AnalysisError(f"ranking_stability: scheme={scheme!r}; allowed: {list(SCHEMES)}")
    scheme_ = resample_weights(frame, levels, n_boot, seed, scheme=scheme, strata=strata)
    sign = -1.0 if m.higher_is_better else 1.0
    parts = []
    for key, rows in _split_by(frame, by_cols):
        sub = frame[rows]
        models = sorted(sub["model"].unique().to_list())
        if len(models) < 2:
            continue
        sub_rows = {mdl: rows[(sub["model"] == mdl).to_numpy()] for mdl in models}
        theta = np.stack([replicate_metric(frame, m, scheme_, sub_rows[mdl]) for mdl in models])
        if not np.all(np.isfinite(theta[:, 0])):
            bad = models[int(np.flatnonzero(~np.isfinite(theta[:, 0]))[0])]
            raise AnalysisError(
                f"ranking_stability: {m.name} of model {bad!r} is undefined on the data "
                "(e.g. AUC with one class); check y_true and the metric."
            )
        # undefined replicates (a sample with one class) rank last
        filled = np.where(np.isfinite(theta), sign * theta, np.inf)
        ranks = stats.rankdata(filled, axis=0, method="average")  # (K, B+1)
        k = len(models)
        boot = ranks[:, 1:]
        # ties split: models tied over positions first..last each get 1/(last - first + 1) of
        # every one of them, so each position's shares sum to 1 over the models
        first = stats.rankdata(filled, axis=0, method="min")[:, 1:]
        last = stats.rankdata(filled, axis=0, method="max")[:, 1:]
        weight = 1.0 / (last - first + 1)
        lo, hi = np.quantile(boot, [alpha / 2, 1 - alpha / 2], axis=1, method="inverted_cdf")
        table = {
            **{c: [v] * k for c, v in key.items()},
            "model": models,
            "metric": [m.label()] * k,
            "estimate": theta[:, 0],
            "rank": ranks[:, 0],
            "mean_rank": boot.mean(axis=1),
            "rank_ci_low": lo,
            "rank_ci_high": hi,
            **{
                f"p_rank_{r}": np.where((first <= r) & (r <= last), weight, 0.0).mean(axis=1)
                for r in range(1, k + 1)
            },
            "n_boot": [n_boot] * k,
            "method": [f"bootstrap_rank, {scheme_.resampling}"] * k,
            "unit": [scheme_.unit] * k,
        }
        parts.append(pl.DataFrame(table).sort("rank", "model"))
    if not parts:
        raise AnalysisError(
            "ranking_stability: fewer than 2 models in every group; a ranking needs 2 models."
        )
    return pl.concat(parts, how="diagonal")
