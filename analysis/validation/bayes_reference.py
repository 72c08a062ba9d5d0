"""``bayes_ttest`` and ``bayes_hierarchical`` against baycomp, the reference implementation (JSON).

baycomp 1.0.3 (Benavoli, Corani, Demšar & Zaffalon's package; its hierarchical test runs their
Stan model through pystan 3) is run next to ours on:

* ``nbc_j48``: baycomp's own documented example, naive Bayes vs J48 accuracies (%) on 54 UCI
  datasets, 10 × 10-fold cross-validation (``analysis/tests/reference/baycomp_nbc_j48.csv``,
  from baycomp's ``docs/code/accuracies.txt``), rope 1 (one accuracy point), with ``runs=1`` as
  in baycomp's documentation (which prints ``(0.0795, 0.0365, 0.884)``) and the correct
  ``runs=10``;
* three simulated designs (seeded): 8 datasets × 10 folds with small dataset effects around the
  rope, 5 datasets × 10 folds with a clear difference, and 3 datasets × 3 × 10-fold with
  ``runs=3``.

Printed per case: baycomp's summary (the "next dataset" probabilities: the fraction of
posterior draws in which each region is the most probable) and ours (the ``"(next dataset)"``
row); per dataset, the posterior probabilities that the dataset's mean difference lies
above/within/below the rope, baycomp's next to ours; the largest absolute differences. baycomp's
numbers come from one Stan run per case of baycomp's ``hierarchical-t-test.stan`` with
``HierarchicalTest.sample``'s data preparation (copied below, as baycomp returns only the
summary and ``delta`` is needed too), the summary computed by baycomp's ``Posterior.probs``;
and, for the correlated t-test, the exact agreement of ``bayes_ttest`` with
``CorrelatedTTest.probs`` on every dataset of ``nbc_j48``.
Stan's NUTS and our Gibbs sampler are both Monte Carlo: differences of ~0.01–0.02 are sampling
error. docs/statistics/comparisons.md quotes the output
(``analysis/validation/results/bayes_reference.json``).

``--draws 25000 --cases near_rope_8x10 --noncentred`` repeats one case with 4 x 25,000 draws in
both samplers and also runs baycomp's model in the non-centred parameterisation (the same
posterior; ``analysis/validation/results/bayes_reference_long.json``). Needs ``pip install
baycomp pystan`` (pystan 3 compiles the model once: ~8 minutes here); run
``python -m analysis.validation.bayes_reference``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from raybench_analysis.bayes import NEXT_DATASET, bayes_hierarchical, bayes_ttest

REF = Path(__file__).resolve().parents[1] / "tests" / "reference"
N_STAN = 2000  # draws per chain after 1000 warm-up, 4 chains (baycomp's default: 10,000)


def nbc_j48() -> tuple[np.ndarray, np.ndarray]:
    """baycomp's example data: (nbc, j48) accuracies in %, 54 datasets x 100 splits."""
    frame = pl.read_csv(REF / "baycomp_nbc_j48.csv")
    scores = [c for c in frame.columns if c.startswith("s")]
    nbc = frame.filter(pl.col("classifier") == "nbc").select(scores).to_numpy()
    j48 = frame.filter(pl.col("classifier") == "j48").select(scores).to_numpy()
    return nbc, j48


def simulated(q: int, n: int, shift: float, spread: float, seed: int) -> tuple[np.ndarray, ...]:
    """(a, b): q datasets x n splits; a − b has dataset means ``shift + N(0, spread)``."""
    rng = np.random.default_rng(seed)
    b = rng.uniform(0.7, 0.9, (q, 1)) + rng.normal(0.0, 0.01, (q, n))
    effect = shift + rng.normal(0.0, spread, (q, 1))
    return b + effect + rng.normal(0.0, 0.01, (q, n)), b


def cases() -> list[dict]:
    """The compared cases (a, b, rope, runs)."""
    nbc, j48 = nbc_j48()
    out = [
        {"name": "nbc_j48_runs1", "a": j48, "b": nbc, "rope": 1.0, "runs": 1},
        {"name": "nbc_j48_runs10", "a": j48, "b": nbc, "rope": 1.0, "runs": 10},
    ]
    a, b = simulated(8, 10, 0.005, 0.01, seed=1)
    out.append({"name": "near_rope_8x10", "a": a, "b": b, "rope": 0.01, "runs": 1})
    a, b = simulated(5, 10, 0.03, 0.005, seed=2)
    out.append({"name": "clear_5x10", "a": a, "b": b, "rope": 0.01, "runs": 1})
    a, b = simulated(3, 30, 0.0, 0.005, seed=3)
    out.append({"name": "runs3_3x30", "a": a, "b": b, "rope": 0.01, "runs": 3})
    return out


