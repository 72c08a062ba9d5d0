"""Shared helpers of the per-prediction uncertainty analyses (repeatability, calibration,
conformal prediction, selective prediction): which rows, which groups, which probabilities, and
one call of :func:`raybench_analysis.bootstrap` turned into a ``quantity`` row.

The predictions table (docs/results.md) holds one row per (trial, sample, perturbation) and, with
issue 9's uncertainty axis, per ``variant`` (``raw``, ``calibrated``, ``input_noise``,
``mc_dropout``) and ``split`` (``val`` or ``test``). The analyses never pool different models,
variants, perturbations or datasets: those columns, when present, are always grouping keys.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, as_names, require_columns
from raybench_analysis.bootstrap import bootstrap
from raybench_analysis.metrics import Metric, _column, _probabilities, _probs_matrix, _uses_score

#: columns that, when present, always separate groups (never pooled)
GROUP_COLUMNS: tuple[str, ...] = ("dataset", "model", "variant", "perturbation")
#: the columns naming one trained model (a trial), when present
TRIAL_COLUMNS: tuple[str, ...] = ("outer_fold", "seed")
#: the fixed columns every quantity table ends with (after the group keys and ``quantity``)
QUANTITY_COLUMNS: tuple[str, ...] = (
    "estimate", "se", "ci_low", "ci_high", "df", "n_obs", "n_boot", "method", "unit",
)  # fmt: skip


def group_keys(frame: pl.DataFrame, by: str | Sequence[str] | None) -> list[str]:
    """The always-separate columns present in ``frame`` followed by ``by`` (checked)."""
    extra = as_names(by, name="by")
    require_columns(frame, extra, name="predictions", why="for by=")
    keys = [c for c in GROUP_COLUMNS if c in frame.columns]
    return keys + [c for c in extra if c not in keys]


def select_split(frame: pl.DataFrame, split: str | None) -> pl.DataFrame:
    """Rows of ``split`` (when the table has a ``split`` column and ``split`` is not None)."""
    if split is None or "split" not in frame.columns:
        return frame
    out = frame.filter(pl.col("split") == split)
    if out.height == 0:
        present = sorted(frame.get_column("split").unique().drop_nulls().to_list())
        raise AnalysisError(
            f"split={split!r}: no prediction rows with this split; present: {present}. "
            "Pass split=None to use every row."
        )
    return out


def probability_matrix(frame: pl.DataFrame) -> np.ndarray:
    """``(n, K)`` class probabilities: ``[1 − score, score]`` (binary) or the ``probs`` lists."""
    if _uses_score(frame):
        p = _probabilities(frame)
        return np.column_stack([1.0 - p, p])
    probs = _probs_matrix(frame)
    if np.any((probs < 0) | (probs > 1)):
        raise AnalysisError("column 'probs': values outside [0, 1]; give probabilities")
    return probs


def class_labels(frame: pl.DataFrame, n_classes: int) -> np.ndarray:
    """``y_true`` as integer class indices 0..K−1 (checked)."""
    y = _column(frame, "y_true")
    idx = y.astype(np.int64)
    if np.any(idx != y) or np.any((idx < 0) | (idx >= n_classes)):
        bad = int(np.flatnonzero((idx != y) | (idx < 0) | (idx >= n_classes))[0])
        raise AnalysisError(
            f"column 'y_true': {y[bad]!r} at row {bad} is not a class index 0..{n_classes - 1}; "
            "classification analyses need class indices matching the probabilities"
        )
    return idx


def is_classification(frame: pl.DataFrame) -> bool:
    """True when the rows carry probabilities (``score`` complete or ``probs`` present)."""
    score = "score" in frame.columns and frame.get_column("score").null_count() == 0
    probs = "probs" in frame.columns and frame.get_column("probs").null_count() == 0
    return score or probs


def default_average_over(frame: pl.DataFrame, average_over: Any) -> list[str] | None:
    """``"trial"`` (the default) means the trial columns present: per trained model, averaged."""
    if isinstance(average_over, str) and average_over == "trial":
        cols = [c for c in TRIAL_COLUMNS if c in frame.columns]
        return cols or None
    return as_names(average_over, name="average_over") or None


def quantity_rows(
    frame: pl.DataFrame,
    quantity: str,
    keys: list[str],
    boot: Mapping[str, Any],
    *,
    metric: Metric | Callable[[pl.DataFrame], float] | None = None,
    value: str | None = None,
    transform: str | None = None,
    value_range: tuple[float, float] = (-np.inf, np.inf),
    extra: Mapping[str, Any] | None = None,
) -> pl.DataFrame:
    """One :func:`bootstrap` call turned into rows ``keys, quantity, <extra>, estimate, ...``.

    ``transform="sqrt"`` reports the square root of the bootstrapped quantity (interval ends
    clipped at 0 first, then rooted: a monotone map of an interval is an interval).
    ``value_range`` clips interval ends (stated in ``method``).
    """
    # pooled unless ``boot`` says otherwise (bootstrap's own default averages fold × seed cells)
    boot = {"average_over": None, **boot}
    out = bootstrap(frame, value=value, metric=metric, by=keys or None, **boot)
    n_cols = [c for c in out.columns if c.startswith("n_") and c not in ("n_obs", "n_boot")]
    est, lo, hi = (
        out.get_column(c).to_numpy().astype(float) for c in ("estimate", "ci_low", "ci_high")
    )
    method = out.get_column("method").to_list()
    if transform == "sqrt":
        est, lo, hi = (np.sqrt(np.clip(a, 0.0, None)) for a in (est, lo, hi))
        with np.errstate(divide="ignore", invalid="ignore"):  # delta method; NaN at 0
            se = np.where(est > 0, out.get_column("se").to_numpy() / (2 * est), np.nan)
        method = [f"{m}; square root of the interval of the squared quantity" for m in method]
    else:
        se = out.get_column("se").to_numpy()
    low, high = value_range
    clipped = (lo < low) | (hi > high)
    lo, hi = np.maximum(lo, low), np.minimum(hi, high)
    method = [
        m + ("; interval clipped to the range" if c else "")
        for m, c in zip(method, clipped, strict=True)
    ]
    cols = {k: out.get_column(k) for k in keys}
    rows = pl.DataFrame(
        {
            **cols,
            "quantity": [quantity] * out.height,
            **{k: [v] * out.height for k, v in (extra or {}).items()},
            "estimate": est,
            "se": se,
            "ci_low": lo,
            "ci_high": hi,
            "df": out.get_column("df"),
            "n_obs": out.get_column("n_obs"),
            "n_boot": out.get_column("n_boot"),
            "method": method,
            "unit": out.get_column("unit"),
            **{c: out.get_column(c) for c in n_cols},
        }
    )
    return rows
