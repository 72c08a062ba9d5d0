"""Pairwise comparison of models evaluated on the same test samples over splits and seeds.

A benchmark trains every model on the same outer folds with several seeds and predicts the same
test samples. The right comparison is paired (same samples, same resampled subjects for both
models), treats seeds as repeated measurements of one split (averaged, never as independent
replicates), and accounts for the dependence between folds (overlapping training sets).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.multitest import multipletests

from raybench_analysis._frames import AnalysisError, as_names, require_columns, to_polars
from raybench_analysis.bootstrap import (
    INTERVALS,
    SCHEMES,
    Evaluator,
    Hierarchy,
    Interval,
    Scheme,
    auc_inputs,
    build_hierarchy,
    check_defined,
    draw_counts,
    interval_from_replicates,
    nested_means,
    unit_sums,
)
from raybench_analysis.contract import raw_rows
from raybench_analysis.metrics import Metric, get_metric
from raybench_analysis.ttest import corrected_ttest

__all__ = ["compare"]

Method = Literal["bootstrap", "corrected_ttest", "permutation"]
Correction = Literal["holm", "fdr_bh", "none"]
_METHODS = ("bootstrap", "corrected_ttest", "permutation")
_TRIAL = ("model", "outer_fold", "seed")


@dataclass
class _Group:
    """One comparison group (e.g. one dataset): its rows, units and trials."""

    frame: pl.DataFrame
    models: list[str]
    folds: list[Any]
    hierarchy: Hierarchy
    unit_label: str
    trials: dict[tuple[Any, Any, Any], np.ndarray]  # (model, fold, seed) -> rows by sample_id
    metric: Metric
    stats: np.ndarray | None = None  # per-row sums statistics (sums metrics), whole group
    labels: tuple[np.ndarray, np.ndarray] | None = None  # (y, score) of every row (AUC)

    @property
    def unit(self) -> np.ndarray:
        return self.hierarchy.unit

    @property
    def n_units(self) -> int:
        return self.hierarchy.n_units

    def seeds(self, model: str, fold: Any) -> list[Any]:
        return sorted(s for (m, f, s) in self.trials if m == model and f == fold)


def _fold_values(
    group: _Group, evals: dict[tuple, Evaluator], counts: np.ndarray
) -> dict[str, np.ndarray]:
    """Per model, ``(b, n_folds)`` metric values averaged over seeds within each fold.

    The same computation as :func:`raybench_analysis.bootstrap` with
    ``average_over=("outer_fold", "seed")`` (shared :func:`nested_means`), kept per fold.
    """
    out = {}
    for model in group.models:
        cells = {(f, s): ev for (m, f, s), ev in evals.items() if m == model}
        per_fold = nested_means(cells, counts, keep=1)
        out[model] = np.column_stack(
            [per_fold.get((fold,), np.full(len(counts), np.nan)) for fold in group.folds]
        )
    return out


def _nanmean_folds(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=1)


def _prepare(
    data: pl.DataFrame,
    metric: Metric,
    models: list[str] | None,
    levels: list[str],
    strata: list[str] | None = None,
) -> _Group:
    """Check pairing, number the units and index each trial's rows (sorted by sample_id)."""
    require_columns(
        data,
        [*_TRIAL, "sample_id", *levels, *(strata or []), *metric.columns],
        name="predictions",
        why="to compare models",
    )
    present = sorted(data.get_column("model").unique().to_list())
    chosen = models if models else present
    unknown = [m for m in chosen if m not in present]
    if unknown or len(chosen) < 2:
        raise AnalysisError(
            f"models={chosen}: need at least two models present in the predictions "
            f"(unknown: {unknown}); present: {present}"
        )
    frame = data.filter(pl.col("model").is_in(chosen))
    keys = frame.select("model", "outer_fold", "sample_id").unique()
    ref = keys.filter(pl.col("model") == chosen[0]).drop("model")
    for other in chosen[1:]:
        mine = keys.filter(pl.col("model") == other).drop("model")
        extra = pl.concat(
            [
                mine.join(ref, on=["outer_fold", "sample_id"], how="anti"),
                ref.join(mine, on=["outer_fold", "sample_id"], how="anti"),
            ]
        )
        if extra.height:
            row = extra.row(0, named=True)
            raise AnalysisError(
                f"models {chosen[0]!r} and {other!r} were not evaluated on the same test samples "
                f"(e.g. outer_fold={row['outer_fold']}, sample_id={row['sample_id']!r} is in one "
                "only); paired comparison needs the same splits for every model"
            )
    hierarchy = build_hierarchy(frame, levels or ["sample_id"], strata or ())
    trials: dict[tuple, np.ndarray] = {}
    index = (
        frame.with_row_index("_row")
        .sort("sample_id")
        .group_by(list(_TRIAL), maintain_order=True)
        .agg(pl.col("_row"))
    )
    for model, fold, seed, rows in index.iter_rows():
        trials[(model, fold, seed)] = np.asarray(rows, dtype=np.int64)
    sums = metric.kind == "sums" and metric.stats is not None
    return _Group(
        frame=frame,
        models=chosen,
        folds=sorted(frame.get_column("outer_fold").unique().to_list()),
        hierarchy=hierarchy,
        unit_label=">".join(levels) if levels else "sample_id",
        trials=trials,
        metric=metric,
        stats=metric.stats(frame) if sums and metric.stats else None,
        labels=None if sums else auc_inputs(frame, metric),
    )


