"""Comparing several models over several datasets: Friedman test, Nemenyi post-hoc, CD diagram.

Demšar (2006) recommends ranking the methods within each dataset and testing whether the average
ranks differ (Friedman), with the Iman–Davenport F correction, then comparing all pairs with the
Nemenyi test, drawn as a critical-difference (CD) diagram. The unit of replication is the dataset:
this answers "is one method better *across datasets*", not "on this dataset" (use ``compare``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import stats

from raybench_analysis._frames import AnalysisError, to_polars

__all__ = ["FriedmanResult", "friedman"]

METHOD = "friedman_nemenyi"
UNIT = "dataset"


@dataclass(frozen=True)
class FriedmanResult:
    """The output of :func:`friedman`, as tidy polars tables.

    Attributes
    ----------
    test:
        Two rows (``friedman_chi2``, ``iman_davenport_f``): ``test, statistic, df1, df2, p_value,
        critical_difference, alpha, n_datasets, n_methods, ties, method, unit``.
    ranks:
        ``model, mean_rank, rank_sum, n_datasets, method, unit`` (1 = best), sorted by rank.
    pairwise:
        Nemenyi comparisons: ``model_a, model_b, rank_diff, statistic, p_value, significant,
        method, unit``.
    cliques:
        Groups of models not significantly different (the bars of the CD diagram):
        ``clique, model, mean_rank, rank_low, rank_high``.
    critical_difference:
        The Nemenyi critical difference of average ranks at ``alpha``.
    """

    test: pl.DataFrame
    ranks: pl.DataFrame
    pairwise: pl.DataFrame
    cliques: pl.DataFrame
    critical_difference: float

    def tables(self) -> dict[str, pl.DataFrame]:
        """The four tables by name (for writing to Parquet or JSON)."""
        return {
            "friedman_test": self.test,
            "friedman_ranks": self.ranks,
            "nemenyi_pairwise": self.pairwise,
            "cd_cliques": self.cliques,
        }


def _to_matrix(
    scores: Any, dataset_col: str, model_col: str, value_col: str
) -> tuple[np.ndarray, list[str], list[str]]:
    """Return (N x k matrix, dataset names, model names) from a wide or long frame."""
    scores = to_polars(scores, name="scores")
    if {model_col, value_col} <= set(scores.columns):
        if dataset_col not in scores.columns:
            raise AnalysisError(
                f"friedman: long frame has {model_col!r} and {value_col!r} but no {dataset_col!r} "
                f"column (found {scores.columns}); add it or pass dataset_col=."
            )
        dup = scores.group_by(dataset_col, model_col).len().filter(pl.col("len") > 1)
        if dup.height:
            row = dup.row(0, named=True)
            raise AnalysisError(
                f"friedman: {row['len']} rows for {dataset_col}={row[dataset_col]!r}, "
                f"{model_col}={row[model_col]!r}; give one score per dataset and model "
                "(average seeds and folds first)."
            )
        wide = scores.pivot(on=model_col, index=dataset_col, values=value_col, sort_columns=True)
        names = wide[dataset_col].cast(pl.String).to_list()
        wide = wide.drop(dataset_col)
    else:
        wide = scores
        names = [str(i) for i in range(scores.height)]
        if dataset_col in scores.columns:
            names = scores[dataset_col].cast(pl.String).to_list()
            wide = scores.drop(dataset_col)
        bad = [c for c, t in wide.schema.items() if not t.is_numeric()]
        if bad:
            raise AnalysisError(
                f"friedman: wide frame column(s) {bad} are not numeric; columns must be models "
                f"(and optionally {dataset_col!r}), or pass a long frame with {model_col!r} and "
                f"{value_col!r}."
            )
    models = list(wide.columns)
    mat = wide.to_numpy().astype(np.float64)
    if mat.ndim != 2 or len(models) < 2 or mat.shape[0] < 2:
        raise AnalysisError(
            f"friedman: need at least 2 datasets and 2 models, got {mat.shape[0]} dataset(s) and "
            f"{len(models)} model(s)."
        )
    missing = np.argwhere(~np.isfinite(mat))
    if missing.size:
        i, j = missing[0]
        raise AnalysisError(
            f"friedman: missing or non-finite score for dataset {names[i]!r}, model "
            f"{models[j]!r}; every model needs a score on every dataset (drop the dataset or the "
            "model)."
        )
    return mat, names, models


def friedman(
    scores: Any,
    *,
    higher_is_better: bool = True,
    alpha: float = 0.05,
    ties: Literal["correct", "none"] = "correct",
    dataset_col: str = "dataset",
    model_col: str = "model",
    value_col: str = "value",
) -> FriedmanResult:
    """Friedman test with Iman–Davenport correction and Nemenyi post-hoc over datasets.

    Parameters
    ----------
    scores:
        Either a wide frame (one row per dataset, one numeric column per model, optionally a
        ``dataset_col`` column of names) or a long frame with ``dataset_col``, ``model_col`` and
        ``value_col`` (one score per dataset and model). Polars or pandas.
    higher_is_better:
        ``True`` for AUC or accuracy (rank 1 = highest score), ``False`` for errors.
    alpha:
        Level of the Nemenyi critical difference and of the ``significant`` column.
    ties:
        Tied scores within a dataset always get the average of their ranks. ``"correct"`` divides
        χ² by the tie correction ``1 - Σ(t³ - t) / (N k (k² - 1))`` (as ``scipy.stats.
        friedmanchisquare`` and R's ``friedman.test``); ``"none"`` uses Demšar's formula as printed.

    Returns
    -------
    FriedmanResult
        ``test`` (``test, statistic, df1, df2, p_value, critical_difference, alpha, n_datasets,
        n_methods, ties, method, unit``), ``ranks``, ``pairwise`` (Nemenyi), ``cliques`` (CD
        diagram bars) and ``critical_difference``.

    Notes
    -----
    With ``R_j`` the average rank of model ``j`` over ``N`` datasets and ``k`` models,
    ``χ²_F = 12N / (k(k+1)) [Σ_j R_j² - k(k+1)²/4]`` with ``k-1`` df, and the less conservative
    Iman–Davenport ``F_F = (N-1) χ²_F / (N(k-1) - χ²_F)`` with ``k-1`` and ``(k-1)(N-1)`` df.
    Two models differ by Nemenyi when ``|R_i - R_j| ≥ CD = q_α sqrt(k(k+1) / (6N))`` with
    ``q_α`` the studentized range quantile at ``1-α`` for ``k`` means and infinite df divided by
    ``√2`` (``scipy.stats.studentized_range``); the pairwise p-value is the studentized-range
    tail at ``√2 |R_i - R_j| / sqrt(k(k+1)/(6N))``. Cliques are the maximal runs of models,
    in rank order, whose rank range is below CD.

    References
    ----------
    Demšar, J. (2006). Statistical comparisons of classifiers over multiple data sets. Journal of
    Machine Learning Research, 7, 1–30.

    Friedman, M. (1937). The use of ranks to avoid the assumption of normality implicit in the
    analysis of variance. Journal of the American Statistical Association, 32(200), 675–701.

    Iman, R. L., & Davenport, J. M. (1980). Approximations of the critical region of the Friedman
    statistic. Communications in Statistics – Theory and Methods, 9(6), 571–595.

    Nemenyi, P. B. (1963). Distribution-free multiple comparisons. PhD thesis, Princeton
    University.

    Examples
    --------
    >>> import polars as pl
    >>> wide = pl.DataFrame({"a": [0.9, 0.8, 0.7, 0.95], "b": [0.85, 0.7, 0.72, 0.9],
    ...                      "c": [0.6, 0.65, 0.5, 0.7]})
    >>> res = friedman(wide)
    >>> res.ranks["model"].to_list(), res.ranks["mean_rank"].to_list()
    (['a', 'b', 'c'], [1.25, 1.75, 3.0])
    >>> round(res.test["statistic"][0], 3)
    6.5
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"friedman: alpha={alpha!r} must be in (0, 1).")
    if ties not in ("correct", "none"):
        raise AnalysisError(f"friedman: ties={ties!r}; use 'correct' or 'none'.")
    mat, _, models = _to_matrix(scores, dataset_col, model_col, value_col)
    n, k = mat.shape
    ranks = stats.rankdata(-mat if higher_is_better else mat, axis=1, method="average")
    mean_rank = ranks.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(mean_rank**2) - k * (k + 1) ** 2 / 4)
    if ties == "correct":
        tie_sum = 0.0
        for row in ranks:
            _, counts = np.unique(row, return_counts=True)
            tie_sum += float(np.sum(counts**3 - counts))
        chi2 /= 1 - tie_sum / (n * k * (k**2 - 1))
    df1, df2 = k - 1, (k - 1) * (n - 1)
    denom = n * (k - 1) - chi2
    f_stat = (n - 1) * chi2 / denom if denom > 0 else float("inf")
    q_alpha = stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2)
    se_rank = np.sqrt(k * (k + 1) / (6 * n))
    cd = float(q_alpha * se_rank)

    common = {"critical_difference": cd, "alpha": alpha, "n_datasets": n, "n_methods": k}
    common |= {"ties": f"average ranks; {ties}", "method": METHOD, "unit": UNIT}
    test = pl.DataFrame(
        [
            {"test": "friedman_chi2", "statistic": float(chi2), "df1": float(df1), "df2": None,
             "p_value": float(stats.chi2.sf(chi2, df1))} | common,
            {"test": "iman_davenport_f", "statistic": float(f_stat), "df1": float(df1),
             "df2": float(df2), "p_value": float(stats.f.sf(f_stat, df1, df2))} | common,
        ],
        schema_overrides={"df2": pl.Float64},
    )  # fmt: skip

    order = np.argsort(mean_rank, kind="stable")
    rank_table = pl.DataFrame(
        {
            "model": [models[i] for i in order],
            "mean_rank": mean_rank[order],
            "rank_sum": ranks.sum(axis=0)[order],
            "n_datasets": [n] * k,
            "method": [METHOD] * k,
            "unit": [UNIT] * k,
        }
    )

    pairs = []
    for a in range(k):
        for b in range(a + 1, k):
            diff = float(mean_rank[a] - mean_rank[b])
            z = abs(diff) / se_rank
            p = float(stats.studentized_range.sf(z * np.sqrt(2), k, np.inf))
            pairs.append(
                {"model_a": models[a], "model_b": models[b], "rank_diff": diff, "statistic": z,
                 "p_value": min(1.0, p), "significant": abs(diff) >= cd, "method": "nemenyi",
                 "unit": UNIT}
            )  # fmt: skip
    pairwise = pl.DataFrame(pairs)

    sorted_ranks = mean_rank[order]
    spans: list[tuple[int, int]] = []
    for i in range(k):
        j = i
        while j + 1 < k and sorted_ranks[j + 1] - sorted_ranks[i] < cd:
            j += 1
        if j > i and not any(s <= i and j <= e for s, e in spans):
            spans.append((i, j))
    clique_rows = [
        {"clique": c, "model": models[order[m]], "mean_rank": float(sorted_ranks[m]),
         "rank_low": float(sorted_ranks[s]), "rank_high": float(sorted_ranks[e])}
        for c, (s, e) in enumerate(spans)
        for m in range(s, e + 1)
    ]  # fmt: skip
    cliques = pl.DataFrame(
        clique_rows,
        schema={"clique": pl.Int64, "model": pl.String, "mean_rank": pl.Float64,
                "rank_low": pl.Float64, "rank_high": pl.Float64},
    )  # fmt: skip
    return FriedmanResult(test, rank_table, pairwise, cliques, cd)
