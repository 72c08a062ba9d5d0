"""Obuchowski's clustered AUC test against the cluster bootstrap: coverage, type-I error, power.

Two models score the same patients, ``images`` images each, one label per patient (patient-level
disease), a patient effect shared by both models' scores of all its images (so images are
correlated), and model-specific noise. Under H0 both models have separation ``shift``; under H1
model b has ``0.7 · shift``; half the patients are diseased. Per setting (number of patients G)
and replicate the paired difference AUC(a) − AUC(b) is tested at α = 0.05 by

- ``obuchowski``: :func:`raybench_analysis.obuchowski.obuchowski` (normal interval);
- ``cluster_bootstrap_t``: patients resampled (B replicates), the few-cluster t interval of
  :func:`raybench_analysis.bootstrap.interval_from_replicates` (compare()'s default);
- ``delong_images``: DeLong on images as if independent (the naive test).

Coverage is of the true difference (computed on a 200,000-patient sample), type-I error is the
rejection rate under H0, power the rejection rate under H1. Prints JSON.

Run ``python -m analysis.validation.clustered_auc [--reps 300] [--boot 400]``.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from raybench_analysis.bootstrap import interval_from_replicates
from raybench_analysis.delong import delong
from raybench_analysis.metrics import auc
from raybench_analysis.obuchowski import obuchowski

METHODS = ("obuchowski", "cluster_bootstrap_t", "delong_images")


def simulate(patients: int, images: int, ratio: float, rng: np.random.Generator, shift: float):
    """Labels, two models' scores and the patient of every image."""
    cluster = np.repeat(np.arange(patients), images)
    y = rng.permutation(np.arange(patients) % 2)[cluster]  # half the patients diseased
    effect = rng.normal(0, 1.0, patients)[cluster]
    a = shift * y + effect + rng.normal(0, 0.8, len(y))
    b = ratio * shift * y + effect + rng.normal(0, 0.8, len(y))
    return y, a, b, cluster


def true_difference(images: int, ratio: float, shift: float) -> float:
    rng = np.random.default_rng(12345)
    y, a, b, _ = simulate(200_000 // images, images, ratio, rng, shift)
    return float(auc(y, a) - auc(y, b))


def one_run(patients, images, ratio, shift, truth, n_boot, rng) -> dict[str, tuple[bool, bool]]:
    """(covers truth, rejects 0) per method."""
    y, a, b, cluster = simulate(patients, images, ratio, rng, shift)
    out = {}
    ob = obuchowski(y, a, b, cluster).row(0, named=True)
    out["obuchowski"] = (ob["ci_low"] <= truth <= ob["ci_high"], ob["p_value"] < 0.05)
    dl = delong(y, a, b).row(0, named=True)
    out["delong_images"] = (dl["ci_low"] <= truth <= dl["ci_high"], dl["p_value"] < 0.05)
    reps = np.empty(n_boot)
    for r in range(n_boot):
        pick = rng.integers(0, patients, patients)
        rows = (pick[:, None] * images + np.arange(images)).ravel()
        yy = y[rows]
        reps[r] = auc(yy, a[rows]) - auc(yy, b[rows]) if 0 < yy.sum() < len(yy) else np.nan
    est = float(auc(y, a) - auc(y, b))
    ci = interval_from_replicates(est, reps, patients, 0.05, "t")
    out["cluster_bootstrap_t"] = (ci["ci_low"] <= truth <= ci["ci_high"], ci["p_value"] < 0.05)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--boot", type=int, default=400)
    parser.add_argument("--patients", type=int, nargs="+", default=[10, 20, 40, 80])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--shift", type=float, default=1.5)
    args = parser.parse_args()
    start = time.time()
    rows = []
    for scenario, ratio in (("null", 1.0), ("alternative", 0.7)):
        truth = true_difference(args.images, ratio, args.shift)
        for g in args.patients:
            rng = np.random.default_rng(1000 * g + int(ratio * 10))
            hits = {m: [0, 0] for m in METHODS}
            for _ in range(args.reps):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    res = one_run(g, args.images, ratio, args.shift, truth, args.boot, rng)
                for m, (cov, rej) in res.items():
                    hits[m][0] += cov
                    hits[m][1] += rej
            for m in METHODS:
                rows.append(
                    {
                        "scenario": scenario,
                        "patients": g,
                        "images": args.images,
                        "method": m,
                        "true_difference": truth,
                        "coverage": hits[m][0] / args.reps,
                        "rejection_rate": hits[m][1] / args.reps,
                        "reps": args.reps,
                    }
                )
    print(json.dumps({"study": "clustered_auc", "seconds": time.time() - start, "rows": rows}))


if __name__ == "__main__":
    main()
