"""Coverage of 95% intervals on hierarchical data with known truth (prints JSON).

Each replicate simulates a cross-validated benchmark (``simulate_predictions``: sites with their
own shift and separation, subjects, sessions, several seeds and outer folds with seed and split
effects), computes intervals for the model's accuracy and AUC with several resampling schemes, and
checks whether they contain the population value of *these trained models on new patients from
new sites* (``truth`` with ``estimand="trained"``). Resampling schemes, each with the few-cluster
t interval (``_t``: estimate ± t_{G-1} sd* sqrt(G/(G-1)), G top-level units), the same centred on
the bias-corrected estimate (``_tbc``) and the percentile interval (``_pct``):

- ``cluster``: ``bootstrap(levels=["site", "subject_id"])``: sites drawn, subjects kept whole
  (raybench's default is ``cluster_t``);
- ``two_stage``: ``scheme="two_stage"``: sites drawn, then subjects redrawn within each drawn
  site (the former default, ``two_stage_pct``);
- ``subject``: ``levels=["subject_id"]`` (right for new patients of the same sites, too narrow
  for new sites);
- ``naive_iid``: ``levels=[]``, every prediction row as independent (what tools that bootstrap
  images do).

Two estimands (``--estimand``): ``cell`` (the default, what ``raybench analyze`` reports): the
metric of each (outer fold, seed) trained model on its test fold, averaged over seeds then folds
(``bootstrap(average_over=("outer_fold", "seed"))``), for accuracy, AUC (truth ``auc_cell``) and
Dice (the segmentation variant of the simulator); ``pooled``: one metric over all folds and seeds
pooled (truth ``auc_pooled``), the estimand of the first study.

Run ``python -m analysis.validation.coverage [--quick] [--estimand cell|pooled]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from typing import Any

import numpy as np
from raybench_analysis import bootstrap_replicates, simulate_predictions
from raybench_analysis.bootstrap import interval_from_replicates

#: name -> (levels, scheme); each is summarised with both intervals
SCHEMES: dict[str, tuple[list[str], str]] = {
    "cluster": (["site", "subject_id"], "cluster"),
    "two_stage": (["site", "subject_id"], "two_stage"),
    "subject": (["subject_id"], "cluster"),
    "naive_iid": ([], "cluster"),
}
INTERVALS = {"t": "t", "tbc": "t_bc", "pct": "percentile"}
#: estimand -> metric -> (simulated task, truth row)
METRICS: dict[str, dict[str, tuple[str, str]]] = {
    "cell": {
        "accuracy": ("classification", "accuracy"),
        "auc": ("classification", "auc_cell"),
        "dice": ("segmentation", "dice"),
    },
    "pooled": {"accuracy": ("classification", "accuracy"), "auc": ("classification", "auc_pooled")},
}
#: model effect per task: a separation of 1.5 latent SD (AUC about 0.8); a mean Dice logit of 1.5
EFFECT = {"classification": 1.5, "segmentation": 1.5}


def one_replicate(
    rep: int,
    n_sites: int,
    subjects_per_site: int,
    n_boot: int,
    sim: dict[str, Any],
    estimand: str = "cell",
    schemes: tuple[str, ...] = tuple(SCHEMES),
) -> dict[str, dict[str, tuple[bool, float]]]:
    """(covered, width) per metric and scheme for one simulated benchmark."""
    runs = {
        task: simulate_predictions(
            task=task,
            models={"m": EFFECT[task]},
            n_sites=n_sites,
            subjects_per_site=subjects_per_site,
            seed=rep,
            **sim,
        )
        for task in {task for task, _ in METRICS[estimand].values()}
    }
    average_over = ("outer_fold", "seed") if estimand == "cell" else None
    out: dict[str, dict[str, tuple[bool, float]]] = {}
    for metric, (task, truth_name) in METRICS[estimand].items():
        preds = runs[task].predictions
        truth = runs[task].truth.filter(estimand="trained", perturbation="none")
        n_units = {
            "cluster": n_sites,
            "two_stage": n_sites,
            "subject": preds["subject_id"].n_unique(),
            "naive_iid": preds.height,
        }
        value = truth.filter(metric=truth_name)["value"][0]
        res: dict[str, tuple[bool, float]] = {}
        for scheme in schemes:
            levels, how = SCHEMES[scheme]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reps = bootstrap_replicates(
                    preds, metric=metric, levels=levels, n_boot=n_boot, seed=rep, scheme=how,
                    average_over=average_over,
                )  # fmt: skip
            est = float(reps["estimate"][0])
            for short, interval in INTERVALS.items():
                ci = interval_from_replicates(
                    est, reps["value"].to_numpy(), n_units[scheme], 0.05, interval
                )
                lo, hi = ci["ci_low"], ci["ci_high"]
                res[f"{scheme}_{short}"] = (bool(lo <= value <= hi), hi - lo)
        out[metric] = res
    return out


def run(
    n_reps: int,
    n_boot: int,
    sites: list[int],
    subjects_per_site: int,
    sim: dict[str, Any],
    estimand: str = "cell",
    schemes: tuple[str, ...] = tuple(SCHEMES),
) -> dict[str, Any]:
    """Coverage and mean width per number of sites, metric and scheme."""
    results: dict[str, Any] = {}
    for n_sites in sites:
        t0 = time.time()
        reps = [
            one_replicate(r, n_sites, subjects_per_site, n_boot, sim, estimand, schemes)
            for r in range(n_reps)
        ]
        per_metric: dict[str, Any] = {}
        for metric in METRICS[estimand]:
            per_scheme = {}
            for scheme in (f"{s}_{i}" for s in schemes for i in INTERVALS):
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
    parser.add_argument("--estimand", choices=sorted(METRICS), default="cell")
    parser.add_argument(
        "--schemes", default=",".join(SCHEMES), help=f"comma-separated subset of {list(SCHEMES)}"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (20 if args.quick else 200)
    n_boot = args.n_boot or (200 if args.quick else 1000)
    sites = [int(s) for s in (args.sites or ("4,16" if args.quick else "4,8,16,32")).split(",")]
    sim = {"n_seeds": 3, "n_folds": 5, "sessions": 2, "site_sd": 0.5, "site_effect_sd": 0.3,
           "subject_sd": 0.8, "session_sd": 0.3, "seed_sd": 0.1, "split_sd": 0.1,
           "noise_sd": 0.5}  # fmt: skip
    report = {
        "study": "coverage of 95% intervals (truth: trained models, new patients from new sites)",
        "estimand": args.estimand,
        "replicates": reps,
        "n_boot": n_boot,
        "subjects_per_site": args.subjects_per_site,
        "simulation": sim,
        "results_by_n_sites": run(
            reps,
            n_boot,
            sites,
            args.subjects_per_site,
            sim,
            args.estimand,
            tuple(args.schemes.split(",")),
        ),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
