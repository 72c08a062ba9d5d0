"""Performance metrics of classification, regression and segmentation predictions.

Every metric is defined once, as a :class:`Metric`: per-observation statistics whose column
sums determine the value (``kind="sums"``: accuracy, recalls, confusion counts, squared errors,
calibration bin sums ...), or the weighted Mann–Whitney statistic (``kind="auc"``). The public
functions (:func:`auc`, :func:`accuracy`, ...) evaluate that definition on arrays;
:func:`metric_by` evaluates it per group of a predictions table;
:func:`raybench_analysis.bootstrap` evaluates it on thousands of resampled weightings at once (a
weighted sum is a matrix product), which is what makes the hierarchical bootstrap fast. Column
names follow docs/results.md: ``y_true`` (class index or target), ``y_pred`` (predicted class or
value), ``score`` (probability of the positive class), ``probs`` (list of class probabilities),
``dice`` (per-sample Dice).

References
----------
Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural networks.
    Proceedings of the 34th International Conference on Machine Learning, PMLR 70, 1321–1330.
Naeini, M. P., Cooper, G. F. & Hauskrecht, M. (2015). Obtaining well calibrated probabilities using
    Bayesian binning. Proceedings of the AAAI Conference on Artificial Intelligence 29(1).
Hanley, J. A. & McNeil, B. J. (1982). The meaning and use of the area under a receiver operating
    characteristic (ROC) curve. Radiology 143(1), 29–36.
Brodersen, K. H., Ong, C. S., Stephan, K. E. & Buhmann, J. M. (2010). The balanced accuracy and its
    posterior distribution. 20th International Conference on Pattern Recognition, 3121–3124.
Gorodkin, J. (2004). Comparing two K-category assignments by a K-category correlation coefficient.
    Computational Biology and Chemistry 28(5–6), 367–374.
Brier, G. W. (1950). Verification of forecasts expressed in terms of probability. Monthly Weather
    Review 78(1), 1–3.
Dice, L. R. (1945). Measures of the amount of ecologic association between species. Ecology 26(3),
    297–302.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, as_array, as_names, require_columns, to_polars

__all__ = [
    "METRICS",
    "Metric",
    "accuracy",
    "auc",
    "balanced_accuracy",
    "brier",
    "calibration_bins",
    "dice",
    "ece",
    "f1",
    "get_metric",
    "log_loss",
    "mae",
    "mcc",
    "metric_by",
    "r2",
    "rmse",
    "sensitivity",
    "specificity",
]

Convention = Literal["top_label", "positive_class"]


@dataclass(frozen=True)
class Metric:
    """One metric: how to turn a predictions table into per-observation sums, and sums into a value.

    ``stats(frame)`` returns an ``(n, q)`` float array; the metric of a weighting ``w`` of the rows
    is ``finalize(w @ stats)``. ``kind="auc"`` metrics use :func:`weighted_auc` on ``y_true`` and
    ``score`` instead. ``columns`` are the predictions columns read, ``optional`` those read when
    present (a probability metric reads ``score`` when it is complete, else ``probs``); ``params``
    the settings (stated in outputs).
    """

    name: str
    columns: tuple[str, ...]
    kind: Literal["sums", "auc"]
    stats: Callable[[pl.DataFrame], np.ndarray] | None
    finalize: Callable[[np.ndarray], np.ndarray] | None
    higher_is_better: bool = True
    params: dict[str, Any] = field(default_factory=dict)
    optional: tuple[str, ...] = ()

    @property
    def value_range(self) -> tuple[float, float]:
        """The values the metric can take (e.g. ``(0, 1)`` for AUC); intervals are clipped to it."""
        if self.name == "balanced_accuracy" and self.params.get("adjusted"):
            return (-math.inf, 1.0)
        return VALUE_RANGES.get(self.name, (-math.inf, math.inf))

    def label(self) -> str:
        """Name with its settings, e.g. ``ece(n_bins=10, convention=top_label)``."""
        if not self.params:
            return self.name
        inner = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{self.name}({inner})"

    def evaluate(self, frame: pl.DataFrame, weights: np.ndarray | None = None) -> np.ndarray:
        """Metric values on ``frame`` under row weights ``(B, n)`` (default: one row of 1s)."""
        frame = to_polars(frame)
        require_columns(frame, self.columns, why=f"by metric {self.name!r}")
        w = np.ones((1, frame.height)) if weights is None else np.atleast_2d(weights)
        if self.kind == "auc":
            y, s = _binary_labels(frame), _column(frame, "score")
            return weighted_auc(y, s, w)
        assert self.stats is not None and self.finalize is not None
        return self.finalize(w @ self.stats(frame))


# ----------------------------------------------------------------------------- column access


def _column(frame: pl.DataFrame, name: str) -> np.ndarray:
    col = frame.get_column(name)
    if col.null_count():
        row = int(col.is_null().arg_max() or 0)
        raise AnalysisError(
            f"column {name!r}: null at row {row}; this metric needs it on every row. "
            "Filter the rows (e.g. the right task or perturbation) before computing it."
        )
    return as_array(col.cast(pl.Float64), name=f"column {name!r}")


def _binary_labels(frame: pl.DataFrame, positive: float = 1.0) -> np.ndarray:
    y = _column(frame, "y_true")
    if positive not in (0.0, 1.0) or not np.all((y == 0) | (y == 1)):
        return (y == positive).astype(np.float64)
    return y if positive == 1.0 else 1.0 - y


def _probabilities(frame: pl.DataFrame, name: str = "score") -> np.ndarray:
    p = _column(frame, name)
    if np.any((p < 0) | (p > 1)):
        row = int(np.flatnonzero((p < 0) | (p > 1))[0])
        raise AnalysisError(
            f"column {name!r}: {p[row]!r} at row {row} is not a probability; allowed: [0, 1]"
        )
    return p


def _probs_matrix(frame: pl.DataFrame) -> np.ndarray:
    col = frame.get_column("probs")
    if col.null_count():
        raise AnalysisError("column 'probs': null values; give class probabilities on every row")
    try:
        probs = np.asarray(col.to_list(), dtype=np.float64)
    except ValueError as exc:
        raise AnalysisError(f"column 'probs': rows have different lengths ({exc})") from exc
    if probs.ndim != 2:
        raise AnalysisError("column 'probs': expected one list of class probabilities per row")
    return probs


#: Where a probability metric finds the probabilities: binary ``score``, else the ``probs`` lists.
PROBABILITY_COLUMNS = ("score", "probs")


def _uses_score(frame: pl.DataFrame) -> bool:
    """Binary metrics read ``score`` when it is complete, else the ``probs`` lists."""
    if "score" in frame.columns and frame.get_column("score").null_count() == 0:
        return True
    if "probs" in frame.columns:
        return False
    require_columns(frame, ["score"], why="(or 'probs') for probability metrics")
    return True


def _confidence(frame: pl.DataFrame, convention: Convention) -> tuple[np.ndarray, np.ndarray]:
    """(confidence, outcome) pairs: top-label (max prob, correct) or positive class (p, y)."""
    y = _column(frame, "y_true")
    if _uses_score(frame):
        p = _probabilities(frame)
        if convention == "positive_class":
            return p, (y == 1).astype(np.float64)
        pred = (p >= 0.5).astype(np.float64)
        return np.maximum(p, 1.0 - p), (pred == y).astype(np.float64)
    probs = _probs_matrix(frame)
    if convention == "positive_class":
        if probs.shape[1] != 2:
            raise AnalysisError(
                f"ece convention='positive_class' needs binary probabilities; got "
                f"{probs.shape[1]} classes. Use convention='top_label' for multi-class."
            )
        return probs[:, 1], (y == 1).astype(np.float64)
    return probs.max(axis=1), (probs.argmax(axis=1) == y).astype(np.float64)


# ----------------------------------------------------------------------------- finalizers


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _mean_finalize(s: np.ndarray) -> np.ndarray:
    return _ratio(s[..., 1], s[..., 0])


def _mean_of(values: Callable[[pl.DataFrame], np.ndarray]) -> Callable[[pl.DataFrame], np.ndarray]:
    def stats(frame: pl.DataFrame) -> np.ndarray:
        v = values(frame)
        return np.column_stack([np.ones_like(v), v])

    return stats


def _classes(frame: pl.DataFrame, *cols: str) -> np.ndarray:
    return np.unique(np.concatenate([_column(frame, c) for c in cols]))


def _balanced_accuracy_stats(frame: pl.DataFrame) -> np.ndarray:
    y, pred = _column(frame, "y_true"), _column(frame, "y_pred")
    onehot = (y[:, None] == np.unique(y)[None, :]).astype(np.float64)
    return np.hstack([onehot * (pred == y)[:, None], onehot])


def _balanced_accuracy_finalize(adjusted: bool) -> Callable[[np.ndarray], np.ndarray]:
    def finalize(s: np.ndarray) -> np.ndarray:
        k = s.shape[-1] // 2
        recalls = _ratio(s[..., :k], s[..., k:])
        with np.errstate(invalid="ignore"):
            present = (s[..., k:] > 0).sum(axis=-1)
            value = np.nansum(recalls, axis=-1) / np.where(present > 0, present, np.nan)
        if adjusted:
            chance = 1.0 / present
            value = (value - chance) / (1.0 - chance)
        return value

    return finalize


def _confusion_stats(frame: pl.DataFrame) -> np.ndarray:
    y, pred = _column(frame, "y_true"), _column(frame, "y_pred")
    classes = _classes(frame, "y_true", "y_pred")
    k = len(classes)
    cell = np.searchsorted(classes, y) * k + np.searchsorted(classes, pred)
    out = np.zeros((len(y), k * k))
    out[np.arange(len(y)), cell] = 1.0
    return out


def _mcc_finalize(s: np.ndarray) -> np.ndarray:
    k = round(float(np.sqrt(s.shape[-1])))
    c = s.reshape(*s.shape[:-1], k, k)
    t, p = c.sum(axis=-1), c.sum(axis=-2)  # true and predicted totals per class
    total, correct = c.sum(axis=(-2, -1)), np.trace(c, axis1=-2, axis2=-1)
    cov_tp = correct * total - (t * p).sum(axis=-1)
    spread_true = total**2 - (t * t).sum(axis=-1)
    den = np.sqrt((total**2 - (p * p).sum(axis=-1)) * spread_true)
    value = np.where(den > 0, cov_tp / np.where(den > 0, den, 1.0), 0.0)
    return np.where(spread_true > 0, value, np.nan)  # one true class only: undefined


def _binary_counts(positive: float) -> Callable[[pl.DataFrame], np.ndarray]:
    def stats(frame: pl.DataFrame) -> np.ndarray:
        y = _column(frame, "y_true") == positive
        pred = _column(frame, "y_pred") == positive
        return np.column_stack([y & pred, ~y & pred, y & ~pred, ~y & ~pred]).astype(np.float64)

    return stats


def _calibration_edges(n_bins: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, n_bins + 1)


def _bin_index(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """Equal-width right-closed bins (lo, hi]; 0 goes to the first bin."""
    idx = np.searchsorted(_calibration_edges(n_bins), conf, side="left") - 1
    return np.clip(idx, 0, n_bins - 1)


def _ece_stats(n_bins: int, convention: Convention) -> Callable[[pl.DataFrame], np.ndarray]:
    def stats(frame: pl.DataFrame) -> np.ndarray:
        conf, outcome = _confidence(frame, convention)
        onehot = np.zeros((len(conf), n_bins))
        onehot[np.arange(len(conf)), _bin_index(conf, n_bins)] = 1.0
        return np.hstack([onehot, onehot * conf[:, None], onehot * outcome[:, None]])

    return stats


def _ece_finalize(s: np.ndarray) -> np.ndarray:
    b = s.shape[-1] // 3
    n, conf, hit = s[..., :b], s[..., b : 2 * b], s[..., 2 * b :]
    return _ratio(np.abs(hit - conf).sum(axis=-1), n.sum(axis=-1))


def _log_loss_values(eps: float) -> Callable[[pl.DataFrame], np.ndarray]:
    def values(frame: pl.DataFrame) -> np.ndarray:
        y = _column(frame, "y_true")
        if _uses_score(frame):
            p = np.clip(_probabilities(frame), eps, 1 - eps)
            return -(y * np.log(p) + (1 - y) * np.log(1 - p))
        probs = _probs_matrix(frame)
        idx = y.astype(np.int64)
        if np.any(idx != y) or np.any((idx < 0) | (idx >= probs.shape[1])):
            raise AnalysisError("column 'y_true': class indices must be 0..n_classes-1 for probs")
        return -np.log(np.clip(probs[np.arange(len(y)), idx], eps, 1.0))

    return values


def _brier_values(frame: pl.DataFrame) -> np.ndarray:
    y = _column(frame, "y_true")
    if _uses_score(frame):
        return (_probabilities(frame) - y) ** 2
    probs = _probs_matrix(frame)
    onehot = (np.arange(probs.shape[1])[None, :] == y[:, None]).astype(np.float64)
    return ((probs - onehot) ** 2).sum(axis=1)


def _regression_stats(frame: pl.DataFrame) -> np.ndarray:
    y, pred = _column(frame, "y_true"), _column(frame, "y_pred")
    e = pred - y
    return np.column_stack([np.ones_like(y), np.abs(e), e * e, y, y * y])


def _r2_finalize(s: np.ndarray) -> np.ndarray:
    n, sse, sy, syy = s[..., 0], s[..., 2], s[..., 3], s[..., 4]
    sst = syy - _ratio(sy * sy, n)
    return 1.0 - _ratio(sse, sst)


# ----------------------------------------------------------------------------- weighted AUC


def weighted_auc(y: np.ndarray, score: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mann–Whitney AUC of binary ``y`` under each row of ``weights`` ``(B, n)``; ties count 1/2.

    Sorts once, then per tie group sums the weights of positives and negatives
    (``np.add.reduceat``); AUC = Σ_g W⁺_g (W⁻_<g + W⁻_g / 2) / (W⁺ W⁻). A weighting without a
    positive or a negative gives NaN.
    """
    order = np.argsort(score, kind="mergesort")
    s, pos = score[order], y[order] == 1
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    w = np.atleast_2d(weights)[:, order]
    wp = np.add.reduceat(w * pos, starts, axis=1)
    wn = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn
    num = (wp * (below + 0.5 * wn)).sum(axis=1)
    return _ratio(num, wp.sum(axis=1) * wn.sum(axis=1))


