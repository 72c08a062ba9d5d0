"""Bias and interval coverage of ``variance_components`` on data with known truth (prints JSON).

Each replicate simulates per-sample values of one model on ``K`` outer splits x ``S`` seeds with
``n`` test subjects per split: ``v_ksi = 0.7 + u_k + e_ks + b_i + eps_ksi`` with split effect
``u_k ~ N(0, sd_split)``, seed effect ``e_ks ~ N(0, sd_seed)``, subject effect ``b_i ~ N(0,
sd_subject)`` shared by the seeds of a split, and per-prediction noise ``eps ~ N(0, sd_noise)``.
The trial score is the mean of ``v`` over its test set. True components: ``split = sd_split^2``,
``test_sample = sd_subject^2 / n``, ``seed = sd_seed^2 + sd_noise^2 / n`` and their sum. Reported
per design: mean estimate / truth (relative bias) and coverage of the 95% intervals, for the default
closed-form intervals (``ci="chi2"``) and the parametric bootstrap (``ci="bootstrap"``); the
test-sample interval is a t interval over splits in both.

Run ``python -m analysis.validation.variance_coverage [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import polars as pl
from raybench_analysis import variance_components

SIM = {"sd_split": 0.04, "sd_seed": 0.02, "sd_subject": 0.2, "sd_noise": 0.1, "n_test": 40}


def one_replicate(
    rng: np.random.Generator, k: int, s: int, n_boot: int, ci: str
) -> dict[str, tuple]:
    """(estimate, ci_low, ci_high) per component for one simulated run."""
    n = SIM["n_test"]
    u = rng.normal(0, SIM["sd_split"], (k, 1, 1))
    e = rng.normal(0, SIM["sd_seed"], (k, s, 1))
    b = rng.normal(0, SIM["sd_subject"], (k, 1, n))
    v = 0.7 + u + e + b + rng.normal(0, SIM["sd_noise"], (k, s, n))
    fold, seed, subj = np.meshgrid(np.arange(k), np.arange(s), np.arange(n), indexing="ij")
    preds = pl.DataFrame(
        {
            "outer_fold": fold.ravel(),
            "seed": seed.ravel(),
            "subject_id": (fold * n + subj).ravel(),
            "v": v.ravel(),
        }
    )
    scores = preds.group_by(["outer_fold", "seed"]).agg(score=pl.col("v").mean())
    vc = variance_components(
        scores,
        predictions=preds,
        metric="mean",
        sample_value="v",
        n_boot=n_boot,
        ci=ci,
        random_state=int(rng.integers(1 << 31)),
    )
    return {
        r["component"]: (r["variance"], r["ci_low"], r["ci_high"]) for r in vc.iter_rows(named=True)
    }


def truth() -> dict[str, float]:
    """The components the estimator targets."""
    n = SIM["n_test"]
    out = {
        "split": SIM["sd_split"] ** 2,
        "seed": SIM["sd_seed"] ** 2 + SIM["sd_noise"] ** 2 / n,
        "test_sample": SIM["sd_subject"] ** 2 / n,
    }
    out["total"] = sum(out.values())
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the study, print and return its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    reps = args.reps or (20 if args.quick else 300)
    n_boot = args.n_boot or (200 if args.quick else 1000)
    rng = np.random.default_rng(args.seed)
    true = truth()
    started = time.perf_counter()
    designs: dict[str, Any] = {}
    for k, s in ((5, 3), (10, 3), (30, 3), (10, 10)):
        for ci in ("chi2", "bootstrap"):
            results = [one_replicate(rng, k, s, n_boot, ci) for _ in range(reps)]
            table = {}
            for name, value in true.items():
                est = np.array([r[name][0] for r in results])
                lo = np.array([r[name][1] for r in results])
                hi = np.array([r[name][2] for r in results])
                table[name] = {
                    "truth": value,
                    "mean_estimate_over_truth": round(float(est.mean() / value), 3),
                    "coverage_95": round(float(np.mean((lo <= value) & (value <= hi))), 3),
                }
            designs.setdefault(f"{k}_splits_x_{s}_seeds", {})[f"ci={ci}"] = table
    report = {
        "study": "variance_components: bias and 95% interval coverage on simulated truth",
        "simulation": SIM,
        "replicates": reps,
        "n_boot": n_boot,
        "monte_carlo_se_of_coverage": round(float(np.sqrt(0.95 * 0.05 / reps)), 4),
        "results": designs,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
