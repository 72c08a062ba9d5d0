"""Bayesian correlated t-test with a region of practical equivalence (Benavoli et al. 2017)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from ._frames import AnalysisError

__all__ = ["bayes_ttest"]

_SCHEMA = {
    "estimate": pl.Float64,
    "scale": pl.Float64,
    "df": pl.Float64,
    "rope": pl.Float64,
    "p_a_better": pl.Float64,
    "p_equivalent": pl.Float64,
    "p_b_better": pl.Float64,
    "n_splits": pl.Int64,
    "method": pl.String,
}


def bayes_ttest(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    rope: float = 0.01,
    *,
    runs: int = 1,
    n_train: float | None = None,
    n_test: float | None = None,
    higher_is_better: bool = True,
) -> pl.DataFrame:
    """Posterior probabilities that model a is better, equivalent to, or worse than model b.

    Parameters
    ----------
    a, b : sequence of float
        Scores of the two models on the same cross-validation splits (one value per outer fold
        and repetition, in the same order; average seeds within a split first).
    rope : float
        Half-width of the region of practical equivalence on the metric's scale: differences
        within ±rope count as "equivalent" (e.g. 0.01 AUC).
    runs : int
        Repetitions of k-fold cross-validation in ``a`` (k = len(a) / runs); sets the correlation
        ``rho = 1/k`` unless ``n_train`` and ``n_test`` are given.
    n_train, n_test : float, optional
        Training- and test-set sizes; ``rho/(1 − rho) = n_test/n_train`` (Nadeau & Bengio).
    higher_is_better : bool
        Direction of the metric (False for a loss): "a better" means a − b > rope, or < −rope.

    Returns
    -------
    polars.DataFrame
        One row: estimate (posterior mean of a − b), scale (posterior scale), df, rope,
        p_a_better, p_equivalent, p_b_better, n_splits, method.

    Notes
    -----
    With ``n`` differences ``d_i = a_i − b_i`` of mean ``d̄`` and sample variance ``s²`` and the
    correlation ``rho`` between overlapping training sets, the posterior of the mean difference
    under the non-informative prior is Student t with ``n − 1`` df, location ``d̄`` and scale
    ``sqrt((1/n + rho/(1 − rho)) s²)`` (Benavoli et al. 2017, §4; Corani & Benavoli 2015).
    ``P(a better) = P(mu > rope)``, ``P(equivalent) = P(|mu| ≤ rope)`` (directions swapped when
    lower is better). Unlike a p-value these say how probable a practically relevant
    difference is, and "equivalent" can be concluded. The hierarchical model over several
    datasets (Benavoli et al. 2017, §5) is not implemented.

    References
    ----------
    Benavoli, A., Corani, G., Demšar, J. & Zaffalon, M. (2017). Time for a change: a tutorial
        for comparing multiple classifiers through Bayesian analysis. Journal of Machine
        Learning Research 18(77), 1–36.
    Corani, G. & Benavoli, A. (2015). A Bayesian approach for comparing cross-validated
        algorithms on multiple data sets. Machine Learning 100(2), 285–304.
    Nadeau, C. & Bengio, Y. (2003). Inference for the generalization error. Machine Learning
        52(3), 239–281.

    Examples
    --------
    >>> a = [0.81, 0.84, 0.79, 0.86, 0.83, 0.80, 0.85, 0.82, 0.84, 0.83]
    >>> b = [0.78, 0.80, 0.79, 0.81, 0.80, 0.77, 0.82, 0.80, 0.79, 0.81]
    >>> out = bayes_ttest(a, b, rope=0.01)
    >>> round(out["p_a_better"][0], 4), round(out["p_equivalent"][0], 4)
    (0.9915, 0.0084)
    """
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 2:
        raise AnalysisError(
            f"bayes_ttest: a and b need the same length (>= 2) of paired scores; got "
            f"{x.shape} and {y.shape}"
        )
    if not np.all(np.isfinite(x)) or not np.all(np.isfinite(y)):
        raise AnalysisError("bayes_ttest: scores must be finite")
    if not rope >= 0:
        raise AnalysisError(f"bayes_ttest: rope={rope!r}; give a half-width >= 0")
    n = len(x)
    if n_train is not None and n_test is not None:
        if not (n_train > 0 and n_test > 0):
            raise AnalysisError("bayes_ttest: n_train and n_test must be positive")
        ratio = float(n_test) / float(n_train)
    else:
        if int(runs) != runs or runs < 1 or n % runs:
            raise AnalysisError(f"bayes_ttest: runs={runs!r} must divide the {n} scores")
        k = n / runs
        if k < 2:
            raise AnalysisError("bayes_ttest: need at least two folds per run")
        ratio = 1.0 / (k - 1.0)
    d = x - y
    mean = float(d.mean())
    scale = math.sqrt(float(np.var(d, ddof=1)) * (1.0 / n + ratio))
    df = n - 1
    if scale > 0:
        below = float(stats.t.cdf(-rope, df, mean, scale))
        above = float(stats.t.sf(rope, df, mean, scale))
    else:
        below, above = float(mean < -rope), float(mean > rope)
    better, worse = (above, below) if higher_is_better else (below, above)
    row = {
        "estimate": mean,
        "scale": scale,
        "df": float(df),
        "rope": float(rope),
        "p_a_better": better,
        "p_equivalent": max(0.0, 1.0 - above - below),
        "p_b_better": worse,
        "n_splits": n,
        "method": "Bayesian correlated t-test (Benavoli et al. 2017)",
    }
    return pl.DataFrame([row], schema=_SCHEMA)
