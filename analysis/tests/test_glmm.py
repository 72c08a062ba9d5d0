"""Logistic mixed models against lme4::glmer (R 4.2.2, lme4 1.1.31); the R call is above each check.

Data: tests/reference/glmm_subjects.csv (30 subjects × 12 binary outcomes, two models and a
covariate) and glmm_nested.csv (6 sites × 8 subjects × 6 outcomes), simulated for these tests.

glmer's default fit stops its inner PIRLS iterations at a relative change of 1e-7 in the
penalised deviance and evaluates log det(L) with the weights of the previous iterate, so its
Laplace objective is off by about 1e-3 (it is -215.54863 at its own optimum, -215.54796 in exact
arithmetic). With ``glmerControl(tolPwrss = 1e-12, optimizer = "bobyqa", optCtrl =
list(rhobeg = 0.2, rhoend = 1e-10))`` ("tight" below) glmer computes the exact Laplace
approximation and agrees with :func:`glmm` to 1e-6; the default call agrees to glmer's own
accuracy (estimates 2e-3 relative, standard errors 1%).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.formula import FormulaError
from raybench_analysis.glmm import glmm
from raybench_analysis.mixed import mixed

REF = Path(__file__).parent / "reference"


@pytest.fixture(scope="module")
def subjects() -> pl.DataFrame:
    return pl.read_csv(REF / "glmm_subjects.csv")


@pytest.fixture(scope="module")
def nested() -> pl.DataFrame:
    return pl.read_csv(REF / "glmm_nested.csv")


@pytest.fixture(scope="module")
def laplace(subjects):
    return mixed("y ~ model + x + (1 | subject)", subjects, family="binomial")


def _check(fit, beta, se, theta, loglik, p, rel_est, rel_se):
    assert fit.beta == pytest.approx(beta, rel=rel_est)
    assert fit.fixed["estimate"].to_numpy() == pytest.approx(beta, rel=rel_est)
    assert fit.fixed["std_error"].to_numpy() == pytest.approx(se, rel=rel_se)
    assert fit.theta == pytest.approx(theta, rel=rel_est)
    assert fit.loglik == pytest.approx(loglik, abs=50 * rel_est)
    assert fit.fixed["p_value"].to_numpy() == pytest.approx(p, rel=20 * rel_se)


def test_laplace_matches_glmer_tight(laplace):
    # glmer(y ~ model + x + (1 | subject), data, family = binomial, TIGHT)
    # fixef; sqrt(diag(vcov)); getME(m, "theta"); logLik; coef(summary(m))[, "Pr(>|z|)"]
    _check(
        laplace,
        beta=[0.414812069765910, -0.801152518335249, 0.537928282541211],
        se=[0.304556694201544, 0.253172909798730, 0.143929403820179],
        theta=[1.33768502604966],
        loglik=-215.547948603927,
        p=[0.173191820932226, 0.001553774026633, 0.000185899471477],
        rel_est=1e-5,
        rel_se=1e-4,
    )
    assert laplace.method == "Laplace" and laplace.converged
    group, term, variance, sd = laplace.random.row(0)
    assert (group, term) == ("subject", "(Intercept)")
    assert sd == pytest.approx(1.33768502604966, rel=1e-5)
    assert variance == pytest.approx(sd**2, rel=1e-12)


def test_laplace_matches_glmer_default(laplace):
    # glmer(y ~ model + x + (1 | subject), data, family = binomial)  (defaults: to glmer's accuracy)
    _check(
        laplace,
        beta=[0.414368167272822, -0.800304410992952, 0.537395315059282],
        se=[0.303014044048931, 0.250619229882331, 0.142540859761922],
        theta=[1.33705771006863],
        loglik=-215.548625509812,
        p=[0.171472294532933, 0.001406528000052, 0.000163172884819],
        rel_est=2e-3,
        rel_se=1.5e-2,
    )


def test_odds_ratios_and_wald_intervals(laplace):
    f = laplace.fixed
    z = 1.959963984540054
    est, se = f["estimate"].to_numpy(), f["std_error"].to_numpy()
    assert f["ci_low"].to_numpy() == pytest.approx(est - z * se, rel=1e-12)
    assert f["odds_ratio"].to_numpy() == pytest.approx(np.exp(est), rel=1e-12)
    assert f["or_high"].to_numpy() == pytest.approx(np.exp(est + z * se), rel=1e-12)
    assert f["statistic"].to_numpy() == pytest.approx(est / se, rel=1e-12)
    assert f.columns == [
        "term",
        "estimate",
        "std_error",
        "statistic",
        "p_value",
        "ci_low",
        "ci_high",
        "odds_ratio",
        "or_low",
        "or_high",
        "method",
    ]
    assert f["term"].to_list() == ["(Intercept)", "model[T.b]", "x"]


def test_adaptive_quadrature_matches_glmer(subjects):
    # glmer(y ~ model + x + (1 | subject), data, family = binomial, nAGQ = 10, TIGHT)
    fit = glmm("y ~ model + x + (1 | subject)", subjects, nagq=10)
    _check(
        fit,
        beta=[0.414321376860532, -0.799901214982629, 0.537527469979998],
        se=[0.307587299160285, 0.253017584444374, 0.143899117544400],
        theta=[1.35794377589186],
        loglik=-215.164678432113,
        p=[0.177978887307791, 0.001569883819949, 0.000187382337779],
        rel_est=1e-5,
        rel_se=1e-4,
    )
    assert fit.method == "adaptive Gauss-Hermite quadrature (nAGQ=10)"
    # glmer(..., nAGQ = 10) with default control: logLik -215.164678416004, theta 1.35793769951646
    assert fit.loglik == pytest.approx(-215.164678416004, abs=1e-6)
    assert fit.theta[0] == pytest.approx(1.35793769951646, rel=1e-4)


def test_nested_site_subject_matches_glmer(nested):
    # glmer(y ~ model + (1 | site/subject), data, family = binomial, TIGHT)
    # theta: subject:site then site in lme4; here site/subject expands to site, then site:subject
    fit = mixed("y ~ model + (1 | site/subject)", nested, family="binomial")
    assert fit.random["group"].to_list() == ["site", "site:subject"]
    _check(
        fit,
        beta=[0.578452641222678, -0.603652739062064],
        se=[0.285229416324430, 0.262855540008927],
        theta=[0.436832383408724, 0.794407168073991],
        loglik=-188.710483716979,
        p=[0.0425576055942445, 0.0216462246766252],
        rel_est=1e-5,
        rel_se=1e-4,
    )
    # default glmer: logLik -188.710656239726, fixef 0.578082912481283, -0.603162647874521
    assert fit.loglik == pytest.approx(-188.710656239726, abs=1e-3)
    assert fit.beta == pytest.approx([0.578082912481283, -0.603162647874521], rel=2e-3)


def test_binary_response_to_gaussian_warns(subjects):
    with pytest.warns(UserWarning, match="family='binomial'"):
        mixed("y ~ model + (1 | subject)", subjects)


def test_bad_inputs(subjects, nested):
    with pytest.raises(FormulaError, match="0/1"):
        glmm("x ~ model + (1 | subject)", subjects)
    with pytest.raises(AnalysisError, match="single scalar random effect"):
        glmm("y ~ model + (1 | site/subject)", nested, nagq=5)
    with pytest.raises(AnalysisError, match="family"):
        mixed("y ~ model + (1 | subject)", subjects, family="poisson")
