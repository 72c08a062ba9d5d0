"""Does ``sample_size`` deliver the power it promises? A simulation study (prints JSON).

Generative model (per test subject, binary correctness, two models A and B): for split ``k`` a
fresh test set of ``n`` subjects with difficulty ``b_i ~ N(0, sd_subject)``; model ``m`` gets a
training-set effect ``u_mk ~ N(0, sd_split)`` and, per seed, ``e_mks ~ N(0, sd_seed)``; subject
``i`` is classified correctly when ``eta_m + u_mk + e_mks + b_i + eps > 0`` (``eps ~ N(0, 1)``).
A trial's score is its accuracy. The true difference of mean accuracy is
``Phi(eta_B / tau) - Phi(eta_A / tau)`` with ``tau^2 = 1 + sd_split^2 + sd_seed^2 + sd_subject^2``.
Nothing here is Gaussian at the score level: the test-sample part is real binomial sampling of
shared subjects.

Three checks:

1. *Formula*: components of the per-trial difference B - A estimated on a very large pilot
   ("oracle"); for a grid of designs, the power ``sample_size`` predicts vs the power of the
   paired t-test on split means simulated at that design.
2. *Recommendation*: at the design ``sample_size`` recommends from the oracle components for a
   target power of 0.8, the simulated power (target: close to 0.8).
3. *Realistic pilots*: components from small pilots (10 splits x 3 seeds); the simulated power at
   each pilot's recommended design, summarised over pilots, planning with the point estimates and
   with the upper interval bounds (``bound="upper"``).

Run ``python -m analysis.validation.variance_power [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import polars as pl
from raybench_analysis import sample_size, variance_components
from scipy import stats

SIM = {
    "eta_a": 0.5,
    "eta_b": 0.7,
    "sd_split": 0.15,
    "sd_seed": 0.1,
    "sd_subject": 1.0,
}


def true_delta(sim: dict[str, float]) -> float:
    """Population difference of mean accuracy, B - A."""
    tau = np.sqrt(1 + sim["sd_split"] ** 2 + sim["sd_seed"] ** 2 + sim["sd_subject"] ** 2)
    return float(stats.norm.cdf(sim["eta_b"] / tau) - stats.norm.cdf(sim["eta_a"] / tau))


def simulate_correct(
    rng: np.random.Generator, reps: int, k: int, s: int, n: int, sim: dict[str, float]
) -> np.ndarray:
    """Per-subject correctness difference B - A, shape (reps, k, s, n), values in {-1, 0, 1}."""
    b = rng.normal(0, sim["sd_subject"], (reps, k, 1, n))
    out = np.zeros((reps, k, s, n), dtype=np.int8)
    for sign, eta in ((1, sim["eta_b"]), (-1, sim["eta_a"])):
        u = rng.normal(0, sim["sd_split"], (reps, k, 1, 1))
        e = rng.normal(0, sim["sd_seed"], (reps, k, s, 1))
        eps = rng.normal(0, 1, (reps, k, s, n))
        out += sign * (eta + u + e + b + eps > 0).astype(np.int8)
    return out


def simulated_power(
    rng: np.random.Generator, reps: int, k: int, s: int, n: int, sim: dict, alpha: float
) -> float:
    """Rejection rate of the paired t-test on split means (df = k - 1) over ``reps`` studies."""
    hits = 0
    chunk = max(1, int(2e7 // (k * s * n)))
    done = 0
    while done < reps:
        r = min(chunk, reps - done)
        d = simulate_correct(rng, r, k, s, n, sim).mean(axis=3)  # per-trial accuracy difference
        split_means = d.mean(axis=2)
        t = split_means.mean(1) / (split_means.std(1, ddof=1) / np.sqrt(k))
        hits += int(np.sum(np.abs(t) > stats.t.ppf(1 - alpha / 2, k - 1)))
        done += r
    return hits / reps


def pilot_components(
    rng: np.random.Generator, k: int, s: int, n: int, sim: dict, n_boot: int
) -> pl.DataFrame:
    """variance_components of the per-trial difference, with its per-subject predictions."""
    d = simulate_correct(rng, 1, k, s, n, sim)[0].astype(float)
    fold, seed, subj = np.meshgrid(np.arange(k), np.arange(s), np.arange(n), indexing="ij")
    preds = pl.DataFrame(
        {
            "outer_fold": fold.ravel(),
            "seed": seed.ravel(),
            "subject_id": (fold * n + subj).ravel().astype(str),
            "d": d.ravel(),
        }
    )
    scores = preds.group_by(["outer_fold", "seed"]).agg(score=pl.col("d").mean())
    return variance_components(
        scores, predictions=preds, metric="mean", sample_value="d", n_boot=n_boot
    )


def _summary(rows: np.ndarray) -> dict[str, Any]:
    rows = rows[np.isfinite(rows[:, 2])]
    power = rows[:, 2]
    return {
        "recommended_n_splits_median": float(np.median(rows[:, 0])),
        "simulated_power_mean": round(float(power.mean()), 4),
        "simulated_power_q10_q90": [
            round(float(np.quantile(power, 0.1)), 4),
            round(float(np.quantile(power, 0.9)), 4),
        ],
        "share_of_pilots_reaching_target": round(float(np.mean(power >= 0.8)), 3),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse arguments, run the three checks, print and return the JSON report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few replicates (a smoke run)")
    parser.add_argument("--reps", type=int, default=None, help="simulated studies per design")
    parser.add_argument("--pilots", type=int, default=None, help="small pilots in check 3")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    reps = args.reps or (400 if args.quick else 4000)
    n_pilots = args.pilots or (5 if args.quick else 40)
    rng = np.random.default_rng(args.seed)
    alpha, target, n_test = 0.05, 0.8, 100
    delta = true_delta(SIM)
    started = time.perf_counter()

    oracle = pilot_components(rng, 400 if args.quick else 2000, 3, n_test, SIM, n_boot=200)
    grid = sample_size(
        oracle,
        delta=delta,
        alpha=alpha,
        power=target,
        n_splits=[4, 8, 16, 32],
        n_seeds=[1, 3],
        components_of="difference",
    )
    formula = []
    for row in grid.iter_rows(named=True):
        sim_pw = simulated_power(rng, reps, row["n_splits"], row["n_seeds"], n_test, SIM, alpha)
        formula.append(
            {
                "n_splits": row["n_splits"],
                "n_seeds": row["n_seeds"],
                "predicted_power": round(row["power"], 4),
                "simulated_power": round(sim_pw, 4),
            }
        )
    full = sample_size(
        oracle, delta=delta, alpha=alpha, power=target, n_splits=range(2, 61),
        n_seeds=range(1, 6), components_of="difference",
    )  # fmt: skip
    best = full.filter(pl.col("recommended")).row(0, named=True)
    rec_power = simulated_power(rng, reps, best["n_splits"], best["n_seeds"], n_test, SIM, alpha)

    pilots = []
    for _ in range(n_pilots):
        comp = pilot_components(rng, 10, 3, n_test, SIM, n_boot=200)
        plan = sample_size(
            comp, delta=delta, alpha=alpha, power=target, n_splits=range(2, 121),
            n_seeds=range(1, 6), components_of="difference",
        )  # fmt: skip
        upper = sample_size(
            comp, delta=delta, alpha=alpha, power=target, n_splits=range(2, 121),
            n_seeds=range(1, 6), components_of="difference", bound="upper",
        )  # fmt: skip
        row = []
        for table in (plan, upper):
            rec = table.filter(pl.col("recommended"))
            if rec.height == 0:
                row.append((np.nan, np.nan, np.nan))
                continue
            r = rec.row(0, named=True)
            pw = simulated_power(rng, max(reps // 4, 100), r["n_splits"], r["n_seeds"], n_test,
                                 SIM, alpha)  # fmt: skip
            row.append((r["n_splits"], r["n_seeds"], pw))
        pilots.append(row)
    pilot_arr = np.array(pilots, dtype=float)  # (pilots, [estimate, upper], [k, s, power])
    abs_err = [abs(f["predicted_power"] - f["simulated_power"]) for f in formula]
    mc_se = float(np.sqrt(target * (1 - target) / reps))
    report = {
        "study": "sample_size: predicted vs simulated power of the paired t-test on split means",
        "simulation": {**SIM, "n_test": n_test, "true_delta": round(delta, 5)},
        "alpha": alpha,
        "target_power": target,
        "reps_per_design": reps,
        "monte_carlo_se_at_target": round(mc_se, 4),
        "oracle_components": {r["component"]: r["variance"] for r in oracle.iter_rows(named=True)},
        "formula_check": formula,
        "formula_max_abs_error": round(max(abs_err), 4),
        "recommended_design": {
            "n_splits": best["n_splits"],
            "n_seeds": best["n_seeds"],
            "predicted_power": round(best["power"], 4),
            "simulated_power": round(rec_power, 4),
        },
        "small_pilots": {
            "pilot": "10 splits x 3 seeds x 100 subjects",
            "n_pilots": len(pilots),
            **{
                f"plan_from_{name}": _summary(pilot_arr[:, j])
                for j, name in enumerate(("estimate", "upper_bound"))
            },
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
