"""Split-conformal prediction sets and intervals, calibrated per trial on its validation rows.

For each trial (one trained network), the nonconformity scores of its validation predictions
(``split == "val"``) give a threshold q̂; every test prediction (``split == "test"``) of the same
trial becomes a set of classes (or an interval) that contains the truth with probability at least
1 − α *if the test case is exchangeable with the validation cases*. Reporting the realised
coverage per site asks whether that assumption survives a site the validation data
under-represent; Mondrian calibration (one threshold per site) restores it when the site is in the
validation data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, as_names, require_columns, to_polars
from raybench_analysis._uncertainty import (
    GROUP_COLUMNS,
    class_labels,
    default_average_over,
    group_keys,
    is_classification,
    probability_matrix,
    quantity_rows,
)
from raybench_analysis.bootstrap import Interval, Scheme
from raybench_analysis.metrics import _column

__all__ = ["conformal", "conformal_quantile", "conformal_sets"]

Score = Literal["lac", "aps", "aps_randomized"]
_SCORES = ("lac", "aps", "aps_randomized")
_TRIAL = ("protocol", "outer_fold", "seed")


def conformal_quantile(scores: Any, alpha: float) -> float:
    """The split-conformal threshold: the ⌈(n + 1)(1 − α)⌉-th smallest of n scores.

    Parameters
    ----------
    scores : array-like
        Nonconformity scores of the calibration cases.
    alpha : float
        Miscoverage level, 0 < α < 1.

    Returns
    -------
    float
        q̂; +inf when ⌈(n + 1)(1 − α)⌉ > n (too few calibration cases for this α: the set must
        be everything).

    Notes
    -----
    If the n calibration scores and the test score are exchangeable, P(s_test ≤ q̂) ≥ 1 − α, and
    ≤ 1 − α + 1/(n + 1) without ties (Vovk et al. 2005; Angelopoulos & Bates 2023, Theorem
    D.1). The rank is computed with a 1e−9 guard so that e.g. (99 + 1)·0.9 = 90.000000000000014
    in floating point gives rank 90, not 91.

    References
    ----------
    Vovk, V., Gammerman, A. & Shafer, G. (2005). Algorithmic Learning in a Random World.
        Springer.
    Angelopoulos, A. N. & Bates, S. (2023). Conformal prediction: a gentle introduction.
        Foundations and Trends in Machine Learning 16(4), 494–591.

    Examples
    --------
    >>> conformal_quantile(np.arange(1, 100), alpha=0.1)  # rank ceil(100 * 0.9) = 90
    90.0
    >>> conformal_quantile([0.1, 0.2], alpha=0.1)
    inf
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha={alpha!r}; allowed: 0 < alpha < 1 (0.1 gives 90% sets)")
    s = np.sort(np.asarray(scores, dtype=float))
    n = len(s)
    rank = math.ceil((n + 1) * (1 - alpha) - 1e-9)
    return math.inf if rank > n else float(s[rank - 1])


def _class_scores(probs: np.ndarray, score: str, u: np.ndarray) -> np.ndarray:
    """``(n, K)`` nonconformity score of every candidate class (``u``: one uniform per row)."""
    if score == "lac":
        return 1.0 - probs
    # APS: mass of the classes more likely than the candidate, plus the candidate's own mass
    # (all of it, or a uniform share u of it when randomised)
    above = (probs[:, None, :] * (probs[:, None, :] > probs[:, :, None])).sum(axis=2)
    own = probs * (u[:, None] if score == "aps_randomized" else 1.0)
    return above + own


