"""Type-I error at alpha = 0.05 of model comparisons under a true null (prints JSON).

Two models with the same population performance are trained over several seeds and outer folds
(``simulate_predictions`` with equal model effects, no seed or split effect on discrimination but
fresh prediction noise in every trial) and err on *different* patients (a model-specific subject
effect), as real networks do. On a finite test set one of them is then luckier, in every seed
alike. Tests compared, on the same simulated runs:

- ``compare_bootstrap``: ``compare(method="bootstrap", levels=["site", "subject_id"])``, the
  default cluster bootstrap with the few-cluster t interval;
- ``compare_bootstrap_two_stage_pct``: the same with ``scheme="two_stage",
  interval="percentile"`` (the former default: conservative);
- ``compare_bootstrap_site_pct``: cluster bootstrap of sites with the percentile interval;
- ``compare_bootstrap_subject``: ``levels=["subject_id"]`` (new patients of the same sites);
- ``compare_bootstrap_subject_strata``: ``levels=["subject_id"], strata="site"``;
- ``compare_corrected_ttest``: ``compare(method="corrected_ttest")`` (Nadeau & Bengio 2003);
- ``naive_image_bootstrap``: ``compare(method="bootstrap", levels=[])`` (images as independent);
- ``naive_seed_fold_ttest``: paired t-test over the (seed, fold) scores as independent replicates;
- ``naive_seed_ttest``: paired t-test over seeds (folds pooled) as independent replicates.

Run ``python -m analysis.validation.type1_error [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np
import polars as pl
from raybench_analysis import compare, simulate_predictions
from raybench_analysis.metrics import metric_by
from scipy import stats


def _scores(preds: pl.DataFrame, keys: list[str], metric: str) -> pl.DataFrame:
    per = metric_by(preds, metric, by=["model", *keys])
    return per.pivot(on="model", index=keys, values="estimate").sort(keys)


def one_replicate(
    rep: int, n_boot: int, sim: dict[str, Any], metric: str = "auc", default_only: bool = False
) -> dict[str, float]:
    """p-value of every test (or of raybench's default two only) on one simulated null benchmark."""
    task = "segmentation" if metric == "dice" else "classification"
    run = simulate_predictions(task=task, models={"a": 1.5, "b": 1.5}, seed=rep, **sim)
    preds = run.predictions
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = compare(preds, metric=metric, levels=["site", "subject_id"], n_boot=n_boot,
                       method=("bootstrap", "corrected_ttest"), seed=rep)  # fmt: skip
    default = {
        "compare_bootstrap": ours.filter(pl.col("method").str.contains("bootstrap"))["p_value"][0],
        "compare_corrected_ttest": ours.filter(pl.col("method").str.contains("t-test"))["p_value"][
            0
        ],
    }
    if default_only:
        return default
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        subject = compare(preds, metric=metric, levels=["subject_id"], n_boot=n_boot,
                          method="bootstrap", seed=rep)  # fmt: skip
        strata = compare(preds, metric=metric, levels=["subject_id"], n_boot=n_boot,
                         method="bootstrap", seed=rep, strata="site")  # fmt: skip
        two = compare(preds, metric=metric, levels=["site", "subject_id"], n_boot=n_boot,
                      method="bootstrap", seed=rep, scheme="two_stage",
                      interval="percentile")  # fmt: skip
        site_pct = compare(preds, metric=metric, levels=["site", "subject_id"], n_boot=n_boot,
                           method="bootstrap", seed=rep, interval="percentile")  # fmt: skip
        naive = compare(preds, metric=metric, levels=[], n_boot=n_boot, method="bootstrap",
                        seed=rep)  # fmt: skip
    p = {
        **default,
        "compare_bootstrap_two_stage_pct": two["p_value"][0],
        "compare_bootstrap_site_pct": site_pct["p_value"][0],
        "compare_bootstrap_subject": subject["p_value"][0],
        "compare_bootstrap_subject_strata": strata["p_value"][0],
        "naive_image_bootstrap": naive["p_value"][0],
    }
    per_trial = _scores(preds, ["seed", "outer_fold"], metric)
    p["naive_seed_fold_ttest"] = float(stats.ttest_rel(per_trial["a"], per_trial["b"]).pvalue)
    per_seed = _scores(preds, ["seed"], metric)
    p["naive_seed_ttest"] = float(stats.ttest_rel(per_seed["a"], per_seed["b"]).pvalue)
    return p


def run(
    n_reps: int,
    n_boot: int,
    sim: dict[str, Any],
    alpha: float = 0.05,
    metric: str = "auc",
    default_only: bool = False,
) -> dict[str, Any]:
    """Rejection rate of every test at ``alpha`` over ``n_reps`` null benchmarks."""
    t0 = time.time()
    pvals: dict[str, list[float]] = {}
    for rep in range(n_reps):
        for t, v in one_replicate(rep, n_boot, sim, metric, default_only).items():
            pvals.setdefault(t, []).append(v)
        if (rep + 1) % 25 == 0:
            print(f"# {rep + 1}/{n_reps} replicates, {time.time() - t0:.0f}s", file=sys.stderr)
    out = {}
    for t, values in pvals.items():
        arr = np.array(values)
        rate = float(np.mean(arr <= alpha))
        out[t] = {
            "rejection_rate": rate,
            "mc_se": float(np.sqrt(rate * (1 - rate) / len(arr))),
            "mean_p": float(arr.mean()),
        }
    return {"seconds": round(time.time() - t0, 1), "tests": out}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the study, print and return its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=None)
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--subjects-per-site", type=int, default=20)
    parser.add_argument(
        "--metric", default="auc", help="metric compared (auc, accuracy, ...; dice simulates "
        "the segmentation variant)"
    )  # fmt: skip
    parser.add_argument(
        "--default-only", action="store_true", help="only raybench's default tests (faster)"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (20 if args.quick else 200)
    n_boot = args.n_boot or (200 if args.quick else 1000)
    sim = {"n_sites": args.sites, "subjects_per_site": args.subjects_per_site, "n_seeds": 5,
           "n_folds": 5, "sessions": 2, "site_sd": 0.5, "site_effect_sd": 0.3, "subject_sd": 0.8,
           "session_sd": 0.3, "seed_sd": 0.0, "split_sd": 0.0, "noise_sd": 0.3,
           "model_subject_sd": 0.6}  # fmt: skip
    report = {
        "study": "type-I error at alpha=0.05, two equal models (null true for trained models "
        "and for the training procedure)",
        "replicates": reps,
        "n_boot": n_boot,
        "simulation": sim,
        "metric": args.metric,
        "results": run(reps, n_boot, sim, metric=args.metric, default_only=args.default_only),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