def weighted_auc_cells(
    y: np.ndarray,
    score: np.ndarray,
    cell: np.ndarray,
    unit: np.ndarray,
    unit_weights: np.ndarray,
    n_cells: int,
) -> np.ndarray:
    """:func:`weighted_auc` of every cell at once: ``(B, n_cells)`` for rows ``(y, score, cell)``.

    Row ``i`` lies in cell ``cell[i]`` (``0..n_cells-1``) and weighs ``unit_weights[unit[i]]`` in
    each of ``B`` weightings (``unit_weights`` is ``(n_units, B)``: one row per unit, so every
    sum below runs over contiguous rows). The rows are sorted once by (cell, score); tie groups
    never cross cells; the negatives' weight below a row is a running sum, less its value at the
    cell's first row; each cell's sums are one ``np.add.reduceat``. The formula of
    :func:`weighted_auc`, with no Python loop over cells (thousands of fold x seed cells made the
    per-cell calls most of a report's time, issue 11). A cell without rows, a positive or a
    negative gives NaN.
    """
    out = np.full((n_cells, unit_weights.shape[1]), np.nan)
    if len(y) == 0:
        return out.T
    order = np.lexsort((score, cell))
    s, c, pos = score[order], cell[order], y[order] == 1
    starts = np.flatnonzero(np.r_[True, (s[1:] != s[:-1]) | (c[1:] != c[:-1])])
    if len(starts) == len(s):  # no tied scores within a cell: sums over one class each
        out[:] = _auc_cells_untied(c, pos, unit[order], unit_weights, n_cells)
        return out.T
    w = unit_weights[unit[order]]
    wp, wn = w * pos[:, None], w * ~pos[:, None]
    if len(starts) < len(s):  # tied scores: one row per tie group
        wp, wn = np.add.reduceat(wp, starts, axis=0), np.add.reduceat(wn, starts, axis=0)
    group_cell = c[starts]
    firsts = np.flatnonzero(np.r_[True, group_cell[1:] != group_cell[:-1]])
    below = np.cumsum(wn, axis=0)
    below -= wn
    total_p = np.add.reduceat(wp, firsts, axis=0)
    num = np.add.reduceat(wp * (below + 0.5 * wn), firsts, axis=0) - below[firsts] * total_p
    out[group_cell[firsts]] = _ratio(num, total_p * np.add.reduceat(wn, firsts, axis=0))
    return out.T


