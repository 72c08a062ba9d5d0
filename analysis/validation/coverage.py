"""Coverage of 95% intervals on hierarchical data with known truth (prints JSON).

Each replicate simulates a cross-validated benchmark (``simulate_predictions``: sites with their
own shift and separation, subjects, sessions, several seeds and outer folds with seed and split
effects), computes intervals for the model's accuracy and AUC with several resampling schemes, and
checks whether they contain the population value of *these trained models on new patients from
new sites* (``truth`` with ``estimand="trained"``). Schemes:

- ``hierarchical``: ``bootstrap(levels=["site", "subject_id"])`` (raybench's default);
- ``hierarchical_t``: same bootstrap SE, interval ``estimate ± t_{S-1} se`` (S = number of sites),
  a small-sample correction for few top-level units;
- ``site_cluster``: ``bootstrap(levels=["site"])`` (Field & Welsh's consistent cluster bootstrap);
- ``site_cluster_t``: its SE inflated by ``sqrt(S/(S-1))`` (the bootstrap variance of a mean of S
  clusters is biased by ``(S-1)/S``), interval ``estimate ± t_{S-1} se`` (few-cluster correction,
  as for cluster-robust standard errors; Cameron & Miller 2015);
- ``subject_cluster``: ``bootstrap(levels=["subject_id"])`` (right for new patients of the same
  sites, too narrow for new sites);
- ``naive_iid``: ``bootstrap(levels=[])``, every prediction row as independent (what tools that
  bootstrap images do).

Run ``python -m analysis.validation.coverage [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np
from raybench_analysis import bootstrap, simulate_predictions
from scipy import stats

SCHEMES: dict[str, list[str]] = {
    "hierarchical": ["site", "subject_id"],
    "site_cluster": ["site"],
    "subject_cluster": ["subject_id"],
    "naive_iid": [],
}
METRICS = {"accuracy": "accuracy", "auc": "auc_pooled"}  # metric -> truth row


def one_replicate(
    rep: int, n_sites: int, subjects_per_site: int, n_boot: int, sim: dict[str, Any]
) -> dict[str, dict[str, tuple[bool, float]]]:
    """(covered, width) per metric and scheme for one simulated benchmark."""
    run = simulate_predictions(
        models={"m": 1.5}, n_sites=n_sites, subjects_per_site=subjects_per_site, seed=rep, **sim
    )
    preds = run.predictions
    truth = run.truth.filter(estimand="trained", perturbation="none")
    out: dict[str, dict[str, tuple[bool, float]]] = {}
    for metric, truth_name in METRICS.items():
        value = truth.filter(metric=truth_name)["value"][0]
        res: dict[str, tuple[bool, float]] = {}
        for scheme, levels in SCHEMES.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                row = bootstrap(preds, metric=metric, levels=levels, n_boot=n_boot, seed=rep).row(
                    0, named=True
                )
            res[scheme] = (row["ci_low"] <= value <= row["ci_high"], row["ci_high"] - row["ci_low"])
            if scheme == "hierarchical":
                half = stats.t.ppf(0.975, n_sites - 1) * row["se"]
                lo, hi = row["estimate"] - half, row["estimate"] + half
                res["hierarchical_t"] = (lo <= value <= hi, hi - lo)
            if scheme == "site_cluster":
                se = row["se"] * np.sqrt(n_sites / (n_sites - 1))
                half = stats.t.ppf(0.975, n_sites - 1) * se
                lo, hi = row["estimate"] - half, row["estimate"] + half
                res["site_cluster_t"] = (lo <= value <= hi, hi - lo)
        out[metric] = res
    return out


def run(
    n_reps: int, n_boot: int, sites: list[int], subjects_per_site: int, sim: dict[str, Any]
) -> dict[str, Any]:
    """Coverage and mean width per number of sites, metric and scheme."""
    results: dict[str, Any] = {}
    for n_sites in sites:
        t0 = time.time()
        reps = [one_replicate(r, n_sites, subjects_per_site, n_boot, sim) for r in range(n_reps)]
        per_metric: dict[str, Any] = {}
        for metric in METRICS:
            per_scheme = {}
            for scheme in [*SCHEMES, "hierarchical_t", "site_cluster_t"]:
                cov = np.array([r[metric][scheme][0] for r in reps], dtype=float)
                width = np.array([r[metric][scheme][1] for r in reps])
                p = float(cov.mean())
                per_scheme[scheme] = {
                    "coverage": p,
                    "mc_se": float(np.sqrt(p * (1 - p) / len(cov))),
                    "mean_width": float(width.mean()),
                }
            per_metric[metric] = per_scheme
        results[str(n_sites)] = {"seconds": round(time.time() - t0, 1), **per_metric}
        print(f"# {n_sites} sites done in {time.time() - t0:.0f}s", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the study, print and return its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=None)
    parser.add_argument("--sites", type=str, default=None, help="comma-separated, e.g. 4,8,16")
    parser.add_argument("--subjects-per-site", type=int, default=20)
    args = parser.parse_args(argv)
    reps = args.reps or (20 if args.quick else 200)
    n_boot = args.n_boot or (200 if args.quick else 1000)
    sites = [int(s) for s in (args.sites or ("4,16" if args.quick else "4,8,16,32")).split(",")]
    sim = {"n_seeds": 3, "n_folds": 5, "sessions": 2, "site_sd": 0.5, "site_effect_sd": 0.3,
           "subject_sd": 0.8, "session_sd": 0.3, "seed_sd": 0.1, "split_sd": 0.1,
           "noise_sd": 0.5}  # fmt: skip
    report = {
        "study": "coverage of 95% intervals (truth: trained models, new patients from new sites)",
        "replicates": reps,
        "n_boot": n_boot,
        "subjects_per_site": args.subjects_per_site,
        "simulation": sim,
        "results_by_n_sites": run(reps, n_boot, sites, args.subjects_per_site, sim),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
