"""mixed(): lme4/lmerTest's sleepstudy numbers, and balanced designs against the ANOVA estimators.

Reference values are in tests/reference/sleepstudy_lme4.json (R 4.2.2, lme4 1.1.31, lmerTest 3.1.3;
copied from the shared reference set). For balanced designs, REML equals the ANOVA (expected mean
square) estimators when they are positive, and Satterthwaite's df equal the classical ANOVA df
(Searle, Casella & McCulloch 1992, ch. 4-5); those closed forms are computed in the tests.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.formula import FormulaError
from raybench_analysis.mixed import mixed
from scipy import stats

REF = Path(__file__).parent / "reference"
EXPECTED = json.loads((REF / "sleepstudy_lme4.json").read_text())
TOL = EXPECTED["tolerances"]


@pytest.fixture(scope="module")
def sleep() -> pl.DataFrame:
    return pl.read_csv(REF / "sleepstudy.csv", schema_overrides={"Subject": pl.String})


@pytest.fixture(scope="module")
def fit_reml(sleep: pl.DataFrame):
    return mixed("Reaction ~ Days + (Days | Subject)", sleep, method="REML")


@pytest.fixture(scope="module")
def fit_ml(sleep: pl.DataFrame):
    return mixed("Reaction ~ Days + (Days | Subject)", sleep, method="ML")


def _varcorr(model: dict, group: str, var1: str | None, var2: str | None = None) -> dict:
    return next(
        r
        for r in model["varcorr"]
        if r["group"] == group and r["var1"] == var1 and r["var2"] == var2
    )


def _row(frame: pl.DataFrame, **where: str) -> dict:
    out = frame
    for k, v in where.items():
        out = out.filter(pl.col(k).is_null() if v is None else pl.col(k) == v)
    assert out.height == 1, where
    return out.row(0, named=True)


def test_sleepstudy_reml_fixed_effects_se_and_satterthwaite(fit_reml) -> None:
    ref = EXPECTED["model_random_slope_REML"]
    for term in ("(Intercept)", "Days"):
        row = _row(fit_reml.fixed, term=term)
        # R: fixef(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
        assert row["estimate"] == pytest.approx(ref["fixef"][term], rel=TOL["fixef_rel"])
        # R: sqrt(diag(vcov(m)))
        assert row["std_error"] == pytest.approx(ref["fixef_se"][term], rel=TOL["fixef_se_rel"])
        # R: coef(summary(lmerTest::lmer(...)))[, "t value"]
        assert row["statistic"] == pytest.approx(ref["t_value"][term], rel=TOL["fixef_se_rel"])
        # R: coef(summary(lmerTest::lmer(...)))[, "df"]  (Satterthwaite)
        assert row["df"] == pytest.approx(
            ref["satterthwaite_df"][term], abs=TOL["satterthwaite_df_abs"]
        )
        # R: coef(summary(lmerTest::lmer(...)))[, "Pr(>|t|)"]
        assert row["p_value"] == pytest.approx(ref["satterthwaite_p"][term], rel=1e-2)
        assert row["method"] == "t-test, Satterthwaite df"
    assert fit_reml.method == "REML"
    assert fit_reml.converged


def test_sleepstudy_reml_random_effects_sigma_and_criterion(fit_reml) -> None:
    ref = EXPECTED["model_random_slope_REML"]
    # R: VarCorr(m): sd of (Intercept) and Days by Subject, their correlation, sigma(m)
    sd_int = _row(fit_reml.random, group="Subject", term="(Intercept)")["sd"]
    sd_days = _row(fit_reml.random, group="Subject", term="Days")["sd"]
    assert sd_int == pytest.approx(ref["sd_intercept"], rel=TOL["sd_rel"])
    assert sd_days == pytest.approx(ref["sd_days"], rel=TOL["sd_rel"])
    corr = _row(fit_reml.correlations, group="Subject", term_a="(Intercept)", term_b="Days")
    assert corr["corr"] == pytest.approx(ref["corr_intercept_days"], abs=TOL["corr_abs"])
    assert fit_reml.sigma == pytest.approx(ref["sigma_residual"], rel=TOL["sd_rel"])
    resid = _row(fit_reml.random, group="Residual", term=None)
    assert resid["variance"] == pytest.approx(fit_reml.sigma**2, rel=1e-12)
    # R: REMLcrit(m); logLik(m)
    assert fit_reml.deviance == pytest.approx(ref["REML_criterion"], abs=TOL["REML_criterion_abs"])
    assert fit_reml.loglik == pytest.approx(ref["logLik_REML"], abs=TOL["REML_criterion_abs"])


def test_sleepstudy_ml(fit_ml) -> None:
    ref = EXPECTED["model_random_slope_ML"]
    for term in ("(Intercept)", "Days"):
        row = _row(fit_ml.fixed, term=term)
        # R: fixef(lmer(Reaction ~ Days + (Days | Subject), sleepstudy, REML = FALSE))
        assert row["estimate"] == pytest.approx(ref["fixef"][term], rel=TOL["fixef_rel"])
        # R: sqrt(diag(vcov(m_ML)))
        assert row["std_error"] == pytest.approx(ref["fixef_se"][term], rel=TOL["fixef_se_rel"])
    # R: as.data.frame(VarCorr(m_ML))
    for term in ("(Intercept)", "Days"):
        expected = _varcorr(ref, "Subject", term)["sdcor"]
        got = _row(fit_ml.random, group="Subject", term=term)["sd"]
        assert got == pytest.approx(expected, rel=TOL["sd_rel"])
    corr = _varcorr(ref, "Subject", "(Intercept)", "Days")["sdcor"]
    assert fit_ml.correlations["corr"][0] == pytest.approx(corr, abs=TOL["corr_abs"])
    assert fit_ml.sigma == pytest.approx(
        _varcorr(ref, "Residual", None)["sdcor"], rel=TOL["sd_rel"]
    )
    # R: logLik(m_ML); AIC(m_ML); BIC(m_ML)
    assert fit_ml.loglik == pytest.approx(ref["logLik"], abs=TOL["REML_criterion_abs"])
    assert fit_ml.aic == pytest.approx(ref["AIC"], abs=1e-2)
    assert fit_ml.bic == pytest.approx(ref["BIC"], abs=1e-2)


def test_sleepstudy_uncorrelated_and_random_intercept(sleep: pl.DataFrame) -> None:
    ref = EXPECTED["model_uncorrelated_REML"]
    fit = mixed("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", sleep)
    # R: VarCorr(lmer(Reaction ~ Days + (1 | Subject) + (0 + Days | Subject), sleepstudy))
    assert _row(fit.random, group="Subject", term="(Intercept)")["sd"] == pytest.approx(
        _varcorr(ref, "Subject", "(Intercept)")["sdcor"], rel=TOL["sd_rel"]
    )
    assert _row(fit.random, group="Subject", term="Days")["sd"] == pytest.approx(
        _varcorr(ref, "Subject.1", "Days")["sdcor"], rel=TOL["sd_rel"]
    )
    assert fit.correlations.height == 0
    # R: REMLcrit(m_uncorrelated)
    assert fit.deviance == pytest.approx(ref["REML_criterion"], abs=TOL["REML_criterion_abs"])
    # '||' is the same model
    same = mixed("Reaction ~ Days + (Days || Subject)", sleep)
    assert same.deviance == pytest.approx(fit.deviance, abs=1e-6)

    ref = EXPECTED["model_random_intercept_REML"]
    fit = mixed("Reaction ~ Days + (1 | Subject)", sleep)
    for term in ("(Intercept)", "Days"):
        # R: sqrt(diag(vcov(lmer(Reaction ~ Days + (1 | Subject), sleepstudy))))
        assert _row(fit.fixed, term=term)["std_error"] == pytest.approx(
            ref["fixef_se"][term], rel=TOL["fixef_se_rel"]
        )
    # R: VarCorr(m0); the intercept SD and residual SD
    assert fit.random["sd"].to_list() == pytest.approx(
        [r["sdcor"] for r in ref["varcorr"]], rel=TOL["sd_rel"]
    )
    # R: REMLcrit(m0)
    assert fit.deviance == pytest.approx(ref["REML_criterion"], abs=TOL["REML_criterion_abs"])
    # lmerTest on this model: Days is a within-subject effect with 180 - 18 - 1 = 161 df
    assert _row(fit.fixed, term="Days")["df"] == pytest.approx(161.0, abs=0.05)


def _nested_data(a: int = 6, b: int = 4, n: int = 3, seed: int = 1) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    ia = np.repeat(np.arange(a), b * n)
    ib = np.tile(np.repeat(np.arange(b), n), a)
    y = (
        10
        + rng.normal(0, 2, a)[ia]
        + rng.normal(0, 1.5, (a, b))[ia, ib]
        + rng.normal(0, 1, a * b * n)
    )
    return pl.DataFrame({"y": y, "batch": ia, "cask": ib})


def test_nested_balanced_equals_anova_estimators() -> None:
    a, b, n = 6, 4, 3
    data = _nested_data(a, b, n)
    fit = mixed("y ~ 1 + (1 | batch/cask)", data)
    y = data["y"].to_numpy().reshape(a, b, n)
    grand, m_a, m_ab = y.mean(), y.mean(axis=(1, 2)), y.mean(axis=2)
    msa = b * n * np.sum((m_a - grand) ** 2) / (a - 1)
    msb = n * np.sum((m_ab - m_a[:, None]) ** 2) / (a * (b - 1))
    mse = np.sum((y - m_ab[:, :, None]) ** 2) / (a * b * (n - 1))
    # Balanced nested ANOVA: s2_batch = (MSA - MSB)/(bn), s2_cask = (MSB - MSE)/n, s2_e = MSE
    variances = dict(zip(fit.random["group"], fit.random["variance"], strict=True))
    assert variances["batch"] == pytest.approx((msa - msb) / (b * n), rel=1e-3)
    assert variances["batch:cask"] == pytest.approx((msb - mse) / n, rel=1e-3)
    assert variances["Residual"] == pytest.approx(mse, rel=1e-3)
    # Var(grand mean) = E[MSA]/(abn), estimated by MSA with a - 1 df: Satterthwaite df = a - 1
    row = _row(fit.fixed, term="(Intercept)")
    assert row["std_error"] == pytest.approx(np.sqrt(msa / (a * b * n)), rel=1e-3)
    assert row["df"] == pytest.approx(a - 1, abs=0.01)
    assert fit.n_levels == {"batch": a, "batch:cask": a * b}


def test_crossed_balanced_equals_anova_and_classical_satterthwaite() -> None:
    a, b, n = 7, 5, 2
    rng = np.random.default_rng(2)
    ia = np.repeat(np.arange(a), b * n)
    ib = np.tile(np.repeat(np.arange(b), n), a)
    y = 10 + rng.normal(0, 2, a)[ia] + rng.normal(0, 1.5, b)[ib] + rng.normal(0, 1, a * b * n)
    fit = mixed("y ~ 1 + (1 | a) + (1 | b)", pl.DataFrame({"y": y, "a": ia, "b": ib}))
    cube = y.reshape(a, b, n)
    grand, m_a, m_b = cube.mean(), cube.mean(axis=(1, 2)), cube.mean(axis=(0, 2))
    ssa = b * n * np.sum((m_a - grand) ** 2)
    ssb = a * n * np.sum((m_b - grand) ** 2)
    sse = np.sum((cube - grand) ** 2) - ssa - ssb
    dfe = a * b * n - a - b + 1
    msa, msb, mse = ssa / (a - 1), ssb / (b - 1), sse / dfe
    # Two-way crossed random model without interaction: s2_a = (MSA - MSE)/(bn), etc.
    variances = dict(zip(fit.random["group"], fit.random["variance"], strict=True))
    assert variances["a"] == pytest.approx((msa - mse) / (b * n), rel=1e-3)
    assert variances["b"] == pytest.approx((msb - mse) / (a * n), rel=1e-3)
    assert variances["Residual"] == pytest.approx(mse, rel=1e-3)
    # Var(grand mean) = (MSA + MSB - MSE)/(abn); Satterthwaite (1946) df of that combination
    combo = msa + msb - mse
    df = combo**2 / (msa**2 / (a - 1) + msb**2 / (b - 1) + mse**2 / dfe)
    row = _row(fit.fixed, term="(Intercept)")
    assert row["std_error"] == pytest.approx(np.sqrt(combo / (a * b * n)), rel=1e-3)
    assert row["df"] == pytest.approx(df, rel=1e-3)


def test_randomized_block_model_contrast_has_residual_df() -> None:
    # score ~ model + (1 | split): a randomized complete block design. The model difference is
    # the mean paired difference; its SE is sqrt(2 MSE / K) with (K - 1)(M - 1) df (Fisher).
    rng = np.random.default_rng(3)
    k, m = 8, 3
    split = np.repeat(np.arange(k), m)
    model = np.tile(np.array(["a", "b", "c"]), k)
    effect = {"a": 0.0, "b": 0.3, "c": 0.1}
    y = (
        rng.normal(0, 1, k)[split]
        + np.array([effect[v] for v in model])
        + rng.normal(0, 0.5, k * m)
    )
    data = pl.DataFrame({"score": y, "split": split, "model": model})
    fit = mixed("score ~ C(model) + (1 | split)", data)
    table = y.reshape(k, m)
    resid = table - table.mean(1, keepdims=True) - table.mean(0, keepdims=True) + table.mean()
    mse = np.sum(resid**2) / ((k - 1) * (m - 1))
    row = _row(fit.fixed, term="C(model)[T.b]")
    assert row["estimate"] == pytest.approx(table[:, 1].mean() - table[:, 0].mean(), rel=1e-6)
    assert row["std_error"] == pytest.approx(np.sqrt(2 * mse / k), rel=1e-3)
    assert row["df"] == pytest.approx((k - 1) * (m - 1), abs=0.01)
    t = row["estimate"] / np.sqrt(2 * mse / k)
    assert row["p_value"] == pytest.approx(2 * stats.t.sf(abs(t), (k - 1) * (m - 1)), rel=1e-3)
    # contrast() gives the same test, and b - c as a new one
    same = fit.contrast({"C(model)[T.b]": 1.0})
    assert same["p_value"][0] == pytest.approx(row["p_value"], rel=1e-9)
    diff = fit.contrast({"C(model)[T.b]": 1.0, "C(model)[T.c]": -1.0})
    assert diff["estimate"][0] == pytest.approx(table[:, 1].mean() - table[:, 2].mean(), rel=1e-6)
    assert diff["df"][0] == pytest.approx((k - 1) * (m - 1), abs=0.01)


def test_interaction_grouping_equals_a_combined_column() -> None:
    rng = np.random.default_rng(4)
    split = np.repeat(np.arange(5), 12)
    model = np.tile(np.repeat(["m1", "m2"], 6), 5)
    cell = rng.normal(0, 1, 10)[split * 2 + (model == "m2")]
    y = cell + rng.normal(0, 0.3, 60)
    data = pl.DataFrame({"y": y, "split": split, "model": model})
    fit = mixed("y ~ model + (1 | split:model)", data)
    combined = data.with_columns(sm=pl.format("{}:{}", "split", "model"))
    ref = mixed("y ~ model + (1 | sm)", combined)
    assert fit.n_levels == {"split:model": 10}
    assert fit.random["variance"].to_list() == pytest.approx(ref.random["variance"].to_list())
    assert fit.loglik == pytest.approx(ref.loglik, abs=1e-8)


def test_pandas_input_and_result_frames(sleep: pl.DataFrame) -> None:
    fit = mixed("Reaction ~ Days + (1 | Subject)", sleep.to_pandas())
    assert fit.fixed.columns == [
        "term",
        "estimate",
        "std_error",
        "df",
        "statistic",
        "p_value",
        "ci_low",
        "ci_high",
        "method",
    ]
    assert fit.random.columns == ["group", "term", "variance", "sd"]
    assert fit.correlations.columns == ["group", "term_a", "term_b", "corr"]
    vcov = fit.vcov
    assert vcov["term"].to_list() == ["(Intercept)", "Days"]
    se = np.sqrt(np.diag(vcov.drop("term").to_numpy()))
    assert se == pytest.approx(fit.fixed["std_error"].to_numpy(), rel=1e-12)
    row = _row(fit.fixed, term="Days")
    q = stats.t.ppf(0.975, row["df"])
    assert row["ci_low"] == pytest.approx(row["estimate"] - q * row["std_error"], rel=1e-12)


def test_bad_input_errors_name_the_problem(sleep: pl.DataFrame) -> None:
    with pytest.raises(AnalysisError, match="method='GLS'"):
        mixed("Reaction ~ Days + (1 | Subject)", sleep, method="GLS")
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['Patient'\]"):
        mixed("Reaction ~ Days + (1 | Patient)", sleep)
    with pytest.raises(FormulaError, match="fixed part"):
        mixed("Reaction ~ Dayz + (1 | Subject)", sleep)
    with pytest.raises(FormulaError, match="random slopes of"):
        mixed("Reaction ~ Days + (0 + Hours | Subject)", sleep)
    with_null = sleep.with_columns(
        Subject=pl.when(pl.int_range(pl.len()) == 7).then(None).otherwise(pl.col("Subject"))
    )
    with pytest.raises(AnalysisError, match="'Subject' is missing at row 7"):
        mixed("Reaction ~ Days + (1 | Subject)", with_null)
    with pytest.raises(AnalysisError, match="unknown term"):
        mixed("Reaction ~ Days + (1 | Subject)", sleep).contrast({"Hours": 1.0})


def test_correlated_slopes_on_a_crossed_factor_are_refused() -> None:
    data = _nested_data().with_columns(x=pl.col("cask").cast(pl.Float64))
    with pytest.raises(FormulaError, match=r"\(1 \+ x \|\| cask\)"):
        mixed("y ~ x + (1 | batch) + (1 + x | cask)", data)


def test_boundary_fit_is_the_reml_optimum() -> None:
    # No between-group variation: statsmodels' L-BFGS stops at a wrong scale on these data; the
    # REML optimum puts the group variance at 0 and sigma^2 = SST/(N - 1) (Searle et al. §6.6),
    # so the intercept is the grand mean with N - 1 df.
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(5), 3)
    y = rng.normal(size=15)
    fit = mixed("y ~ 1 + (1 | g)", pl.DataFrame({"y": y, "g": g}))
    assert fit.random["variance"][0] == pytest.approx(0.0, abs=1e-10)
    assert fit.sigma**2 == pytest.approx(np.var(y, ddof=1), rel=1e-8)
    row = _row(fit.fixed, term="(Intercept)")
    assert row["std_error"] == pytest.approx(np.std(y, ddof=1) / np.sqrt(15), rel=1e-6)
    assert row["df"] == pytest.approx(14.0, abs=0.01)
    assert any("boundary" in w for w in fit.warnings)


def test_confint_varcomp_bootstrap_brackets_the_estimates_near_lme4(fit_reml) -> None:
    # R 4.2.2, lme4 1.1.31: fm <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
    # set.seed(1); confint(fm, method = "boot", nsim = 500, boot.type = "perc") gives
    #   sd_(Intercept) [12.44, 36.29], sd_Days [3.31, 8.38], cor [-0.52, 0.88], sigma [22.62, 28.65]
    # (method = "profile": [14.38, 37.72], [3.80, 8.75], [-0.48, 0.68], [22.90, 28.86]);
    # both bootstraps are Monte Carlo, so the comparison is loose
    ci = fit_reml.confint_varcomp("boot", n_boot=40, seed=1)
    assert ci["parameter"].to_list() == ["sd", "sd", "cor", "sigma"]
    assert (ci["ci_low"] <= ci["estimate"]).all() and (ci["estimate"] <= ci["ci_high"]).all()
    r_boot = [(12.44, 36.29), (3.31, 8.38), (-0.52, 0.88), (22.62, 28.65)]
    slack = [8.0, 2.0, 0.5, 2.0]
    for (lo, hi), got_lo, got_hi, s in zip(r_boot, ci["ci_low"], ci["ci_high"], slack, strict=True):
        assert abs(got_lo - lo) < s and abs(got_hi - hi) < s
    assert ci.equals(fit_reml.confint_varcomp("boot", n_boot=40, seed=1))
    with pytest.raises(AnalysisError, match="profile"):
        fit_reml.confint_varcomp("wald")