def _auc_cells_untied(
    cell: np.ndarray, pos: np.ndarray, unit: np.ndarray, unit_weights: np.ndarray, n_cells: int
) -> np.ndarray:
    """:func:`weighted_auc_cells` of rows sorted by (cell, score) without ties: ``(n_cells, B)``.

    A positive's weight multiplies the negatives' weight below it, a running sum over the
    negative rows only (read at the positive's place, less its value at the cell's start), and
    a cell's negative total is a difference of that running sum: each array spans one class, so
    the work is about a third of the general case's.
    """
    n_before = np.cumsum(~pos) - ~pos  # negatives before each sorted row
    neg = np.zeros((int((~pos).sum()) + 1, unit_weights.shape[1]))
    np.cumsum(unit_weights[unit[~pos]], axis=0, out=neg[1:])
    bounds = np.flatnonzero(np.r_[True, cell[1:] != cell[:-1], True])
    first_neg = np.r_[n_before, n_before[-1] + (not pos[-1])][bounds]  # per cell start and end
    total_n = np.full((n_cells, unit_weights.shape[1]), 0.0)
    present = cell[bounds[:-1]]
    total_n[present] = neg[first_neg[1:]] - neg[first_neg[:-1]]
    offset = np.zeros_like(total_n)
    offset[present] = neg[first_neg[:-1]]
    out = np.full_like(total_n, np.nan)
    if not pos.any():
        return out
    pcell = cell[pos]
    wp = unit_weights[unit[pos]]
    firsts = np.flatnonzero(np.r_[True, pcell[1:] != pcell[:-1]])
    cells = pcell[firsts]
    total_p = np.add.reduceat(wp, firsts, axis=0)
    wp *= neg[n_before[pos]]
    num = np.add.reduceat(wp, firsts, axis=0) - offset[cells] * total_p
    out[cells] = _ratio(num, total_p * total_n[cells])
    return out


