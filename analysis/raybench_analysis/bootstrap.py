"""Cluster (hierarchical) bootstrap of a mean or a metric with a few-cluster t interval, vectorised.

Medical test sets are nested: images in sessions in subjects in scanners in sites. Resampling
images as if independent understates the uncertainty (Field & Welsh 2007); resampling the top
unit of the hierarchy and keeping everything below it together does not, and a t interval with
G − 1 degrees of freedom and the G/(G − 1) variance correction keeps the coverage near nominal
with few top-level units (Cameron, Gelbach & Miller 2008). The draws are made for all
replicates at once as count matrices (how many times each lowest-level unit is in each
replicate), so a replicate's sums are a matrix product and mean-type metrics need no Python
loop over replicates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl
from scipy import sparse
from scipy import stats as sps

from raybench_analysis._frames import AnalysisError, as_names, require_columns, to_polars
from raybench_analysis.metrics import (
    Metric,
    _mean_finalize,
    get_metric,
    weighted_auc,
    weighted_auc_cells,
)

__all__ = [
    "DEGENERATE_SPREAD",
    "MIN_DEFINED_FRACTION",
    "bootstrap",
    "bootstrap_replicates",
    "check_defined",
    "interval_from_replicates",
    "unpaired_difference",
]

Scheme = Literal["cluster", "two_stage"]
Interval = Literal["t", "t_bc", "percentile"]
SCHEMES: tuple[str, ...] = ("cluster", "two_stage")
INTERVALS: tuple[str, ...] = ("t", "t_bc", "percentile")

#: least share of replicates that must be defined (finite) for an interval and p-value to be
#: reported. Dropping undefined replicates conditions the bootstrap on draws that keep the
#: statistic defined (e.g. both classes for AUC); when many are dropped that conditional
#: distribution no longer describes the estimate's sampling variation (with two one-class sites
#: only draws of both sites once survive, and the interval collapses to a point).
MIN_DEFINED_FRACTION = 0.9

#: relative spread of the replicates under which their distribution counts as degenerate (a point):
#: with few top-level units whose values coincide (three sites, each with the same difference)
#: every draw gives the same value, and a t interval of width 0 would claim certainty.
DEGENERATE_SPREAD = 1e-12

#: cells (replicates × units or replicates × observations) processed per chunk; bounds memory.
MAX_CELLS = 8_000_000


@dataclass(frozen=True)
class Hierarchy:
    """Units of each level and how they nest; observations belong to lowest-level units.

    ``unit[i]`` is the lowest-level unit of observation ``i``; ``parents[l]`` gives, for every
    unit of level ``l`` (``l >= 1``), its unit at level ``l - 1``; ``sizes[l]`` counts the units.
    Units are numbered so that the children of one parent are contiguous. ``strata`` (optional)
    gives the stratum of every top-level unit: top-level units are then drawn within strata.
    """

    levels: tuple[str, ...]
    unit: np.ndarray
    parents: tuple[np.ndarray, ...]
    sizes: tuple[int, ...]
    strata: np.ndarray | None = None
    strata_names: tuple[str, ...] = ()

    @property
    def n_units(self) -> int:
        """Number of lowest-level units (the columns of a count matrix)."""
        return self.sizes[-1]

    @property
    def n_top(self) -> int:
        """Number of top-level units G (the resampled clusters)."""
        return self.sizes[0]

    @property
    def n_strata(self) -> int:
        """Number of strata H (1 without ``strata``)."""
        return 1 if self.strata is None else int(self.strata.max()) + 1

    def top_of_unit(self) -> np.ndarray:
        """Top-level unit of every lowest-level unit."""
        anc = np.arange(self.n_units)
        for parent in reversed(self.parents):
            anc = parent[anc]
        return anc

    def resampling(self, scheme: str = "cluster") -> str:
        """How units are drawn, e.g. ``"cluster bootstrap"`` (the first part of ``method``)."""
        if not self.levels:
            kind = "iid bootstrap"
        elif scheme == "two_stage" and len(self.levels) > 1:
            kind = "two-stage bootstrap"
        else:
            kind = "cluster bootstrap"
        if self.strata is not None:
            kind = f"stratified {kind} (strata: {'+'.join(self.strata_names)})"
        return kind

    def scheme(self, scheme: str = "cluster", interval: str = "t") -> tuple[str, str]:
        """(method, unit) labels that every output table carries."""
        kind = self.resampling(scheme)
        unit = ">".join(self.levels) if self.levels else "observation"
        what = {
            "percentile": "percentile interval",
            "t_bc": "bias-corrected few-cluster t interval",
        }.get(interval, "few-cluster t interval")
        if interval != "percentile" and not self.levels:
            what = what.replace("few-cluster ", "")
        return f"{kind}, {what}", unit


def build_hierarchy(
    frame: pl.DataFrame, levels: Sequence[str], strata: Sequence[str] = ()
) -> Hierarchy:
    """Number the units of ``levels`` (top first) in ``frame``.

    A unit of level ``l`` is a distinct tuple of the first ``l + 1`` level columns, so a subject id
    reused in two sites makes two units (a warning says so). ``levels=[]`` makes every row a unit.
    ``strata`` columns must be constant within each top-level unit.
    """
    levels = tuple(levels)
    strata = tuple(strata)
    for col in (*levels, *strata):
        require_columns(frame, [col], why="as bootstrap levels or strata")
        nulls = frame.get_column(col).null_count()
        if nulls:
            raise AnalysisError(
                f"levels/strata column {col!r} has {nulls} null value(s); every observation "
                "needs a unit at every level. Fill or drop them first."
            )
    if not levels:
        n = frame.height
        h = Hierarchy((), np.arange(n), (), (n,))
        top = np.arange(n)
    else:
        ranks = frame.select(pl.col(c).rank("dense").cast(pl.Int64) - 1 for c in levels)
        code = np.zeros(frame.height, dtype=np.int64)
        parents: list[np.ndarray] = []
        sizes: list[int] = []
        top = code
        for depth, col in enumerate(levels):
            r = ranks.get_column(col).to_numpy()
            values, new_code = np.unique(code * (int(r.max()) + 1) + r, return_inverse=True)
            if depth:
                parent = np.empty(len(values), dtype=np.int64)
                parent[new_code] = code
                parents.append(parent)
                if len(values) > int(r.max()) + 1:
                    warnings.warn(
                        f"some {col!r} values appear under more than one {levels[depth - 1]!r}; "
                        "each (parent, value) pair is treated as its own unit",
                        stacklevel=3,
                    )
            code = new_code.astype(np.int64)
            sizes.append(len(values))
            if depth == 0:
                top = code
        h = Hierarchy(levels, code, tuple(parents), tuple(sizes))
    if not strata:
        return h
    s_code = (
        frame.select(pl.struct(list(strata)).rank("dense").cast(pl.Int64) - 1)
        .to_series()
        .to_numpy()
    )
    per_top = np.full(h.n_top, -1, dtype=np.int64)
    per_top[top] = s_code
    if np.any(per_top[top] != s_code):
        bad = int(np.flatnonzero(per_top[top] != s_code)[0])
        raise AnalysisError(
            f"strata={list(strata)}: row {bad} ({frame.row(bad, named=True)}) puts top-level "
            f"unit {levels[0] if levels else 'observation'!r} in more than one stratum; a "
            "stratum must hold whole top-level units (e.g. levels=['subject_id'], "
            "strata=['site'] when every subject belongs to one site)"
        )
    _, per_top = np.unique(per_top, return_inverse=True)
    return Hierarchy(h.levels, h.unit, h.parents, h.sizes, per_top.astype(np.int64), strata)


def _draw_top(h: Hierarchy, b: int, rng: np.random.Generator) -> np.ndarray:
    """``(b, G)`` counts of the top-level units: G draws with replacement (within strata)."""
    n0 = h.n_top
    if h.strata is None:
        top = rng.integers(0, n0, size=(b, n0))
    else:
        order = np.argsort(h.strata, kind="stable")
        size = np.bincount(h.strata)
        start = np.cumsum(size) - size
        slot = h.strata[order]  # stratum of every draw slot; stratum h has n_h slots
        pick = np.minimum((rng.random((b, n0)) * size[slot]).astype(np.int64), size[slot] - 1)
        top = order[start[slot] + pick]
    top = top + (np.arange(b) * n0)[:, None]
    return np.bincount(top.ravel(), minlength=b * n0).reshape(b, n0)


def draw_counts(
    hierarchy: Hierarchy,
    n_boot: int,
    rng: np.random.Generator,
    max_cells: int = MAX_CELLS,
    scheme: str = "cluster",
) -> Iterator[np.ndarray]:
    """Yield ``(b, n_units)`` float matrices: how often each lowest-level unit is drawn.

    Level 0: draw as many units as there are, with replacement (within each stratum when the
    hierarchy has strata). ``scheme="cluster"``: every lower-level unit comes along as often as
    its top-level unit (lower levels kept whole). ``scheme="two_stage"``: level ``l``: each drawn
    copy of a parent with ``m`` children draws ``m`` children with replacement; the sum over ``c``
    copies is ``c·m`` uniform draws among the children, done at once with ``np.repeat``.
    """
    if scheme not in SCHEMES:
        raise AnalysisError(f"scheme={scheme!r}; allowed: {list(SCHEMES)}")
    chunk = max(1, min(n_boot, max_cells // max(1, hierarchy.n_units)))
    top_of = hierarchy.top_of_unit() if scheme == "cluster" else None
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        counts = _draw_top(hierarchy, b, rng)
        if top_of is not None:
            counts = counts[:, top_of]
        else:
            for depth, parent in enumerate(hierarchy.parents, start=1):
                n_par, n_child = hierarchy.sizes[depth - 1], hierarchy.sizes[depth]
                m = np.bincount(parent, minlength=n_par)
                start = np.cumsum(m) - m
                flat = np.repeat(np.arange(b * n_par), (counts * m[None, :]).ravel())
                par = flat % n_par
                pick = (rng.random(len(flat)) * m[par]).astype(np.int64)
                child = start[par] + np.minimum(pick, m[par] - 1)  # guard against rounding to m
                cell = (flat // n_par) * n_child + child
                counts = np.bincount(cell, minlength=b * n_child).reshape(b, n_child)
        done += b
        yield counts.astype(np.float64)


def check_defined(n_defined: int, n_total: int, where: str, what: str) -> bool:
    """Warn when bootstrap replicates were undefined; say whether enough are left to report.

    The one rule of :func:`bootstrap` and :func:`raybench_analysis.compare` (and
    :func:`interval_from_replicates` with ``n_total``): an interval and p-value need at least
    ``MIN_DEFINED_FRACTION`` (90%) of the replicates defined.

    Parameters
    ----------
    n_defined, n_total : int
        Finite replicates and replicates drawn.
    where, what : str
        The group (for the message) and the statistic's name.

    Returns
    -------
    bool
        True when ``n_defined >= ceil(MIN_DEFINED_FRACTION · n_total)`` (and at least 2).

    Examples
    --------
    >>> check_defined(200, 200, "data", "auc")
    True
    """
    need = max(2, math.ceil(MIN_DEFINED_FRACTION * n_total))
    enough = n_defined >= need
    if n_defined < n_total:
        tail = (
            ""
            if enough
            else (
                f"; fewer than the {need} ({MIN_DEFINED_FRACTION:.0%}) needed, so no interval "
                "or p-value is reported (NaN): the defined replicates are a conditional, biased "
                "resample. Resample more units per draw (a lower level) or pool the groups."
            )
        )
        warnings.warn(
            f"{where}: {n_total - n_defined} of {n_total} replicates left {what} undefined "
            f"(e.g. one class only) and were dropped{tail}",
            stacklevel=3,
        )
    return enough


def interval_from_replicates(
    estimate: float,
    replicates: np.ndarray,
    n_clusters: int,
    alpha: float = 0.05,
    interval: str = "t",
    n_strata: int = 1,
    n_total: int | None = None,
) -> dict[str, float]:
    """Standard error, interval and two-sided p-value (of "true value = 0") from replicates.

    Parameters
    ----------
    estimate : float
        The statistic on the observed data.
    replicates : numpy.ndarray
        Its bootstrap replicates (non-finite ones are dropped).
    n_clusters : int
        G, the number of resampled top-level units.
    alpha : float
        1 − coverage.
    interval : {"t", "t_bc", "percentile"}
        Few-cluster t interval, the same centred on the bias-corrected estimate, or percentile
        interval.
    n_strata : int
        H, the number of strata the top-level units were resampled within.
    n_total : int, optional
        Replicates drawn, undefined ones included; when given, fewer than
        ``MIN_DEFINED_FRACTION`` of them finite leave every output NaN (see
        :func:`check_defined`, which also warns).

    Returns
    -------
    dict
        ``se``, ``ci_low``, ``ci_high``, ``p_value``, ``df`` (NaN for the percentile interval),
        ``n_boot`` (finite replicates).

    Notes
    -----
    The bootstrap variance of a mean of G clusters is ((G − 1)/G) times the usual unbiased
    variance estimate (Davison & Hinkley 1997, §3.8), which matters when G is small. The t
    interval therefore uses se = sd* · sqrt(G/(G − H)) and estimate ± t_{G−H, 1−α/2} · se, with
    p = 2 P(T_{G−H} ≥ |estimate|/se): the small-G correction of cluster-robust inference
    (Cameron, Gelbach & Miller 2008; Cameron & Miller 2015, §VI). ``"t_bc"`` centres the same
    interval (and test) on the bias-corrected estimate 2·estimate − mean(θ*) (Efron & Tibshirani
    1993, §10.6), for statistics such as a pooled AUC whose bias is not negligible with few
    clusters. The percentile interval is
    [q*_{α/2}, q*_{1−α/2}] with se = sd* and p = min(1, 2 min(#(θ* ≤ 0)+1, #(θ* ≥ 0)+1)/(B+1)).
    A non-zero estimate whose replicates are all equal (relative spread below
    ``DEGENERATE_SPREAD``) gets NaN and a warning: the resampled units coincide, the bootstrap
    distribution is a point, and a zero-width interval would claim certainty it has not measured.

    References
    ----------
    Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2008). Bootstrap-based improvements for
        inference with clustered errors. Review of Economics and Statistics 90(3), 414–427.
    Cameron, A. C. & Miller, D. L. (2015). A practitioner's guide to cluster-robust inference.
        Journal of Human Resources 50(2), 317–372.
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
        University Press.
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.

    Examples
    --------
    >>> r = interval_from_replicates(0.5, np.array([0.4, 0.5, 0.6, 0.5]), n_clusters=5)
    >>> round(r["df"]), round(r["se"], 4)
    (4, 0.0913)
    """
    if interval not in INTERVALS:
        raise AnalysisError(f"interval={interval!r}; allowed: {list(INTERVALS)}")
    ok = np.asarray(replicates, dtype=float)
    ok = ok[np.isfinite(ok)]
    nan = math.nan
    out = {"se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan, "df": nan, "n_boot": len(ok)}
    if len(ok) < 2 or not math.isfinite(estimate):
        return out
    if n_total is not None and len(ok) < math.ceil(MIN_DEFINED_FRACTION * n_total):
        return out
    sd = float(np.std(ok, ddof=1))
    if estimate != 0 and sd <= DEGENERATE_SPREAD * max(1.0, abs(estimate)):
        warnings.warn(
            f"all {len(ok)} bootstrap replicates equal the estimate {estimate:.6g}: the "
            f"{n_clusters} resampled top-level units give the same value, so the bootstrap "
            "cannot measure its uncertainty and no interval or p-value is reported (NaN). "
            "Resample a level with more units (e.g. levels=['subject_id'], strata='site').",
            stacklevel=2,
        )
        return out
    if interval == "percentile":
        lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
        tail = min(np.sum(ok <= 0), np.sum(ok >= 0))
        p = min(1.0, 2 * (1 + tail) / (len(ok) + 1))
        out.update(se=sd, ci_low=float(lo), ci_high=float(hi), p_value=float(p))
        return out
    df = n_clusters - n_strata
    if df < 1:
        return out
    se = sd * math.sqrt(n_clusters / df)
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    centre = 2 * estimate - float(ok.mean()) if interval == "t_bc" else estimate
    p = float(2 * sps.t.sf(abs(centre) / se, df)) if se > 0 else float(centre == 0)
    out.update(se=se, ci_low=centre - half, ci_high=centre + half, p_value=p, df=float(df))
    return out


def unit_sums(stats: np.ndarray, unit: np.ndarray, n_units: int) -> np.ndarray:
    """Per-unit column sums ``(n_units, q)`` of per-observation statistics ``(n, q)``."""
    return np.column_stack(
        [np.bincount(unit, weights=stats[:, j], minlength=n_units) for j in range(stats.shape[1])]
    )


def auc_inputs(frame: pl.DataFrame, metric: Metric) -> tuple[np.ndarray, np.ndarray]:
    """(binary labels, scores) of a predictions table, checked, for AUC-type metrics."""
    from raybench_analysis.metrics import _binary_labels, _column

    require_columns(frame, metric.columns, why=f"by metric {metric.name!r}")
    return _binary_labels(frame), _column(frame, "score")


class Evaluator:
    """A metric on one table, evaluated under unit count matrices (the bootstrap's inner step)."""

    def __init__(
        self,
        metric: Metric | Callable[[pl.DataFrame], float],
        frame: pl.DataFrame | None,
        unit: np.ndarray,
        n_units: int,
        *,
        stats: np.ndarray | None = None,
        labels: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``stats`` (sums metrics) or ``labels`` = (y, score) (AUC) may be given precomputed
        for the rows of ``frame``; then ``frame`` may be ``None``."""
        self.metric, self.frame, self.unit, self.n_units = metric, frame, unit, n_units
        if isinstance(metric, Metric) and metric.kind == "sums":
            assert metric.stats is not None
            if stats is None:
                assert frame is not None
                stats = metric.stats(frame)
            # only the units this table touches matter (e.g. one test fold of many)
            self.present, local = np.unique(unit, return_inverse=True)
            self.sums = unit_sums(stats, local, len(self.present))
        elif isinstance(metric, Metric):
            if labels is None:
                assert frame is not None
                labels = auc_inputs(frame, metric)
            self.y, self.score = labels

    def estimate(self) -> float:
        """The metric on the data as observed."""
        return float(self(np.ones((1, self.n_units)))[0])

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        """Metric value under each row of ``counts`` ``(b, n_units)``; NaN where undefined."""
        m = self.metric
        if isinstance(m, Metric) and m.kind == "sums":
            assert m.finalize is not None
            if len(self.present) == counts.shape[1]:  # every unit present: no gather needed
                return m.finalize(counts @ self.sums)
            return m.finalize(counts[:, self.present] @ self.sums)
        if isinstance(m, Metric):  # AUC: observation weights, in chunks of replicates
            rows = max(1, MAX_CELLS // max(1, len(self.unit)))
            return np.concatenate(
                [
                    weighted_auc(self.y, self.score, counts[i : i + rows][:, self.unit])
                    for i in range(0, len(counts), rows)
                ]
            )
        out = np.empty(len(counts))  # user callable: the documented slow path
        for i, c in enumerate(counts):
            idx = np.repeat(np.arange(len(self.unit)), c[self.unit].astype(np.int64))
            out[i] = float(m(self.frame[idx])) if len(idx) and self.frame is not None else np.nan
        return out


def nested_means(
    cells: Mapping[tuple[Any, ...], Evaluator], counts: np.ndarray, keep: int = 0
) -> dict[tuple[Any, ...], np.ndarray]:
    """Metric of every cell under each row of ``counts``, averaged over the inner keys.

    ``cells`` maps a key such as ``(outer_fold, seed)`` to the evaluator of that cell's rows;
    every evaluator sees the same ``counts`` (the same resampled units). Values are averaged
    over the last key element within each prefix, then over the next one, ..., until the keys
    have ``keep`` elements: ``keep=1`` gives ``{(fold,): (b,) seed-averaged values}``, ``keep=0``
    ``{(): (b,) mean over folds of the seed means}``. Undefined values (NaN, e.g. AUC of a
    replicate with one class) are left out of each mean; a mean of nothing is NaN.
    """
    return nested_average(evaluate_cells(cells, counts), keep)


def evaluate_cells(
    cells: Mapping[tuple[Any, ...], Evaluator], counts: np.ndarray
) -> dict[tuple[Any, ...], np.ndarray]:
    """Each cell's metric under each row of ``counts`` ``(b, n_units)``: ``{key: ev(counts)}``.

    Cells of one built-in metric are computed together, in chunks of replicates: AUC by
    :func:`~raybench_analysis.metrics.weighted_auc_cells`, a sums metric as one sparse product of
    the units' counts with every cell's per-unit sums, finalised once. The values are those of
    calling each evaluator; with thousands of cells (fold x seed) the per-cell calls were most of
    the time (issue 11). Callables: one by one.
    """
    evs = list(cells.values())
    metrics = {id(ev.metric) for ev in evs}
    if (
        len(metrics) != 1
        or not isinstance(evs[0].metric, Metric)
        or not all(len(ev.unit) for ev in evs)
    ):
        return {k: ev(counts) for k, ev in cells.items()}
    metric = evs[0].metric
    if metric.kind == "sums":
        assert metric.finalize is not None
        q = evs[0].sums.shape[1]
        # (n_units, cells x q): column c*q + j holds cell c's per-unit sums of statistic j
        pairs = np.repeat(np.arange(len(evs)), [len(ev.present) for ev in evs])
        per_unit = sparse.csr_matrix(
            (
                np.vstack([ev.sums for ev in evs]).ravel(),
                (
                    np.repeat(np.concatenate([ev.present for ev in evs]), q),
                    (pairs[:, None] * q + np.arange(q)).ravel(),
                ),
            ),
            shape=(evs[0].n_units, len(evs) * q),
        )
        width = len(evs) * q
    else:
        y = np.concatenate([ev.y for ev in evs])
        score = np.concatenate([ev.score for ev in evs])
        unit = np.concatenate([ev.unit for ev in evs])
        cell = np.repeat(np.arange(len(evs)), [len(ev.unit) for ev in evs])
        width = 4 * len(unit)
    rows = max(1, MAX_CELLS // max(1, width))
    chunks = []
    for i in range(0, len(counts), rows):
        c = counts[i : i + rows]
        if metric.kind == "sums":  # one sparse product: every cell's sums under each replicate
            total = np.asarray((per_unit.T @ c.T).T).reshape(len(c), len(evs), q)
            chunks.append(metric.finalize(total))
        else:  # (n_units, b): the rows gathered per observation are contiguous
            by_unit = np.ascontiguousarray(c.T)
            chunks.append(weighted_auc_cells(y, score, cell, unit, by_unit, len(evs)))
    values = np.concatenate(chunks) if chunks else np.empty((0, len(evs)))
    return {k: values[:, j] for j, k in enumerate(cells)}


def nested_average(
    values: Mapping[tuple[Any, ...], np.ndarray], keep: int = 0
) -> dict[tuple[Any, ...], np.ndarray]:
    """Average per-cell value arrays over the last key element, then the next, ... (see above).

    ``values`` maps keys of equal length (e.g. ``(outer_fold, seed)``) to arrays of one shape;
    NaNs are left out of each mean.
    """
    if not values:
        return {}
    width = len(next(iter(values)))
    values = dict(values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN means stay NaN
        for depth in range(width - 1, keep - 1, -1):
            grouped: dict[tuple, list[np.ndarray]] = {}
            for key in sorted(values, key=_sort_key):
                grouped.setdefault(key[:depth], []).append(values[key])
            values = {k: np.nanmean(np.vstack(v), axis=0) for k, v in grouped.items()}
    return values


def _sort_key(key: tuple) -> tuple:
    return tuple((str(type(k)), k) for k in key)


def _resolve(value: str | None, metric: Any, params: dict[str, Any]) -> Metric | Callable:
    if (value is None) == (metric is None):
        raise AnalysisError(
            f"give exactly one of value= (mean of a column) or metric= (e.g. 'auc'); got "
            f"value={value!r}, metric={metric!r}"
        )
    if value is not None:

        def stats(frame: pl.DataFrame) -> np.ndarray:
            col = frame.get_column(value)
            if not col.dtype.is_numeric() or col.null_count():
                raise AnalysisError(
                    f"value={value!r}: column must be numeric with no nulls "
                    f"(dtype {col.dtype}, {col.null_count()} nulls)"
                )
            v = col.cast(pl.Float64).to_numpy()
            return np.column_stack([np.ones_like(v), v])

        return Metric(f"mean({value})", (value,), "sums", stats, _mean_finalize)
    if callable(metric) and not isinstance(metric, Metric):
        return metric
    return get_metric(metric, **params)


def _validate(n_boot: int, alpha: float, scheme: str = "cluster", interval: str = "t") -> None:
    if not isinstance(n_boot, int) or n_boot < 2:
        raise AnalysisError(f"n_boot={n_boot!r}; allowed: an integer >= 2 (2000 is usual)")
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha={alpha!r}; allowed: 0 < alpha < 1 (0.05 gives 95% intervals)")
    if scheme not in SCHEMES:
        raise AnalysisError(
            f"scheme={scheme!r}; allowed: 'cluster' (resample the top level, keep lower levels "
            "whole; calibrated) or 'two_stage' (resample every level; conservative)"
        )
    if interval not in INTERVALS:
        raise AnalysisError(
            f"interval={interval!r}; allowed: 't' (few-cluster t, calibrated), 't_bc' (the same, "
            "bias-corrected) or 'percentile'"
        )


def _average_columns(
    frame: pl.DataFrame, average_over: str | Sequence[str] | None, levels: Sequence[str]
) -> list[str]:
    """Checked ``average_over`` columns: present, without nulls, not a resampling level."""
    cols = as_names(average_over, name="average_over")
    require_columns(frame, [*cols, *([] if levels or not cols else ["sample_id"])],
                    why="for average_over= (metric per cell, then averaged)")  # fmt: skip
    for col in cols:
        nulls = frame.get_column(col).null_count()
        if nulls or col in levels:
            raise AnalysisError(
                f"average_over column {col!r} has {nulls} null value(s)"
                f"{' and is also a resampling level' if col in levels else ''}; allowed: "
                "columns naming the trained models' cells (e.g. ['outer_fold', 'seed']), "
                "non-null and not in levels"
            )
    return cols


#: The columns naming one trained model's test set, averaged by ``average_over="auto"``.
MODEL_CELLS = ("outer_fold", "seed")


def _auto_cells(
    frame: pl.DataFrame, average_over: str | Sequence[str] | None, levels: Sequence[str]
) -> str | Sequence[str] | None:
    """``average_over``, with ``"auto"`` replaced by the :data:`MODEL_CELLS` columns that apply.

    Those present in ``frame`` and not resampling levels; none when ``levels`` is empty and
    there is no ``sample_id`` (the unit the cells would then be resampled by).
    """
    if average_over != "auto":
        return average_over
    if not levels and "sample_id" not in frame.columns:
        return None
    return [c for c in MODEL_CELLS if c in frame.columns and c not in levels] or None


def _groups(data: pl.DataFrame, by: list[str]) -> list[tuple[dict[str, Any], pl.DataFrame]]:
    require_columns(data, by, why="for by=")
    if not by:
        return [({}, data)]
    parts = data.sort(by).group_by(by, maintain_order=True)
    return [(dict(zip(by, key, strict=True)), part) for key, part in parts]


class _DrawCache:
    """Count matrices already drawn, keyed by hierarchy shape.

    Groups whose hierarchies have the same shape get the same draws from the same seed anyway;
    keeping them (when small: ``n_boot x n_units <= MAX_CELLS``) saves redrawing per group.
    """

    def __init__(self) -> None:
        self._store: dict[tuple, list[np.ndarray]] = {}

    def counts(self, h: Hierarchy, n_boot: int, seed: int, scheme: str) -> Iterator[np.ndarray]:
        if n_boot * h.n_units > MAX_CELLS:
            yield from draw_counts(h, n_boot, np.random.default_rng(seed), scheme=scheme)
            return
        strata = None if h.strata is None else h.strata.tobytes()
        key = (n_boot, seed, scheme, h.sizes, tuple(p.tobytes() for p in h.parents), strata)
        if key not in self._store:
            rng = np.random.default_rng(seed)
            self._store[key] = list(draw_counts(h, n_boot, rng, scheme=scheme))
        yield from self._store[key]


def _cell_inputs(
    part: pl.DataFrame, metric: Metric | Callable
) -> Callable[[np.ndarray, np.ndarray, int], Evaluator]:
    """A maker of the :class:`Evaluator` of the rows ``rows`` of ``part`` (one cell).

    A metric's per-row inputs (sums, or labels and scores) are computed once for ``part`` and
    sliced per cell, rather than gathering each cell's rows of every column: per-row inputs do
    not depend on the other rows, so the values are the same, and with thousands of cells (one
    per fold x seed) the gathers were most of the time (issue 11).
    """
    if isinstance(metric, Metric) and metric.kind == "sums":
        assert metric.stats is not None
        stats = metric.stats(part)
        return lambda rows, unit, n: Evaluator(metric, None, unit, n, stats=stats[rows])
    if isinstance(metric, Metric):
        y, score = auc_inputs(part, metric)
        return lambda rows, unit, n: Evaluator(metric, None, unit, n, labels=(y[rows], score[rows]))
    return lambda rows, unit, n: Evaluator(metric, part[rows], unit, n)


def cell_evaluators(
    part: pl.DataFrame,
    metric: Metric | Callable,
    within: Sequence[str],
    unit: np.ndarray,
    n_units: int,
) -> dict[tuple[Any, ...], Evaluator]:
    """The :class:`Evaluator` of each cell of ``part`` (its rows of one value of the ``within``
    columns, e.g. one trained model: outer fold x seed), for :func:`nested_means`.

    ``unit`` is each row's resampled unit (of ``n_units``); keys are the cells' ``within``
    values, in order of first appearance.
    """
    make = _cell_inputs(part, metric)
    index = (
        part.select(within)
        .with_row_index("_row")
        .group_by(list(within), maintain_order=True)
        .agg(pl.col("_row"))
    )
    cells = {}
    for *key, rows in index.iter_rows():
        rows = np.asarray(rows, dtype=np.int64)
        cells[tuple(key)] = make(rows, unit[rows], n_units)
    return cells


def _replicates(
    part: pl.DataFrame,
    metric: Metric | Callable,
    levels: Sequence[str],
    n_boot: int,
    seed: int,
    cache: _DrawCache | None = None,
    scheme: str = "cluster",
    strata: Sequence[str] = (),
    average_over: Sequence[str] = (),
) -> tuple[float, np.ndarray, Hierarchy]:
    if average_over and not levels:
        levels = ["sample_id"]  # one draw per test sample, shared by all (fold, seed) cells
    h = build_hierarchy(part, levels, strata)
    draws = (cache or _DrawCache()).counts(h, n_boot, seed, scheme)
    if not average_over:
        ev = Evaluator(metric, part, h.unit, h.n_units)
        reps = np.concatenate([ev(c) for c in draws])
        return ev.estimate(), reps, h
    cells = cell_evaluators(part, metric, average_over, h.unit, h.n_units)
    reps = np.concatenate([nested_means(cells, c)[()] for c in draws])
    est = float(nested_means(cells, np.ones((1, h.n_units)))[()][0])
    return est, reps, h


def bootstrap(
    data: Any,
    value: str | None = None,
    metric: str | Metric | Callable[[pl.DataFrame], float] | None = None,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    *,
    scheme: Scheme = "cluster",
    interval: Interval = "t",
    strata: str | Sequence[str] | None = None,
    average_over: str | Sequence[str] | None = "auto",
    **metric_params: Any,
) -> pl.DataFrame:
    """Confidence interval of a column's mean or of a metric, resampling the hierarchy's top level.

    Parameters
    ----------
    data : polars/pandas DataFrame
        One row per observation (e.g. a predictions table, filtered to one perturbation).
    value : str, optional
        Column whose mean is estimated. Give ``value`` or ``metric``.
    metric : str, Metric or callable, optional
        A metric name of :data:`raybench_analysis.metrics.METRICS` (``"auc"`` reads
        ``y_true``/``score``, ``"accuracy"`` ``y_true``/``y_pred``, ...; settings such as
        ``n_bins=15`` go in ``metric_params``), or a callable ``f(frame) -> float`` (evaluated
        once per replicate: slow, but anything goes).
    levels : sequence of str
        The hierarchy from the top, e.g. ``["site", "subject_id"]``. The top level is the
        resampled unit and says what is estimated: ``site`` first, performance on a *new site*;
        ``["subject_id"]``, on *new patients* (Varoquaux & Colliot 2023). The lower levels define
        the units kept together and are counted in ``n_<level>``. ``[]`` is the ordinary i.i.d.
        bootstrap of rows. Default ``("subject_id",)``: the patient is the independent unit.
    by : column name(s), optional
        One interval per group (e.g. ``"model"``). Groups with the same units get the same draws
        (same ``seed``), so their intervals come from paired resamples.
    n_boot : int
        Number of bootstrap replicates.
    seed : int
        Seed of numpy's PCG64 generator; same seed, same data: same numbers.
    alpha : float
        The interval covers 1 − alpha.
    scheme : {"cluster", "two_stage"}
        ``"cluster"`` (default, calibrated): draw G top-level units with replacement and keep
        everything below them whole. ``"two_stage"``: also redraw every lower level with
        replacement inside each drawn unit (Davison & Hinkley's literal two-stage scheme); it
        counts the within-unit variance twice and over-covers (97.5–99.5% for a nominal 95% from
        8 sites on in docs/statistics/bootstrap.md). With a single level both are the same.
    interval : {"t", "t_bc", "percentile"}
        ``"t"`` (default): estimate ± t_{G−H, 1−α/2} · sd* · sqrt(G/(G−H)), the few-cluster t
        interval; ``"t_bc"``: the same centred on the bias-corrected estimate 2·estimate −
        mean(θ*) (for a pooled AUC with few sites); ``"percentile"``: quantiles of the
        replicates (too narrow with few sites).
    strata : column name(s), optional
        Resample the top-level units within each stratum separately, e.g. ``levels=["subject_id"],
        strata="site"``: new patients from the *same* sites, every site keeping its number of
        subjects (stratified bootstrap, Davison & Hinkley 1997 §3.2). Each top-level unit must
        lie in one stratum.
    average_over : column name(s), optional
        E.g. ``("outer_fold", "seed")``: compute the metric separately within each
        (outer_fold, seed) cell of a group (one trained model's test predictions), average over
        seeds within each fold, then over folds, and report that mean as the estimate, as
        :func:`raybench_analysis.compare` scores a model. In every replicate all cells are scored
        on the same resampled units. Columns are averaged from the last to the first; NaN cell
        values (e.g. AUC of a cell with one class) are left out of the means. With ``levels=[]``
        the units are ``sample_id`` (a test sample predicted in several seeds is drawn once for
        all of them). Default ``"auto"``: those of ``outer_fold`` and ``seed`` that the data
        has (and that are not levels), the estimand of ``raybench analyze`` and of
        :func:`raybench_analysis.summarize`; pooled when it has neither. ``None``: one metric
        over all rows of the group (pooled), whatever the columns.

    Returns
    -------
    polars.DataFrame
        One row per group: the ``by`` columns, ``metric``, ``estimate`` (on the observed data),
        ``se`` (for ``interval="t"``, sd* · sqrt(G/(G−H)); for ``"percentile"``, sd*, the standard
        deviation of the replicates), ``ci_low``, ``ci_high``, ``df`` (G − H; NaN for the
        percentile interval), ``n_<level>`` (units per level), ``n_obs``, ``n_boot``
        (replicates where the statistic is defined, e.g. both classes drawn for AUC), ``method``
        (scheme and interval), ``unit`` (the levels, top first); with ``average_over``,
        also ``n_<column>`` (distinct values of each averaged column).

    Notes
    -----
    With units drawn ``c_u`` times, a replicate's statistic is ``finalize(Σ_u c_u S_u)`` where
    ``S_u`` are the per-unit sums the metric needs (e.g. Σ correct and Σ 1 for accuracy), so the
    ``B × n_units`` count matrix times the ``n_units × q`` sum matrix gives all replicates. AUC is
    computed from tie-grouped sorted scores under each replicate's weights.

    The default scheme resamples the top level only and keeps the lower levels whole: for a mean
    over G clusters its variance is (G − 1)/G times the unbiased between-cluster estimate, which
    already contains the within-cluster variance once (Davison & Hinkley 1997, §3.8: resampling
    the lower stages *with* replacement as well adds that part a second time, their Strategy 2;
    Field & Welsh 2007 show the cluster bootstrap consistent; Ren et al. 2010). The t interval
    undoes the (G − 1)/G shrinkage and uses t quantiles with G − H degrees of freedom, the
    few-cluster correction of cluster-robust inference (Cameron, Gelbach & Miller 2008), see
    :func:`interval_from_replicates`. In the simulation study of docs/statistics/bootstrap.md it
    covers 93.5–96% for accuracy from 4 to 32 sites (AUC: 94–94.5% from 16 sites, 91–92.5% with
    4–8), where the two-stage percentile bootstrap over-covers (97.5–99.5% from 8 sites) and the
    site percentile bootstrap under-covers (75–86% with 4–8 sites).

    With ``average_over=("outer_fold", "seed")`` the statistic is
    θ = (1/K) Σ_k (1/S_k) Σ_s M(rows of fold k, seed s): the mean over folds of the per-fold
    performance of the trained models, seeds averaged; replicate r evaluates every cell under
    the same count matrix row. Pooling the scores of different fold models into one AUC instead
    mixes score scales of models that were never meant to be compared and biases the AUC
    (Forman & Scholz 2010; Airola et al. 2011); averaging per-fold values avoids that and makes
    the estimate the one :func:`raybench_analysis.compare` differences.

    References
    ----------
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
        University Press, §3.2 (several samples: stratified data), §3.8 (hierarchical data).
    Field, C. A. & Welsh, A. H. (2007). Bootstrapping clustered data. Journal of the Royal
        Statistical Society B 69(3), 369–390.
    Cameron, A. C., Gelbach, J. B. & Miller, D. L. (2008). Bootstrap-based improvements for
        inference with clustered errors. Review of Economics and Statistics 90(3), 414–427.
    Ren, S., Lai, H., Tong, W., Aminzadeh, M., Hou, X. & Lai, S. (2010). Nonparametric
        bootstrapping for hierarchical data. Journal of Applied Statistics 37(9), 1487–1498.
    Varoquaux, G. & Colliot, O. (2023). Evaluating machine learning models and their diagnostic
        value. In Colliot, O. (ed.), Machine Learning for Brain Disorders, Neuromethods 197,
        Springer, 601–630.
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall, ch. 13.
    Forman, G. & Scholz, M. (2010). Apples-to-apples in cross-validation studies: pitfalls in
        classifier performance measurement. ACM SIGKDD Explorations 12(1), 49–57.
    Airola, A., Pahikkala, T., Waegeman, W., De Baets, B. & Salakoski, T. (2011). An
        experimental comparison of cross-validation techniques for estimating the area under
        the ROC curve. Computational Statistics & Data Analysis 55(4), 1828–1844.


    Examples
    --------
    >>> df = pl.DataFrame({"subject_id": ["a", "a", "b", "c", "c", "d"],
    ...                    "loss": [1.0, 1.2, 0.4, 0.8, 0.6, 0.2]})
    >>> out = bootstrap(df, value="loss", levels=["subject_id"], n_boot=500, seed=1)
    >>> out.select("estimate", "n_subject_id", "n_obs", "df", "unit").row(0)
    (0.7000000000000001, 4, 6, 3.0, 'subject_id')
    >>> out["method"][0]
    'cluster bootstrap, few-cluster t interval'
    >>> bool(out["ci_low"][0] < 0.7 < out["ci_high"][0])
    True

    Per trained model: the mean of each (fold, seed) cell, seeds then folds averaged (fold 0:
    seed 0 (1.0 + 0.2)/2, seed 1 0.4, mean 0.5; fold 1: 0.8 and (1.2 + 0.6)/2, mean 0.85):

    >>> cells = df.with_columns(outer_fold=pl.Series([0, 1, 0, 1, 1, 0]),
    ...                         seed=pl.Series([0, 1, 1, 0, 1, 0]))
    >>> out = bootstrap(cells, value="loss", n_boot=200, average_over=["outer_fold", "seed"])
    >>> round(out["estimate"][0], 4), out.select("n_outer_fold", "n_seed").row(0)
    (0.675, (2, 2))
    """
    _validate(n_boot, alpha, scheme, interval)
    frame = to_polars(data)
    keys = as_names(by, name="by")
    levels = as_names(levels, name="levels")
    strata_cols = as_names(strata, name="strata")
    avg = _average_columns(frame, _auto_cells(frame, average_over, levels), levels)
    m = _resolve(value, metric, metric_params)
    name = m.label() if isinstance(m, Metric) else getattr(m, "__name__", "callable")
    rows = []
    cache = _DrawCache()
    for key, part in _groups(frame, keys):
        est, reps, h = _replicates(
            part, m, levels, n_boot, seed, cache, scheme, strata_cols, average_over=avg
        )
        n_ok = int(np.isfinite(reps).sum())
        check_defined(n_ok, n_boot, str(key or "data"), name)
        if interval == "t" and h.n_top - h.n_strata < 1:
            warnings.warn(
                f"{key or 'data'}: {h.n_top} top-level unit(s) in {h.n_strata} stratum/strata "
                "leave no degrees of freedom; the t interval is undefined (NaN). Add units or "
                "resample a lower level.",
                stacklevel=2,
            )
        ci = interval_from_replicates(est, reps, h.n_top, alpha, interval, h.n_strata, n_boot)
        method, unit = h.scheme(scheme, interval)
        if isinstance(m, Metric):  # a t interval can reach past 1 (AUC) with few clusters
            low, high = m.value_range
            clipped = ci["ci_low"] < low or ci["ci_high"] > high
            ci["ci_low"], ci["ci_high"] = max(ci["ci_low"], low), min(ci["ci_high"], high)
            method += "; interval clipped to the metric's range" if clipped else ""
        if avg:
            method += (
                f"; metric per {'×'.join(avg)} cell, averaged over {', then '.join(avg[::-1])}"
            )
        rows.append(
            {
                **key,
                "metric": name,
                "estimate": est,
                "se": ci["se"],
                "ci_low": ci["ci_low"],
                "ci_high": ci["ci_high"],
                "df": ci["df"],
                **{f"n_{lvl}": size for lvl, size in zip(h.levels, h.sizes, strict=False)},
                **{f"n_{col}": part.get_column(col).n_unique() for col in avg},
                "n_obs": part.height,
                "n_boot": n_ok,
                "method": method,
                "unit": unit,
            }
        )
    if not rows:
        raise AnalysisError("data: no rows to bootstrap; check your filters")
    return pl.DataFrame(rows)


def bootstrap_replicates(
    data: Any,
    value: str | None = None,
    metric: str | Metric | Callable[[pl.DataFrame], float] | None = None,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    *,
    scheme: Scheme = "cluster",
    strata: str | Sequence[str] | None = None,
    average_over: str | Sequence[str] | None = None,
    **metric_params: Any,
) -> pl.DataFrame:
    """The replicates behind :func:`bootstrap`, one row per group and replicate.

    Same arguments as :func:`bootstrap` (no interval is formed here). Groups with identical units
    share the draws (replicate ``r`` of model A and of model B resample the same subjects), which
    is what rank-stability and paired analyses need.

    Returns
    -------
    polars.DataFrame
        The ``by`` columns, ``replicate`` (0-based), ``value`` (NaN where undefined),
        ``estimate`` (on the observed data), ``method``, ``unit``.

    Examples
    --------
    >>> df = pl.DataFrame({"subject_id": ["a", "b", "c"], "loss": [1.0, 2.0, 3.0]})
    >>> bootstrap_replicates(df, value="loss", n_boot=4, seed=0).height
    4
    """
    _validate(n_boot, 0.05, scheme)
    frame = to_polars(data)
    keys = as_names(by, name="by")
    strata_cols = as_names(strata, name="strata")
    lv = as_names(levels, name="levels")
    avg = _average_columns(frame, average_over, lv)
    m = _resolve(value, metric, metric_params)
    parts = []
    cache = _DrawCache()
    for key, part in _groups(frame, keys):
        est, reps, h = _replicates(
            part, m, lv, n_boot, seed, cache, scheme, strata_cols, average_over=avg
        )
        method, unit = h.resampling(scheme), h.scheme(scheme)[1]
        cols = {k: [v] * n_boot for k, v in key.items()}
        parts.append(
            pl.DataFrame(
                {
                    **cols,
                    "replicate": np.arange(n_boot),
                    "value": reps,
                    "estimate": est,
                    "method": method,
                    "unit": unit,
                }
            )
        )
    return pl.concat(parts)


def welch_satterthwaite_df(se_a: float, df_a: float, se_b: float, df_b: float) -> float:
    """Degrees of freedom of the difference of two independent estimates (Welch–Satterthwaite).

    df = (se_a² + se_b²)² / (se_a⁴/df_a + se_b⁴/df_b): the t approximation to a difference whose
    two standard errors carry df_a and df_b degrees of freedom of their own. NaN when a side's df
    is not positive (or not a number) or both standard errors are zero.

    References
    ----------
    Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance components.
        Biometrics Bulletin 2(6), 110–114.
    Welch, B. L. (1947). The generalization of "Student's" problem when several different
        population variances are involved. Biometrika 34(1/2), 28–35.

    Examples
    --------
    >>> round(welch_satterthwaite_df(0.03, 9.0, 0.04, 5.0), 2)
    10.38
    """
    if not (df_a > 0 and df_b > 0):
        return math.nan
    denominator = se_a**4 / df_a + se_b**4 / df_b
    if not denominator > 0:
        return math.nan
    return (se_a**2 + se_b**2) ** 2 / denominator


def unpaired_difference(
    estimate_a: float,
    replicates_a: np.ndarray,
    n_clusters_a: int,
    estimate_b: float,
    replicates_b: np.ndarray,
    n_clusters_b: int,
    alpha: float = 0.05,
    interval: str = "t",
    *,
    n_strata_a: int = 1,
    n_strata_b: int = 1,
) -> dict[str, float]:
    """Difference a − b of two estimates from independent (hierarchical) bootstraps, with interval.

    For two statistics computed on *different* samples (other subjects, other sites), each
    resampled on its own: e.g. models evaluated on different test subjects, or a model's
    internal and external performance. Paired resampling is impossible there, so the two
    bootstraps are independent and their variances add.

    Parameters
    ----------
    estimate_a, estimate_b : float
        The two statistics on the observed data.
    replicates_a, replicates_b : numpy.ndarray
        Their bootstrap replicates, drawn independently (non-finite ones are dropped).
    n_clusters_a, n_clusters_b : int
        G_a, G_b: top-level units each bootstrap resampled.
    alpha : float
        1 − coverage.
    interval : {"t", "t_bc", "percentile"}
        As in :func:`interval_from_replicates`.
    n_strata_a, n_strata_b : int
        H_a, H_b: strata each bootstrap drew its top-level units within.

    Returns
    -------
    dict
        ``estimate`` (a − b), ``se``, ``ci_low``, ``ci_high``, ``p_value`` (of "a = b"), ``df``
        (NaN for the percentile interval), ``n_boot`` (finite replicates of the side with fewer).
        All NaN but ``estimate`` when a side has fewer than ``MIN_DEFINED_FRACTION`` of its
        replicates defined (:func:`check_defined` warns).

    Notes
    -----
    Two-sample bootstrap (Efron & Tibshirani 1993, ch. 8; Davison & Hinkley 1997, §3.2): each
    sample is resampled from its own empirical distribution, so Var*(θ*_a − θ*_b) = Var*(θ*_a) +
    Var*(θ*_b). With the few-cluster t interval each side's standard error is the one of
    :func:`interval_from_replicates`, se_x = sd*_x · sqrt(G_x/(G_x − H_x)); the difference has
    se = sqrt(se_a² + se_b²) and the Welch–Satterthwaite degrees of freedom
    df = se⁴ / (se_a⁴/df_a + se_b⁴/df_b) with df_x = G_x − H_x (Satterthwaite 1946), interval
    estimate ± t_{df, 1−α/2} · se and p = 2 P(T_df ≥ |estimate|/se). ``"t_bc"`` centres it on the
    difference of the two bias-corrected estimates. ``"percentile"`` pairs replicate r of a with
    replicate r of b (independent draws) and takes the quantiles of θ*_a − θ*_b.

    References
    ----------
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall, ch. 8
        (the two-sample problem).
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
        University Press, §3.2 (several independent samples).
    Satterthwaite, F. E. (1946). An approximate distribution of estimates of variance components.
        Biometrics Bulletin 2(6), 110–114.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> out = unpaired_difference(0.8, 0.8 + 0.02 * rng.standard_normal(500), 10,
    ...                           0.7, 0.7 + 0.03 * rng.standard_normal(500), 12)
    >>> round(out["estimate"], 3), bool(out["ci_low"] < 0.1 < out["ci_high"]), out["df"] > 9
    (0.1, True, True)
    """
    if interval not in INTERVALS:
        raise AnalysisError(f"interval={interval!r}; allowed: {list(INTERVALS)}")
    reps = [np.asarray(r, dtype=float) for r in (replicates_a, replicates_b)]
    estimate = float(estimate_a - estimate_b)
    nan = math.nan
    out = {"estimate": estimate, "se": nan, "ci_low": nan, "ci_high": nan, "p_value": nan}
    out |= {"df": nan, "n_boot": min(int(np.isfinite(r).sum()) for r in reps)}
    if interval == "percentile":
        n = min(len(r) for r in reps)
        diff = reps[0][:n] - reps[1][:n]
        ok = np.isfinite(reps[0]).all() and np.isfinite(reps[1]).all()
        n_total = None if ok else n
        ci = interval_from_replicates(estimate, diff, 2, alpha, "percentile", 1, n_total)
        return out | {k: ci[k] for k in ("se", "ci_low", "ci_high", "p_value", "n_boot")}
    sides = [
        interval_from_replicates(est, r, g, alpha, "t", h, len(r))
        for est, r, g, h in (
            (estimate_a, reps[0], n_clusters_a, n_strata_a),
            (estimate_b, reps[1], n_clusters_b, n_strata_b),
        )
    ]
    se_a, se_b, df_a, df_b = sides[0]["se"], sides[1]["se"], sides[0]["df"], sides[1]["df"]
    if not all(math.isfinite(x) for x in (se_a, se_b, df_a, df_b)):
        return out
    se = math.hypot(se_a, se_b)
    centre = estimate
    if interval == "t_bc":
        mean_a, mean_b = (float(np.nanmean(r)) for r in reps)
        centre = (2 * estimate_a - mean_a) - (2 * estimate_b - mean_b)
    if se == 0:
        p = float(centre == 0)
        return out | {"se": 0.0, "ci_low": centre, "ci_high": centre, "p_value": p, "df": nan}
    df = welch_satterthwaite_df(se_a, df_a, se_b, df_b)
    half = float(sps.t.ppf(1 - alpha / 2, df)) * se
    p = float(2 * sps.t.sf(abs(centre) / se, df))
    return out | {
        "se": se,
        "ci_low": centre - half,
        "ci_high": centre + half,
        "p_value": p,
        "df": df,
    }
