"""Obuchowski's nonparametric AUC for clustered data (several images per patient or site).

DeLong's variance treats every image as independent; with several images per patient the
placement values of one patient are correlated and the variance is too small. Obuchowski (1997)
sums the placement values within each cluster and estimates the variance from the cluster sums,
the way a cluster-robust sandwich does; with one image per cluster it is DeLong's variance.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from raybench_analysis._frames import AnalysisError, as_array, same_length
from raybench_analysis.delong import _labels, _placements, paired_auc_test

__all__ = ["obuchowski", "obuchowski_auc"]

_METHOD = "Obuchowski (1997) clustered nonparametric AUC"


def _cluster_covariance(
    y: np.ndarray, scores: np.ndarray, cluster: Any
) -> tuple[np.ndarray, np.ndarray, int]:
    """AUCs ``(k,)``, their covariance ``(k, k)`` and the number of clusters."""
    values = cluster.to_numpy() if isinstance(cluster, pl.Series) else np.asarray(cluster)
    _, codes = np.unique(values.astype(str), return_inverse=True)
    n_clusters = int(codes.max()) + 1
    if n_clusters < 2:
        raise AnalysisError("cluster: one cluster only; Obuchowski's variance needs at least 2")
    aucs, v10, v01 = _placements(y, scores)
    pos, neg = codes[y == 1], codes[y == 0]
    n1, n0 = len(pos), len(neg)
    m_i = np.bincount(pos, minlength=n_clusters).astype(float)
    n_i = np.bincount(neg, minlength=n_clusters).astype(float)
    # cluster sums of the placement values, centred: (k, clusters)
    d10 = np.stack([np.bincount(pos, weights=v, minlength=n_clusters) for v in v10])
    d01 = np.stack([np.bincount(neg, weights=v, minlength=n_clusters) for v in v01])
    d10 = d10 - aucs[:, None] * m_i[None, :]
    d01 = d01 - aucs[:, None] * n_i[None, :]
    i10, i01 = int((m_i > 0).sum()), int((n_i > 0).sum())
    if i10 < 2 or i01 < 2:
        raise AnalysisError(
            f"cluster: positives in {i10} and negatives in {i01} cluster(s); Obuchowski's "
            "variance needs at least 2 clusters with each"
        )
    s10 = i10 / ((i10 - 1) * n1) * (d10 @ d10.T)
    s01 = i01 / ((i01 - 1) * n0) * (d01 @ d01.T)
    s11 = n_clusters / (n_clusters - 1) * (d10 @ d01.T)
    cov = s10 / n1 + s01 / n0 + (s11 + s11.T) / (n1 * n0)
    return aucs, cov, n_clusters


def obuchowski_auc(y_true: Any, score: Any, cluster: Any, *, alpha: float = 0.05) -> pl.DataFrame:
    """AUC with Obuchowski's clustered variance and its Wald interval.

    Parameters
    ----------
    y_true : array-like of 0/1
        Labels, 1 = positive (per image; a cluster may hold both).
    score : array-like of float
        Higher means more likely positive.
    cluster : array-like
        The cluster (patient, site) of each row; clusters are taken as independent.
    alpha : float
        The interval covers 1 − alpha.

    Returns
    -------
    polars.DataFrame
        One row: ``estimate`` (AUC), ``se``, ``var``, ``ci_low``, ``ci_high``, ``n_pos``,
        ``n_neg``, ``n_clusters``, ``method``, ``unit`` (``"cluster"``).

    Notes
    -----
    With ``N₁`` positives and ``N₀`` negatives in ``I`` clusters (``m_i``, ``n_i`` per cluster),
    placement values ``V₁₀``, ``V₀₁`` as in DeLong and their cluster sums ``V₁₀,i``, ``V₀₁,i``
    (Obuchowski 1997, eqs. 2–4): ``S₁₀ = I₁₀/((I₁₀−1)N₁) Σ (V₁₀,i − m_i θ)²``,
    ``S₀₁ = I₀₁/((I₀₁−1)N₀) Σ (V₀₁,i − n_i θ)²``,
    ``S₁₁ = I/(I−1) Σ (V₁₀,i − m_i θ)(V₀₁,i − n_i θ)`` and
    ``Var θ = S₁₀/N₁ + S₀₁/N₀ + 2 S₁₁/(N₁N₀)`` (``I₁₀``, ``I₀₁``: clusters with positives,
    negatives). One row per cluster gives DeLong's variance. The interval is
    ``θ ± z_{1−α/2} √Var``, not clipped. *Estimand*: the AUC over the population of clusters.

    References
    ----------
    Obuchowski, N. A. (1997). Nonparametric analysis of clustered ROC curve data. Biometrics
        53(2), 567–578.
    DeLong, E. R., DeLong, D. M. & Clarke-Pearson, D. L. (1988). Comparing the areas under two or
        more correlated receiver operating characteristic curves: a nonparametric approach.
        Biometrics 44(3), 837–845.

    Examples
    --------
    >>> y = [0, 1, 0, 1, 0, 1, 0, 1]
    >>> s = [0.2, 0.7, 0.4, 0.6, 0.1, 0.9, 0.5, 0.3]
    >>> out = obuchowski_auc(y, s, cluster=["p1", "p1", "p2", "p2", "p3", "p3", "p4", "p4"])
    >>> round(out["estimate"][0], 4), out["n_clusters"][0]
    (0.875, 4)
    """
    y = _labels(y_true)
    s = as_array(score, name="score")
    same_length(y_true=y, score=s)
    same_length(y_true=y, cluster=np.asarray(cluster))
    aucs, cov, n_clusters = _cluster_covariance(y, s[None, :], cluster)
    var = float(cov[0, 0])
    se = float(np.sqrt(max(var, 0.0)))
    z = float(stats.norm.ppf(1 - alpha / 2))
    return pl.DataFrame(
        {
            "estimate": [float(aucs[0])],
            "se": [se],
            "var": [var],
            "ci_low": [float(aucs[0]) - z * se],
            "ci_high": [float(aucs[0]) + z * se],
            "n_pos": [int(y.sum())],
            "n_neg": [int(len(y) - y.sum())],
            "n_clusters": [n_clusters],
            "method": [_METHOD],
            "unit": ["cluster"],
        }
    )


def obuchowski(
    y_true: Any, score_a: Any, score_b: Any, cluster: Any, *, alpha: float = 0.05
) -> pl.DataFrame:
    """Paired test of AUC(a) = AUC(b) for two scores of the same clustered samples.

    Parameters
    ----------
    y_true : array-like of 0/1
        Labels, 1 = positive.
    score_a, score_b : array-like of float
        The two models' (readers') scores of each sample.
    cluster : array-like
        The cluster (patient, site) of each row.
    alpha : float
        The interval of the difference covers 1 − alpha.

    Returns
    -------
    polars.DataFrame
        One row: ``auc_a``, ``auc_b``, ``estimate`` (auc_a − auc_b), ``se``, ``var_a``,
        ``var_b``, ``cov``, ``statistic`` (z), ``p_value`` (two-sided), ``ci_low``, ``ci_high``,
        ``n_pos``, ``n_neg``, ``n_clusters``, ``method``, ``unit`` (``"cluster"``).

    Notes
    -----
    The covariance of the two AUCs has the same form as the variance of
    :func:`obuchowski_auc` with cross-products of the two models' centred cluster sums
    (Obuchowski 1997, §3): ``S₁₀^{ab} = I₁₀/((I₁₀−1)N₁) Σ D₁₀,i^a D₁₀,i^b``, likewise ``S₀₁^{ab}``,
    ``S₁₁^{ab} = I/(I−1) Σ D₁₀,i^a D₀₁,i^b`` and
    ``Cov = S₁₀^{ab}/N₁ + S₀₁^{ab}/N₀ + (S₁₁^{ab} + S₁₁^{ba})/(N₁N₀)``;
    ``z = (θ_a − θ_b)/√(Var_a + Var_b − 2 Cov)``, ``p = 2Φ(−|z|)``. One row per cluster gives
    the paired DeLong test (pROC's ``roc.test(method = "delong", paired = TRUE)``).

    References
    ----------
    Obuchowski, N. A. (1997). Nonparametric analysis of clustered ROC curve data. Biometrics
        53(2), 567–578.

    Examples
    --------
    >>> y = [0, 1, 0, 1, 0, 1, 0, 1]
    >>> a = [0.2, 0.7, 0.4, 0.6, 0.1, 0.9, 0.5, 0.3]
    >>> b = [0.3, 0.5, 0.5, 0.4, 0.2, 0.6, 0.4, 0.5]
    >>> out = obuchowski(y, a, b, cluster=[1, 1, 2, 2, 3, 3, 4, 4])
    >>> out.select("auc_a", "auc_b").row(0)
    (0.875, 0.84375)
    """
    y = _labels(y_true)
    a, b = as_array(score_a, name="score_a"), as_array(score_b, name="score_b")
    same_length(y_true=y, score_a=a, score_b=b)
    same_length(y_true=y, cluster=np.asarray(cluster))
    aucs, cov, n_clusters = _cluster_covariance(y, np.vstack([a, b]), cluster)
    return paired_auc_test(
        aucs, cov, y, alpha, method=_METHOD, unit="cluster", n_clusters=n_clusters
    )