def conformal_sets(
    predictions: Any,
    *,
    alpha: float = 0.1,
    score: Score = "lac",
    mondrian: str | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """Per test prediction: the conformal threshold, whether the set covers the truth, its size.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        Predictions with ``split`` (``"val"`` rows calibrate, ``"test"`` rows are evaluated),
        ``y_true``, and ``score``/``probs`` (classification) or ``y_pred`` (regression). Trials are
        told apart by ``dataset``, ``model``, ``variant``, ``perturbation``, ``protocol``,
        ``outer_fold``, ``seed`` (those present).
    alpha : float
        Target miscoverage; sets cover with probability ≥ 1 − α.
    score : {"lac", "aps", "aps_randomized"}
        Classification score: ``"lac"`` s = 1 − p_y (least ambiguous set-valued classifier,
        Sadinle et al. 2019; smallest sets on average); ``"aps"`` s = Σ_{j: p_j > p_y} p_j + p_y
        (adaptive prediction sets, Romano et al. 2020, without randomisation: its scores have
        atoms, so it over-covers, e.g. every set is full for a binary model whose error rate
        exceeds α); ``"aps_randomized"`` s = Σ_{j: p_j > p_y} p_j + U·p_y, U ~ U(0, 1) per case
        (Romano et al.'s version, coverage close to 1 − α). Regression always uses the absolute
        residual |y − ŷ|.
    mondrian : column name, optional
        Calibrate one threshold per value of this column (e.g. ``"site"``) within each trial.
    seed : int
        Seed of the uniforms of ``"aps_randomized"``, drawn trial by trial in ``sample_id``
        order (same data and seed, same sets, whatever the row order).

    Returns
    -------
    polars.DataFrame
        The test rows' trial columns, ``sample_id`` and hierarchy columns (those present), then
        ``qhat``, ``n_cal`` (calibration cases behind it), ``covered`` (1.0/0.0), ``set_size``
        (classes in the set; interval width 2q̂ for regression; inf when q̂ is inf), ``score``,
        ``alpha``.

    Notes
    -----
    Classification set C(x) = {k : s(x, k) ≤ q̂}, regression interval [ŷ − q̂, ŷ + q̂], q̂ from
    :func:`conformal_quantile` on the trial's (or the trial's Mondrian category's) calibration
    scores. A Mondrian category with no calibration case gets q̂ = inf (no guarantee is
    possible; a warning names it).

    References
    ----------
    Vovk, V., Gammerman, A. & Shafer, G. (2005). Algorithmic Learning in a Random World.
        Springer (Mondrian conformal prediction, §4.5).
    Sadinle, M., Lei, J. & Wasserman, L. (2019). Least ambiguous set-valued classifiers with
        bounded error levels. Journal of the American Statistical Association 114(525), 223–234.
    Romano, Y., Sesia, M. & Candès, E. J. (2020). Classification with valid and adaptive coverage.
        Advances in Neural Information Processing Systems 33.
    Angelopoulos, A. N. & Bates, S. (2023). Conformal prediction: a gentle introduction.
        Foundations and Trends in Machine Learning 16(4), 494–591.

    Examples
    --------
    >>> df = pl.DataFrame({"model": "m", "sample_id": [str(i) for i in range(6)],
    ...                    "split": ["val"] * 4 + ["test"] * 2,
    ...                    "y_true": [1.0, 0.0, 1.0, 0.0, 1.0, 0.0],
    ...                    "score": [0.9, 0.2, 0.6, 0.4, 0.7, 0.55]})
    >>> conformal_sets(df, alpha=0.2).select("qhat", "covered", "set_size").rows()
    [(0.4, 1.0, 1.0), (0.4, 0.0, 0.0)]
    """
    if score not in _SCORES:
        raise AnalysisError(f"score={score!r}; allowed: {list(_SCORES)}")
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha={alpha!r}; allowed: 0 < alpha < 1 (0.1 gives 90% sets)")
    rng = np.random.default_rng(seed)
    frame = to_polars(predictions, name="predictions")
    why = "to calibrate on split='val' rows and evaluate split='test' rows"
    require_columns(frame, ["split", "y_true"], name="predictions", why=why)
    cat = as_names(mondrian, name="mondrian")
    require_columns(frame, cat, name="predictions", why="for mondrian=")
    frame = frame.filter(pl.col("split").is_in(["val", "test"]))
    trial = [c for c in (*GROUP_COLUMNS, *_TRIAL) if c in frame.columns]
    classification = is_classification(frame)
    keep = [c for c in ("sample_id", "subject_id", "session_id", "scanner", "site", "y_true")
            if c in frame.columns and c not in trial]  # fmt: skip
    parts = []
    groups = frame.sort(trial).group_by(trial, maintain_order=True) if trial else [((), frame)]
    for key, part in groups:
        label = dict(zip(trial, key, strict=True)) or "the table"
        if "sample_id" in part.columns:  # row order must not change the randomised scores
            part = part.sort("sample_id", maintain_order=True)
        val, test = part.filter(pl.col("split") == "val"), part.filter(pl.col("split") == "test")
        if test.height == 0:
            continue
        if val.height == 0:
            raise AnalysisError(
                f"conformal: trial {label} has test predictions but no validation predictions "
                "(split='val'); conformal calibration must never use the test fold. Record the "
                "validation predictions of every trial."
            )
        s_val, s_test, y_test = _scores(val, test, score, classification, rng)
        qhat = np.empty(test.height)
        n_cal = np.empty(test.height, dtype=np.int64)
        if cat:
            val_cat = val.select(pl.concat_str(cat, separator="|")).to_series().to_numpy()
            test_cat = test.select(pl.concat_str(cat, separator="|")).to_series().to_numpy()
            for c in np.unique(test_cat):
                cal = s_val[val_cat == c]
                if len(cal) == 0:
                    warnings.warn(
                        f"conformal: {label}, {cat}={c!r} has no validation case; its sets are "
                        "everything (q̂ = inf)",
                        stacklevel=2,
                    )
                rows = test_cat == c
                qhat[rows], n_cal[rows] = conformal_quantile(cal, alpha), len(cal)
        else:
            qhat[:], n_cal[:] = conformal_quantile(s_val, alpha), len(s_val)
        if classification:
            inside = s_test <= qhat[:, None]
            covered = inside[np.arange(len(y_test)), y_test]
            size = inside.sum(axis=1).astype(np.float64)
        else:
            covered = s_test <= qhat
            size = 2 * qhat
        parts.append(
            test.select(*trial, *keep).with_columns(
                qhat=pl.Series(qhat),
                n_cal=pl.Series(n_cal),
                covered=pl.Series(covered.astype(np.float64)),
                set_size=pl.Series(size),
                score=pl.lit(score if classification else "absolute_residual"),
                alpha=pl.lit(float(alpha)),
            )
        )
    if not parts:
        raise AnalysisError("conformal: no test predictions (split='test') to evaluate")
    return pl.concat(parts)


def _scores(
    val: pl.DataFrame,
    test: pl.DataFrame,
    score: str,
    classification: bool,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(calibration scores ``(n,)``, test scores ``(m, K)`` or ``(m,)``, test labels)."""
    if not classification:
        res_val = np.abs(_column(val, "y_true") - _column(val, "y_pred"))
        res_test = np.abs(_column(test, "y_true") - _column(test, "y_pred"))
        return res_val, res_test, np.zeros(test.height, dtype=np.int64)
    p_val, p_test = probability_matrix(val), probability_matrix(test)
    y_val = class_labels(val, p_val.shape[1])
    y_test = class_labels(test, p_test.shape[1])
    u_val, u_test = rng.random(len(y_val)), rng.random(len(y_test))
    s_val = _class_scores(p_val, score, u_val)[np.arange(len(y_val)), y_val]
    return s_val, _class_scores(p_test, score, u_test), y_test


def conformal(
    predictions: Any,
    alpha: float = 0.1,
    by: str | Sequence[str] | None = "site",
    score: Score = "lac",
    mondrian: bool = False,
    *,
    levels: Sequence[str] = ("subject_id",),
    average_over: str | Sequence[str] | None = "trial",
    n_boot: int = 2000,
    seed: int = 0,
    ci_alpha: float = 0.05,
    scheme: Scheme = "cluster",
    interval: Interval = "t",
    strata: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """Realised coverage and mean set size of split-conformal sets, per model and site.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        See :func:`conformal_sets` (``split`` with ``val`` and ``test`` rows per trial).
    alpha : float
        Target miscoverage of the sets (coverage target 1 − α).
    by : column name(s), optional
        Report per value (default ``"site"``; ``None``: overall).
    score : {"lac", "aps", "aps_randomized"}
        Classification nonconformity score (see :func:`conformal_sets`).
    mondrian : bool
        Calibrate one threshold per ``by`` category (Mondrian) instead of one per trial.
    levels, average_over, n_boot, seed, scheme, interval, strata
        As in :func:`raybench_analysis.bootstrap`; ``average_over="trial"`` (default): per
        trained model (fold × seed), seeds then folds averaged. ``seed`` also seeds the
        uniforms of ``"aps_randomized"``.
    ci_alpha : float
        1 − confidence of the reported intervals (not the conformal α).

    Returns
    -------
    polars.DataFrame
        Per group, ``by`` value and quantity (``coverage``, ``set_size``): the group columns,
        ``quantity``, ``target`` (1 − α for coverage, null for set size), ``alpha``, ``score``,
        ``calibration`` (``marginal`` or ``mondrian``), ``estimate``, ``se``, ``ci_low``,
        ``ci_high``, ``df``, ``n_obs``, ``n_boot``, ``method``, ``unit``, ``n_<level>``.

    Notes
    -----
    Coverage = mean of 1[y ∈ C(x)] over the test predictions of a site; under exchangeability of
    the calibration and test cases of a trial its expectation is in [1 − α, 1 − α + 1/(n + 1)]
    (marginal over sites, not per site: a site unlike the calibration data can fall short).
    Mondrian calibration conditions on the category: the guarantee then holds per site that has
    calibration cases (Vovk et al. 2005, §4.5). The interval says how precisely the test data
    measure the realised coverage (hierarchical bootstrap of subjects, or sites).

    References
    ----------
    Vovk, V., Gammerman, A. & Shafer, G. (2005). Algorithmic Learning in a Random World.
        Springer.
    Angelopoulos, A. N. & Bates, S. (2023). Conformal prediction: a gentle introduction.
        Foundations and Trends in Machine Learning 16(4), 494–591.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0, 1, 600)
    >>> df = pl.DataFrame({"model": "m", "site": "s", "subject_id": np.arange(600).astype(str),
    ...                    "split": ["val", "test"] * 300,
    ...                    "y_true": (rng.random(600) < p).astype(float), "score": p})
    >>> out = conformal(df, alpha=0.2, n_boot=200)
    >>> out.select("site", "quantity", "target").rows()
    [('s', 'coverage', 0.8), ('s', 'set_size', None)]
    >>> bool(abs(out["estimate"][0] - 0.8) < 0.06)
    True
    """
    frame = to_polars(predictions, name="predictions")
    by_cols = as_names(by, name="by")
    if mondrian and not by_cols:
        raise AnalysisError(
            "mondrian=True calibrates per `by` category; give by='site' (or another)"
        )
    cat = by_cols if mondrian else None
    sets = conformal_sets(frame, alpha=alpha, score=score, mondrian=cat, seed=seed)
    keys = group_keys(sets, by_cols)
    avg = default_average_over(sets, average_over)
    boot = dict(levels=levels, n_boot=n_boot, seed=seed, alpha=ci_alpha, scheme=scheme,
                interval=interval, strata=strata, average_over=avg)  # fmt: skip
    common = {"alpha": float(alpha), "score": sets["score"][0],
              "calibration": "mondrian" if mondrian else "marginal"}  # fmt: skip
    if not np.all(np.isfinite(sets.get_column("qhat").to_numpy())):
        warnings.warn(
            f"conformal: some thresholds are infinite (fewer than {math.ceil(1 / alpha) - 1} "
            "calibration cases for this alpha): those sets are everything",
            stacklevel=2,
        )
    cover = quantity_rows(sets, "coverage", keys, boot, value="covered", value_range=(0.0, 1.0),
                          extra={"target": 1 - float(alpha), **common})  # fmt: skip
    size = quantity_rows(sets, "set_size", keys, boot, value="set_size",
                         value_range=(0.0, np.inf), extra={"target": None, **common})  # fmt: skip
    out = pl.concat([cover, size], how="diagonal_relaxed")
    return out.sort(keys, maintain_order=True) if keys else out
