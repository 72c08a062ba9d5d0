"""Selective prediction: which uncertainty score best tells which cases to refer?

A classifier that may abstain keeps the cases it is most confident about and refers the rest.
Ranking the test cases by an uncertainty score and keeping the most certain share c (the
*coverage*) gives a selective risk (error rate among the kept cases) for every c: the
risk–coverage curve. A good uncertainty score makes the curve low; its area (AURC) summarises it,
and the accuracy at 90% and 80% coverage says what referring 10% or 20% of cases buys.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, require_columns, to_polars
from raybench_analysis._uncertainty import (
    TRIAL_COLUMNS,
    class_labels,
    default_average_over,
    group_keys,
    is_classification,
    probability_matrix,
    quantity_rows,
    select_split,
)
from raybench_analysis.bootstrap import Interval, Scheme
from raybench_analysis.repeatability import _cell_keys, repeatability_samples

__all__ = ["risk_coverage", "selective", "selective_risk"]

#: uncertainty columns used when present (higher = more uncertain), recorded by trials
RECORDED_SCORES: tuple[str, ...] = ("mutual_information", "input_noise_sd")


def selective_risk(uncertainty: Any, loss: Any) -> np.ndarray:
    """Selective risk when keeping the k most certain cases, for k = 1..n (ties averaged).

    Parameters
    ----------
    uncertainty : array-like
        Higher means less certain.
    loss : array-like
        Per-case loss (1 = error for 0/1 loss).

    Returns
    -------
    numpy.ndarray
        ``risk[k − 1]`` = expected mean loss of the k most certain cases, the order within tied
        uncertainties being random (so the curve does not depend on row order).

    Notes
    -----
    Within a tie group starting at rank a with mean loss ℓ̄_g, the expected cumulative loss at
    k is L_a + (k − a)·ℓ̄_g; risk(k) = that / k (Geifman & El-Yaniv 2017).

    References
    ----------
    Geifman, Y. & El-Yaniv, R. (2017). Selective classification for deep neural networks.
        Advances in Neural Information Processing Systems 30.

    Examples
    --------
    >>> selective_risk([0.1, 0.5, 0.5, 0.9], [0, 1, 0, 1]).tolist()
    [0.0, 0.25, 0.3333333333333333, 0.5]
    """
    u = np.asarray(uncertainty, dtype=float)
    loss_arr = np.asarray(loss, dtype=float)
    order = np.argsort(u, kind="mergesort")
    u, loss_arr = u[order], loss_arr[order]
    n = len(u)
    starts = np.flatnonzero(np.r_[True, u[1:] != u[:-1]])
    sizes = np.diff(np.r_[starts, n])
    group_loss = np.add.reduceat(loss_arr, starts)
    before = np.cumsum(group_loss) - group_loss
    g = np.repeat(np.arange(len(starts)), sizes)
    k = np.arange(1, n + 1)
    cum = before[g] + (k - starts[g]) * (group_loss / sizes)[g]
    return cum / k


def _kept(coverage: float, n: int) -> int:
    return max(1, math.ceil(coverage * n - 1e-9))


def _aurc(frame: pl.DataFrame, column: str) -> float:
    if frame.height == 0:
        return math.nan
    return float(selective_risk(frame[column].to_numpy(), frame["_loss"].to_numpy()).mean())


def _accuracy_at(coverage: float, column: str) -> Callable[[pl.DataFrame], float]:
    def accuracy(frame: pl.DataFrame) -> float:
        if frame.height == 0:
            return math.nan
        risk = selective_risk(frame[column].to_numpy(), frame["_loss"].to_numpy())
        return 1.0 - float(risk[_kept(coverage, frame.height) - 1])

    accuracy.__name__ = f"accuracy_at_{coverage:g}"
    return accuracy


def _with_scores(
    frame: pl.DataFrame, uncertainty: Mapping[str, str] | None
) -> tuple[pl.DataFrame, dict[str, str]]:
    """Add ``_loss`` and one ``_u_<name>`` column per uncertainty score; name -> column."""
    if not is_classification(frame):
        raise AnalysisError(
            "selective: needs class probabilities (score or probs); selective regression is "
            "not implemented"
        )
    probs = probability_matrix(frame)
    y = class_labels(frame, probs.shape[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)
    out = frame.with_columns(
        _loss=pl.Series((probs.argmax(axis=1) != y).astype(np.float64)),
        _u_max_prob=pl.Series(1.0 - probs.max(axis=1)),
        _u_entropy=pl.Series(entropy),
    )
    names = {"max_prob": "_u_max_prob", "entropy": "_u_entropy"}
    for col in RECORDED_SCORES:  # e.g. only the mc_dropout variant's rows have them
        if col in frame.columns and frame.get_column(col).null_count() < frame.height:
            names[col] = col
    if "seed" in frame.columns:
        spread = repeatability_samples(frame, split=None)
        if spread.get_column("n_seeds").min() >= 2:  # type: ignore[operator]
            keys = _cell_keys(frame)
            out = out.join(spread.select(*keys, _u_seed_spread="sd"), on=keys, how="left")
            names["seed_spread"] = "_u_seed_spread"
    for name, col in (uncertainty or {}).items():
        require_columns(frame, [col], name="predictions", why=f"for uncertainty {name!r}")
        names[name] = col
    return out, names


def selective(
    predictions: Any,
    *,
    coverages: Sequence[float] = (0.9, 0.8),
    uncertainty: Mapping[str, str] | None = None,
    by: str | Sequence[str] | None = None,
    levels: Sequence[str] = ("subject_id",),
    split: str | None = "test",
    average_over: str | Sequence[str] | None = "trial",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    scheme: Scheme = "cluster",
    interval: Interval = "t",
    strata: str | Sequence[str] | None = None,
) -> pl.DataFrame:
    """AURC and accuracy at given coverages for each uncertainty score, with intervals.

    Parameters
    ----------
    predictions : polars/pandas DataFrame
        Classification predictions (``y_true``, ``score`` or ``probs``) with hierarchy columns.
    coverages : sequence of float
        Shares of cases kept (default 90% and 80%: refer 10% or 20%).
    uncertainty : mapping name -> column, optional
        Extra uncertainty scores (higher = less certain). Always used: ``max_prob`` (1 − max
        class probability) and ``entropy`` (−Σ p log p); ``mutual_information`` and
        ``input_noise_sd`` when those columns exist (for the groups, e.g. variants, whose rows
        have them); ``seed_spread`` (the sample's s.d. over
        seeds, :func:`raybench_analysis.repeatability_samples`) when every sample has ≥ 2 seeds.
    by : column name(s), optional
        Extra grouping (e.g. ``"site"``).
    levels, average_over, n_boot, seed, alpha, scheme, interval, strata
        As in :func:`raybench_analysis.bootstrap` (``average_over="trial"``: per trained model,
        seeds then folds averaged). The statistics are rank-based callables, evaluated once per
        replicate and cell: hence the smaller default ``n_boot``.
    split : str or None
        Rows of this ``split`` (default ``"test"``).

    Returns
    -------
    polars.DataFrame
        Per group, ``uncertainty`` score and quantity (``aurc``, ``accuracy_at``): the group
        columns, ``quantity``, ``uncertainty``, ``coverage`` (null for AURC), ``estimate``,
        ``se``, ``ci_low``, ``ci_high``, ``df``, ``n_obs``, ``n_boot``, ``method``, ``unit``,
        ``n_<level>``.

    Notes
    -----
    With risk(k) the error rate of the k most certain of n cases (:func:`selective_risk`),
    AURC = (1/n) Σ_k risk(k) (Geifman & El-Yaniv 2017; Geifman et al. 2019): lower is better;
    a score that ranks all errors last reaches the minimum for the model's error rate.
    accuracy_at(c) = 1 − risk(⌈c·n⌉). The error is 1[argmax p ≠ y].

    References
    ----------
    Geifman, Y. & El-Yaniv, R. (2017). Selective classification for deep neural networks.
        Advances in Neural Information Processing Systems 30.
    Geifman, Y., Uziel, G. & El-Yaniv, R. (2019). Bias-reduced uncertainty estimation for deep
        neural classifiers. International Conference on Learning Representations.
    Gal, Y. & Ghahramani, Z. (2016). Dropout as a Bayesian approximation: representing model
        uncertainty in deep learning. Proceedings of the 33rd International Conference on Machine
        Learning, PMLR 48, 1050–1059 (mutual information).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> p = rng.uniform(0, 1, 300)
    >>> df = pl.DataFrame({"model": "m", "subject_id": np.arange(300).astype(str),
    ...                    "y_true": (rng.random(300) < p).astype(float), "score": p})
    >>> out = selective(df, n_boot=50)
    >>> out.select("uncertainty", "quantity", "coverage").rows()[:3]
    [('max_prob', 'aurc', None), ('max_prob', 'accuracy_at', 0.9), ('max_prob', 'accuracy_at', 0.8)]
    """
    for c in coverages:
        if not 0 < c <= 1:
            raise AnalysisError(f"coverages: {c!r}; allowed: 0 < coverage <= 1")
    frame = select_split(to_polars(predictions, name="predictions"), split)
    frame, names = _with_scores(frame, uncertainty)
    keys = group_keys(frame, by)
    avg = default_average_over(frame, average_over)
    boot = dict(levels=levels, n_boot=n_boot, seed=seed, alpha=alpha, scheme=scheme,
                interval=interval, strata=strata, average_over=avg)  # fmt: skip
    parts = []
    for name, col in names.items():
        rows = frame.filter(pl.col(col).is_not_null())  # the groups that have this score

        def aurc(f: pl.DataFrame, col: str = col) -> float:
            return _aurc(f, col)

        extra = {"uncertainty": name, "coverage": None}
        parts.append(quantity_rows(rows, "aurc", keys, boot, metric=aurc, extra=extra,
                                   value_range=(0.0, 1.0)))  # fmt: skip
        for c in coverages:
            extra = {"uncertainty": name, "coverage": float(c)}
            acc = _accuracy_at(c, col)
            parts.append(quantity_rows(rows, "accuracy_at", keys, boot, metric=acc,
                                       extra=extra, value_range=(0.0, 1.0)))  # fmt: skip
    out = pl.concat(parts, how="diagonal_relaxed")
    return out.sort(keys, maintain_order=True) if keys else out


def risk_coverage(
    predictions: Any,
    *,
    uncertainty: Mapping[str, str] | None = None,
    by: str | Sequence[str] | None = None,
    split: str | None = "test",
    grid: int = 100,
) -> pl.DataFrame:
    """Risk–coverage curves per group and uncertainty score, per trained model then averaged.

    Parameters
    ----------
    predictions, uncertainty, by, split
        As in :func:`selective`.
    grid : int
        Coverages 1/grid, 2/grid, ..., 1.

    Returns
    -------
    polars.DataFrame
        The group columns, ``uncertainty``, ``coverage``, ``risk`` (selective error rate at
        that coverage, averaged over seeds within folds, then over folds).

    Notes
    -----
    risk(c) = risk(⌈c·n⌉) of :func:`selective_risk` in each trial (fold × seed), then
    averaged over seeds within folds and over folds.

    References
    ----------
    Geifman, Y. & El-Yaniv, R. (2017). Selective classification for deep neural networks.
        Advances in Neural Information Processing Systems 30.

    Examples
    --------
    >>> df = pl.DataFrame({"y_true": [1.0, 0.0, 1.0, 0.0], "score": [0.9, 0.2, 0.6, 0.6]})
    >>> risk_coverage(df, grid=4).filter(uncertainty="max_prob")["risk"].to_list()
    [0.0, 0.0, 0.16666666666666666, 0.25]
    """
    if not isinstance(grid, int) or grid < 1:
        raise AnalysisError(f"grid={grid!r}; allowed: an integer >= 1")
    frame = select_split(to_polars(predictions, name="predictions"), split)
    frame, names = _with_scores(frame, uncertainty)
    keys = group_keys(frame, by)
    trial = [c for c in TRIAL_COLUMNS if c in frame.columns]
    cov = np.arange(1, grid + 1) / grid
    rows: list[pl.DataFrame] = []
    cells = [*keys, *trial]
    groups = frame.sort(cells).group_by(cells, maintain_order=True) if cells else [((), frame)]
    for key, part in groups:
        base = dict(zip(cells, key, strict=True))
        loss = part["_loss"].to_numpy()
        for name, col in names.items():
            if part.get_column(col).null_count():  # this score is not recorded for the group
                continue
            risk = selective_risk(part[col].to_numpy(), loss)
            k = np.maximum(1, np.ceil(cov * part.height - 1e-9).astype(np.int64))
            rows.append(pl.DataFrame({**{c: [v] * grid for c, v in base.items()},
                                      "uncertainty": name, "coverage": cov,
                                      "risk": risk[k - 1]}))  # fmt: skip
    out = pl.concat(rows)
    for col in trial[::-1]:  # seeds within folds first, then folds
        rest = [c for c in [*keys, *trial] if c in out.columns and c != col]
        out = out.group_by([*rest, "uncertainty", "coverage"], maintain_order=True).agg(
            pl.col("risk").mean()
        )
    return out.select(*keys, "uncertainty", "coverage", "risk")