# ----------------------------------------------------------------------------- registry


def _sums(name: str, cols: tuple[str, ...], stats: Any, fin: Any, hib: bool = True, **p: Any):
    return Metric(name, cols, "sums", stats, fin, higher_is_better=hib, params=p)


def _probability_metric(name: str, stats: Any, fin: Any, **p: Any) -> Metric:
    """A lower-is-better metric of the predicted probabilities: ``score`` or ``probs``."""
    return Metric(name, ("y_true",), "sums", stats, fin, False, p, PROBABILITY_COLUMNS)


def get_metric(name: str | Metric, **params: Any) -> Metric:
    """Return the :class:`Metric` called ``name`` with its settings.

    Settings: ``positive`` (sensitivity, specificity, f1; default 1), ``adjusted`` (balanced
    accuracy), ``n_bins`` and ``convention`` (ece: ``"top_label"`` or ``"positive_class"``),
    ``eps`` (log_loss clipping). Unknown names or settings raise :class:`AnalysisError`.
    """
    if isinstance(name, Metric):
        return name
    if name not in METRICS:
        raise AnalysisError(f"metric={name!r} is unknown; allowed: {sorted(METRICS)}")
    try:
        return METRICS[name](**params)
    except TypeError as exc:
        raise AnalysisError(f"metric={name!r}: bad settings {params} ({exc})") from exc


