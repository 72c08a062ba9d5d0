"""Learning curves: a model's score against the number of subjects it was trained on.

:func:`learning_curve` scores the test predictions of every training-set size of a suite with
``validation.train_resampling`` (docs/training-distribution.md), with hierarchical bootstrap
intervals (:func:`raybench_analysis.bootstrap`). :func:`fit_learning_curve` fits the inverse power
law ``y = a − b·n^(−c)`` of Figueroa et al. (2012) and Cho et al. (2015) to those points, with
percentile intervals from refitting the law on every hierarchical bootstrap replicate, and
:meth:`LearningCurveFit.subjects_needed` answers "how many training subjects to reach AUC x?",
warning when the answer lies far beyond the largest training set observed.

The estimand of a point is the score of the training procedure on training sets of ``n``
subjects drawn from the outer training folds, averaged over draws, seeds and folds, for new test
subjects (new sites when ``site`` is the top level). The intervals resample test units; the draws
themselves are averaged over (their spread is :func:`raybench_analysis.sampling_variance`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import OptimizeWarning, curve_fit

from ._frames import AnalysisError, as_names, require_columns, to_polars
from .bootstrap import bootstrap, bootstrap_replicates
from .contract import raw_rows
from .metrics import get_metric

__all__ = [
    "LearningCurveFit",
    "fit_learning_curve",
    "fit_power_law",
    "learning_curve",
    "power_law",
    "resampling_tables",
]

_FRACTION, _DRAW, _N = "train_fraction", "train_resample", "n_train_subjects"
_CELLS = ("outer_fold", _DRAW, "seed")
_C_MIN, _C_MAX = 1e-3, 10.0
_METHOD = (
    "inverse power law a - b n^-c, weighted least squares (sigma = CI half-width); percentile "
    "CI over refits on hierarchical bootstrap replicates"
)


def power_law(n: Any, a: float, b: float, c: float) -> np.ndarray:
    """The inverse power law ``a − b·n^(−c)``: plateau ``a``, gap ``b`` at n = 1, decay ``c``.

    >>> float(power_law(4.0, 0.9, 0.4, 0.5))
    0.7
    """
    return a - b * np.power(np.asarray(n, dtype=float), -c)


def _profile(n: np.ndarray, y: np.ndarray, w: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each decay in ``c``: the weighted least-squares ``(a, b)`` and residual sum of squares.

    For a fixed ``c`` the law is linear, ``y = a − b·x`` with ``x = n^(−c)``; the 2×2 normal
    equations are solved in closed form for all ``c`` at once.
    """
    x = np.power(n[None, :], -c[:, None])
    sw, sx, sy = w.sum(), (w * x).sum(1), (w * y).sum()
    sxx, sxy = (w * x * x).sum(1), (w * x * y).sum(1)
    det = sw * sxx - sx**2
    slope = (sw * sxy - sx * sy) / det  # of y on x: -b
    a = (sy - slope * sx) / sw
    b = -slope
    resid = y[None, :] - (a[:, None] - b[:, None] * x)
    return a, b, (w * resid**2).sum(1)


