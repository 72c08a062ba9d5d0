"""Likelihood-ratio tests, conditional modes and F-tests against lme4 1.1.31 / lmerTest 3.1.3.

R 4.2.2; the R call is above each check. Data: tests/reference/sleepstudy.csv (lme4's
sleepstudy), lmm_arms.csv (8 sites × 6 subjects × 6 observations, a three-level ``arm`` and a
covariate, simulated for these tests) and glmm_subjects.csv (see test_glmm.py).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.anova import anova
from raybench_analysis.glmm import glmm
from raybench_analysis.mixed import mixed

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def sleep() -> pl.DataFrame:
    return pl.read_csv(REF / "sleepstudy.csv", schema_overrides={"Subject": pl.String})


@pytest.fixture(scope="module")
def full(sleep):
    return mixed("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.fixture(scope="module")
def arms():
    return mixed("y ~ arm + x + (1 | site/subject)", pl.read_csv(REF / "lmm_arms.csv"))


def test_lrt_of_fixed_effects_refits_by_ml(sleep, full):
    # m0 <- lmer(Reaction ~ 1 + (Days | Subject)); anova(m0, m)  (refitting with ML)
    m0 = mixed("Reaction ~ 1 + (Days | Subject)", sleep)
    out = anova(full, m0)  # order does not matter
    assert out["model"].to_list() == ["m0", "m1"]
    assert out["n_par"].to_list() == [5, 6]
    assert out["aic"].to_list() == pytest.approx([1785.47588196108, 1763.93934446321], abs=1e-6)
    assert out["bic"].to_list() == pytest.approx([1801.44066621553, 1783.09708556855], abs=1e-6)
    assert out["loglik"].to_list() == pytest.approx(
        [-887.737940980538, -875.969672231605], abs=1e-6
    )
    row = out.row(1, named=True)
    assert row["statistic"] == pytest.approx(23.5365374978655, abs=1e-6)
    assert row["df"] == 1
    assert row["p_value"] == pytest.approx(1.22563995719719e-06, rel=1e-5)
    assert row["p_boundary"] is None  # fixed effects differ: no boundary issue
    assert row["method"] == "likelihood-ratio test (ML refit)"
    assert out["statistic"][0] is None


def test_lrt_of_a_random_slope_on_reml_with_boundary_mixture(sleep, full):
    # mr <- lmer(Reaction ~ Days + (1 | Subject)); anova(mr, m, refit = FALSE)
    mr = mixed("Reaction ~ Days + (1 | Subject)", sleep)
    out = anova(mr, full)
    row = out.row(1, named=True)
    assert out["loglik"].to_list() == pytest.approx(
        [-893.232542697461, -871.814135979976], abs=1e-6
    )
    assert row["statistic"] == pytest.approx(42.8368134349691, abs=1e-6)
    assert row["p_value"] == pytest.approx(4.99004143060735e-10, rel=1e-5)
    assert row["method"] == "likelihood-ratio test (REML)"
    # Stram & Lee (1994): adding one correlated random effect to one: 0.5 chi2_1 + 0.5 chi2_2
    from scipy import stats

    lr = row["statistic"]
    expected = 0.5 * stats.chi2.sf(lr, 1) + 0.5 * stats.chi2.sf(lr, 2)
    assert row["p_boundary"] == pytest.approx(expected, rel=1e-12)
    assert row["p_boundary"] < row["p_value"]
    with pytest.raises(AnalysisError, match="refit=True"):
        anova(mixed("Reaction ~ 1 + (1 | Subject)", sleep), full, refit=False)


def test_lrt_between_logistic_mixed_models():
    # g1 <- glmer(y ~ model + x + (1 | subject), binomial, TIGHT); g0 without model; anova(g0, g1)
    # (TIGHT: glmerControl(tolPwrss = 1e-12, optimizer = "bobyqa", rhoend = 1e-10), see test_glmm)
    data = pl.read_csv(REF / "glmm_subjects.csv")
    out = anova(glmm("y ~ x + (1 | subject)", data), glmm("y ~ model + x + (1 | subject)", data))
    assert out["aic"].to_list() == pytest.approx([447.442010568145, 439.095897207854], abs=1e-5)
    assert out["statistic"][1] == pytest.approx(10.346113360291, abs=1e-5)
    assert out["p_value"][1] == pytest.approx(0.00129747584928422, rel=1e-5)
    with pytest.raises(AnalysisError, match="two linear"):
        anova(glmm("y ~ x + (1 | subject)", data), mixed("x ~ 1 + (1 | subject)", data))


def test_conditional_modes_match_ranef_condvar(full, arms):
    # ranef(m, condVar = TRUE)$Subject[1:2, ]; sqrt(attr(., "postVar")[k, k, 1:2])
    re = full.ranef()
    assert re.columns == ["group", "level", "term", "estimate", "std_error", "ci_low", "ci_high"]
    first = re.head(4)
    assert first["level"].to_list() == ["308", "308", "309", "309"]
    assert first["term"].to_list() == ["(Intercept)", "Days", "(Intercept)", "Days"]
    expected = [2.25855094990116, 9.19897576556590, -40.39873807880509, -8.61968061524321]
    assert first["estimate"].to_numpy() == pytest.approx(expected, rel=2e-4)
    sds = [12.0708569505143, 2.30483902090028, 12.0708569505143, 2.30483902090028]
    assert first["std_error"].to_numpy() == pytest.approx(sds, rel=1e-5)
    z = 1.959963984540054
    assert first["ci_high"].to_numpy() == pytest.approx(
        first["estimate"].to_numpy() + z * first["std_error"].to_numpy(), rel=1e-12
    )
    # ma <- lmer(y ~ arm + x + (1 | site/subject)); ranef(ma, condVar = TRUE)
    sites = arms.ranef().filter(group="site").head(3)
    assert sites["estimate"].to_numpy() == pytest.approx(
        [-0.987366023268911, 0.627743570379275, 0.798705148679155], rel=5e-5
    )
    assert sites["std_error"].to_numpy() == pytest.approx([0.277236289304543] * 3, rel=1e-5)
    subj = arms.ranef().filter(group="site:subject", level="site0:subj0")
    assert subj["estimate"][0] == pytest.approx(0.658821558593649, rel=5e-5)
    assert subj["std_error"][0] == pytest.approx(0.390989243883439, rel=1e-5)


def test_conditional_modes_of_a_logistic_fit():
    # ranef(g1, condVar = TRUE)$subject[1:3, ] and sqrt(postVar), TIGHT glmer fit
    data = pl.read_csv(REF / "glmm_subjects.csv")
    re = glmm("y ~ model + x + (1 | subject)", data).ranef().head(3)
    assert re["estimate"].to_numpy() == pytest.approx(
        [0.0200524994355554, -0.3396943120738561, -0.2909748459426821], rel=1e-4
    )
    assert re["std_error"].to_numpy() == pytest.approx(
        [0.567893763708836, 0.550995710745226, 0.552937856631073], rel=1e-5
    )


def test_multi_df_f_test_matches_lmertest(arms):
    # anova(lmer(y ~ arm + x + (1 | site/subject)), type = 3)
    out = arms.anova()
    assert out.columns == ["term", "num_df", "den_df", "statistic", "p_value", "method"]
    assert out["term"].to_list() == ["arm", "x"]
    assert out["num_df"].to_list() == [2.0, 1.0]
    assert out["den_df"].to_numpy() == pytest.approx([237.179380013872, 260.488764695240], rel=1e-5)
    assert out["statistic"].to_numpy() == pytest.approx(
        [3.34645320580117, 23.17367053060946], rel=1e-5
    )
    assert out["p_value"].to_numpy() == pytest.approx(
        [3.68792317855335e-02, 2.51115768688355e-06], rel=1e-4
    )
    # a one-df term: F = t^2 and the same df as the t-test
    t = arms.fixed.filter(term="x").row(0, named=True)
    assert out["statistic"][1] == pytest.approx(t["statistic"] ** 2, rel=1e-10)
    assert out["den_df"][1] == pytest.approx(t["df"], rel=1e-10)


def test_warnings_report_the_final_fit_only():
    # statsmodels flags "MLE on the boundary"; the refinement replaces that optimum, so only the
    # final fit's messages are kept
    rng = np.random.default_rng(1)
    g, h = np.repeat(np.arange(5), 4), np.tile(np.arange(4), 5)
    data = pl.DataFrame({"y": rng.normal(size=20), "g": g, "h": h})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = mixed("y ~ 1 + (1 | g) + (1 | h)", data)
    assert len(fit.warnings) == 2
    assert fit.warnings[0].startswith("statsmodels' optimum refined")
    assert fit.warnings[1].startswith("boundary (singular) fit")
