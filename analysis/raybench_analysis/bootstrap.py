"""Hierarchical (multi-level) percentile bootstrap of a mean or a metric, vectorised.

Medical test sets are nested: images in sessions in subjects in scanners in sites. Resampling
images as if independent understates the uncertainty (Field & Welsh 2007); resampling the units
of the hierarchy does not. The draws are made for all replicates at once as count matrices (how
many times each lowest-level unit is in each replicate), so a replicate's sums are a matrix
product and mean-type metrics need no Python loop over replicates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, as_names, require_columns, to_polars
from raybench_analysis.metrics import Metric, _mean_finalize, get_metric, weighted_auc

__all__ = ["bootstrap", "bootstrap_replicates"]

#: cells (replicates × units or replicates × observations) processed per chunk; bounds memory.
MAX_CELLS = 8_000_000


@dataclass(frozen=True)
class Hierarchy:
    """Units of each level and how they nest; observations belong to lowest-level units.

    ``unit[i]`` is the lowest-level unit of observation ``i``; ``parents[l]`` gives, for every
    unit of level ``l`` (``l >= 1``), its unit at level ``l - 1``; ``sizes[l]`` counts the units.
    Units are numbered so that the children of one parent are contiguous.
    """

    levels: tuple[str, ...]
    unit: np.ndarray
    parents: tuple[np.ndarray, ...]
    sizes: tuple[int, ...]

    @property
    def n_units(self) -> int:
        """Number of lowest-level units (the columns of a count matrix)."""
        return self.sizes[-1]

    def scheme(self) -> tuple[str, str]:
        """(method, unit) labels that every output table carries."""
        if not self.levels:
            return "percentile bootstrap, iid observations", "observation"
        kind = "cluster" if len(self.levels) == 1 else "hierarchical"
        return f"percentile bootstrap, {kind}", ">".join(self.levels)


def build_hierarchy(frame: pl.DataFrame, levels: Sequence[str]) -> Hierarchy:
    """Number the units of ``levels`` (top first) in ``frame``.

    A unit of level ``l`` is a distinct tuple of the first ``l + 1`` level columns, so a subject id
    reused in two sites makes two units (a warning says so). ``levels=[]`` makes every row a unit.
    """
    levels = tuple(levels)
    if not levels:
        n = frame.height
        return Hierarchy((), np.arange(n), (), (n,))
    require_columns(frame, levels, why="as bootstrap levels")
    for col in levels:
        nulls = frame.get_column(col).null_count()
        if nulls:
            raise AnalysisError(
                f"levels column {col!r} has {nulls} null value(s); every observation needs a "
                "unit at every level. Fill or drop them first."
            )
    ranks = frame.select(pl.col(c).rank("dense").cast(pl.Int64) - 1 for c in levels)
    code = np.zeros(frame.height, dtype=np.int64)
    parents: list[np.ndarray] = []
    sizes: list[int] = []
    for depth, col in enumerate(levels):
        r = ranks.get_column(col).to_numpy()
        values, new_code = np.unique(code * (int(r.max()) + 1) + r, return_inverse=True)
        if depth:
            parent = np.empty(len(values), dtype=np.int64)
            parent[new_code] = code
            parents.append(parent)
            if len(values) > int(r.max()) + 1:
                warnings.warn(
                    f"some {col!r} values appear under more than one {levels[depth - 1]!r}; each "
                    "(parent, value) pair is treated as its own unit",
                    stacklevel=3,
                )
        code = new_code.astype(np.int64)
        sizes.append(len(values))
    return Hierarchy(levels, code, tuple(parents), tuple(sizes))


def draw_counts(
    hierarchy: Hierarchy, n_boot: int, rng: np.random.Generator, max_cells: int = MAX_CELLS
) -> Iterator[np.ndarray]:
    """Yield ``(b, n_units)`` float matrices: how often each lowest-level unit is drawn.

    Level 0: draw as many units as there are, with replacement. Level ``l``: each drawn copy of a
    parent with ``m`` children draws ``m`` children with replacement; the sum over ``c`` copies is
    ``c·m`` uniform draws among the children, done at once with ``np.repeat``.
    """
    chunk = max(1, min(n_boot, max_cells // max(1, hierarchy.n_units)))
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        n0 = hierarchy.sizes[0]
        top = rng.integers(0, n0, size=(b, n0)) + (np.arange(b) * n0)[:, None]
        counts = np.bincount(top.ravel(), minlength=b * n0).reshape(b, n0)
        for depth, parent in enumerate(hierarchy.parents, start=1):
            n_par, n_child = hierarchy.sizes[depth - 1], hierarchy.sizes[depth]
            m = np.bincount(parent, minlength=n_par)
            start = np.cumsum(m) - m
            flat = np.repeat(np.arange(b * n_par), (counts * m[None, :]).ravel())
            par = flat % n_par
            pick = (rng.random(len(flat)) * m[par]).astype(np.int64)
            child = start[par] + np.minimum(pick, m[par] - 1)  # guard against rounding up to m
            cell = (flat // n_par) * n_child + child
            counts = np.bincount(cell, minlength=b * n_child).reshape(b, n_child)
        done += b
        yield counts.astype(np.float64)


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


def _validate(n_boot: int, alpha: float) -> None:
    if not isinstance(n_boot, int) or n_boot < 2:
        raise AnalysisError(f"n_boot={n_boot!r}; allowed: an integer >= 2 (2000 is usual)")
    if not 0 < alpha < 1:
        raise AnalysisError(f"alpha={alpha!r}; allowed: 0 < alpha < 1 (0.05 gives 95% intervals)")


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

    def counts(self, h: Hierarchy, n_boot: int, seed: int) -> Iterator[np.ndarray]:
        if n_boot * h.n_units > MAX_CELLS:
            yield from draw_counts(h, n_boot, np.random.default_rng(seed))
            return
        key = (n_boot, seed, h.sizes, tuple(p.tobytes() for p in h.parents))
        if key not in self._store:
            self._store[key] = list(draw_counts(h, n_boot, np.random.default_rng(seed)))
        yield from self._store[key]


def _replicates(
    part: pl.DataFrame,
    metric: Metric | Callable,
    levels: Sequence[str],
    n_boot: int,
    seed: int,
    cache: _DrawCache | None = None,
) -> tuple[float, np.ndarray, Hierarchy]:
    h = build_hierarchy(part, levels)
    ev = Evaluator(metric, part, h.unit, h.n_units)
    draws = (cache or _DrawCache()).counts(h, n_boot, seed)
    reps = np.concatenate([ev(c) for c in draws])
    return ev.estimate(), reps, h


def bootstrap(
    data: Any,
    value: str | None = None,
    metric: str | Metric | Callable[[pl.DataFrame], float] | None = None,
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
    **metric_params: Any,
) -> pl.DataFrame:
    """Percentile confidence interval of a column's mean or of a metric, resampling the hierarchy.

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
        The hierarchy from the top, e.g. ``["site", "subject_id"]``: draw sites with replacement,
        then subjects with replacement within each drawn site; the observations of a drawn
        lowest-level unit are kept whole. ``[]`` is the ordinary i.i.d. bootstrap of rows.
        Default ``("subject_id",)``: the patient is the independent unit.
    by : column name(s), optional
        One interval per group (e.g. ``"model"``). Groups with the same units get the same draws
        (same ``seed``), so their intervals come from paired resamples.
    n_boot : int
        Number of bootstrap replicates.
    seed : int
        Seed of numpy's PCG64 generator; same seed, same data: same numbers.
    alpha : float
        The interval covers 1 − alpha.

    Returns
    -------
    polars.DataFrame
        One row per group: the ``by`` columns, ``metric``, ``estimate`` (on the observed data),
        ``se`` (standard deviation of the replicates), ``ci_low``, ``ci_high`` (percentile
        interval), ``n_<level>`` (units per level), ``n_obs``, ``n_boot`` (replicates where the
        statistic is defined, e.g. both classes drawn for AUC), ``method``, ``unit``.

    Notes
    -----
    With units drawn ``c_u`` times, a replicate's statistic is ``finalize(Σ_u c_u S_u)`` where
    ``S_u`` are the per-unit sums the metric needs (e.g. Σ correct and Σ 1 for accuracy), so the
    ``B × n_units`` count matrix times the ``n_units × q`` sum matrix gives all replicates. AUC is
    computed from tie-grouped sorted scores under each replicate's weights. The interval is the
    percentile interval [q_{α/2}, q_{1−α/2}] of the replicates (numpy's linear quantile).
    Resampling with replacement at every listed level follows the two-stage scheme of Davison &
    Hinkley (1997, §2.4, "Strategy 2"); it slightly overstates the lower-level variance when the
    top level has few units, so the interval is conservative there. Listing only the top level
    (cluster bootstrap, "Strategy 1") is the scheme Field & Welsh (2007) show consistent as the
    number of clusters grows; Ren et al. (2010) discuss the choice. Observations within the lowest
    level are never split, so sessions or images of a subject stay together.

    References
    ----------
    Davison, A. C. & Hinkley, D. V. (1997). Bootstrap Methods and their Application. Cambridge
        University Press, §2.4 (hierarchical data).
    Field, C. A. & Welsh, A. H. (2007). Bootstrapping clustered data. Journal of the Royal
        Statistical Society B 69(3), 369–390.
    Ren, S., Lai, H., Tong, W., Aminzadeh, M., Hou, X. & Lai, S. (2010). Nonparametric
        bootstrapping for hierarchical data. Journal of Applied Statistics 37(9), 1487–1498.
    Efron, B. & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall, ch. 13.

    Examples
    --------
    >>> df = pl.DataFrame({"subject_id": ["a", "a", "b", "c", "c", "d"],
    ...                    "loss": [1.0, 1.2, 0.4, 0.8, 0.6, 0.2]})
    >>> out = bootstrap(df, value="loss", levels=["subject_id"], n_boot=500, seed=1)
    >>> out.select("estimate", "n_subject_id", "n_obs", "unit").row(0)
    (0.7000000000000001, 4, 6, 'subject_id')
    >>> bool(out["ci_low"][0] < 0.7 < out["ci_high"][0])
    True
    """
    _validate(n_boot, alpha)
    frame = to_polars(data)
    keys = as_names(by, name="by")
    levels = as_names(levels, name="levels")
    m = _resolve(value, metric, metric_params)
    name = m.label() if isinstance(m, Metric) else getattr(m, "__name__", "callable")
    rows = []
    cache = _DrawCache()
    for key, part in _groups(frame, keys):
        est, reps, h = _replicates(part, m, levels, n_boot, seed, cache)
        ok = reps[np.isfinite(reps)]
        if len(ok) < n_boot:
            warnings.warn(
                f"{key or 'data'}: {n_boot - len(ok)} of {n_boot} replicates left {name} "
                "undefined (e.g. one class only) and were dropped",
                stacklevel=2,
            )
        lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2]) if len(ok) else (np.nan, np.nan)
        method, unit = h.scheme()
        rows.append(
            {
                **key,
                "metric": name,
                "estimate": est,
                "se": float(np.std(ok, ddof=1)) if len(ok) > 1 else math.nan,
                "ci_low": float(lo),
                "ci_high": float(hi),
                **{f"n_{lvl}": size for lvl, size in zip(h.levels, h.sizes, strict=False)},
                "n_obs": part.height,
                "n_boot": len(ok),
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
    **metric_params: Any,
) -> pl.DataFrame:
    """The replicates behind :func:`bootstrap`, one row per group and replicate.

    Same arguments as :func:`bootstrap`. Groups with identical units share the draws (replicate
    ``r`` of model A and of model B resample the same subjects), which is what rank-stability and
    paired analyses need.

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
    _validate(n_boot, 0.05)
    frame = to_polars(data)
    keys = as_names(by, name="by")
    m = _resolve(value, metric, metric_params)
    parts = []
    cache = _DrawCache()
    for key, part in _groups(frame, keys):
        est, reps, h = _replicates(part, m, as_names(levels, name="levels"), n_boot, seed, cache)
        method, unit = h.scheme()
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