def fit_power_law(
    n: Sequence[float],
    y: Sequence[float],
    sigma: Sequence[float] | None = None,
    plateau: tuple[float, float] = (-np.inf, np.inf),
) -> tuple[float, float, float]:
    """Weighted least-squares fit of ``y = a − b·n^(−c)``: returns ``(a, b, c)``.

    Parameters
    ----------
    n, y : training-set sizes (> 0, at least 3 distinct) and the scores observed at them.
    sigma : optional standard errors of ``y``; residuals are weighted by ``1 / sigma²``.
    plateau : bounds of ``a``, e.g. the metric's range ``(0, 1)`` for an AUC (without them a
        nearly straight curve in ``log n`` runs off to a huge ``a`` and a tiny ``c``).

    Notes
    -----
    ``c`` is started from the best of a grid on ``log c`` (for fixed ``c`` the law is linear in
    ``a`` and ``b``, solved exactly) and the three parameters are refined together by
    :func:`scipy.optimize.curve_fit` (trust-region reflective, ``0.001 ≤ c ≤ 10``, ``a`` within
    ``plateau``), as Figueroa et al. (2012) fit the law by weighted nonlinear least squares.
    With three sizes the law interpolates them (no residual degrees of freedom).

    References
    ----------
    Figueroa, R. L., Zeng-Treitler, Q., Kandula, S. & Ngo, L. H. (2012). Predicting sample size
    required for classification performance. *BMC Medical Informatics and Decision Making*, 12, 8.
    Cho, J., Lee, K., Shin, E., Choy, G. & Do, S. (2015). How much data is needed to train a
    medical image deep learning system to achieve necessary high accuracy? arXiv:1511.06348.

    Examples
    --------
    >>> a, b, c = fit_power_law([10, 20, 40, 80], power_law([10, 20, 40, 80], 0.9, 0.8, 0.6))
    >>> round(a, 6), round(b, 6), round(c, 6)
    (0.9, 0.8, 0.6)
    """
    nn = np.asarray(n, dtype=float)
    yy = np.asarray(y, dtype=float)
    if nn.shape != yy.shape or nn.ndim != 1:
        raise AnalysisError(
            f"fit_power_law: n and y must be 1-D of one length ({nn.shape}, {yy.shape})"
        )
    if np.any(~np.isfinite(nn)) or np.any(nn <= 0) or np.any(~np.isfinite(yy)):
        raise AnalysisError("fit_power_law: n must be finite and > 0 and y finite")
    if len(np.unique(nn)) < 3:
        raise AnalysisError(
            f"fit_power_law: {len(np.unique(nn))} distinct training-set sizes; the law has 3 "
            "parameters and needs at least 3 (e.g. fractions: [0.25, 0.5, 1.0])"
        )
    if sigma is None:
        sd = np.ones_like(yy)
    else:
        sd = np.asarray(sigma, dtype=float)
        if sd.shape != yy.shape or np.any(~np.isfinite(sd)) or np.any(sd <= 0):
            raise AnalysisError("fit_power_law: sigma must be finite, > 0 and one per point")
    lo, hi = plateau
    if not lo < hi:
        raise AnalysisError(f"fit_power_law: plateau={plateau} must be an interval (low < high)")
    w = 1.0 / sd**2
    grid = np.exp(np.linspace(np.log(_C_MIN), np.log(_C_MAX), 241))[1:-1]
    a_g, b_g, ssr = _profile(nn, yy, w, grid)
    ssr = np.where((a_g >= lo) & (a_g <= hi), ssr, np.inf)  # starts inside the bounds
    i = int(np.argmin(ssr)) if np.isfinite(ssr).any() else int(np.argmin(np.abs(a_g - hi)))
    span = hi - lo if np.isfinite(hi - lo) else 1.0
    a0 = float(np.clip(a_g[i], lo + 1e-9 * span, hi - 1e-9 * span))
    try:
        with warnings.catch_warnings():  # pcov is not used: with 3 sizes it cannot exist
            warnings.simplefilter("ignore", OptimizeWarning)
            popt, _ = curve_fit(
                power_law,
                nn,
                yy,
                p0=(a0, float(b_g[i]), float(grid[i])),
                sigma=sd,
                absolute_sigma=False,
                bounds=([lo, -np.inf, _C_MIN], [hi, np.inf, _C_MAX]),
                maxfev=20_000,
            )
    except RuntimeError:  # no convergence: the profile's best grid point is the answer
        return a0, float(b_g[i]), float(grid[i])
    return float(popt[0]), float(popt[1]), float(popt[2])


