"""The corrected resampled t-test for differences measured over cross-validation splits.

Scores from k-fold cross-validation are not independent: the training sets overlap, so the
ordinary t-test over folds (or, worse, over seeds) is far too liberal. Nadeau & Bengio inflate
the variance by the ratio of test to training size; Bouckaert & Frank use it over all r × k
folds of repeated cross-validation.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import stats

from raybench_analysis._frames import AnalysisError, as_array

__all__ = ["corrected_ttest"]

Alternative = Literal["two-sided", "greater", "less"]


def corrected_ttest(
    diff: Any,
    n_train: float,
    n_test: float,
    *,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
    repeats: int | None = None,
    folds: int | None = None,
) -> pl.DataFrame:
    """Nadeau & Bengio's corrected resampled t-test of a mean difference over J splits.

    Parameters
    ----------
    diff : array-like of float, length J
        Per-split differences of a score between two models (A − B), each split's value averaged
        over its seeds first (seeds are not independent replicates).
    n_train, n_test : float
        Training and test set sizes of one split (averages if they vary). ``n_test=0`` turns the
        correction off: the ordinary one-sample t-test.
    alpha : float
        The interval covers 1 − alpha.
    alternative : {"two-sided", "greater", "less"}
        Alternative hypothesis about the mean difference.
    repeats, folds : int, optional
        For r × k repeated cross-validation: checked against J = r·k (Bouckaert & Frank 2004).

    Returns
    -------
    polars.DataFrame
        One row: ``estimate`` (mean difference), ``se`` (corrected standard error),
        ``statistic`` (t), ``df``, ``p_value``, ``ci_low``, ``ci_high``, ``n_splits``,
        ``correction`` (n_test/n_train), ``method``, ``unit`` (``"split"``).

    Notes
    -----
    t = d̄ / √((1/J + n_test/n_train) σ̂²) with σ̂² the sample variance of the J differences,
    compared with Student's t on J − 1 degrees of freedom (Nadeau & Bengio 2003, eq. for the
    "corrected resampled t-test"; Bouckaert & Frank 2004 use J = r·k and df = r·k − 1 for r
    repetitions of k-fold). The interval is d̄ ± t_{J−1, 1−α/2} · se.

    References
    ----------
    Nadeau, C. & Bengio, Y. (2003). Inference for the generalization error. Machine Learning
        52(3), 239–281.
    Bouckaert, R. R. & Frank, E. (2004). Evaluating the replicability of significance tests for
        comparing learning algorithms. Advances in Knowledge Discovery and Data Mining (PAKDD),
        LNCS 3056, 3–12.

    Examples
    --------
    >>> out = corrected_ttest([0.02, 0.03, 0.01, 0.04, 0.02], n_train=80, n_test=20)
    >>> round(out["df"][0]), round(out["estimate"][0], 3)
    (4, 0.024)
    """
    d = as_array(diff, name="diff")
    j = len(d)
    if j < 2:
        raise AnalysisError(f"diff: {j} split(s); the t-test needs at least 2 splits")
    if repeats is not None and folds is not None and repeats * folds != j:
        raise AnalysisError(
            f"diff has {j} values but repeats={repeats} x folds={folds} = {repeats * folds}; "
            "give one difference per fold of every repetition"
        )
    if not n_train > 0 or n_test < 0:
        raise AnalysisError(
            f"n_train={n_train!r}, n_test={n_test!r}; allowed: n_train > 0 and n_test >= 0"
        )
    if alternative not in ("two-sided", "greater", "less"):
        raise AnalysisError(f"alternative={alternative!r}; allowed: 'two-sided', 'greater', 'less'")
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha={alpha!r}; allowed: 0 < alpha < 1")
    ratio = n_test / n_train
    mean = float(d.mean())
    var = float(d.var(ddof=1))
    se = float(np.sqrt((1.0 / j + ratio) * var))
    df = j - 1
    if se > 0:
        t = mean / se
    elif mean == 0:  # all differences zero: no evidence either way
        t = 0.0
    else:  # identical nonzero differences: infinitely strong evidence
        t = float(np.sign(mean) * np.inf)
    if alternative == "two-sided":
        p = float(2 * stats.t.sf(abs(t), df))
    elif alternative == "greater":
        p = float(stats.t.sf(t, df))
    else:
        p = float(stats.t.cdf(t, df))
    half = float(stats.t.ppf(1 - alpha / 2, df)) * se
    method = (
        "corrected resampled t-test (Nadeau & Bengio 2003)"
        if ratio > 0
        else "one-sample t-test (no correction)"
    )
    if repeats is not None and repeats > 1 and ratio > 0:
        method = "corrected repeated k-fold t-test (Bouckaert & Frank 2004)"
    return pl.DataFrame(
        {
            "estimate": [mean],
            "se": [se],
            "statistic": [t],
            "df": [float(df)],
            "p_value": [p],
            "ci_low": [mean - half],
            "ci_high": [mean + half],
            "n_splits": [j],
            "correction": [ratio],
            "method": [method],
            "unit": ["split"],
        }
    )
