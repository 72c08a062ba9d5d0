"""Operating ranges: how far a perturbation can go before a model's metric leaves its tolerance.

A metrology statement about a trained network ("its AUC stays within 0.05 of its clean value for
Gaussian noise up to SD 0.2, with 95% confidence") is a sequence of equivalence-type claims, one per
tested severity. :func:`operating_range` makes them from the paired hierarchical bootstrap of
:func:`raybench_analysis.robustness` and tests the severities in a fixed order, from the least
severe upward, stopping at the first one that cannot be shown within tolerance: the fixed-sequence
procedure, which controls the family-wise error rate of the claims without adjusting α (Maurer,
Hothorn & Lehmacher 1995; Westfall & Krishen 2001).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from raybench_analysis._frames import AnalysisError, to_polars
from raybench_analysis.metrics import Metric, get_metric
from raybench_analysis.robustness import robustness
from raybench_analysis.vocabulary import (
    DEFAULT_ALPHA,
    DEFAULT_N_BOOT,
    DEFAULT_TOLERANCE,
    PERTURBATION_NEUTRAL,
)

__all__ = ["OperatingRange", "operating_range"]


@dataclass(frozen=True)
class OperatingRange:
    """The output of :func:`operating_range`.

    Attributes
    ----------
    ranges:
        One row per ``by`` group (dataset, model) and perturbation type: ``by`` columns,
        ``perturbation_type``, ``metric``, ``tolerance``, ``neutral`` (the severity that leaves
        the image unchanged), ``range_low``, ``range_high`` (the operating range: every severity
        between them, neutral included, is shown within tolerance; a side with no severity shown
        within tolerance ends at ``neutral``), ``tested_low``, ``tested_high`` (the most extreme
        severities tested on each side), ``censored_low``, ``censored_high`` (every tested severity
        of that side is within tolerance, so the true range may reach further than tested),
        ``n_severities``, ``alpha`` (family-wise error rate of the group's claims), ``method``,
        ``unit``.
    curve:
        The curve behind each range, one row per severity: ``by`` columns, ``perturbation_type``,
        ``perturbation``, ``severity``, ``side`` (``"above"`` or ``"below"`` the neutral severity),
        ``metric``, ``clean``, ``perturbed``, ``delta`` (perturbed − clean), ``se``, ``lower``,
        ``upper`` (the two-sided 1 − 2α_side interval of the delta, whose bound on the side of
        degradation is the one-sided 1 − α_side confidence bound that is tested), ``within`` (the
        bound is inside the tolerance), ``tested`` (the fixed sequence reached this severity),
        ``in_range`` (tested and within), ``alpha_side``, ``tolerance``, ``n_samples``,
        ``method`` and ``unit`` (of the paired bootstrap).
    """

    ranges: pl.DataFrame
    curve: pl.DataFrame


def operating_range(
    results: Any,
    tolerance: float = DEFAULT_TOLERANCE,
    metric: str | Metric = "auc",
    alpha: float = DEFAULT_ALPHA,
    *,
    levels: Sequence[str] = ("site", "subject_id"),
    by: Sequence[str] = ("dataset", "model"),
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
    scheme: str = "cluster",
    interval: str = "t",
    strata: Sequence[str] = (),
) -> OperatingRange:
    """The largest severity of each perturbation type at which the metric stays within tolerance.

    Parameters
    ----------
    results:
        A predictions table (docs/results.md), a mapping with a ``predictions`` table, or the
        object of :func:`raybench_analysis.load`, holding clean (``perturbation == "none"``) and
        perturbed test predictions of the same trials with ``perturbation_type`` and ``severity``.
    tolerance:
        The largest acceptable degradation, in the metric's units (``0.05``: five AUC points).
    metric:
        Metric name of :data:`raybench_analysis.metrics.METRICS` or a ``Metric``. For a metric
        where lower is better (MAE, ECE) degradation is an increase.
    alpha:
        Family-wise error rate of the claims of one group and perturbation type.
    levels, by, n_boot, seed, scheme, interval, strata:
        As in :func:`raybench_analysis.robustness`, which computes the paired deltas.

    Returns
    -------
    OperatingRange
        ``ranges`` (one row per group and type) and ``curve`` (one row per severity); columns in
        :class:`OperatingRange`.

    Notes
    -----
    For severity ``s`` the paired delta ``Δ(s) = θ(s) − θ(clean)`` of one trained model on the same
    test subjects has a hierarchical bootstrap interval (:func:`raybench_analysis.robustness`). The
    null hypothesis of severity ``s`` is "out of tolerance", ``H_s: Δ(s) ≤ −tolerance`` (``≥ +``
    for lower-is-better metrics), rejected at level ``α_side`` when the one-sided ``1 − α_side``
    confidence bound of ``Δ(s)`` lies inside the tolerance: the lower end of the two-sided
    ``1 − 2α_side`` interval.

    Severities are ordered by their distance from the neutral severity
    (:data:`raybench_analysis.vocabulary.PERTURBATION_NEUTRAL`: 0, or 1 for ``gamma`` and
    ``resolution``) and tested in that order, each at the full level ``α_side``, stopping at the
    first that is not rejected. This fixed-sequence procedure controls the family-wise error rate
    strongly at ``α_side`` with no adjustment (Maurer, Hothorn & Lehmacher 1995; Westfall & Krishen
    2001): the first true null in the sequence can be rejected only with probability ``α_side``,
    and nothing after it is tested unless it is. It needs no monotone degradation curve to be
    valid; with a curve that is not monotone the range ends at the first severity not shown within
    tolerance. Severities on both sides of the neutral value (``gamma`` 0.5 and 2) form two
    sequences, each tested at ``α_side = α / 2`` (Bonferroni), so that the claimed interval
    ``[range_low, range_high]`` as a whole holds with probability at least ``1 − α``. The error
    rate is controlled within each group and perturbation type, not across models or types.

    References
    ----------
    Maurer, W., Hothorn, L. A., & Lehmacher, W. (1995). Multiple comparisons in drug clinical
    trials and preclinical assays: a-priori ordered hypotheses. In J. Vollmar (Ed.), Biometrie in
    der chemisch-pharmazeutischen Industrie 6 (pp. 3–18). Gustav Fischer.

    Westfall, P. H., & Krishen, A. (2001). Optimally weighted, fixed sequence and gatekeeper
    multiple testing procedures. Journal of Statistical Planning and Inference, 99(1), 25–40.

    Schuirmann, D. J. (1987). A comparison of the two one-sided tests procedure and the power
    approach for assessing the equivalence of average bioavailability. Journal of
    Pharmacokinetics and Biopharmaceutics, 15(6), 657–680.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> run = simulate_predictions(n_sites=6, subjects_per_site=30, n_seeds=1, n_folds=2,
    ...                            models={"m": 2.0}, perturbations={"noise": [0.05, 0.5]})
    >>> out = operating_range(run.predictions, tolerance=0.05, n_boot=300)
    >>> out.ranges.select("perturbation_type", "range_high", "tested_high").row(0)
    ('noise', 0.05, 0.5)
    >>> out.curve["in_range"].to_list()
    [True, False]
    """
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise AnalysisError(
            f"operating_range: tolerance={tolerance!r} must be a finite number >= 0, in the "
            "metric's units (e.g. 0.05 for five AUC points)."
        )
    if not 0 < alpha < 0.5:
        raise AnalysisError(f"operating_range: alpha={alpha!r} must be in (0, 0.5).")
    m = get_metric(metric)
    frame = _predictions(results)
    for col in ("perturbation_type", "severity"):
        if col not in frame.columns:
            raise AnalysisError(
                f"operating_range: predictions lack the {col!r} column; operating ranges need "
                "perturbation severities (evaluation.perturbations with a list of values)."
            )
    perturbed = frame.filter(pl.col("perturbation") != "none")
    if perturbed.filter(pl.col("severity").is_not_null()).height == 0:
        raise AnalysisError(
            "operating_range: no perturbed prediction carries a severity; list severities in "
            "evaluation.perturbations."
        )
    frame = frame.filter(
        (pl.col("perturbation") == "none")
        | (pl.col("severity").is_not_null() & pl.col("perturbation_type").is_not_null())
    ).with_columns(pl.col("severity").cast(pl.Float64))
    sides = _sides(frame)
    by_cols = [c for c in by if c in frame.columns]
    args = {"levels": levels, "n_boot": n_boot, "seed": seed, "by": by_cols}
    args |= {"scheme": scheme, "interval": interval, "strata": strata}
    curves = []
    for n_sides in sorted(set(sides.values())):
        alpha_side = alpha / n_sides
        types = [t for t, k in sides.items() if k == n_sides]
        part = frame.filter(
            (pl.col("perturbation") == "none") | pl.col("perturbation_type").is_in(types)
        )
        table = robustness(part, m, alpha=2 * alpha_side, **args)
        curves.append(table.with_columns(alpha_side=pl.lit(alpha_side)))
    robust = pl.concat(curves, how="vertical_relaxed")
    curve, ranges = _fixed_sequence(robust, by_cols, m, float(tolerance), alpha)
    return OperatingRange(ranges=ranges, curve=curve)


def _predictions(results: Any) -> pl.DataFrame:
    """The predictions table of any accepted ``results``."""
    if isinstance(results, Mapping) and "predictions" in results:
        return to_polars(results["predictions"], name="predictions")
    if hasattr(results, "predictions"):
        return to_polars(results.predictions, name="predictions")
    return to_polars(results, name="predictions")


def _neutral(kind: str) -> float:
    return PERTURBATION_NEUTRAL.get(kind, 0.0)


def _sides(frame: pl.DataFrame) -> dict[str, int]:
    """Perturbation type -> number of sides of its neutral severity that were tested (1 or 2)."""
    sevs = (
        frame.filter(pl.col("perturbation") != "none")
        .group_by("perturbation_type")
        .agg(pl.col("severity").unique())
    )
    out = {}
    for kind, values in sevs.iter_rows():
        signs = {math.copysign(1.0, v - _neutral(kind)) for v in values if v != _neutral(kind)}
        if not signs:
            raise AnalysisError(
                f"operating_range: perturbation_type={kind!r} was only tested at its neutral "
                f"severity {_neutral(kind):g}, which leaves images unchanged."
            )
        out[str(kind)] = len(signs)
    return out


def _fixed_sequence(
    robust: pl.DataFrame, by_cols: list[str], m: Metric, tolerance: float, alpha: float
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Test each side's severities in order of distance from neutral; stop at the first failure."""
    curve_rows: list[dict[str, Any]] = []
    range_rows: list[dict[str, Any]] = []
    keys = [*by_cols, "perturbation_type"]
    for key, part in robust.group_by(keys, maintain_order=True):
        info = dict(zip(keys, key, strict=True))
        neutral = _neutral(str(info["perturbation_type"]))
        limits = {"above": neutral, "below": neutral}
        tested = {"above": neutral, "below": neutral}
        censored = {"above": False, "below": False}
        for side, sign in (("above", 1.0), ("below", -1.0)):
            rows = [r for r in part.iter_rows(named=True) if sign * (r["severity"] - neutral) > 0]
            rows.sort(key=lambda r: abs(r["severity"] - neutral))
            going = True
            for r in rows:
                bound = r["ci_low"] if m.higher_is_better else -r["ci_high"]
                within = bool(math.isfinite(bound) and bound > -tolerance)
                reached, going = going, going and within
                if going:
                    limits[side] = r["severity"]
                curve_rows.append(
                    {
                        **info,
                        "perturbation": r["perturbation"],
                        "severity": r["severity"],
                        "side": side,
                        "metric": r["metric"],
                        "clean": r["clean"],
                        "perturbed": r["perturbed"],
                        "delta": r["estimate"],
                        "se": r["se"],
                        "lower": r["ci_low"],
                        "upper": r["ci_high"],
                        "within": within,
                        "tested": reached,
                        "in_range": reached and within,
                        "alpha_side": r["alpha_side"],
                        "tolerance": tolerance,
                        "n_samples": r["n_samples"],
                        "method": r["method"],
                        "unit": r["unit"],
                    }
                )
            if rows:
                tested[side] = rows[-1]["severity"]
                censored[side] = going
        first = part.row(0, named=True)
        range_rows.append(
            {
                **info,
                "metric": first["metric"],
                "tolerance": tolerance,
                "neutral": neutral,
                "range_low": limits["below"],
                "range_high": limits["above"],
                "tested_low": tested["below"],
                "tested_high": tested["above"],
                "censored_low": censored["below"],
                "censored_high": censored["above"],
                "n_severities": part.height,
                "alpha": alpha,
                "method": "fixed-sequence test of one-sided bounds from the "
                + first["method"].removeprefix("paired "),
                "unit": first["unit"],
            }
        )
    order = [*by_cols, "perturbation_type"]
    curve = pl.DataFrame(curve_rows).sort([*order, "side", "severity"])
    return curve, pl.DataFrame(range_rows).sort(order)
