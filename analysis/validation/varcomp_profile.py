"""Profile-likelihood intervals of variance components against lme4 (prints JSON).

``confint_varcomp(fit, "profile")`` on four designs, next to lme4's
``confint(fit, method = "profile", oldNames = FALSE)`` (R 4.2.2, lme4 1.1.31; the R calls are
beside the numbers below): sleepstudy with a random intercept and with correlated random
intercepts and slopes (REML), and ``lmm_arms.csv`` (3 arms, subjects nested in sites) with a
nested random intercept, REML and ML. Printed per design: the seconds taken and, per parameter,
our limits, lme4's, and the largest relative difference. docs/statistics/mixed-models.md quotes
the output. Run ``python -m analysis.validation.varcomp_profile``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import polars as pl
from raybench_analysis.mixed import mixed
from raybench_analysis.varcomp import _profile_limits

REF = Path(__file__).resolve().parents[1] / "tests" / "reference"

#: (formula, data file, method, lme4's limits in confint_varcomp's row order). R:
#:   s <- read.csv("sleepstudy.csv"); s$Subject <- factor(s$Subject); a <- read.csv("lmm_arms.csv")
#:   confint(lmer(Reaction ~ Days + (1 | Subject), s), method = "profile", oldNames = FALSE)
#:   confint(lmer(Reaction ~ Days + (Days | Subject), s), method = "profile", oldNames = FALSE)
#:   confint(lmer(y ~ arm + (1 | site/subject), a), method = "profile", oldNames = FALSE)
#:   confint(lmer(y ~ arm + x + (1 | site/subject), a, REML = FALSE), method = "profile",
#:           oldNames = FALSE)
#: (rows reordered to ours: each group's SDs, then its correlation, then sigma; lme4 lists
#: subject:site before site)
CASES = [
    (
        "Reaction ~ Days + (1 | Subject)",
        "sleepstudy.csv",
        "REML",
        [(26.007120448, 52.93598353), (27.813847208, 34.59104986)],
    ),
    (
        "Reaction ~ Days + (Days | Subject)",
        "sleepstudy.csv",
        "REML",
        [
            (14.3814181608, 37.7159953183),
            (3.8011640533, 8.7533807531),
            (-0.4815007583, 0.6849862733),
            (22.8982668821, 28.8579965114),
        ],
    ),
    (
        "y ~ arm + (1 | site/subject)",
        "lmm_arms.csv",
        "REML",
        [
            (0.41977202638, 1.4011747984),
            (0.40133374861, 0.8350919145),
            (1.02561396748, 1.2267518438),
        ],
    ),
    (
        "y ~ arm + x + (1 | site/subject)",
        "lmm_arms.csv",
        "ML",
        [
            (0.424516039488, 1.3949002949),
            (0.388895894825, 0.8063311972),
            (0.984767225186, 1.1779263412),
        ],
    ),
]


def main(argv: Sequence[str] | None = None) -> dict:
    """Fit each design, compute the profile intervals, compare with lme4; print and return."""
    del argv
    out = []
    for formula, file, method, lme4 in CASES:
        data = pl.read_csv(REF / file, schema_overrides={"Subject": pl.String})
        fit = mixed(formula, data, method=method)
        start = time.perf_counter()
        ci = fit.confint_varcomp("profile")
        seconds = time.perf_counter() - start
        rows, worst = [], 0.0
        for row, (lo, hi) in zip(ci.iter_rows(named=True), lme4, strict=True):
            rel = max(abs(row["ci_low"] - lo) / abs(lo), abs(row["ci_high"] - hi) / abs(hi))
            worst = max(worst, rel)
            label = f"{row['group']} {row['parameter']} {row['term'] or ''}".strip()
            rows.append(
                {
                    "parameter": label,
                    "ours": [round(row["ci_low"], 6), round(row["ci_high"], 6)],
                    "lme4": [lo, hi],
                    "max_rel_diff": float(f"{rel:.2g}"),
                }
            )
        out.append(
            {
                "formula": formula,
                "method": method,
                "seconds": round(seconds, 2),
                "max_rel_diff": float(f"{worst:.2g}"),
                "limits": rows,
            }
        )
    # the same profile on the REML criterion instead of lme4's ML one (sleepstudy, random slopes):
    # width of each interval relative to lme4's
    _, _, _, lme4 = CASES[1]
    sleep = pl.read_csv(REF / "sleepstudy.csv", schema_overrides={"Subject": pl.String})
    fit = mixed(CASES[1][0], sleep)
    assert fit._cp is not None and fit._theta is not None
    low, high = _profile_limits(fit._cp, fit._theta, fit.sigma, 0.95, reml=True)
    wider = [
        round(float((h - lo) / (b - a) - 1.0), 4)
        for lo, h, (a, b) in zip(low, high, lme4, strict=True)
    ]
    report = {
        "study": "profile intervals vs lme4 1.1.31",
        "designs": out,
        "reml_profile_width_vs_lme4": {
            "formula": CASES[1][0],
            "parameters": ["sd (Intercept)", "sd Days", "cor", "sigma"],
            "relative_width_difference": wider,
        },
    }
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