def _prepare(predictions: Any, by: list[str]) -> pl.DataFrame:
    """Clean raw test rows, each training-set size taken from its draws (else the whole fold)."""
    frame = to_polars(predictions, name="predictions")
    require_columns(frame, [_FRACTION, _N, *by], name="predictions", why="for a learning curve")
    frame = raw_rows(frame)
    if "split" in frame.columns:
        frame = frame.filter(pl.col("split") == "test")
    if "perturbation" in frame.columns:
        frame = frame.filter(pl.col("perturbation") == "none")
    frame = frame.filter(pl.col(_FRACTION).is_not_null())
    draw = pl.col(_DRAW) if _DRAW in frame.columns else pl.lit(None, pl.Int64)
    frame = frame.with_columns(draw.fill_null(-1).cast(pl.Int64).alias(_DRAW))  # -1: whole fold
    # bootstrap draws at fraction 1 are the curve's point there, not the whole fold (more
    # distinct subjects): at each size, the draws if there are any, else the whole fold
    drawn = (pl.col(_DRAW) >= 0).any().over([*by, _FRACTION])
    frame = frame.filter(~drawn | (pl.col(_DRAW) >= 0))
    if frame.height == 0:
        raise AnalysisError(
            "predictions: no clean test rows with train_fraction; run a suite with "
            "validation.train_resampling (docs/training-distribution.md)"
        )
    return frame


def _sizes(frame: pl.DataFrame, by: list[str]) -> pl.DataFrame:
    key = "trial_id" if "trial_id" in frame.columns else None
    trials = frame.unique([key] if key else [*by, _FRACTION, *_present(frame)])
    return trials.group_by([*by, _FRACTION]).agg(
        pl.col(_N).cast(pl.Float64).mean().alias("n_train"),
        pl.col(_DRAW).n_unique().alias("n_draws"),
    )


def _present(frame: pl.DataFrame) -> list[str]:
    return [c for c in _CELLS if c in frame.columns]