def _evaluators(group: _Group) -> dict[tuple, Evaluator]:
    out = {}
    for key, rows in group.trials.items():
        stats = group.stats[rows] if group.stats is not None else None
        labels = (group.labels[0][rows], group.labels[1][rows]) if group.labels else None
        out[key] = Evaluator(
            group.metric, None, group.unit[rows], group.n_units, stats=stats, labels=labels
        )
    return out


def _bootstrap(
    group: _Group,
    metric: Metric,
    n_boot: int,
    seed: int,
    alpha: float,
    scheme: str = "cluster",
    interval: str = "t",
    where: str = "data",
) -> list[dict]:
    evals = _evaluators(group)
    rng = np.random.default_rng(seed)
    h = group.hierarchy
    method = f"paired {h.scheme(scheme, interval)[0]}"
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in group.models}
    for counts in draw_counts(h, n_boot, rng, scheme=scheme):
        for model, values in _fold_values(group, evals, counts).items():
            chunks[model].append(_nanmean_folds(values))
    reps = {m: np.concatenate(v) for m, v in chunks.items()}
    observed = _fold_values(group, evals, np.ones((1, group.n_units)))
    rows = []
    for a, b in combinations(group.models, 2):
        est = float(_nanmean_folds(observed[a])[0] - _nanmean_folds(observed[b])[0])
        diff = reps[a] - reps[b]
        check_defined(int(np.isfinite(diff).sum()), len(diff), where, f"{a} − {b}")
        ci = interval_from_replicates(
            est, diff, h.n_top, alpha, interval, h.n_strata, n_total=len(diff)
        )
        rows.append(
            {
                "model_a": a,
                "model_b": b,
                "estimate": est,
                "se": ci["se"],
                "ci_low": ci["ci_low"],
                "ci_high": ci["ci_high"],
                "p_value": ci["p_value"],
                "method": method,
                "unit": group.unit_label,
                "n_resamples": ci["n_boot"],
            }
        )
    return rows