def noncentred_model(code: str) -> str:
    """baycomp's Stan model with ``delta = delta0 + std0 * deltaRaw``, ``deltaRaw ~ t(nu, 0, 1)``:
    the same posterior, parameterised so that NUTS does not face the funnel of small ``std0``
    (Betancourt & Girolami 2015, Hamiltonian Monte Carlo for hierarchical models)."""
    edits = [
        ("    vector[q] delta;\n", "    vector[q] deltaRaw;\n"),
        ("    real<lower=1> nu ;\n", "    real<lower=1> nu ;\n    vector[q] delta;\n"),
        (
            "    nu = nuMinusOne + 1 ;\n",
            "    nu = nuMinusOne + 1 ;\n    delta = delta0 + std0 * deltaRaw;\n",
        ),
        ("delta ~ student_t(nu, delta0, std0);", "deltaRaw ~ student_t(nu, 0, 1);"),
    ]
    for old, new in edits:
        if code.count(old) != 1:
            raise RuntimeError(f"baycomp's Stan model changed: {old!r}")
        code = code.replace(old, new)
    return code


def baycomp_stan(
    a: np.ndarray,
    b: np.ndarray,
    rope: float,
    runs: int,
    draws: int = N_STAN,
    noncentred: bool = False,
) -> tuple[list[float], np.ndarray, float]:
    """baycomp's hierarchical test: its Stan model and data preparation (``HierarchicalTest.
    sample``), run once here so that ``delta`` can be read too (baycomp returns only the
    summary). Returns the summary ``[P(a better), P(equivalent), P(b better)]`` computed by
    baycomp's own ``Posterior.probs`` from the same draws, and the per-dataset probabilities
    that ``delta_i`` is above, within, below the rope (datasets x 3), and the fraction of NUTS
    transitions that diverged."""
    import baycomp
    import stan
    from baycomp.multiple import Posterior
    from scipy import stats

    diff = a - b  # baycomp's y − x with x = b, y = a
    unit = float(np.mean(np.std(diff, axis=1)))
    diff, r = diff / unit, rope / unit
    q, n = diff.shape
    rng = np.random.RandomState(0)
    for row in diff:  # baycomp's device for a constant row (it drops the row's mean)
        if np.var(row) == 0:
            row[: n // 2] = rng.uniform(-r, r, n // 2)
            row[n // 2 :] = -row[: n // 2]
    std_within = float(np.mean(np.std(diff, axis=1)))
    std_among = float(np.std(np.mean(diff, axis=1))) if q > 1 else std_within
    data = {
        "x": diff,
        "Nsamples": n,
        "q": q,
        "rho": runs / n,
        "deltaLow": -float(np.max(np.abs(diff))),
        "deltaHi": float(np.max(np.abs(diff))),
        "lowerAlpha": 1,
        "upperAlpha": 2,
        "lowerBeta": 0.01,
        "upperBeta": 0.1,
        "stdLow": 0,
        "stdHi": std_within * 1000,
        "std0Low": 0,
        "std0Hi": std_among * 1000,
    }
    code = (Path(baycomp.__file__).parent / "hierarchical-t-test.stan").read_text()
    if noncentred:
        code = noncentred_model(code)
    with contextlib.redirect_stdout(sys.stderr):  # pystan prints its progress on stdout
        model = stan.build(code, data=data, random_seed=1)
        fit = model.sample(num_chains=4, num_samples=draws)
    mu, std, nu = fit["delta0"][0], fit["std0"][0], fit["nu"][0]
    # baycomp's HierarchicalTest.sample: (P(left), P(rope), P(right)) per draw
    right = 1.0 - stats.t.cdf(r, nu, mu, std)
    left = stats.t.cdf(-r, nu, mu, std)
    summary = Posterior(np.column_stack([left, 1.0 - left - right, right])).probs()
    delta = np.asarray(fit["delta"])  # q x draws
    above, below = (delta > r).mean(axis=1), (delta < -r).mean(axis=1)
    per_dataset = np.column_stack([above, 1.0 - above - below, below])
    divergent = float(np.mean(fit["divergent__"]))
    return [float(summary[2]), float(summary[1]), float(summary[0])], per_dataset, divergent


def main(argv: Sequence[str] | None = None) -> dict:
    """Run every case with baycomp and with ours; print and return the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=N_STAN, help="draws per chain (both)")
    parser.add_argument("--cases", nargs="*", help="only these cases (default: all)")
    parser.add_argument(
        "--noncentred",
        action="store_true",
        help="also run baycomp's model non-centred (same posterior, no funnel) and compare",
    )
    args = parser.parse_args(argv)
    import baycomp

    here = os.getcwd()
    report: dict = {"study": "bayes_ttest / bayes_hierarchical vs baycomp 1.0.3", "cases": []}
    nbc, j48 = nbc_j48()
    worst_t = 0.0
    for x, y in zip(nbc, j48, strict=True):
        for runs in (1, 10):
            ref = baycomp.CorrelatedTTest.probs(x, y, rope=1.0, runs=runs)
            got = bayes_ttest(y, x, rope=1.0, runs=runs).row(0, named=True)
            mine = (got["p_b_better"], got["p_equivalent"], got["p_a_better"])
            worst_t = max(worst_t, max(abs(m - float(r)) for m, r in zip(mine, ref, strict=True)))
    report["correlated_ttest_max_abs_diff_54_datasets"] = worst_t
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # baycomp caches its last sample in ./last-sample.pickle
        try:
            for case in cases():
                if args.cases and case["name"] not in args.cases:
                    continue
                a, b, rope, runs = case["a"], case["b"], case["rope"], case["runs"]
                start = time.perf_counter()
                ref_summary, ref_sets, divergent = baycomp_stan(a, b, rope, runs, args.draws)
                stan_s = time.perf_counter() - start
                start = time.perf_counter()
                ours = bayes_hierarchical(a, b, rope, runs=runs, n_samples=args.draws)
                ours_s = time.perf_counter() - start
                cols = ["p_a_better", "p_equivalent", "p_b_better"]
                summary = ours.filter(pl.col("dataset") == NEXT_DATASET).select(cols).row(0)
                sets = ours.filter(pl.col("dataset") != NEXT_DATASET).select(cols).to_numpy()
                report["cases"].append(
                    {
                        "case": case["name"],
                        "datasets_x_splits": list(a.shape),
                        "rope": rope,
                        "runs": runs,
                        "baycomp_next_dataset": [round(v, 4) for v in ref_summary],
                        "ours_next_dataset": [round(v, 4) for v in summary],
                        "next_dataset_max_abs_diff": round(
                            max(abs(u - v) for u, v in zip(summary, ref_summary, strict=True)), 4
                        ),
                        "per_dataset_max_abs_diff": round(
                            float(np.max(np.abs(sets - ref_sets))), 4
                        ),
                        "per_dataset_mean_abs_diff": round(
                            float(np.mean(np.abs(sets - ref_sets))), 4
                        ),
                        "baycomp_per_dataset": ref_sets.round(4).tolist(),
                        "ours_per_dataset": sets.round(4).tolist(),
                        "stan_divergent_fraction": round(divergent, 5),
                        "ours_max_rhat": round(float(ours["rhat"].max()), 4),
                        "seconds_stan": round(stan_s, 1),
                        "seconds_ours": round(ours_s, 1),
                    }
                )
                if args.noncentred:
                    nc_summary, nc_sets, nc_div = baycomp_stan(
                        a, b, rope, runs, args.draws, noncentred=True
                    )
                    report["cases"][-1]["noncentred"] = {
                        "next_dataset": [round(v, 4) for v in nc_summary],
                        "per_dataset": nc_sets.round(4).tolist(),
                        "divergent_fraction": round(nc_div, 5),
                        "max_abs_diff_vs_centred": round(
                            float(np.max(np.abs(nc_sets - ref_sets))), 4
                        ),
                        "max_abs_diff_vs_ours": round(float(np.max(np.abs(nc_sets - sets))), 4),
                    }
                print(json.dumps(report["cases"][-1]), file=sys.stderr, flush=True)
        finally:
            os.chdir(here)
    report["baycomp_documented_nbc_j48_rope1"] = [0.884, 0.0365, 0.0795]
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