def learning_curve(
    predictions: Any,
    metric: str = "auc",
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset", "model"),
    *,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> pl.DataFrame:
    """The metric at each training-set size, with hierarchical bootstrap intervals.

    Parameters
    ----------
    predictions : the ``predictions`` table (or ``raybench_analysis.load(...)``'s), with
        ``train_fraction`` and ``n_train_subjects``; only clean, raw test rows are used.
    metric : a metric of :data:`raybench_analysis.METRICS` (``auc``, ``accuracy``, ``mae``...).
    levels : the hierarchy from the top, as in :func:`raybench_analysis.bootstrap`.
    by : one curve per group (default dataset × model, those present).
    n_boot, alpha, seed : bootstrap replicates, 1 − interval level, generator seed.

    Returns
    -------
    polars.DataFrame
        One row per (``by``, ``train_fraction``), sorted by size: ``n_train`` (mean
        ``n_train_subjects`` of its trials), ``n_draws``, ``metric``, ``estimate``, ``se``,
        ``ci_low``, ``ci_high``, ``n_boot``, ``method``, ``unit``.

    Notes
    -----
    The point at a size is the metric of each trained model on its test fold, averaged over
    seeds, then draws, then folds (the estimand of :func:`raybench_analysis.compare`). At a size
    with draws (``train_resample`` not null) only the draws are used; otherwise the whole-fold
    trials (subsampling at fraction 1). All sizes share the bootstrap's draws of test units, since
    draws never touch the test folds, so the replicates of a curve are paired across sizes.

    Examples
    --------
    >>> from raybench_analysis.simulate_training import simulate_learning_curve
    >>> curve = learning_curve(simulate_learning_curve(seed=0), n_boot=100)
    >>> curve["n_train"].to_list() == sorted(curve["n_train"].to_list())
    True
    """
    frame, keys = _frame_and_keys(predictions, by)
    table = bootstrap(
        frame, metric=metric, levels=levels, by=[*keys, _FRACTION], n_boot=n_boot,
        alpha=alpha, seed=seed, average_over=_present(frame),
    )  # fmt: skip
    cols = [*keys, _FRACTION, "n_train", "n_draws", "metric", "estimate", "se", "ci_low"]
    cols += ["ci_high", "n_boot", "method", "unit"]
    return (
        table.join(_sizes(frame, keys), on=[*keys, _FRACTION]).select(cols).sort([*keys, "n_train"])
    )


def _frame_and_keys(
    predictions: Any, by: str | Sequence[str] | None
) -> tuple[pl.DataFrame, list[str]]:
    frame = to_polars(predictions, name="predictions")
    keys = [c for c in as_names(by, name="by") if c in frame.columns]
    return _prepare(frame, keys), keys


@dataclass(frozen=True)
class LearningCurveFit:
    """Inverse power laws fitted to learning curves, with their bootstrap replicates.

    Attributes
    ----------
    params : polars.DataFrame
        One row per curve: the ``by`` columns, ``metric``, ``a``, ``b``, ``c`` with
        ``*_ci_low``/``*_ci_high`` (percentile over replicates), ``n_min``, ``n_max`` (sizes
        observed), ``n_points``, ``rmse`` (of the fit to the points), ``n_boot`` (replicates
        fitted), ``method``.
    replicates : polars.DataFrame
        The ``by`` columns, ``replicate``, ``a``, ``b``, ``c``: the law refitted on each
        hierarchical bootstrap replicate of the curve.
    curve : polars.DataFrame
        The points (:func:`learning_curve`).
    alpha : float
        1 − level of the intervals.
    """

    params: pl.DataFrame
    replicates: pl.DataFrame
    curve: pl.DataFrame
    alpha: float
    by: tuple[str, ...]

    def predict(self, n: Sequence[float]) -> pl.DataFrame:
        """The fitted law at sizes ``n``, one row per curve and size.

        Columns: ``by``, ``n``, ``estimate``, ``ci_low``, ``ci_high`` (pointwise percentile band
        over the replicates), ``extrapolated`` (``n > n_max``).
        """
        sizes = np.asarray(n, dtype=float)
        rows = []
        for row in self.params.iter_rows(named=True):
            reps = self._reps(row)
            est = power_law(sizes, row["a"], row["b"], row["c"])
            band = power_law(sizes[None, :], reps[:, :1], reps[:, 1:2], reps[:, 2:3])
            lo, hi = np.nanquantile(band, [self.alpha / 2, 1 - self.alpha / 2], axis=0)
            for k, size in enumerate(sizes):
                rows.append(
                    {
                        **{c: row[c] for c in self.by},
                        "n": float(size),
                        "estimate": float(est[k]),
                        "ci_low": float(lo[k]),
                        "ci_high": float(hi[k]),
                        "extrapolated": bool(size > row["n_max"]),
                    }
                )
        return pl.DataFrame(rows)

    def subjects_needed(self, target: float, max_extrapolation: float = 2.0) -> pl.DataFrame:
        """Training subjects for the fitted law to reach ``target``, with a bootstrap interval.

        ``n* = (b / (a − target))^(1/c)``; infinite when the plateau ``a`` does not pass the
        target. ``extrapolation`` is ``n* / n_max``; above ``max_extrapolation`` (default 2: the
        answer lies more than twice beyond the largest training set seen) a warning is issued
        and ``extrapolated`` is true: the law was fitted where it was observed, and nothing in
        the data says the curve keeps its shape that far (Figueroa et al. 2012 validate it
        within a few-fold range).

        Returns
        -------
        polars.DataFrame
            One row per curve: ``by`` columns, ``metric``, ``target``, ``n_needed``, ``ci_low``,
            ``ci_high`` (percentiles of the replicates' ``n*``; ``inf`` when some replicates
            never reach the target), ``n_max``, ``extrapolation``, ``extrapolated``,
            ``reachable_share`` (replicates whose plateau passes the target).
        """
        if max_extrapolation <= 1:
            raise AnalysisError(
                f"subjects_needed: max_extrapolation={max_extrapolation} must be > 1"
            )
        rows = []
        for row in self.params.iter_rows(named=True):
            reps = self._reps(row)
            n_star = _needed(row["a"], row["b"], row["c"], target)
            boot = _needed(reps[:, 0], reps[:, 1], reps[:, 2], target)
            lo = float(np.quantile(boot, self.alpha / 2, method="lower")) if len(boot) else np.nan
            hi = (
                float(np.quantile(boot, 1 - self.alpha / 2, method="higher"))
                if len(boot)
                else np.nan
            )
            ratio = float(n_star / row["n_max"])
            far = bool(ratio > max_extrapolation)
            where = ", ".join(f"{c}={row[c]!r}" for c in self.by)
            if far:
                answer = (
                    "never (the plateau a is short of it)" if np.isinf(n_star) else f"{n_star:.0f}"
                )
                warnings.warn(
                    f"subjects_needed({where}): {row['metric']}={target} needs {answer} "
                    f"training subjects, {ratio:.1f}x the largest training set observed "
                    f"({row['n_max']:.0f}); an extrapolation of the fitted law, not a "
                    "measurement. Train on more subjects to check it.",
                    UserWarning,
                    stacklevel=2,
                )
            rows.append(
                {
                    **{c: row[c] for c in self.by},
                    "metric": row["metric"],
                    "target": float(target),
                    "n_needed": float(n_star),
                    "ci_low": lo,
                    "ci_high": hi,
                    "n_max": row["n_max"],
                    "extrapolation": ratio,
                    "extrapolated": far,
                    "reachable_share": float(np.mean(np.isfinite(boot))) if len(boot) else np.nan,
                }
            )
        return pl.DataFrame(rows)

    def _reps(self, row: dict[str, Any]) -> np.ndarray:
        sub = self.replicates
        for c in self.by:
            sub = sub.filter(pl.col(c) == row[c])
        return sub.select("a", "b", "c").to_numpy()


def _needed(a: Any, b: Any, c: Any, target: float) -> Any:
    """``(b / (a − target))^(1/c)`` where positive, else ``inf`` (the plateau misses the target)."""
    a, b, c = (np.asarray(v, dtype=float) for v in (a, b, c))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = b / (a - target)
        out = np.where(ratio > 0, np.power(np.where(ratio > 0, ratio, 1.0), 1.0 / c), np.inf)
    return out


def fit_learning_curve(
    predictions: Any,
    metric: str = "auc",
    levels: Sequence[str] = ("subject_id",),
    by: str | Sequence[str] | None = ("dataset", "model"),
    *,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> LearningCurveFit:
    """Fit ``y = a − b·n^(−c)`` to each learning curve, with intervals from the bootstrap.

    Parameters are those of :func:`learning_curve`. The law is fitted to the curve's points by
    :func:`fit_power_law`, each point weighted by its interval's width (``sigma`` = half-width;
    a narrow interval pulls harder), and refitted to each of ``n_boot`` hierarchical bootstrap
    replicates of the whole curve (the same resampled test units at every size), which gives
    percentile intervals of ``a``, ``b``, ``c``, of predictions and of
    :meth:`LearningCurveFit.subjects_needed`.

    Notes
    -----
    Refitting on replicates propagates the test-sample uncertainty of every point, and their
    correlation across sizes, into the parameters without the delta method's linearisation
    (which three points would not support: they leave no residual degrees of freedom). The
    uncertainty of which training subjects were drawn enters only through the average over
    draws at each size.

    References
    ----------
    Figueroa, R. L., Zeng-Treitler, Q., Kandula, S. & Ngo, L. H. (2012). Predicting sample size
    required for classification performance. *BMC Medical Informatics and Decision Making*, 12, 8.
    Cho, J., Lee, K., Shin, E., Choy, G. & Do, S. (2015). How much data is needed to train a
    medical image deep learning system to achieve necessary high accuracy? arXiv:1511.06348.
    Davison, A. C. & Hinkley, D. V. (1997). *Bootstrap Methods and their Application*. Cambridge
    University Press (§3.8, hierarchical data).

    Examples
    --------
    >>> from raybench_analysis.simulate_training import simulate_learning_curve
    >>> fit = fit_learning_curve(simulate_learning_curve(seed=0), n_boot=50)
    >>> bool(fit.params["c"][0] > 0)
    True
    """
    frame, keys = _frame_and_keys(predictions, by)
    curve = learning_curve(frame, metric, levels, keys, n_boot=n_boot, alpha=alpha, seed=seed)
    reps = bootstrap_replicates(
        frame, metric=metric, levels=levels, by=[*keys, _FRACTION], n_boot=n_boot, seed=seed,
        average_over=_present(frame),
    )  # fmt: skip
    plateau = get_metric(metric).value_range
    params, replicate_rows = [], []
    groups = curve.partition_by(keys, as_dict=True, maintain_order=True) if keys else {(): curve}
    for key, points in groups.items():
        label = dict(zip(keys, key, strict=True))
        n = points["n_train"].to_numpy()
        y = points["estimate"].to_numpy()
        half = (points["ci_high"] - points["ci_low"]).to_numpy() / 2.0
        sigma = np.where(
            np.isfinite(half) & (half > 0), half, np.nanmax(half) if np.any(half > 0) else 1.0
        )
        where = "".join(f", {k}={v!r}" for k, v in label.items())
        try:
            a, b, c = fit_power_law(n, y, sigma, plateau)
        except AnalysisError as exc:
            raise AnalysisError(f"fit_learning_curve{where}: {exc}") from None
        sub = reps
        for k, v in label.items():
            sub = sub.filter(pl.col(k) == v)
        wide = (
            sub.with_columns(pl.col(_FRACTION).cast(pl.String))
            .pivot(on=_FRACTION, index="replicate", values="value")
            .sort("replicate")
        )
        matrix = wide.select([str(f) for f in points[_FRACTION].to_list()]).to_numpy()
        fitted = []
        for r, row in enumerate(matrix):
            if np.all(np.isfinite(row)):
                fitted.append((r, *fit_power_law(n, row, sigma, plateau)))
        boot = np.array([f[1:] for f in fitted]).reshape(-1, 3)
        replicate_rows += [
            {**label, "replicate": f[0], "a": f[1], "b": f[2], "c": f[3]} for f in fitted
        ]
        q = [alpha / 2, 1 - alpha / 2]
        lo, hi = np.quantile(boot, q, axis=0) if len(boot) else np.full((2, 3), np.nan)
        resid = y - power_law(n, a, b, c)
        values = {"a": a, "b": b, "c": c}
        cis = {
            f"{p}_ci_{side}": float(bound[i])
            for i, p in enumerate("abc")
            for side, bound in (("low", lo), ("high", hi))
        }
        params.append(
            {
                **label,
                "metric": points["metric"][0],
                **values,
                **cis,
                "n_min": float(n.min()),
                "n_max": float(n.max()),
                "n_points": len(n),
                "rmse": float(np.sqrt(np.mean(resid**2))),
                "n_boot": len(boot),
                "method": _METHOD,
            }
        )
    schema = {**{k: curve.schema[k] for k in keys}, "replicate": pl.Int64, "a": pl.Float64,
              "b": pl.Float64, "c": pl.Float64}  # fmt: skip
    return LearningCurveFit(
        params=pl.DataFrame(params),
        replicates=pl.DataFrame(replicate_rows, schema=schema),
        curve=curve,
        alpha=alpha,
        by=tuple(keys),
    )


def resampling_tables(
    predictions: pl.DataFrame,
    metric: Any,
    levels: Sequence[str],
    alpha: float,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """The tables :func:`raybench_analysis.summarize` adds when training sets were drawn.

    Empty unless ``train_fraction`` has two levels or more. Otherwise ``learning_curve`` (the
    points), ``learning_curve_fit`` (the law's parameters; at most 500 bootstrap refits) and
    ``sampling_variance`` (when some size was drawn twice in a fold), per dataset and model;
    ``notes`` lists what could not be computed and the warnings raised.
    """
    if _FRACTION not in predictions.columns or predictions[_FRACTION].drop_nulls().n_unique() < 2:
        return {}
    from .sampling import sampling_variance

    by = [c for c in ("dataset", "model") if c in predictions.columns]
    out: dict[str, Any] = {"notes": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit = fit_learning_curve(
                predictions, metric, levels, by, n_boot=min(n_boot, 500), alpha=alpha, seed=seed
            )
            out["learning_curve"], out["learning_curve_fit"] = fit.curve, fit.params
        except AnalysisError as exc:
            out["notes"].append(f"learning_curve_fit: not computed ({exc})")
            try:
                out["learning_curve"] = learning_curve(
                    predictions, metric, levels, by, n_boot=n_boot, alpha=alpha, seed=seed
                )
            except AnalysisError as inner:
                out["notes"].append(f"learning_curve: not computed ({inner})")
        try:
            table = sampling_variance(predictions, metric, by, alpha=alpha)
            if table.height:
                out["sampling_variance"] = table
        except AnalysisError as exc:
            out["notes"].append(f"sampling_variance: not computed ({exc})")
    out["notes"] += [f"learning curves: {w.message}" for w in caught]
    return out
