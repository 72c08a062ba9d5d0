"""Repeatability of each prediction across training seeds, and the seed ensemble.

Training the same network on the same data with another seed changes its predictions. In the
metrology sense (ISO 5725) the seeds are *repeatability conditions* (same method, same data,
same "laboratory"), each test sample is a measured item, and the spread of its predicted
probability over seeds is its repeatability uncertainty. :func:`repeatability` pools that spread
over the samples of each model; :func:`seed_ensemble` averages the seeds into a virtual model that
every other function (``compare`` included) treats like a trained model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, require_columns, to_polars
from raybench_analysis._uncertainty import (
    GROUP_COLUMNS,
    group_keys,
    is_classification,
    probability_matrix,
    quantity_rows,
    select_split,
)
from raybench_analysis.bootstrap import Interval, Scheme
from raybench_analysis.metrics import Metric, _column, _ratio

__all__ = ["repeatability", "repeatability_samples", "seed_ensemble"]

#: ISO 5725-2 repeatability limit factor: 1.96·√2 ≈ 2.77, rounded to 2.8 by the standard
LIMIT_FACTOR = 2.8
_CELL = ("protocol", "split", "outer_fold", "sample_id")
_LEVELS = ("subject_id", "session_id", "scanner", "site")


def _cell_keys(frame: pl.DataFrame) -> list[str]:
    return [c for c in (*GROUP_COLUMNS, *_CELL) if c in frame.columns]


def _values(frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(values ``(n, q)`` whose seed spread is measured, predicted class or NaN ``(n,)``)."""
    if is_classification(frame):
        probs = probability_matrix(frame)
        values = probs[:, 1:] if probs.shape[1] == 2 else probs
        return values, probs.argmax(axis=1).astype(np.float64)
    return _column(frame, "y_pred")[:, None], np.full(frame.height, np.nan)


