"""DeLong's test for the AUCs of two scores on the same subjects, in the fast form of Sun & Xu.

The paired test asks whether two models (or markers) scored on the *same* test samples have
different ROC AUCs. Its variance comes from the placement values (structural components) of
each positive and negative, so it accounts for the correlation between the two scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from raybench_analysis._frames import AnalysisError, as_array, same_length

__all__ = ["delong", "delong_auc"]

_METHOD = "DeLong (fast midrank form, Sun & Xu 2014)"


def _midranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their average rank, along the last axis."""
    return stats.rankdata(x, method="average", axis=-1)


def _placements(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUCs ``(k,)`` and placement values V10 ``(k, m)``, V01 ``(k, n)`` of ``k`` scores."""
    pos, neg = scores[:, y == 1], scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    tz = _midranks(np.hstack([pos, neg]))
    tx, ty = _midranks(pos), _midranks(neg)
    aucs = (tz[:, :m].sum(axis=1) - m * (m + 1) / 2) / (m * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1.0 - (tz[:, m:] - ty) / m
    return aucs, v10, v01


def _covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    aucs, v10, v01 = _placements(y, scores)
    m, n = v10.shape[1], v01.shape[1]
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def _labels(y_true: Any) -> np.ndarray:
    y = as_array(y_true, name="y_true")
    if not np.all((y == 0) | (y == 1)):
        raise AnalysisError("y_true: DeLong needs binary labels 0/1 (1 = positive)")
    n_pos = int(y.sum())
    if n_pos < 2 or len(y) - n_pos < 2:
        raise AnalysisError(
            f"y_true: {n_pos} positives and {len(y) - n_pos} negatives; DeLong's variance needs "
            "at least 2 of each"
        )
    return y


def delong_auc(y_true: Any, score: Any, *, alpha: float = 0.05) -> pl.DataFrame:
    """AUC with DeLong's variance and its Wald interval (pROC's ``ci.auc(method="delong")``).

    Parameters
    ----------
    y_true : array-like of 0/1
        Labels, 1 = positive.
    score : array-like of float
        Higher means more likely positive.
    alpha : float
        The interval covers 1 − alpha.

    Returns
    -------
    polars.DataFrame
        One row: ``estimate`` (AUC), ``se``, ``var``, ``ci_low``, ``ci_high``, ``n_pos``,
        ``n_neg``, ``method``, ``unit`` (``"observation"``: rows are taken as independent).

    Notes
    -----
    AUC ± z_{1−α/2} √Var, Var = S₁₀/m + S₀₁/n with S the sample variances of the placement values
    (DeLong et al. 1988); the interval is not clipped to [0, 1], as in pROC.

    References
    ----------
    DeLong, E. R., DeLong, D. M. & Clarke-Pearson, D. L. (1988). Comparing the areas under two or
        more correlated receiver operating characteristic curves: a nonparametric approach.
        Biometrics 44(3), 837–845.
    Sun, X. & Xu, W. (2014). Fast implementation of DeLong's algorithm for comparing the areas
        under correlated receiver operating characteristic curves. IEEE Signal Processing Letters
        21(11), 1389–1393.

    Examples
    --------
    >>> out = delong_auc([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(out["estimate"][0], 6)
    0.888889
    """
    y = _labels(y_true)
    s = as_array(score, name="score")
    same_length(y_true=y, score=s)
    aucs, cov = _covariance(y, s[None, :])
    var = float(cov[0, 0])
    z = stats.norm.ppf(1 - alpha / 2)
    se = float(np.sqrt(var))
    return pl.DataFrame(
        {
            "estimate": [float(aucs[0])],
            "se": [se],
            "var": [var],
            "ci_low": [float(aucs[0]) - z * se],
            "ci_high": [float(aucs[0]) + z * se],
            "n_pos": [int(y.sum())],
            "n_neg": [int(len(y) - y.sum())],
            "method": [_METHOD],
            "unit": ["observation"],
        }
    )


def delong(y_true: Any, score_a: Any, score_b: Any, *, alpha: float = 0.05) -> pl.DataFrame:
    """Paired DeLong test of AUC(a) = AUC(b) for two scores of the same samples.

    Parameters
    ----------
    y_true : array-like of 0/1
        Labels, 1 = positive.
    score_a, score_b : array-like of float
        The two scores of each sample (higher = more likely positive).
    alpha : float
        The interval of the difference covers 1 − alpha.

    Returns
    -------
    polars.DataFrame
        One row: ``auc_a``, ``auc_b``, ``estimate`` (auc_a − auc_b), ``se``, ``var_a``, ``var_b``,
        ``cov``, ``statistic`` (z), ``p_value`` (two-sided), ``ci_low``, ``ci_high``, ``n_pos``,
        ``n_neg``, ``method``, ``unit`` (``"observation"``).

    Notes
    -----
    For m positives X and n negatives Y, with midranks T_Z in the pooled sample, T_X among
    positives and T_Y among negatives (Sun & Xu 2014): V₁₀(Xᵢ) = (T_Z(Xᵢ) − T_X(Xᵢ))/n,
    V₀₁(Yⱼ) = 1 − (T_Z(Yⱼ) − T_Y(Yⱼ))/m, AUC = mean V₁₀. The covariance of the two AUCs is
    S = S₁₀/m + S₀₁/n (sample covariance matrices of the placement values; DeLong et al. 1988),
    z = (AUC_a − AUC_b)/√(S_aa + S_bb − 2S_ab) and p = 2Φ(−|z|). This reproduces R pROC's
    ``roc.test(method="delong", paired=TRUE)``. Samples are taken as independent: with several
    images per patient use the hierarchical bootstrap (:func:`raybench_analysis.compare`).

    References
    ----------
    DeLong, E. R., DeLong, D. M. & Clarke-Pearson, D. L. (1988). Comparing the areas under two or
        more correlated receiver operating characteristic curves: a nonparametric approach.
        Biometrics 44(3), 837–845.
    Sun, X. & Xu, W. (2014). Fast implementation of DeLong's algorithm for comparing the areas
        under correlated receiver operating characteristic curves. IEEE Signal Processing Letters
        21(11), 1389–1393.
    Robin, X. et al. (2011). pROC: an open-source package for R and S+ to analyze and compare ROC
        curves. BMC Bioinformatics 12, 77.

    Examples
    --------
    >>> y = [0, 0, 0, 1, 1, 1]
    >>> out = delong(y, [0.1, 0.3, 0.5, 0.4, 0.8, 0.9], [0.2, 0.1, 0.3, 0.6, 0.7, 0.8])
    >>> [round(v, 4) for v in out.select("auc_a", "auc_b").row(0)]
    [0.8889, 1.0]
    """
    y = _labels(y_true)
    a, b = as_array(score_a, name="score_a"), as_array(score_b, name="score_b")
    same_length(y_true=y, score_a=a, score_b=b)
    aucs, cov = _covariance(y, np.vstack([a, b]))
    return paired_auc_test(aucs, cov, y, alpha, method=_METHOD, unit="observation")


def paired_auc_test(
    aucs: np.ndarray,
    cov: np.ndarray,
    y: np.ndarray,
    alpha: float,
    *,
    method: str,
    unit: str,
    **extra: Any,
) -> pl.DataFrame:
    """The z test and Wald interval of AUC_a − AUC_b from the AUCs and their 2 × 2 covariance.

    Shared by :func:`delong` (covariance over observations) and
    :func:`raybench_analysis.obuchowski` (over clusters); ``extra`` adds columns (before
    ``method``). With zero variance (identical placements) there is no evidence either way:
    statistic 0 and p = 1 when the AUCs are equal, otherwise ±inf and p = 0.
    """
    diff = float(aucs[0] - aucs[1])
    se = float(np.sqrt(max(float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]), 0.0)))
    z_crit = float(stats.norm.ppf(1 - alpha / 2))
    if se > 0:
        statistic = diff / se
        p_value = float(2 * stats.norm.sf(abs(statistic)))
    else:
        statistic = 0.0 if diff == 0 else float(np.sign(diff) * np.inf)
        p_value = 1.0 if diff == 0 else 0.0
    return pl.DataFrame(
        {
            "auc_a": [float(aucs[0])],
            "auc_b": [float(aucs[1])],
            "estimate": [diff],
            "se": [se],
            "var_a": [float(cov[0, 0])],
            "var_b": [float(cov[1, 1])],
            "cov": [float(cov[0, 1])],
            "statistic": [float(statistic)],
            "p_value": [p_value],
            "ci_low": [diff - z_crit * se],
            "ci_high": [diff + z_crit * se],
            "n_pos": [int(y.sum())],
            "n_neg": [int(len(y) - y.sum())],
            **{k: [v] for k, v in extra.items()},
            "method": [method],
            "unit": [unit],
        }
    )