def _ece_metric(n_bins: int = 10, convention: Convention = "top_label") -> Metric:
    if convention not in ("top_label", "positive_class"):
        raise AnalysisError(
            f"ece convention={convention!r}; allowed: 'top_label' (Guo et al. 2017) or "
            "'positive_class' (reliability of the positive-class probability)"
        )
    if not isinstance(n_bins, int) or n_bins < 1:
        raise AnalysisError(f"ece n_bins={n_bins!r}; allowed: an integer >= 1 (usually 10 or 15)")
    params = {"n_bins": n_bins, "convention": convention, "bins": "equal-width (lo, hi]"}
    return _probability_metric("ece", _ece_stats(n_bins, convention), _ece_finalize, **params)


def _recall(name: str, idx: tuple[int, int], positive: float = 1.0) -> Metric:
    a, b = idx

    def fin(s: np.ndarray) -> np.ndarray:
        return _ratio(s[..., a], s[..., a] + s[..., b])

    return _sums(name, ("y_true", "y_pred"), _binary_counts(positive), fin, positive=positive)


def _f1_finalize(s: np.ndarray) -> np.ndarray:
    return _ratio(2 * s[..., 0], 2 * s[..., 0] + s[..., 1] + s[..., 2])


def _dice_values(frame: pl.DataFrame) -> np.ndarray:
    return _column(frame, "dice")


#: Range of each metric, used to clip interval ends that a symmetric (t) interval puts outside.
VALUE_RANGES: dict[str, tuple[float, float]] = {
    **dict.fromkeys(
        ("auc", "accuracy", "balanced_accuracy", "sensitivity", "specificity", "f1", "brier",
         "ece", "dice"),
        (0.0, 1.0),
    ),
    "mcc": (-1.0, 1.0),
    "log_loss": (0.0, math.inf),
    "mae": (0.0, math.inf),
    "rmse": (0.0, math.inf),
    "r2": (-math.inf, 1.0),
}  # fmt: skip

METRICS: dict[str, Callable[..., Metric]] = {
    "auc": lambda: Metric("auc", ("y_true", "score"), "auc", None, None),
    "accuracy": lambda: _sums(
        "accuracy",
        ("y_true", "y_pred"),
        _mean_of(lambda f: (_column(f, "y_pred") == _column(f, "y_true")).astype(float)),
        _mean_finalize,
    ),
    "balanced_accuracy": lambda adjusted=False: _sums(
        "balanced_accuracy",
        ("y_true", "y_pred"),
        _balanced_accuracy_stats,
        _balanced_accuracy_finalize(adjusted),
        **({"adjusted": True} if adjusted else {}),
    ),
    "sensitivity": lambda positive=1.0: _recall("sensitivity", (0, 2), positive),
    "specificity": lambda positive=1.0: _recall("specificity", (3, 1), positive),
    "f1": lambda positive=1.0: _sums(
        "f1", ("y_true", "y_pred"), _binary_counts(positive), _f1_finalize, positive=positive
    ),
    "mcc": lambda: _sums("mcc", ("y_true", "y_pred"), _confusion_stats, _mcc_finalize),
    "brier": lambda: _probability_metric("brier", _mean_of(_brier_values), _mean_finalize),
    "log_loss": lambda eps=1e-15: _probability_metric(
        "log_loss", _mean_of(_log_loss_values(eps)), _mean_finalize
    ),
    "ece": _ece_metric,
    "mae": lambda: _sums(
        "mae",
        ("y_true", "y_pred"),
        _regression_stats,
        lambda s: _ratio(s[..., 1], s[..., 0]),
        False,
    ),
    "rmse": lambda: _sums(
        "rmse",
        ("y_true", "y_pred"),
        _regression_stats,
        lambda s: np.sqrt(_ratio(s[..., 2], s[..., 0])),
        False,
    ),
    "r2": lambda: _sums("r2", ("y_true", "y_pred"), _regression_stats, _r2_finalize),
    "dice": lambda: _sums("dice", ("dice",), _mean_of(_dice_values), _mean_finalize),
}


