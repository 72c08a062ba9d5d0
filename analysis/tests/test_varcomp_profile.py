"""Profile-likelihood intervals of variance components against lme4's confint(method="profile").

Reference numbers from R 4.2.2, lme4 1.1.31 (the R call above each case); lme4 interpolates a
spline through its profile points, we solve on the exact profile, so agreement is ~1e-5
relative, not exact. analysis/validation/varcomp_profile.py runs two more designs (correlated
random slopes, a nested ML fit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from raybench_analysis.mixed import mixed

REF = Path(__file__).parent / "reference"


def test_random_intercept_matches_lme4() -> None:
    # s <- read.csv("sleepstudy.csv"); s$Subject <- factor(s$Subject)
    # confint(lmer(Reaction ~ Days + (1 | Subject), s), method = "profile", oldNames = FALSE)
    #   sd_(Intercept)|Subject 26.007120448 52.93598353; sigma 27.813847208 34.59104986
    sleep = pl.read_csv(REF / "sleepstudy.csv", schema_overrides={"Subject": pl.String})
    ci = mixed("Reaction ~ Days + (1 | Subject)", sleep).confint_varcomp("profile")
    assert ci["parameter"].to_list() == ["sd", "sigma"]
    assert ci["ci_low"].to_list() == pytest.approx([26.007120448, 27.813847208], rel=1e-4)
    assert ci["ci_high"].to_list() == pytest.approx([52.93598353, 34.59104986], rel=1e-4)
    assert ci["method"][0].startswith("profile likelihood")


def test_nested_sites_and_subjects_match_lme4() -> None:
    # a <- read.csv("lmm_arms.csv")
    # confint(lmer(y ~ arm + (1 | site/subject), a), method = "profile", oldNames = FALSE)
    #   sd_(Intercept)|subject:site 0.40133374861 0.8350919145
    #   sd_(Intercept)|site         0.41977202638 1.4011747984
    #   sigma                       1.02561396748 1.2267518438
    arms = pl.read_csv(REF / "lmm_arms.csv")
    ci = mixed("y ~ arm + (1 | site/subject)", arms).confint_varcomp("profile", level=0.95)
    assert ci["group"].to_list() == ["site", "site:subject", "Residual"]
    low = [0.41977202638, 0.40133374861, 1.02561396748]
    high = [1.4011747984, 0.8350919145, 1.2267518438]
    assert ci["ci_low"].to_list() == pytest.approx(low, rel=1e-4)
    assert ci["ci_high"].to_list() == pytest.approx(high, rel=1e-4)


def test_an_sd_at_zero_gets_a_lower_limit_of_zero() -> None:
    # equal group means: the ML estimate of the group SD is 0 and the profile stays below
    # the cut-off down to the boundary, so the lower limit is the boundary (lme4 gives 0 too)
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(6), 5)
    e = rng.normal(0.0, 1.0, 30)
    y = e - np.bincount(g, e)[g] / 5  # every group mean is 0
    ci = mixed("y ~ 1 + (1 | g)", pl.DataFrame({"y": y, "g": g})).confint_varcomp("profile")
    assert ci["ci_low"][0] == 0.0
    assert 0.0 < ci["ci_high"][0] < ci["ci_high"][1]
