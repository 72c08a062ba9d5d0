"""Learning curves and sampling variance against a known truth: a simulation study (prints JSON).

Data: :func:`raybench_analysis.simulate_learning_curve` (a binormal model whose population AUC
follows ``a − b·n^(−c)`` exactly, with training draws whose AUC varies with SD ``τ/√n``), 4 sites,
240 test subjects, 3 outer folds, fractions 1/8, 1/4, 1/2 and 1 of 160 training subjects, 3 draws
per fraction, 2 seeds. Per replicate, three checks:

1. *Curve coverage*: does each point's interval (:func:`learning_curve`, subject-level bootstrap)
   cover its truth, the mean population AUC of the trials at that size?
2. *Fit*: the law refitted to the points (:func:`fit_learning_curve`): error of the fitted curve at
   the observed sizes, and at 2× and 4× the largest (extrapolation), against the true law.
3. *Sampling variance*: :func:`sampling_variance`'s ``train_sample`` part at 20 and 80 subjects
   (8 draws per fold) against ``τ²/n``, and how often it ranks the two sizes correctly.

Run ``python -m analysis.validation.learning_curve [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np
import polars as pl
from raybench_analysis import (
    fit_learning_curve,
    learning_curve,
    power_law,
    sampling_variance,
    simulate_learning_curve,
)

TRUE = {"a": 0.9, "b": 1.2, "c": 0.5}
TAU = 0.2


def _truth(preds: pl.DataFrame) -> np.ndarray:
    per_size = preds.unique("trial_id").group_by("n_train_subjects").agg(pl.col("true_auc").mean())
    return per_size.sort("n_train_subjects")["true_auc"].to_numpy()


def replicate(seed: int, n_boot: int) -> dict[str, Any]:
    """One simulated run: coverage of the points, error of the fit, sampling-variance estimates."""
    preds = simulate_learning_curve(**TRUE, draw_sd=TAU, site_sd=0.0, subjects_per_site=60,
                                    seed=seed)  # fmt: skip
    curve = learning_curve(preds, n_boot=n_boot, levels=["subject_id"], seed=seed)
    truth = _truth(preds)
    covered = (curve["ci_low"].to_numpy() <= truth) & (truth <= curve["ci_high"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_learning_curve(preds, n_boot=min(n_boot, 100), levels=["subject_id"], seed=seed)
    sizes = np.array([20.0, 40.0, 80.0, 160.0, 320.0, 640.0])
    fitted = fit.predict(sizes)["estimate"].to_numpy()
    error = fitted - power_law(sizes, **TRUE)
    wide = simulate_learning_curve(**TRUE, draw_sd=TAU, site_sd=0.0, fractions=(0.125, 0.5),
                                   repeats=8, seed=10_000 + seed)  # fmt: skip
    sv = sampling_variance(wide).filter(pl.col("component") == "train_sample")
    return {
        "covered": covered.tolist(),
        "error": error.tolist(),
        "sv": sv["variance"].to_list(),
        "sv_covered": [
            bool(lo <= TAU**2 / n <= hi)
            for lo, hi, n in zip(sv["ci_low"], sv["ci_high"], sv["n_train"], strict=True)
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the study and print its JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    parser.add_argument("--reps", type=int, default=None)
    args = parser.parse_args(argv)
    reps = args.reps or (10 if args.quick else 100)
    start = time.perf_counter()
    runs = [replicate(seed, 200) for seed in range(reps)]
    covered = np.array([r["covered"] for r in runs])
    error = np.array([r["error"] for r in runs])
    sv = np.array([r["sv"] for r in runs])
    report = {
        "study": "learning_curve",
        "replicates": reps,
        "true_law": TRUE,
        "sizes": [20, 40, 80, 160],
        "curve_coverage_95": covered.mean(axis=0).round(3).tolist(),
        "fit_rmse_at": dict(
            zip(
                ["20", "40", "80", "160", "320 (2x)", "640 (4x)"],
                np.sqrt((error**2).mean(axis=0)).round(4).tolist(),
                strict=True,
            )
        ),
        "fit_mean_error_at": dict(
            zip(
                ["20", "40", "80", "160", "320 (2x)", "640 (4x)"],
                error.mean(axis=0).round(4).tolist(),
                strict=True,
            )
        ),
        "train_sample_variance": {
            "n": [20, 80],
            "truth": [TAU**2 / 20, TAU**2 / 80],
            "mean_estimate": sv.mean(axis=0).round(5).tolist(),
            "interval_coverage": np.mean([r["sv_covered"] for r in runs], axis=0).round(3).tolist(),
            "ranked_correctly": float(np.mean(sv[:, 0] > sv[:, 1])),
        },
        "seconds": round(time.perf_counter() - start, 1),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
