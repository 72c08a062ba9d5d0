"""Sampling uncertainty of the training set: how much a score moves with another draw of subjects.

:func:`sampling_variance` reads the trials of a suite with ``validation.train_resampling``
(docs/training-distribution.md) and estimates, for each training-set size, the variance of a
model's score across draws of training subjects of that size — the *train_sample* component —
next to the *seed* component, the variance across seeds of one draw. It complements
:func:`raybench_analysis.variance_components` (split, seed, test sample): there the split part
mixes which subjects were trained on with which were tested on; here the test fold is held fixed
while the training subjects are redrawn, so the train_sample part is the training set's own.

Estimand: ``σ²_draw(n) = Var_D[ E_seed[score | D] ]`` over draws ``D`` of ``n`` training subjects
from an outer training fold, for that fold's fixed test subjects, averaged over folds.
Subsampling draws from the fold's subjects without replacement, so as the fraction nears 1 the
draws overlap and the variance shrinks to 0 by construction (it describes this pool, not the
population); bootstrap draws with replacement approximate draws of ``n`` subjects from the
population the fold was drawn from (Efron & Tibshirani 1993), at the price of ~37% of the
subjects missing and others copied in each draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy import stats

from ._frames import AnalysisError, as_names, require_columns, to_polars
from .contract import raw_rows
from .metrics import metric_by

__all__ = ["sampling_variance"]

_OUT = {
    "train_fraction": pl.Float64,
    "n_train": pl.Float64,
    "component": pl.String,
    "variance": pl.Float64,
    "sd": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "df": pl.Float64,
    "n_folds": pl.Int64,
    "n_draws": pl.Int64,
    "n_seeds": pl.Int64,
    "method": pl.String,
}


def _components(
    fold: np.ndarray, draw: np.ndarray, y: np.ndarray, alpha: float
) -> list[tuple[str, float, float, float, float, str]]:
    """Nested ANOVA of ``y`` (one score per trial) on draws within folds, seeds within draws.

    Returns ``(component, variance, ci_low, ci_high, df, method)`` rows.
    """
    frame = pl.DataFrame({"f": fold, "d": draw, "y": y})
    cells = frame.group_by("f", "d").agg(
        pl.len().alias("n"),
        pl.col("y").mean().alias("m"),
        ((pl.col("y") - pl.col("y").mean()) ** 2).sum().alias("ss"),
    )
    cells = cells.with_columns(pl.len().over("f").alias("r")).filter(pl.col("r") >= 2)
    df_d = float(cells.height - cells["f"].n_unique())
    if df_d < 1:
        raise AnalysisError("one draw per fold")
    between = cells.with_columns((pl.col("m") - pl.col("m").mean().over("f")) ** 2)
    tau = float(between["m"].sum()) / df_d  # draw-mean variance: s2_draw + s2_seed / n_h
    n = cells["n"].to_numpy().astype(float)
    df_e = float(n.sum() - len(n))
    n_h = len(n) / float(np.sum(1.0 / n))
    lo_q, hi_q = alpha / 2, 1 - alpha / 2
    t_lo = df_d * tau / stats.chi2.ppf(hi_q, df_d)
    t_hi = df_d * tau / stats.chi2.ppf(lo_q, df_d)
    if df_e < 1:  # one seed per draw: the seed's part cannot be told apart
        how = "nested ANOVA, draws within folds; one seed per draw: seed variance included"
        return [("train_sample", tau, t_lo, t_hi, df_d, how)]
    mse = float(cells["ss"].sum()) / df_e
    shift = mse / n_h
    how = "nested ANOVA (unweighted draw means), draws within folds, seeds within draws"
    return [
        ("train_sample", max(tau - shift, 0.0), max(t_lo - shift, 0.0), max(t_hi - shift, 0.0),
         df_d, how + "; chi-square interval of the draw-mean variance shifted by MSE/n_h"),
        ("seed", mse, df_e * mse / stats.chi2.ppf(hi_q, df_e),
         df_e * mse / stats.chi2.ppf(lo_q, df_e), df_e, how + "; exact chi-square"),
    ]  # fmt: skip


def sampling_variance(
    predictions: Any,
    metric: str = "auc",
    by: str | Sequence[str] | None = ("dataset", "model"),
    *,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Variance of a model's score across draws of training subjects of the same size.

    Parameters
    ----------
    predictions : the ``predictions`` table (clean raw test rows are used) of a suite with
        ``validation.train_resampling``: ``train_fraction``, ``train_resample``,
        ``outer_fold``, ``seed``, ``n_train_subjects`` and the metric's columns.
    metric : a metric of :data:`raybench_analysis.METRICS`, computed per trial.
    by : components per group (default dataset × model, those present).
    alpha : 1 − level of the intervals.

    Returns
    -------
    polars.DataFrame
        One row per (``by``, ``train_fraction``, component), component ``train_sample`` (across
        draws) and ``seed`` (across seeds of one draw; absent with one seed per draw, when
        ``train_sample`` includes it): ``n_train`` (mean ``n_train_subjects``), ``variance``,
        ``sd``, ``ci_low``, ``ci_high`` (of the variance), ``df``, ``n_folds`` (folds with two
        draws or more), ``n_draws`` (largest per fold), ``n_seeds`` (largest per draw),
        ``method``. Sizes without two draws in some fold (the whole fold) have no row.

    Notes
    -----
    Per size, the per-trial scores ``y_fds = μ_f + δ_fd + ε_fds`` (fold ``f`` fixed: its test
    subjects and training pool; draw ``d``; seed ``s``) give ``MSE = Σ (y − ȳ_fd)² / (N − G)``
    for ``σ²_seed`` and, from the unweighted draw means, ``τ² = Σ_f Σ_d (ȳ_fd − ȳ_f)² /
    Σ_f (R_f − 1)`` for ``σ²_draw + σ²_seed / n_h`` (``n_h`` the harmonic mean of seeds per
    draw), so ``σ²_draw = max(τ² − MSE/n_h, 0)`` — the expected-mean-squares estimators of a
    nested design (Searle, Casella & McCulloch 1992, §3.6), equal to REML when balanced and
    positive. Intervals: ``σ²_seed``, exact chi-square on ``N − G`` df; ``σ²_draw``, the
    chi-square interval of ``τ²`` on ``Σ (R_f − 1)`` df shifted by ``MSE/n_h`` (Williams 1962;
    Burdick & Graybill 1992), floored at 0. The test fold is the same for every draw of a fold,
    so test-sample noise does not enter ``τ²``.

    References
    ----------
    Searle, S. R., Casella, G. & McCulloch, C. E. (1992). *Variance Components*. Wiley.
    Williams, J. S. (1962). A confidence interval for variance components. *Biometrika*, 49,
    278–281.
    Burdick, R. K. & Graybill, F. A. (1992). *Confidence Intervals on Variance Components*.
    Marcel Dekker.
    Bouthillier, X. et al. (2021). Accounting for variance in machine learning benchmarks.
    *Proceedings of Machine Learning and Systems*, 3, 747–769.
    Efron, B. & Tibshirani, R. J. (1993). *An Introduction to the Bootstrap*. Chapman & Hall.

    Examples
    --------
    >>> from raybench_analysis.simulate_training import simulate_learning_curve
    >>> sv = sampling_variance(simulate_learning_curve(seed=0))
    >>> sv.filter(pl.col("component") == "train_sample")["train_fraction"].to_list()
    [0.125, 0.25, 0.5]
    """
    if not 0.0 < alpha < 1.0:
        raise AnalysisError(f"sampling_variance: alpha={alpha} must be in (0, 1)")
    frame = to_polars(predictions, name="predictions")
    keys = [c for c in as_names(by, name="by") if c in frame.columns]
    need = ["train_fraction", "train_resample", "outer_fold", "seed", "n_train_subjects"]
    require_columns(frame, need, name="predictions", why="for sampling_variance")
    frame = raw_rows(frame)
    if "split" in frame.columns:
        frame = frame.filter(pl.col("split") == "test")
    if "perturbation" in frame.columns:
        frame = frame.filter(pl.col("perturbation") == "none")
    frame = frame.filter(pl.col("train_resample").is_not_null())
    if frame.height == 0:
        raise AnalysisError(
            "predictions: no trial of a draw (train_resample is null everywhere); run a suite "
            "with validation.train_resampling and repeats >= 2"
        )
    cells = [*keys, "train_fraction", "outer_fold", "train_resample", "seed"]
    scores = metric_by(frame, metric, by=cells)
    sizes = (
        frame.unique(cells)
        .group_by([*keys, "train_fraction"])
        .agg(pl.col("n_train_subjects").cast(pl.Float64).mean().alias("n_train"))
    )
    out = []
    for key, part in scores.partition_by([*keys, "train_fraction"], as_dict=True).items():
        part = part.filter(pl.col("estimate").is_not_nan())
        try:
            rows = _components(
                part["outer_fold"].to_numpy(), part["train_resample"].to_numpy(),
                part["estimate"].to_numpy(), alpha,
            )  # fmt: skip
        except AnalysisError:
            continue  # one draw per fold at this size: no between-draw variance
        label = dict(zip([*keys, "train_fraction"], key, strict=True))
        per_fold = part.group_by("outer_fold").agg(pl.col("train_resample").n_unique())
        seeds = part.group_by("outer_fold", "train_resample").len()["len"].max()
        for comp, var, lo, hi, df, how in rows:
            out.append({**label, "component": comp, "variance": var,
                        "sd": float(np.sqrt(var)), "ci_low": lo, "ci_high": hi, "df": df,
                        "n_folds": int((per_fold["train_resample"] >= 2).sum()),
                        "n_draws": int(per_fold["train_resample"].max()),
                        "n_seeds": int(seeds), "method": how})  # fmt: skip
    schema = {**{k: frame.schema[k] for k in keys}, **_OUT}
    if not out:
        return pl.DataFrame(schema=schema)
    table = pl.DataFrame(out).join(sizes, on=[*keys, "train_fraction"])
    return table.select(list(schema)).sort([*keys, "train_fraction", "component"], descending=[
        *([False] * len(keys)), False, True])  # fmt: skip