def _ttest(group: _Group, metric: Metric, alpha: float, n_train: float | None) -> list[dict]:
    evals = _evaluators(group)
    observed = _fold_values(group, evals, np.ones((1, group.n_units)))
    sizes = group.frame.group_by("outer_fold").agg(pl.col("sample_id").n_unique())
    n_test = float(sizes.get_column("sample_id").mean())  # type: ignore[arg-type]
    n_total = group.frame.get_column("sample_id").n_unique()
    train = float(n_train) if n_train is not None else n_total - n_test
    rows = []
    for a, b in combinations(group.models, 2):
        diff = (observed[a] - observed[b])[0]
        if len(diff) < 2 or not train > 0:
            continue
        t = corrected_ttest(diff, n_train=train, n_test=n_test, alpha=alpha).row(0, named=True)
        rows.append(
            {
                "model_a": a,
                "model_b": b,
                "estimate": t["estimate"],
                "se": t["se"],
                "ci_low": t["ci_low"],
                "ci_high": t["ci_high"],
                "p_value": t["p_value"],
                "method": t["method"],
                "unit": "outer_fold",
                "n_resamples": None,
            }
        )
    return rows


def _permutation(group: _Group, metric: Metric, n_perm: int, seed: int) -> list[dict]:
    """Swap the two models' predictions of each lowest-level unit with probability 1/2."""
    rng = np.random.default_rng(seed)
    flips = (rng.random((n_perm, group.n_units)) < 0.5).astype(np.float64)  # 1 = swap
    rows = []
    for a, b in combinations(group.models, 2):
        obs, perm = [], []
        for fold in group.folds:
            seeds_a, seeds_b = group.seeds(a, fold), group.seeds(b, fold)
            if len(seeds_a) != len(seeds_b):
                raise AnalysisError(
                    f"permutation test: models {a!r} and {b!r} have {len(seeds_a)} and "
                    f"{len(seeds_b)} seeds in outer_fold={fold}; give both the same seeds"
                )
            pairs = [
                _swap_values(group, metric, (a, fold, sa), (b, fold, sb), flips)
                for sa, sb in zip(seeds_a, seeds_b, strict=True)
            ]
            obs.append(np.mean([p[0] for p in pairs]))
            perm.append(np.mean([p[1] for p in pairs], axis=0))
        t_obs = float(np.nanmean(obs))
        t_perm = _nanmean_folds(np.column_stack(perm))
        t_perm = t_perm[np.isfinite(t_perm)]
        extreme = np.sum(np.abs(t_perm) >= abs(t_obs) - 1e-12)
        rows.append(
            {
                "model_a": a,
                "model_b": b,
                "estimate": t_obs,
                "se": None,
                "ci_low": None,
                "ci_high": None,
                "p_value": float((1 + extreme) / (len(t_perm) + 1)),
                "method": "paired permutation test (model labels swapped within unit)",
                "unit": group.unit_label.split(">")[-1],
                "n_resamples": len(t_perm),
            }
        )
    return rows


def _swap_values(
    group: _Group, metric: Metric, key_a: tuple, key_b: tuple, flips: np.ndarray
) -> tuple[float, np.ndarray]:
    """Observed difference of one (fold, seed) pair and its value under each label swap."""
    rows_a, rows_b = group.trials[key_a], group.trials[key_b]
    samples = group.frame.get_column("sample_id")
    if len(rows_a) != len(rows_b) or not samples[rows_a].equals(samples[rows_b]):
        raise AnalysisError(
            f"permutation test: trials {key_a} and {key_b} do not hold the same samples once "
            "each; filter to one perturbation (perturbation='none') and one row per sample"
        )
    unit = group.unit[rows_a]
    if group.labels is not None:  # AUC: swap scores, rank each permutation's scores
        y, score = group.labels
        sa, sb, pos = score[rows_a], score[rows_b], y[rows_a] == 1
        n1, n0 = pos.sum(), len(pos) - pos.sum()

        def auc_rows(scores: np.ndarray) -> np.ndarray:
            ranks = stats.rankdata(scores, axis=1)
            return (ranks[:, pos].sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)

        f = flips[:, unit] > 0
        observed = auc_rows(sa[None, :]) - auc_rows(sb[None, :])
        return float(observed[0]), auc_rows(np.where(f, sb, sa)) - auc_rows(np.where(f, sa, sb))
    assert group.stats is not None and metric.finalize is not None
    present, local = np.unique(unit, return_inverse=True)  # units of this fold only
    s_a = unit_sums(group.stats[rows_a], local, len(present))
    s_b = unit_sums(group.stats[rows_b], local, len(present))
    shift = flips[:, present] @ (s_b - s_a)
    tot_a, tot_b = s_a.sum(axis=0), s_b.sum(axis=0)
    observed = float(metric.finalize(tot_a) - metric.finalize(tot_b))
    return observed, metric.finalize(tot_a + shift) - metric.finalize(tot_b - shift)