# ----------------------------------------------------------------------------- public functions


def _frame(**columns: Any) -> pl.DataFrame:
    data: dict[str, Any] = {}
    for name, values in columns.items():
        if values is None:
            continue
        if name == "probs":
            data[name] = pl.Series(name, np.asarray(values, dtype=np.float64).tolist())
        else:
            data[name] = as_array(values, name=name)
    lengths = {k: len(v) for k, v in data.items()}
    if len(set(lengths.values())) != 1:
        raise AnalysisError(f"arrays must have the same length, got {lengths}")
    if next(iter(lengths.values())) == 0:
        raise AnalysisError(f"{', '.join(lengths)}: empty input; give at least one observation")
    return pl.DataFrame(data)


def _value(metric: Metric, frame: pl.DataFrame) -> float:
    return float(metric.evaluate(frame)[0])


def auc(y_true: Any, score: Any) -> float:
    """Area under the ROC curve: the Mann–Whitney probability that a positive outscores a negative.

    Parameters
    ----------
    y_true : array-like of 0/1
        Labels; 1 is the positive class.
    score : array-like of float
        Higher means more likely positive.

    Returns
    -------
    float
        AUC in [0, 1]; NaN when a class is absent.

    Notes
    -----
    AUC = 1/(n₊ n₋) Σᵢ Σⱼ [1(sᵢ > sⱼ) + ½ 1(sᵢ = sⱼ)], i positive, j negative (ties count one
    half), computed from tie-grouped sorted scores in O(n log n) (Hanley & McNeil 1982).

    References
    ----------
    Hanley, J. A. & McNeil, B. J. (1982). The meaning and use of the area under a receiver operating
    characteristic (ROC) curve. Radiology 143(1), 29–36.

    Examples
    --------
    >>> auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    return _value(get_metric("auc"), _frame(y_true=y_true, score=score))


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of correct predictions, Σ 1(ŷᵢ = yᵢ) / n.

    Examples
    --------
    >>> accuracy([0, 1, 2, 1], [0, 1, 1, 1])
    0.75
    """
    return _value(get_metric("accuracy"), _frame(y_true=y_true, y_pred=y_pred))


def balanced_accuracy(y_true: Any, y_pred: Any, *, adjusted: bool = False) -> float:
    """Mean over the classes present in ``y_true`` of the per-class recall (multi-class too).

    Notes
    -----
    BA = (1/K) Σ_k TP_k / n_k over the K classes of ``y_true``; ``adjusted=True`` rescales so chance
    is 0: (BA − 1/K)/(1 − 1/K) (Brodersen et al. 2010; scikit-learn's convention).

    References
    ----------
    Brodersen, K. H., Ong, C. S., Stephan, K. E. & Buhmann, J. M. (2010). The balanced accuracy and
    its posterior distribution. 20th International Conference on Pattern Recognition, 3121–3124.

    Examples
    --------
    >>> balanced_accuracy([0, 1, 0, 0, 1, 0], [0, 1, 0, 0, 0, 1])
    0.625
    """
    metric = get_metric("balanced_accuracy", adjusted=adjusted)
    return _value(metric, _frame(y_true=y_true, y_pred=y_pred))


def sensitivity(y_true: Any, y_pred: Any, *, positive: float = 1) -> float:
    """Recall of the positive class, TP / (TP + FN).

    Examples
    --------
    >>> sensitivity([1, 1, 0, 0], [1, 0, 0, 1])
    0.5
    """
    metric = get_metric("sensitivity", positive=float(positive))
    return _value(metric, _frame(y_true=y_true, y_pred=y_pred))


def specificity(y_true: Any, y_pred: Any, *, positive: float = 1) -> float:
    """Recall of the negative class(es), TN / (TN + FP).

    Examples
    --------
    >>> specificity([1, 1, 0, 0, 0], [1, 0, 0, 1, 0])
    0.6666666666666666
    """
    metric = get_metric("specificity", positive=float(positive))
    return _value(metric, _frame(y_true=y_true, y_pred=y_pred))


def f1(y_true: Any, y_pred: Any, *, positive: float = 1) -> float:
    """F1 score of the positive class, 2TP / (2TP + FP + FN).

    Examples
    --------
    >>> f1([1, 1, 0, 0], [1, 0, 0, 1])
    0.5
    """
    metric = get_metric("f1", positive=float(positive))
    return _value(metric, _frame(y_true=y_true, y_pred=y_pred))