def repeatability_samples(predictions: Any, *, split: str | None = "test") -> pl.DataFrame:
    """Per test sample and fold: the spread of its prediction over the seeds that predicted it.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        The predictions table (docs/results.md): ``model``, ``outer_fold``, ``seed``,
        ``sample_id``, ``y_true`` and ``score`` (binary), ``probs`` (multi-class) or ``y_pred``
        (regression); ``dataset``, ``variant``, ``perturbation``, ``protocol`` are kept apart
        when present, hierarchy columns (``subject_id``, ``session_id``, ``scanner``, ``site``)
        carried over.
    split : str or None
        Rows of this ``split`` only (default ``"test"``; ``None``: all rows).

    Returns
    -------
    polars.DataFrame
        One row per (group, outer_fold, sample_id): the keys, hierarchy columns, ``y_true``,
        ``n_seeds``, ``mean`` (mean over seeds of the positive-class probability, of the
        prediction in regression; NaN for multi-class), ``sd`` (within-sample standard deviation
        over seeds, ddof 1; multi-class: root of the mean over classes of the per-class
        variances), ``dof`` (n_seeds − 1), ``ss`` (dof · sd²), ``flip`` (1.0 when the
        predicted class, the argmax of the probabilities (ties: the lower class), differs
        between seeds, else 0.0; NaN for regression), ``disagreement`` (share of
        seed pairs whose predicted classes differ).

    Notes
    -----
    For sample i predicted by n_i seeds with values x_is, s_i² = Σ_s (x_is − x̄_i)² / (n_i − 1).
    With c_k seeds predicting class k, the pairwise disagreement is (n_i² − Σ_k c_k²) /
    (n_i (n_i − 1)), the probability that two different seeds disagree (the churn of Milani
    Fard et al. 2016 between two retrainings).

    References
    ----------
    Milani Fard, M., Cormier, Q., Canini, K. & Gupta, M. (2016). Launch and iterate: reducing
        prediction churn. Advances in Neural Information Processing Systems 29.

    Examples
    --------
    >>> df = pl.DataFrame({"model": ["m"] * 4, "outer_fold": [0] * 4, "seed": [0, 1, 0, 1],
    ...                    "sample_id": ["a", "a", "b", "b"], "y_true": [1.0, 1.0, 0.0, 0.0],
    ...                    "score": [0.6, 0.4, 0.2, 0.2]})
    >>> out = repeatability_samples(df)
    >>> out.select("sample_id", "n_seeds", "flip").rows()
    [('a', 2, 1.0), ('b', 2, 0.0)]
    >>> [round(v, 6) for v in out["sd"]]
    [0.141421, 0.0]
    """
    frame = select_split(to_polars(predictions, name="predictions"), split)
    require_columns(frame, ["model", "outer_fold", "seed", "sample_id", "y_true"],
                    name="predictions", why="for repeatability over seeds")  # fmt: skip
    keys = _cell_keys(frame)
    index = frame.select(pl.struct(keys).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    n_cells = int(index.max()) + 1
    values, pred = _values(frame)
    n = np.bincount(index, minlength=n_cells).astype(np.float64)
    ss = np.zeros(n_cells)
    for j in range(values.shape[1]):
        mean_j = np.bincount(index, weights=values[:, j], minlength=n_cells) / n
        ss += np.bincount(index, weights=(values[:, j] - mean_j[index]) ** 2, minlength=n_cells)
    ss /= values.shape[1]
    mean = np.bincount(index, weights=values[:, 0], minlength=n_cells) / n
    if values.shape[1] > 1:
        mean[:] = np.nan
    if np.all(np.isnan(pred)):
        flip = disagreement = np.full(n_cells, np.nan)
    else:
        k = int(pred.max()) + 1
        counts = np.bincount(index * k + pred.astype(np.int64), minlength=n_cells * k)
        counts = counts.reshape(n_cells, k)
        flip = ((counts > 0).sum(axis=1) > 1).astype(np.float64)
        disagreement = _ratio(n**2 - (counts**2).sum(axis=1), n * (n - 1))
    dof = n - 1
    carry = [c for c in (*_LEVELS, "y_true") if c in frame.columns and c not in keys]
    first = (
        frame.with_columns(_cell=pl.Series(index))
        .unique("_cell", keep="first", maintain_order=True)
        .sort("_cell")
        .select(*keys, *carry)
    )
    return first.with_columns(
        n_seeds=pl.Series(n.astype(np.int64)),
        mean=pl.Series(mean),
        sd=pl.Series(np.sqrt(_ratio(ss, dof))),
        dof=pl.Series(dof),
        ss=pl.Series(ss),
        flip=pl.Series(flip),
        disagreement=pl.Series(disagreement),
    )


def _pooled_sd(factor: float) -> Metric:
    """s_r (factor 1) or r (factor 2.8) as a sums metric: factor · √(Σ ss / Σ dof)."""

    def stats(frame: pl.DataFrame) -> np.ndarray:
        return np.column_stack([_column(frame, "dof"), _column(frame, "ss")])

    def finalize(s: np.ndarray) -> np.ndarray:
        return factor * np.sqrt(_ratio(s[..., 1], s[..., 0]))

    name = "s_r" if factor == 1.0 else "r"
    return Metric(name, ("dof", "ss"), "sums", stats, finalize, higher_is_better=False)


def repeatability(
    predictions: Any,
    *,
    by: str | Sequence[str] | None = None,
    levels: Sequence[str] = ("subject_id",),
    split: str | None = "test",
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    scheme: Scheme = "cluster",
    interval: Interval = "t",
    strata: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """Repeatability standard deviation s_r, repeatability limit r and prediction churn per model.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        Predictions of several seeds per (model, outer_fold) (see :func:`repeatability_samples`).
    by : column name(s), optional
        Extra grouping, e.g. ``"site"``. ``dataset``, ``model``, ``variant`` and ``perturbation``
        are always kept apart when present.
    levels, n_boot, seed, alpha, scheme, interval, strata
        As in :func:`raybench_analysis.bootstrap`, on the per-sample table (one row per sample
        and fold; ``levels`` must be hierarchy columns of the predictions).
    split : str or None
        Rows of this ``split`` (default ``"test"``).

    Returns
    -------
    polars.DataFrame
        Per group and ``quantity`` (``s_r``, ``r``, ``churn``, ``disagreement``): the group
        columns, ``quantity``, ``estimate``, ``se``, ``ci_low``, ``ci_high``, ``df``, ``n_obs``
        (samples × folds with at least two seeds), ``n_boot``, ``method``, ``unit``,
        ``n_<level>``.

    Notes
    -----
    Repeatability variance, pooled over samples i (ISO 5725-2 §7.4, the within-cell variance
    pooled over cells): s_r² = Σ_i (n_i − 1) s_i² / Σ_i (n_i − 1), with s_i² the variance over
    seeds of sample i's positive-class probability (mean over classes of the per-class variances
    for multi-class, the predicted value for regression). The repeatability limit r = 2.8 s_r
    (≈ 1.96·√2 s_r) bounds, with 95% probability, the absolute difference between the
    predictions of two seeds for one sample when the within-sample spread is Gaussian with
    s.d. s_r. ``churn`` is the share of samples whose predicted class is not the same for every
    seed (grows with the number of seeds); ``disagreement`` is the probability that two seeds
    disagree (does not). Intervals: the hierarchical bootstrap of the per-sample sums (Σ dof,
    Σ ss), so a subject's samples are resampled together; interval ends below 0 are clipped.

    References
    ----------
    ISO 5725-2:2019. Accuracy (trueness and precision) of measurement methods and results — Part 2:
        Basic method for the determination of repeatability and reproducibility of a standard
        measurement method. International Organization for Standardization, Geneva.
    JCGM 200:2012. International vocabulary of metrology — Basic and general concepts and
        associated terms (VIM), 3rd edition, §2.21 (measurement repeatability).
    Milani Fard, M., Cormier, Q., Canini, K. & Gupta, M. (2016). Launch and iterate: reducing
        prediction churn. Advances in Neural Information Processing Systems 29.

    Examples
    --------
    >>> df = pl.DataFrame({"model": ["m"] * 8, "outer_fold": [0] * 8, "seed": [0, 1] * 4,
    ...                    "sample_id": list("aabbccdd"), "subject_id": list("aabbccdd"),
    ...                    "y_true": [1.0] * 8,
    ...                    "score": [0.6, 0.4, 0.7, 0.7, 0.9, 0.8, 0.3, 0.5]})
    >>> out = repeatability(df, n_boot=200)
    >>> out["quantity"].to_list()
    ['s_r', 'r', 'churn', 'disagreement']
    >>> round(out["estimate"][0], 6), out["estimate"][2]
    (0.106066, 0.25)
    """
    samples = repeatability_samples(predictions, split=split)
    keys = group_keys(samples, by)
    repeated = samples.filter(pl.col("n_seeds") >= 2)
    if repeated.height == 0:
        raise AnalysisError(
            "repeatability: no sample was predicted by two or more seeds of the same model and "
            "fold; train each configuration with several seeds (suite `seeds`)"
        )
    boot = dict(levels=levels, n_boot=n_boot, seed=seed, alpha=alpha, scheme=scheme,
                interval=interval, strata=strata)  # fmt: skip
    span = (0.0, np.inf)
    parts = [
        quantity_rows(repeated, "s_r", keys, boot, metric=_pooled_sd(1.0), value_range=span),
        quantity_rows(repeated, "r", keys, boot, metric=_pooled_sd(LIMIT_FACTOR), value_range=span),
    ]
    if repeated.get_column("flip").null_count() == 0 and not repeated["flip"].is_nan().any():
        for name, col in (("churn", "flip"), ("disagreement", "disagreement")):
            parts.append(quantity_rows(repeated, name, keys, boot, value=col, value_range=(0, 1)))
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.sort(keys, maintain_order=True) if keys else out


def seed_ensemble(
    predictions: Any, *, suffix: str = "+ens", with_members: bool = True
) -> pl.DataFrame:
    """The seed ensemble of every (model, fold) as a virtual model named ``<model><suffix>``.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        Predictions with ``model``, ``outer_fold``, ``seed``, ``sample_id`` and ``score`` /
        ``probs`` (classification) or ``y_pred`` (regression).
    suffix : str
        Appended to the model name of the ensemble rows.
    with_members : bool
        Return the input rows followed by the ensemble rows (default), ready for
        :func:`raybench_analysis.compare`; ``False``: the ensemble rows only.

    Returns
    -------
    polars.DataFrame
        The columns of ``predictions``, in order. Ensemble rows: ``score``, ``probs`` and
        ``dice`` are the means over seeds; ``y_pred`` the argmax of the mean probabilities
        (classification) or the mean prediction (regression); ``seed`` is −1 (no single seed);
        ``trial_id`` and ``loss`` are null (the ensemble was not trained, and a mean of losses is
        not the loss of the mean); every other column keeps the first member's value.

    Notes
    -----
    p̄_ik = (1/S) Σ_s p_iks over the S seeds that predicted sample i in fold k (Lakshminarayanan
    et al. 2017's deep ensemble, here of seeds only). As a model of its own, "is the ensemble
    better than one network?" is the paired comparison ``compare(seed_ensemble(p))``.

    References
    ----------
    Lakshminarayanan, B., Pritzel, A. & Blundell, C. (2017). Simple and scalable predictive
        uncertainty estimation using deep ensembles. Advances in Neural Information Processing
        Systems 30.

    Examples
    --------
    >>> df = pl.DataFrame({"model": ["m"] * 4, "outer_fold": [0] * 4, "seed": [0, 1, 0, 1],
    ...                    "sample_id": ["a", "a", "b", "b"], "y_true": [1.0, 1.0, 0.0, 0.0],
    ...                    "y_pred": [1.0, 0.0, 0.0, 0.0], "score": [0.9, 0.3, 0.2, 0.4]})
    >>> ens = seed_ensemble(df, with_members=False)
    >>> ens.select("model", "seed", "score", "y_pred").rows()
    [('m+ens', -1, 0.6, 1.0), ('m+ens', -1, 0.30000000000000004, 0.0)]
    """
    frame = to_polars(predictions, name="predictions")
    require_columns(frame, ["model", "outer_fold", "seed", "sample_id"],
                    name="predictions", why="for the seed ensemble")  # fmt: skip
    keys = _cell_keys(frame)
    index = frame.select(pl.struct(keys).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
    n_cells = int(index.max()) + 1
    n = np.bincount(index, minlength=n_cells).astype(np.float64)

    def mean_of(values: np.ndarray) -> np.ndarray:
        return np.bincount(index, weights=values, minlength=n_cells) / n

    first = (
        frame.with_columns(_cell=pl.Series(index))
        .unique("_cell", keep="first", maintain_order=True)
        .sort("_cell")
        .drop("_cell")
    )
    new: dict[str, pl.Series] = {
        "model": first.get_column("model").cast(pl.String) + suffix,
        "seed": pl.Series("seed", np.full(n_cells, -1), dtype=frame.schema["seed"]),
    }
    if is_classification(frame):
        probs = probability_matrix(frame)
        mean = np.column_stack([mean_of(probs[:, j]) for j in range(probs.shape[1])])
        if "score" in frame.columns and frame.get_column("score").null_count() == 0:
            new["score"] = pl.Series("score", mean_of(_column(frame, "score")))
        if "probs" in frame.columns and frame.get_column("probs").null_count() == 0:
            new["probs"] = pl.Series("probs", mean.tolist(), dtype=frame.schema["probs"])
        if "y_pred" in frame.columns:
            new["y_pred"] = pl.Series("y_pred", mean.argmax(axis=1).astype(np.float64))
    elif "y_pred" in frame.columns:
        new["y_pred"] = pl.Series("y_pred", mean_of(_column(frame, "y_pred")))
    if "dice" in frame.columns and frame.get_column("dice").null_count() == 0:
        new["dice"] = pl.Series("dice", mean_of(_column(frame, "dice")))
    for col in ("trial_id", "loss"):
        if col in frame.columns:
            new[col] = pl.Series(col, [None] * n_cells, dtype=frame.schema[col])
    ensemble = first.with_columns(
        **{k: v.cast(frame.schema[k]) if k in frame.schema else v for k, v in new.items()}
    ).select(frame.columns)
    return pl.concat([frame, ensemble]) if with_members else ensemble
