"""Speed of raybench_analysis.mixed on 50,000 rows against statsmodels' plain fit; prints JSON.

Data: 20 sites × 100 subjects × 25 observations, five models (a factor), site and subject
random intercepts; model ``y ~ model + (1 | site/subject)`` by REML, with Satterthwaite df.
``mixed`` is timed end to end (design, fit, Satterthwaite); statsmodels' ``MixedLM`` (site
groups, subject variance component, REML, no df) is timed as a plain fit for the ratio. lme4's
time on the same data is in docs/statistics/mixed-models.md (it needs R, which CI lacks).

Run: ``.venv/bin/python benchmarks/mixed_speed.py [--sites 20] [--subjects 100] [--obs 25]
[--repeats 3] [--skip-statsmodels]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import polars as pl
from raybench_analysis import mixed


def make_data(sites: int, subjects: int, obs: int, seed: int = 0) -> pl.DataFrame:
    """Nested data: ``subjects`` per site, ``obs`` rows per subject, five models cycling."""
    rng = np.random.default_rng(seed)
    n = sites * subjects * obs
    site = np.repeat(np.arange(sites), subjects * obs)
    subject = np.repeat(np.arange(sites * subjects), obs)
    model = np.tile(np.array(["a", "b", "c", "d", "e"]), n // 5 + 1)[:n]
    y = (
        0.5
        + 0.2 * (model == "b")
        + rng.normal(0, 0.5, sites)[site]
        + rng.normal(0, 1.0, sites * subjects)[subject]
        + rng.normal(0, 1.0, n)
    )
    return pl.DataFrame(
        {
            "site": np.char.add("s", site.astype(str)),
            "subject": np.char.add("p", subject.astype(str)),
            "model": model,
            "y": y,
        }
    )


def statsmodels_fit(data: pl.DataFrame) -> float:
    """Seconds of statsmodels' MixedLM REML fit (site groups, subject variance component)."""
    import statsmodels.formula.api as smf

    pdf = data.to_pandas()
    start = time.perf_counter()
    smf.mixedlm(
        "y ~ model", pdf, groups="site", vc_formula={"subject": "0 + C(subject)"}, re_formula="1"
    ).fit(reml=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sites", type=int, default=20)
    parser.add_argument("--subjects", type=int, default=100)
    parser.add_argument("--obs", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-statsmodels", action="store_true")
    args = parser.parse_args()
    data = make_data(args.sites, args.subjects, args.obs)
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        fit = mixed("y ~ model + (1 | site/subject)", data)
        times.append(time.perf_counter() - start)
    best = min(times)
    sm = None if args.skip_statsmodels else statsmodels_fit(data)
    print(
        json.dumps(
            {
                "benchmark": "mixed_speed",
                "rows": data.height,
                "formula": "y ~ model + (1 | site/subject)",
                "mixed_seconds": times,
                "mixed_best_seconds": best,
                "statsmodels_fit_seconds": sm,
                "ratio_to_statsmodels": None if sm is None else best / sm,
                "intercept_df": fit.fixed["df"][0],
                "converged": fit.converged,
                "python": platform.python_version(),
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
