"""Robustness under input perturbations: metric deltas against clean predictions, with intervals.

Each refit trial is evaluated on its test fold clean (``perturbation == "none"``) and under every
perturbation of the suite (noise, bias field, ...) at several severities. The quantity of interest
is the change of the metric caused by the perturbation, for the same trained model and the same
test images; its uncertainty comes from the test sample, so the interval resamples sites and
subjects once and evaluates clean and perturbed metrics on the same draw (a paired bootstrap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from raybench_analysis._frames import AnalysisError, require_columns, to_polars
from raybench_analysis.bootstrap import INTERVALS, SCHEMES, interval_from_replicates
from raybench_analysis.contract import raw_rows
from raybench_analysis.metrics import Metric, get_metric
from raybench_analysis.ranking import replicate_metric, resample_weights

__all__ = ["robustness"]

_COLUMNS = ["perturbation", "trial_id", "sample_id", "model"]


def robustness(
    predictions: Any,
    metric: str | Metric = "auc",
    levels: Sequence[str] = ("site", "subject_id"),
    n_boot: int = 1000,
    seed: int = 0,
    *,
    alpha: float = 0.05,
    by: Sequence[str] = ("dataset", "model"),
    scheme: str = "cluster",
    interval: str = "t",
    strata: Sequence[str] = (),
) -> pl.DataFrame:
    """Metric change under each perturbation and severity, with a paired hierarchical bootstrap CI.

    Parameters
    ----------
    predictions:
        Predictions table (docs/results.md) with clean rows (``perturbation == "none"``) and
        perturbed rows of the same trials and samples.
    metric:
        Metric name of :data:`raybench_analysis.metrics.METRICS` or a ``Metric``.
    levels:
        Resampling hierarchy from the top; ``[]`` resamples images i.i.d.
    n_boot, seed, alpha:
        Bootstrap samples, generator seed, and 1 - coverage of the interval.
    by:
        Columns that define one robustness curve (those absent are ignored).
    scheme, interval, strata:
        As in :func:`raybench_analysis.bootstrap`: the top level drawn with its lower levels
        kept whole (``"cluster"``, default) or every level redrawn (``"two_stage"``); few-cluster
        ``"t"`` interval (default) or ``"percentile"``.

    Returns
    -------
    polars.DataFrame
        One row per ``by`` group and perturbation: ``by`` columns, ``perturbation``,
        ``perturbation_type``, ``severity``, ``metric``, ``clean``, ``perturbed``, ``estimate``
        (perturbed − clean), ``se``, ``ci_low``, ``ci_high``, ``p_value``, ``n_samples``,
        ``n_boot``, ``method``, ``unit``.

    Notes
    -----
    Only (trial, sample) pairs present both clean and perturbed are used, so the delta compares
    like with like. For bootstrap sample ``b``, ``Δ^b = θ_pert^b − θ_clean^b`` with both metrics
    computed on the same resampled units (seeds averaged, folds pooled). With the default t
    interval, ``se = sd(Δ^b) sqrt(G/(G − H))`` (G resampled top-level units, H strata), the
    interval is ``Δ ± t_{G−H, 1−α/2} se`` and the two-sided p-value of "no change" is
    ``2 P(T_{G−H} ≥ |Δ|/se)`` (the few-cluster correction of Cameron, Gelbach & Miller 2008);
    with ``interval="percentile"`` the interval is the percentile interval of ``Δ^b``, ``se``
    their standard deviation, and ``p = min(1, 2 min(#(Δ^b ≤ 0)+1, #(Δ^b ≥ 0)+1)/(B+1))``
    (Efron & Tibshirani 1993, §16.4 — the bootstrap percentile test, approximate).

    References
    ----------
    Efron, B., & Tibshirani, R. J. (1993). An Introduction to the Bootstrap. Chapman & Hall.

    Cameron, A. C., Gelbach, J. B., & Miller, D. L. (2008). Bootstrap-based improvements for
    inference with clustered errors. Review of Economics and Statistics, 90(3), 414–427.

    Hendrycks, D., & Dietterich, T. (2019). Benchmarking neural network robustness to common
    corruptions and perturbations. International Conference on Learning Representations.

    Boone, L., Biparva, M., Mojiri Forooshani, P., et al. (2023). ROOD-MRI: Benchmarking the
    robustness of deep learning segmentation models to out-of-distribution and corrupted data in
    MRI. NeuroImage, 278, 120289.

    Examples
    --------
    >>> from raybench_analysis.simulate import simulate_predictions
    >>> run = simulate_predictions(n_sites=4, subjects_per_site=10, n_seeds=1, n_folds=2,
    ...                            models={"m": 2.0}, perturbations={"noise": [0.2]})
    >>> out = robustness(run.predictions, "auc", n_boot=200)
    >>> out.select("perturbation", "unit").row(0)
    ('noise(severity=0.2)', 'site>subject_id')
    >>> bool(out["estimate"][0] < 0)
    True
    """
    if not 0 < alpha < 1:
        raise AnalysisError(f"robustness: alpha={alpha!r} must be in (0, 1).")
    if scheme not in SCHEMES or interval not in INTERVALS:
        raise AnalysisError(
            f"robustness: scheme={scheme!r}, interval={interval!r}; allowed: scheme in "
            f"{list(SCHEMES)}, interval in {list(INTERVALS)}"
        )
    m = get_metric(metric)
    frame = to_polars(predictions, name="predictions")
    require_columns(frame, [*_COLUMNS, *m.columns], name="predictions", why="for robustness")
    if "split" in frame.columns:
        frame = frame.filter(pl.col("split") == "test")
    frame = raw_rows(frame)
    for col in ("perturbation_type", "severity"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(col))
    clean_mask = frame["perturbation"] == "none"
    if not clean_mask.any() or clean_mask.all():
        what = "clean rows (perturbation='none')" if not clean_mask.any() else "perturbed rows"
        raise AnalysisError(
            f"robustness: predictions hold no {what}; robustness needs both clean and perturbed "
            "evaluations of the same trials (evaluation.perturbations in the suite)."
        )
    # keep only (trial, sample) pairs evaluated clean
    clean_keys = frame.filter(clean_mask).select("trial_id", "sample_id").unique()
    frame = frame.join(clean_keys, on=["trial_id", "sample_id"], how="semi")
    weights = resample_weights(frame, levels, n_boot, seed, scheme=scheme, strata=strata)
    method = f"paired {weights.resampling} of the delta, " + {
        "percentile": "percentile interval",
        "t_bc": "bias-corrected few-cluster t interval",
    }.get(interval, "few-cluster t interval")
    index = frame.with_row_index("__row")
    by_cols = [c for c in by if c in frame.columns]
    rows: list[dict[str, Any]] = []
    group_cols = [*by_cols, "perturbation", "perturbation_type", "severity"]
    perturbed = index.filter(pl.col("perturbation") != "none")
    for key, part in perturbed.group_by(group_cols, maintain_order=True):
        info = dict(zip(group_cols, key, strict=True))
        pairs = part.select("trial_id", "sample_id")
        clean_part = index.filter(pl.col("perturbation") == "none").join(
            pairs, on=["trial_id", "sample_id"], how="semi"
        )
        theta_p = replicate_metric(frame, m, weights, part["__row"].to_numpy())
        theta_c = replicate_metric(frame, m, weights, clean_part["__row"].to_numpy())
        delta = theta_p - theta_c
        boot = delta[1:][np.isfinite(delta[1:])]
        if boot.size < 2 or not np.isfinite(delta[0]):
            raise AnalysisError(
                f"robustness: {m.name} is undefined for {info} (e.g. AUC with one class); "
                "choose another metric or check y_true."
            )
        ci = interval_from_replicates(
            float(delta[0]), boot, weights.n_top, alpha, interval, weights.n_strata
        )
        rows.append(
            {
                **info,
                "metric": m.label(),
                "clean": float(theta_c[0]),
                "perturbed": float(theta_p[0]),
                "estimate": float(delta[0]),
                "se": ci["se"],
                "ci_low": ci["ci_low"],
                "ci_high": ci["ci_high"],
                "p_value": ci["p_value"],
                "n_samples": int(pairs["sample_id"].n_unique()),
                "n_boot": int(boot.size),
                "method": method,
                "unit": weights.unit,
            }
        )
    return pl.DataFrame(rows).sort([*by_cols, "perturbation_type", "severity"], nulls_last=True)
