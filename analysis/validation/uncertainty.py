"""Known-truth studies of the per-prediction uncertainty analyses (issue 9; prints JSON).

Each replicate simulates predictions whose truth is known (``simulate_uncertainty``: subjects
with two images in sites, outer folds, validation and test rows of every trial) and records:

- ``calibration_calibrated``: a perfectly calibrated predictor (temperature 1, no seed noise).
  How often the 95% interval of each calibration quantity contains its true value: the plug-in
  ECE and the debiased ℓ2 ECE (truth 0: does ``ci_low`` reach 0?), the recalibration slope
  (truth 1) and intercept (truth 0).
- ``calibration_temperature_2``: the same predictor reporting twice its logits. How often the
  slope interval excludes 1 and the ℓ2 ECE interval excludes 0 (detection), the fitted
  temperatures (truth 2) and the slope after temperature scaling.
- ``conformal_exchangeable``: realised coverage of split-conformal sets at α = 0.1 (LAC, APS,
  randomised APS), mean over replicates, against the guarantee [1 − α, 1 − α + 1/(n + 1)].
- ``conformal_shifted_site``: one site's labels are noisier than the model believes and the
  validation data leave it out: coverage at that site and at the others (marginal calibration),
  and at that site with Mondrian calibration when it is in the validation data.
- ``repeatability``: the interval of s_r against its true value (seed noise of known s.d. added
  to each probability; subjects with two samples).

Run ``python -m analysis.validation.uncertainty [--quick]``.
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
from raybench_analysis import (
    apply_temperature,
    calibration,
    conformal,
    conformal_sets,
    fit_temperature,
    repeatability,
    simulate_uncertainty,
)

SIM = {"n_sites": 6, "subjects_per_site": 30, "images_per_subject": 2, "n_folds": 3,
       "n_seeds": 1}  # fmt: skip
TRUTH = {"ece": 0.0, "ece_l2": 0.0, "slope": 1.0, "intercept": 0.0}


def _rate(hits: list[bool]) -> dict[str, float]:
    p = float(np.mean(hits))
    return {"rate": p, "mc_se": float(np.sqrt(p * (1 - p) / len(hits))), "n": len(hits)}


def calibration_studies(reps: int, n_boot: int) -> dict[str, Any]:
    """Coverage of the calibration intervals (calibrated), detection and recovery of T = 2."""
    hits: dict[str, list[bool]] = {}
    detect, detect_l2, temps, slopes_after = [], [], [], []
    quantities = ["ece", "ece_l2", "slope", "intercept"]
    for rep in range(reps):
        for temperature in (1.0, 2.0):
            df = simulate_uncertainty(temperature=temperature, seed=rep, **SIM)
            test = df.filter(split="test")
            out = calibration(test, n_boot=n_boot, seed=rep, quantities=quantities)
            if temperature == 1.0:
                for row in out.iter_rows(named=True):
                    name = row["quantity"] + (f"_{row['convention']}" if row["convention"] else "")
                    truth = TRUTH[row["quantity"]]
                    hits.setdefault(name, []).append(row["ci_low"] <= truth <= row["ci_high"])
                continue
            slope = out.filter(quantity="slope").row(0, named=True)
            detect.append(slope["ci_high"] < 1.0)
            l2 = out.filter(quantity="ece_l2", convention="positive_class").row(0, named=True)
            detect_l2.append(l2["ci_low"] > 0.0)
            t = fit_temperature(df)
            temps.extend(t["temperature"].to_list())
            fixed = apply_temperature(test, t)
            after = calibration(fixed, n_boot=20, quantities=["slope"])
            slopes_after.append(float(after["estimate"][0]))
    return {
        "calibration_calibrated": {
            "what": "share of 95% intervals containing the truth (ECE: 0; slope 1; intercept 0)",
            **{k: _rate(v) for k, v in hits.items()},
        },
        "calibration_temperature_2": {
            "slope_interval_excludes_1": _rate(detect),
            "ece_l2_positive_class_interval_excludes_0": _rate(detect_l2),
            "fitted_temperature": {
                "mean": float(np.mean(temps)),
                "sd": float(np.std(temps, ddof=1)),
                "n_trials": len(temps),
                "val_cases_per_trial": "about 72 images (30% of training subjects)",
            },
            "slope_after_temperature_scaling": {
                "mean": float(np.mean(slopes_after)),
                "sd": float(np.std(slopes_after, ddof=1)),
            },
        },
    }


def conformal_studies(reps: int, n_boot: int) -> dict[str, Any]:
    """Marginal coverage on exchangeable data; per-site coverage under an unseen shifted site."""
    alpha = 0.1
    cover: dict[str, list[float]] = {"lac": [], "aps": [], "aps_randomized": []}
    n_cal: list[int] = []
    for rep in range(reps):
        df = simulate_uncertainty(seed=10_000 + rep, n_classes=3, temperature=1.5, **SIM)
        for score in cover:
            sets = conformal_sets(df, alpha=alpha, score=score, seed=rep)  # type: ignore[arg-type]
            cover[score].append(float(sets["covered"].mean()))
        n_cal.append(int(sets["n_cal"].min()))
    n = min(n_cal)
    exch = {
        "alpha": alpha,
        "guarantee": [1 - alpha, 1 - alpha + 1 / (n + 1)],
        "min_calibration_cases": n,
        **{
            k: {
                "mean_coverage": float(np.mean(v)),
                "mc_se": float(np.std(v, ddof=1) / np.sqrt(len(v))),
            }
            for k, v in cover.items()
        },
    }
    names = ("shifted_marginal", "others_marginal", "shifted_mondrian",
             "shifted_ci_high_below_target")  # fmt: skip
    shifted: dict[str, list[float]] = {k: [] for k in names}
    sim = {**SIM, "shifted_sites": 1, "shift_temperature": 3.0}
    last = f"site-{SIM['n_sites'] - 1}"
    for rep in range(reps):
        unseen = simulate_uncertainty(seed=20_000 + rep, shifted_in_val=False, **sim)
        out = conformal(unseen, alpha=alpha, n_boot=n_boot, seed=rep).filter(quantity="coverage")
        row = out.filter(site=last).row(0, named=True)
        shifted["shifted_marginal"].append(row["estimate"])
        shifted["shifted_ci_high_below_target"].append(float(row["ci_high"] < 1 - alpha))
        shifted["others_marginal"].append(
            float(out.filter(pl.col("site") != last)["estimate"].mean())
        )
        seen = simulate_uncertainty(seed=20_000 + rep, shifted_in_val=True, **sim)
        mond = conformal(seen, alpha=alpha, mondrian=True, n_boot=20, seed=rep)
        shifted["shifted_mondrian"].append(
            mond.filter(quantity="coverage", site=last)["estimate"][0]
        )
    return {
        "conformal_exchangeable": exch,
        "conformal_shifted_site": {
            "alpha": alpha,
            "shift": "labels from softmax(eta / 3) at the last site; model reports softmax(eta)",
            **{
                k: {"mean": float(np.mean(v)), "mc_se": float(np.std(v, ddof=1) / np.sqrt(len(v)))}
                for k, v in shifted.items()
            },
        },
    }


def repeatability_study(reps: int, n_boot: int) -> dict[str, Any]:
    """Coverage of the s_r interval; the truth is the s.d. of the seed noise added to p."""
    sd, seeds, n = 0.05, 3, 200
    hits = []
    for rep in range(reps):
        rng = np.random.default_rng(30_000 + rep)
        subject_base = rng.uniform(0.3, 0.7, n // 2)
        base = np.repeat(subject_base, 2) + rng.normal(0, 0.05, n)
        p = base[:, None] + rng.normal(0, sd, (n, seeds))
        df = pl.DataFrame({
            "model": "m", "outer_fold": np.repeat(np.arange(n) % 2, seeds),
            "seed": np.tile(np.arange(seeds), n), "sample_id": np.repeat(np.arange(n), seeds),
            "subject_id": np.repeat(np.arange(n) // 2, seeds), "y_true": 1.0,
            "score": p.ravel(),
        })  # fmt: skip
        out = repeatability(df, n_boot=n_boot, seed=rep).filter(quantity="s_r").row(0, named=True)
        hits.append(out["ci_low"] <= sd <= out["ci_high"])
    return {"repeatability_s_r": {"truth": sd, "seeds": seeds, "samples": n, **_rate(hits)}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the studies, print and return their JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--n-boot", type=int, default=None)
    args = parser.parse_args(argv)
    reps = args.reps or (10 if args.quick else 200)
    n_boot = args.n_boot or (100 if args.quick else 500)
    report: dict[str, Any] = {"replicates": reps, "n_boot": n_boot, "simulation": SIM}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for study in (calibration_studies, conformal_studies, repeatability_study):
            t0 = time.time()
            report.update(study(reps, n_boot))
            print(f"# {study.__name__} done in {time.time() - t0:.0f}s", file=sys.stderr)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
