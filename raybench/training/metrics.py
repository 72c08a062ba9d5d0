"""Validation metrics used for early stopping and model selection inside a trial.

These are the few point estimates a trial needs to pick its best epoch; the analysis package
computes the reported metrics, with confidence intervals, from the ``predictions`` table. Which
metric selects, and in which direction, is :func:`raybench.plan.config.selection_of`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import rankdata

from raybench.errors import SuiteError

__all__ = ["score"]


def score(
    name: str,
    y_true: np.ndarray,
    *,
    probs: np.ndarray | None = None,
    y_pred: np.ndarray | None = None,
    dice: np.ndarray | None = None,
    loss: np.ndarray | None = None,
) -> float:
    """Value of metric ``name`` over one validation set (NaN when it is undefined).

    ``auc`` is the Mann–Whitney estimate of the ROC area (binary) or the unweighted mean of the
    one-vs-rest areas (multi-class; Hand & Till 2001 discuss alternatives).
    """
    if name == "loss":
        return _mean(loss)
    if name == "dice":
        return _mean(dice)
    y = np.asarray(y_true, dtype=float)
    if name in ("mae", "rmse", "r2"):
        pred = np.asarray(y_pred, dtype=float)
        err = pred - y
        if name == "mae":
            return float(np.mean(np.abs(err)))
        if name == "rmse":
            return float(math.sqrt(np.mean(err**2)))
        denom = float(np.sum((y - y.mean()) ** 2))
        return float(1.0 - np.sum(err**2) / denom) if denom > 0 else math.nan
    p = np.asarray(probs, dtype=float)
    labels = y.astype(int)
    if name == "accuracy":
        return float(np.mean(p.argmax(axis=1) == labels))
    if name == "balanced_accuracy":
        pred = p.argmax(axis=1)
        recalls = [np.mean(pred[labels == k] == k) for k in np.unique(labels)]
        return float(np.mean(recalls))
    if name == "log_loss":
        picked = p[np.arange(len(labels)), labels]
        return float(-np.mean(np.log(np.clip(picked, 1e-15, 1.0))))
    if name == "brier":
        onehot = np.eye(p.shape[1])[labels]
        return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))
    if name == "auc":
        if p.shape[1] == 2:
            return _auc(labels == 1, p[:, 1])
        areas = [_auc(labels == k, p[:, k]) for k in range(p.shape[1]) if np.any(labels == k)]
        return float(np.nanmean(areas)) if areas else math.nan
    raise SuiteError(f"metric {name!r} is unknown")


def _auc(positive: np.ndarray, scores: np.ndarray) -> float:
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _mean(values: np.ndarray | None) -> float:
    if values is None or len(values) == 0:
        return math.nan
    return float(np.mean(values))
