"""Coverage and power of the generalisation-gap interval under a known shift (prints JSON).

Each replicate simulates one cross-validated benchmark of one model on a development dataset and
its evaluation on an external dataset of other sites and subjects, with
:func:`raybench_analysis.simulate.simulate_predictions` (binary classification, latent-Gaussian
scores, so the population AUC is known in closed form). The external sites are shifted: the
model's latent class separation there is ``mu - shift`` instead of ``mu`` (a site mix where the
disease is harder to see: other scanners, another population). Seed and split effects are 0, so
the fold models are one model and the true gap is ``AUC(mu) - AUC(mu - shift)`` (0 without a
shift). :func:`raybench_analysis.generalisation_gap` gives the interval (two independent cluster
bootstraps, sites then subjects; Welch–Satterthwaite t). Reported per shift: the true gap, the mean
estimate, the coverage of the true gap, the rejection rate of "no gap" (interval excluding 0:
the type-I error at shift 0, the power otherwise) and the mean interval width.

Run ``python -m analysis.validation.external_gap [--quick]``; docs/validation.md reports the
full study (``analysis/validation/results/external_gap.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
from raybench_analysis import generalisation_gap
from raybench_analysis.simulate import simulate_predictions

#: The simulated design: sites and subjects of each dataset, folds, the model's separation.
DESIGN = {"n_sites": 8, "subjects_per_site": 10, "n_folds": 5, "mu": 1.5}


def _truth(run: Any) -> float:
    """The population AUC of a simulated run's model."""
    truth = run.truth.filter(
        (pl.col("metric") == "auc")
        & (pl.col("perturbation") == "none")
        & (pl.col("estimand") == "trained")
    )
    return float(truth["value"][0])


def one_replicate(replicate: int, shift: float, n_boot: int) -> dict[str, float]:
    """Estimate, interval and true gap of one simulated (development, external) pair."""
    common = {
        "n_sites": DESIGN["n_sites"],
        "subjects_per_site": DESIGN["subjects_per_site"],
        "n_folds": DESIGN["n_folds"],
        "n_seeds": 1,
        "seed_sd": 0.0,
        "split_sd": 0.0,
        "truth_draws": 2000,
    }
    dev = simulate_predictions(models={"m": DESIGN["mu"]}, seed=replicate, **common)
    ext = simulate_predictions(
        models={"m": DESIGN["mu"] - shift}, dataset="ext", seed=100_000 + replicate, **common
    )
    rows = pl.concat([dev.predictions, ext.predictions.with_columns(split=pl.lit("external"))])
    gap = generalisation_gap(rows, "auc", n_boot=n_boot, seed=replicate).row(0, named=True)
    return {
        "truth": _truth(dev) - _truth(ext),
        "estimate": gap["estimate"],
        "ci_low": gap["ci_low"],
        "ci_high": gap["ci_high"],
    }


def run_study(replicates: int, shifts: Sequence[float], n_boot: int) -> dict[str, Any]:
    """Per shift: true gap, mean estimate, coverage, rejection of "no gap", mean width."""
    out: dict[str, Any] = {"design": DESIGN, "replicates": replicates, "n_boot": n_boot}
    results = []
    for shift in shifts:
        reps = [one_replicate(r, shift, n_boot) for r in range(replicates)]
        truth = np.array([r["truth"] for r in reps])
        low = np.array([r["ci_low"] for r in reps])
        high = np.array([r["ci_high"] for r in reps])
        results.append(
            {
                "shift": shift,
                "true_gap": float(truth.mean()),
                "mean_estimate": float(np.mean([r["estimate"] for r in reps])),
                "coverage": float(np.mean((low <= truth) & (truth <= high))),
                "rejection": float(np.mean((low > 0) | (high < 0))),
                "mean_width": float(np.mean(high - low)),
            }
        )
    out["results"] = results
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the study and print its JSON (``--quick``: 20 replicates, 200 bootstrap draws)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20 replicates (a smoke run)")
    parser.add_argument("--replicates", type=int, default=200)
    parser.add_argument("--boot", type=int, default=1000)
    parser.add_argument("--shifts", type=float, nargs="+", default=[0.0, 0.75, 1.5])
    args = parser.parse_args(argv)
    replicates, n_boot = (20, 200) if args.quick else (args.replicates, args.boot)
    start = time.perf_counter()
    report = run_study(replicates, args.shifts, n_boot)
    report["seconds"] = round(time.perf_counter() - start, 1)
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