def compare(
    predictions: Any,
    metric: str | Metric = "auc",
    models: Sequence[str] | None = None,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset",),
    method: Method | Sequence[Method] = ("bootstrap", "corrected_ttest"),
    correction: Correction = "holm",
    n_boot: int = 2000,
    n_perm: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    n_train: float | None = None,
    perturbation: str | None = "none",
    *,
    scheme: Scheme = "cluster",
    interval: Interval = "t",
    strata: str | Sequence[str] | None = None,
    **metric_params: Any,
) -> pl.DataFrame:
    """All pairwise differences between models on the same test samples, with intervals and p.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        Predictions (docs/results.md): ``model``, ``outer_fold``, ``seed``, ``sample_id``, the
        ``levels`` and ``by`` columns and those the metric reads. Rows with ``split != "test"``
        are dropped, as are uncertainty variants other than ``raw`` (see ``variants_as_models``)
        and, when ``perturbation`` is given, rows of other perturbations.
    metric : str or Metric
        Metric name (settings in ``metric_params``). The score of a model is the metric on each
        (fold, seed) test set, averaged over seeds within the fold, then over folds.
    models : sequence of str, optional
        Models to compare (default: all, sorted).
    levels : sequence of str
        Resampling hierarchy for the bootstrap, top first; the permutation test swaps labels
        within the lowest level. ``[]`` resamples test samples (``sample_id``) as independent.
        The top level says what is estimated: ``site`` first, the difference on a new site;
        ``["subject_id"]`` (default), on new patients.
    by : column name(s)
        Compare within each group (default per dataset). If a group mixes protocols, add
        ``"protocol"`` here. Without ``models``, a group holding a single model has nothing to
        compare and is left out with a warning naming it (an error when no group has two).
    method : str or sequence
        Any of ``"bootstrap"``, ``"corrected_ttest"``, ``"permutation"``: one row per pair each.
    correction : {"holm", "fdr_bh", "none"}
        Multiplicity correction over the pairs of a group and method (statsmodels
        ``multipletests``).
    n_boot, n_perm, seed, alpha :
        Replicates, permutations, seed of numpy's generator, 1 − interval level.
    n_train : float, optional
        Training-set size for the t-test correction; default: distinct samples of the group
        minus the mean test-fold size (the outer training pool, validation included).
    perturbation : str or None
        Keep only rows of this perturbation (``None``: keep all; then each row is one sample).
    scheme, interval, strata :
        Bootstrap resampling scheme (``"cluster"``, default: top level drawn, lower levels kept
        whole; ``"two_stage"``: every level redrawn, conservative), interval (``"t"``, default:
        few-cluster t; ``"percentile"``) and strata, as in :func:`raybench_analysis.bootstrap`.

    Returns
    -------
    polars.DataFrame
        The ``by`` columns, ``model_a``, ``model_b``, ``metric``, ``estimate`` (score of a −
        score of b), ``se``, ``ci_low``, ``ci_high`` (null for the permutation test), ``p_value``,
        ``p_adjusted``, ``method``, ``unit``, ``correction``, ``n_splits``, ``n_seeds``,
        ``n_resamples`` (defined bootstrap replicates, or permutations).

    Notes
    -----
    *Bootstrap*: replicate r draws units down the hierarchy once (see :func:`bootstrap`) and
    both models are scored on those same units in every (fold, seed), so the difference
    d*_r = S_a,r − S_b,r keeps the pairing. With the default few-cluster t interval,
    se = sd(d*) · sqrt(G/(G − H)) (G resampled top-level units, H strata), the interval is
    estimate ± t_{G−H, 1−α/2} · se and p = 2 P(T_{G−H} ≥ |estimate|/se) (Cameron, Gelbach &
    Miller 2008); with ``interval="percentile"`` it is the percentile interval of d* and
    p = min(1, 2 min(#(d* ≤ 0) + 1, #(d* ≥ 0) + 1)/(B + 1)), the interval inverted. It estimates
    the expected difference of the trained models over new patients of the same sites (or new
    sites when ``site`` is the top level). Its type-I error is in docs/statistics/comparisons.md.
    Replicates that leave the difference undefined (e.g. a draw of one-class sites for AUC) are
    dropped with a warning that gives their count; when fewer than
    :data:`~raybench_analysis.bootstrap.MIN_DEFINED_FRACTION` (90%) are defined, ``se``, the
    interval and the p-values are NaN (the same rule as :func:`bootstrap`), and ``n_resamples``
    gives the defined replicates. *Corrected t-test*: per-fold differences of the
    seed-averaged scores, Nadeau & Bengio's variance inflation 1/J + n_test/n_train, df = J − 1
    (Bouckaert & Frank 2004 for repeated k-fold); it targets the training procedure, including
    the variation of training sets. *Permutation*: under H0 the two models' predictions of a unit
    are exchangeable; each unit's predictions are swapped with probability 1/2 (in all folds and
    seeds at once), p = (1 + #(|T*| ≥ |T|))/(P + 1).

    References
    ----------
    Nadeau, C. & Bengio, Y. (2003). Inference for the generalization error. Machine Learning
        52(3), 239–281.
    Bouckaert, R. R. & Frank, E. (2004). Evaluating the replicability of significance tests for
        comparing learning algorithms. PAKDD, LNCS 3056, 3–12.
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
        University Press, §3.8 and §4.4 (permutation tests).
    Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2008). Bootstrap-based improvements for
        inference with clustered errors. Review of Economics and Statistics 90(3), 414–427.
    Bouthillier, X. et al. (2021). Accounting for variance in machine learning benchmarks.
        Proceedings of Machine Learning and Systems 3.
    Holm, S. (1979). A simple sequentially rejective multiple test procedure. Scandinavian
        Journal of Statistics 6(2), 65–70.
    Benjamini, Y. & Hochberg, Y. (1995). Controlling the false discovery rate. Journal of the
        Royal Statistical Society B 57(1), 289–300.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rows = [{"dataset": "d", "model": m, "outer_fold": f, "seed": s, "subject_id": f"s{i}",
    ...          "sample_id": f"s{i}", "y_true": float(i % 2),
    ...          "y_pred": float(i % 2) if rng.random() < (0.9 if m == "a" else 0.6) else 1 - i % 2}
    ...         for m in "ab" for s in (0, 1) for f in range(3) for i in range(f, 60, 3)]
    >>> out = compare(pl.DataFrame(rows), metric="accuracy", n_boot=200)
    >>> out.select("model_a", "model_b", "method").rows()[0]
    ('a', 'b', 'paired cluster bootstrap, few-cluster t interval')
    >>> bool(out["estimate"][0] > 0)
    True
    """
    methods = [method] if isinstance(method, str) else list(method)
    bad = [m for m in methods if m not in _METHODS]
    if bad or not methods:
        raise AnalysisError(f"method={method!r}; allowed: any of {list(_METHODS)}")
    if scheme not in SCHEMES or interval not in INTERVALS:
        raise AnalysisError(
            f"scheme={scheme!r}, interval={interval!r}; allowed: scheme in {list(SCHEMES)}, "
            f"interval in {list(INTERVALS)}"
        )
    if correction not in ("holm", "fdr_bh", "none"):
        raise AnalysisError(f"correction={correction!r}; allowed: 'holm', 'fdr_bh', 'none'")
    m = get_metric(metric, **metric_params)
    if m.kind not in ("sums", "auc"):
        raise AnalysisError(f"metric={metric!r} cannot be compared")
    data = to_polars(predictions, name="predictions")
    if "split" in data.columns:
        data = data.filter(pl.col("split") == "test")
    data = raw_rows(data)  # other variants of the same samples: compare via variants_as_models
    if perturbation is not None and "perturbation" in data.columns:
        data = data.filter(pl.col("perturbation") == perturbation)
    keys = as_names(by, name="by")
    require_columns(data, keys, name="predictions", why="for by=")
    lv = as_names(levels, name="levels")
    st = as_names(strata, name="strata")
    out = []
    single: list[dict[str, Any]] = []
    groups = data.sort(keys).group_by(keys, maintain_order=True) if keys else [((), data)]
    for key, part in groups:
        if keys and not models and part.get_column("model").n_unique() < 2:
            single.append(dict(zip(keys, key, strict=True)))
            continue
        if "protocol" in part.columns and "protocol" not in keys:
            protocols = part.get_column("protocol").unique().to_list()
            if len(protocols) > 1:
                raise AnalysisError(
                    f"group {dict(zip(keys, key, strict=True))} mixes protocols {protocols}; "
                    "pass by=[..., 'protocol'] or filter one protocol"
                )
        group = _prepare(part, m, list(models) if models else None, lv, st)
        n_seeds = part.get_column("seed").n_unique()
        for meth in methods:
            if meth == "bootstrap":
                where = str(dict(zip(keys, key, strict=True))) if keys else "data"
                rows = _bootstrap(group, m, n_boot, seed, alpha, scheme, interval, where)
            elif meth == "corrected_ttest":
                rows = _ttest(group, m, alpha, n_train)
            else:
                rows = _permutation(group, m, n_perm, seed)
            p = np.array([r["p_value"] for r in rows], dtype=float)
            adjusted = p.copy()
            ok = np.isfinite(p)  # undefined p-values (NaN) stay NaN and do not count as tests
            if ok.sum() > 1 and correction != "none":
                adjusted[ok] = multipletests(p[ok], alpha=alpha, method=correction)[1]
            for r, pa in zip(rows, adjusted, strict=True):
                r.update(
                    dict(zip(keys, key, strict=True)),
                    metric=m.label(),
                    p_adjusted=float(pa),
                    correction=correction,
                    n_splits=len(group.folds),
                    n_seeds=n_seeds,
                )
                out.append(r)
    if single:
        if not out:
            raise AnalysisError(f"no group of by={keys} holds two models to compare: {single}")
        warnings.warn(f"left out of the comparisons (one model only): {single}", stacklevel=2)
    columns = [
        *keys,
        "model_a",
        "model_b",
        "metric",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "p_value",
        "p_adjusted",
        "method",
        "unit",
        "correction",
        "n_splits",
        "n_seeds",
        "n_resamples",
    ]
    schema = {k: data.schema[k] for k in keys}
    schema.update(
        model_a=pl.String,
        model_b=pl.String,
        metric=pl.String,
        estimate=pl.Float64,
        se=pl.Float64,
        ci_low=pl.Float64,
        ci_high=pl.Float64,
        p_value=pl.Float64,
        p_adjusted=pl.Float64,
        method=pl.String,
        unit=pl.String,
        correction=pl.String,
        n_splits=pl.Int64,
        n_seeds=pl.Int64,
        n_resamples=pl.Int64,
    )
    return pl.DataFrame([{c: r.get(c) for c in columns} for r in out], schema=schema)