def mcc(y_true: Any, y_pred: Any) -> float:
    """Matthews correlation coefficient (Gorodkin's K-class form).

    Constant predictions give 0 (scikit-learn's convention); a single true class gives NaN.

    Notes
    -----
    With confusion matrix C, true totals t_k, predicted totals p_k, c = tr C, s = Σ C:
    MCC = (c s − Σ p_k t_k) / √((s² − Σ p_k²)(s² − Σ t_k²)), which is the usual
    (TP·TN − FP·FN)/√(...) for two classes (Gorodkin 2004).

    References
    ----------
    Gorodkin, J. (2004). Comparing two K-category assignments by a K-category correlation
    coefficient. Computational Biology and Chemistry 28(5–6), 367–374.

    Examples
    --------
    >>> round(mcc([1, 1, 0, 0], [1, 1, 0, 1]), 6)
    0.57735
    """
    return _value(get_metric("mcc"), _frame(y_true=y_true, y_pred=y_pred))


def brier(y_true: Any, score: Any = None, *, probs: Any = None) -> float:
    """Brier score: mean squared error of the positive-class probability, Σ (pᵢ − yᵢ)² / n.

    With ``probs`` (multi-class) it is Brier's original Σ_k (p_ik − 1(yᵢ = k))² averaged over i,
    twice the binary form for two classes (Brier 1950).

    Examples
    --------
    >>> round(brier([1, 0], [0.8, 0.4]), 12)
    0.1
    """
    return _value(get_metric("brier"), _frame(y_true=y_true, score=score, probs=probs))


def log_loss(y_true: Any, score: Any = None, *, probs: Any = None, eps: float = 1e-15) -> float:
    """Mean negative log-likelihood of the true class, −Σ log p(yᵢ) / n (probabilities clipped to
    [eps, 1 − eps]).

    Examples
    --------
    >>> round(log_loss([1, 0], [0.5, 0.5]), 6)
    0.693147
    """
    metric = get_metric("log_loss", eps=eps)
    return _value(metric, _frame(y_true=y_true, score=score, probs=probs))


def ece(
    y_true: Any,
    score: Any = None,
    *,
    probs: Any = None,
    n_bins: int = 10,
    convention: Convention = "top_label",
) -> float:
    """Expected calibration error over ``n_bins`` equal-width, right-closed bins (lo, hi].

    Parameters
    ----------
    y_true : array-like
        Class indices (1 = positive for binary).
    score : array-like, optional
        Positive-class probability (binary). Either ``score`` or ``probs``.
    probs : array-like (n, K), optional
        Class probabilities (multi-class; top-label convention only when K > 2).
    n_bins : int
        Number of equal-width bins on [0, 1]; a confidence of exactly 0 joins the first bin.
    convention : {"top_label", "positive_class"}
        ``"top_label"`` (Guo et al. 2017): confidence = max class probability, outcome = the
        prediction was correct. ``"positive_class"``: confidence = P(positive), outcome = y = 1
        (the reliability diagram of the positive class). They differ on the same data.

    Returns
    -------
    float

    Notes
    -----
    ECE = Σ_b (n_b / n) |acc_b − conf_b| (Naeini et al. 2015; Guo et al. 2017), acc_b the mean
    outcome and conf_b the mean confidence in bin b. :func:`calibration_bins` gives the bins.

    References
    ----------
    Guo, C., Pleiss, G., Sun, Y. & Weinberger, K. Q. (2017). On calibration of modern neural
    networks. ICML, PMLR 70, 1321–1330.
    Naeini, M. P., Cooper, G. F. & Hauskrecht, M. (2015). Obtaining well calibrated probabilities
    using Bayesian binning. AAAI 29(1).

    Examples
    --------
    >>> round(ece([1, 0, 1, 1], [0.9, 0.2, 0.65, 0.3], n_bins=10), 6)
    0.1625
    """
    metric = get_metric("ece", n_bins=n_bins, convention=convention)
    return _value(metric, _frame(y_true=y_true, score=score, probs=probs))


def calibration_bins(
    y_true: Any,
    score: Any = None,
    *,
    probs: Any = None,
    n_bins: int = 10,
    convention: Convention = "top_label",
) -> pl.DataFrame:
    """The reliability table behind :func:`ece`: one row per non-empty bin.

    Returns
    -------
    polars.DataFrame
        ``bin_low``, ``bin_high`` (bin (lo, hi]), ``n``, ``mean_conf``, ``frac`` (mean outcome:
        accuracy for top-label, fraction positive for positive-class), ``gap`` (frac − mean_conf),
        ``convention``, ``n_bins``. The ECE is Σ n |gap| / Σ n and the MCE is max |gap|.

    Examples
    --------
    >>> calibration_bins([1, 0], [0.9, 0.2], convention="positive_class")["n"].to_list()
    [1, 1]
    """
    _ece_metric(n_bins, convention)  # validates the settings
    conf, outcome = _confidence(_frame(y_true=y_true, score=score, probs=probs), convention)
    idx = _bin_index(conf, n_bins)
    edges = _calibration_edges(n_bins)
    n = np.bincount(idx, minlength=n_bins)
    keep = np.flatnonzero(n)
    mean_conf = np.bincount(idx, weights=conf, minlength=n_bins)[keep] / n[keep]
    frac = np.bincount(idx, weights=outcome, minlength=n_bins)[keep] / n[keep]
    return pl.DataFrame(
        {
            "bin_low": edges[keep],
            "bin_high": edges[keep + 1],
            "n": n[keep].astype(np.int64),
            "mean_conf": mean_conf,
            "frac": frac,
            "gap": frac - mean_conf,
            "convention": [convention] * len(keep),
            "n_bins": [n_bins] * len(keep),
        }
    )


def mae(y_true: Any, y_pred: Any) -> float:
    """Mean absolute error, Σ |ŷᵢ − yᵢ| / n.

    Examples
    --------
    >>> mae([1.0, 2.0], [2.0, 4.0])
    1.5
    """
    return _value(get_metric("mae"), _frame(y_true=y_true, y_pred=y_pred))


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error, √(Σ (ŷᵢ − yᵢ)² / n).

    Examples
    --------
    >>> rmse([0.0, 0.0, 0.0], [2.0, -2.0, 2.0])
    2.0
    """
    return _value(get_metric("rmse"), _frame(y_true=y_true, y_pred=y_pred))


def r2(y_true: Any, y_pred: Any) -> float:
    """Coefficient of determination, 1 − Σ (ŷᵢ − yᵢ)² / Σ (yᵢ − ȳ)².

    Examples
    --------
    >>> r2([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    0.5
    """
    return _value(get_metric("r2"), _frame(y_true=y_true, y_pred=y_pred))


def dice(mask_true: Any, mask_pred: Any) -> float:
    """Dice coefficient of two binary masks of any shape, 2|A ∩ B| / (|A| + |B|) (Dice 1945).

    Both masks empty gives 1.0 (perfect agreement on "no lesion"). On a predictions table the
    metric ``"dice"`` is the mean of its per-sample ``dice`` column.

    Examples
    --------
    >>> dice([[1, 1], [0, 0]], [[1, 0], [0, 0]])
    0.6666666666666666
    """
    a, b = np.asarray(mask_true) != 0, np.asarray(mask_pred) != 0
    if a.shape != b.shape:
        raise AnalysisError(f"dice: masks have different shapes {a.shape} and {b.shape}")
    total = int(a.sum() + b.sum())
    return 1.0 if total == 0 else 2.0 * float(np.logical_and(a, b).sum()) / total


def metric_by(
    frame: Any, metric: str | Metric, by: str | Sequence[str] | None = None, **params: Any
) -> pl.DataFrame:
    """A metric per group of a predictions table (no interval; see :func:`bootstrap` for one).

    Parameters
    ----------
    frame : polars/pandas DataFrame
        Predictions (docs/results.md columns).
    metric : str or Metric
        A name of :data:`METRICS` (settings via ``params``) or a :class:`Metric`.
    by : column name(s), optional
        Grouping columns, e.g. ``["model", "outer_fold"]``.

    Returns
    -------
    polars.DataFrame
        The ``by`` columns, ``metric`` (name with settings), ``estimate``, ``n_obs``; sorted by
        ``by``.

    Examples
    --------
    >>> df = pl.DataFrame({"model": ["a", "a", "b", "b"], "y_true": [0, 1, 0, 1],
    ...                    "y_pred": [0, 1, 1, 1]})
    >>> metric_by(df, "accuracy", by="model")["estimate"].to_list()
    [1.0, 0.5]
    """
    m = get_metric(metric, **params)
    data = to_polars(frame, name="frame")
    keys = as_names(by, name="by")
    require_columns(data, keys, name="frame", why="for by=")
    rows: list[dict[str, Any]] = []
    groups = data.group_by(keys, maintain_order=True) if keys else [((), data)]
    for key, part in groups:
        row = dict(zip(keys, key, strict=True))
        row.update(metric=m.label(), estimate=_value(m, part), n_obs=part.height)
        rows.append(row)
    schema = {k: data.schema[k] for k in keys}
    schema.update(metric=pl.String, estimate=pl.Float64, n_obs=pl.Int64)
    out = pl.DataFrame(rows, schema=schema, orient="row")
    return out.sort(keys) if keys else out
