"""variance_components and sample_size: closed forms, statsmodels, DeLong, and simulated truth."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.mixed import mixed
from raybench_analysis.variance import (
    _oneway_reml,
    _test_covariance,
    sample_size,
    variance_components,
)
from scipy import stats
from statsmodels.stats.power import TTestPower


def _scores(k: int, s: int, su: float, se: float, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    split = np.repeat(np.arange(k), s)
    y = 0.8 + rng.normal(0, su, k)[split] + rng.normal(0, se, k * s)
    return pl.DataFrame({"outer_fold": split, "seed": np.tile(np.arange(s), k), "score": y})


def _component(vc: pl.DataFrame, name: str) -> dict:
    return vc.filter(pl.col("component") == name).row(0, named=True)


def _mean_squares(scores: pl.DataFrame, k: int, s: int) -> tuple[float, float, float]:
    y = scores.sort(["outer_fold", "seed"])["score"].to_numpy().reshape(k, s)
    msa = s * np.sum((y.mean(1) - y.mean()) ** 2) / (k - 1)
    mse = np.sum((y - y.mean(1, keepdims=True)) ** 2) / (k * (s - 1))
    sst = np.sum((y - y.mean()) ** 2)
    return msa, mse, sst


def test_balanced_reml_equals_anova_estimators() -> None:
    k, s = 8, 3
    scores = _scores(k, s, 0.05, 0.02)
    msa, mse, _ = _mean_squares(scores, k, s)
    assert msa > mse
    vc = variance_components(scores, n_boot=200)
    # Balanced one-way (Searle et al. 1992, §3.5): s2_split = (MSA - MSE)/S, s2_seed = MSE
    assert _component(vc, "split")["variance"] == pytest.approx((msa - mse) / s, rel=1e-6)
    assert _component(vc, "seed")["variance"] == pytest.approx(mse, rel=1e-6)
    assert _component(vc, "total")["variance"] == pytest.approx((msa - mse) / s + mse, rel=1e-6)
    anova = variance_components(scores, method="anova", n_boot=200)
    assert anova["variance"].to_list() == pytest.approx(vc["variance"].to_list(), rel=1e-6)
    assert vc["component"].to_list() == ["split", "seed", "total"]
    # intervals: exact chi-square for the seed variance, SSW / chi2_{N-K} (Searle et al. §3.5)
    ssw = mse * k * (s - 1)
    seed_row = _component(vc, "seed")
    assert seed_row["ci_low"] == pytest.approx(ssw / stats.chi2.ppf(0.975, k * (s - 1)))
    assert seed_row["ci_high"] == pytest.approx(ssw / stats.chi2.ppf(0.025, k * (s - 1)))
    # split: chi-square interval of MSA/S (K - 1 df) shifted by MSE/S
    split_row = _component(vc, "split")
    assert split_row["ci_high"] == pytest.approx(
        (k - 1) * msa / s / stats.chi2.ppf(0.025, k - 1) - mse / s
    )
    # total = MSA/S + (1 - 1/S) MSE with Satterthwaite's (1946) df
    c1, c2 = msa / s, (1 - 1 / s) * mse
    nu = (c1 + c2) ** 2 / (c1**2 / (k - 1) + c2**2 / (k * (s - 1)))
    total_row = _component(vc, "total")
    assert total_row["ci_low"] == pytest.approx(nu * (c1 + c2) / stats.chi2.ppf(0.975, nu))
    assert "Satterthwaite" in total_row["ci_method"]
    boot = variance_components(scores, ci="bootstrap", n_boot=300)
    assert boot["variance"].to_list() == pytest.approx(vc["variance"].to_list())
    assert boot["ci_method"][0] == "parametric bootstrap percentile, n_boot=300"
    assert (boot["ci_low"] <= boot["variance"]).all() and (
        boot["variance"] <= boot["ci_high"]
    ).all()
    assert vc.filter(pl.col("component") != "total")["share"].sum() == pytest.approx(1.0)


def test_reml_at_the_boundary_pools_all_variation() -> None:
    # MSA < MSE: the REML split variance is 0 and s2_seed = SST / (N - 1) (Searle et al. §6.6)
    k, s = 6, 4
    scores = _scores(k, s, 0.0, 0.05, seed=5)
    msa, mse, sst = _mean_squares(scores, k, s)
    assert msa < mse
    vc = variance_components(scores, n_boot=100)
    assert _component(vc, "split")["variance"] == 0.0
    assert _component(vc, "seed")["variance"] == pytest.approx(sst / (k * s - 1), rel=1e-6)


def test_unbalanced_reml_equals_statsmodels_mixedlm() -> None:
    scores = _scores(12, 4, 0.04, 0.02, seed=2).filter(
        ~((pl.col("seed") >= 2) & (pl.col("outer_fold") % 3 == 0))
    )
    vc = variance_components(scores, n_boot=100)
    # statsmodels MixedLM, REML: score ~ 1 + (1 | outer_fold)
    ref = mixed("score ~ 1 + (1 | outer_fold)", scores).random
    assert _component(vc, "split")["variance"] == pytest.approx(ref["variance"][0], rel=1e-4)
    assert _component(vc, "seed")["variance"] == pytest.approx(ref["variance"][1], rel=1e-4)
    with pytest.raises(AnalysisError, match="method='anova' needs the same number of seeds"):
        variance_components(scores, method="anova")


def test_vectorised_reml_matches_closed_form_on_many_replicates() -> None:
    rng = np.random.default_rng(9)
    sizes = np.full(5, 3.0)
    means = rng.normal(0, 1, (50, 5))
    ssw = rng.chisquare(10, 50) * 0.3
    s2a, s2e = _oneway_reml(sizes, means, ssw)
    msa = 3 * ((means - means.mean(1, keepdims=True)) ** 2).sum(1) / 4
    mse = ssw / 10
    inside = msa > mse
    assert s2a[inside] == pytest.approx(((msa - mse) / 3)[inside], rel=1e-6)
    assert s2e[inside] == pytest.approx(mse[inside], rel=1e-6)
    assert np.all(s2a[~inside] == 0.0)


def _simulated_run(k: int, s: int, n: int, su: float, se: float, sb: float, eps: float):
    rng = np.random.default_rng(11)
    preds, scores = [], []
    for fold in range(k):
        u = rng.normal(0, su)
        subject_effect = rng.normal(0, sb, n)
        subjects = [f"f{fold}s{i}" for i in range(n)]
        for seed in range(s):
            v = 0.7 + u + rng.normal(0, se) + subject_effect + rng.normal(0, eps, n)
            preds.append(
                pl.DataFrame({"outer_fold": fold, "seed": seed, "subject_id": subjects, "v": v})
            )
            scores.append((fold, seed, float(v.mean())))
    table = pl.DataFrame(scores, schema=["outer_fold", "seed", "score"], orient="row")
    return table, pl.concat(preds)


def test_components_recover_simulated_truth() -> None:
    k, s, n, su, se, sb, eps = 120, 4, 40, 0.05, 0.02, 0.2, 0.1
    scores, preds = _simulated_run(k, s, n, su, se, sb, eps)
    vc = variance_components(scores, predictions=preds, metric="mean", sample_value="v", n_boot=400)
    truth = {
        "split": su**2,  # training-set (split) effect
        "test_sample": sb**2 / n,  # subjects shared by all seeds of a split
        "seed": se**2 + eps**2 / n,  # seed effect, measured on a finite test set
    }
    truth["total"] = sum(truth.values())
    for name, value in truth.items():
        row = _component(vc, name)
        # the estimate is within 3 standard errors of the truth (SE read off the parametric
        # bootstrap 95% interval: width / 3.92), and the interval is not degenerate
        assert row["ci_low"] < row["variance"] < row["ci_high"], name
        se_hat = (row["ci_high"] - row["ci_low"]) / 3.92
        assert abs(row["variance"] - value) < 3 * se_hat, name
    test_row = _component(vc, "test_sample")
    assert test_row["n_test"] == n and test_row["unit"] == "subject_id"
    assert "influence values" in test_row["method"]


def test_test_sample_covariance_equals_classical_variances() -> None:
    rng = np.random.default_rng(4)
    n = 200
    y = rng.integers(0, 2, n)
    score = rng.normal(0, 1, n) + 0.8 * y
    correct = rng.integers(0, 2, n).astype(float)
    pred = pl.DataFrame(
        {"outer_fold": 0, "seed": 0, "subject_id": np.arange(n).astype(str), "y_true": y}
    ).with_columns(score=pl.Series(score), v=pl.Series(correct))
    # mean of a per-sample value: the usual s^2 / n
    out = _test_covariance(pred, "outer_fold", "seed", "subject_id", "mean", "v")
    assert out["diag"][0] == pytest.approx(np.var(correct, ddof=1) / n, rel=1e-10)
    # AUC: DeLong et al. (1988) variance S10/m + S01/n from placement values (brute force here)
    pos, neg = score[y == 1], score[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    v10, v01 = psi.mean(1), psi.mean(0)
    auc = psi.mean()
    delong = np.var(v10, ddof=1) / len(pos) + np.var(v01, ddof=1) / len(neg)
    out = _test_covariance(pred, "outer_fold", "seed", "subject_id", "auc", None)
    assert out["diag"][0] == pytest.approx(delong, rel=0.02)
    assert auc == pytest.approx(v10.mean())


def test_binomial_test_sample_and_by_groups() -> None:
    scores = pl.concat(
        [
            _scores(6, 3, 0.03, 0.01, seed=1).with_columns(model=pl.lit("a")),
            _scores(6, 3, 0.01, 0.03, seed=2).with_columns(model=pl.lit("b")),
        ]
    )
    vc = variance_components(scores, by="model", n_test=100, n_boot=100)
    assert vc.columns[:2] == ["model", "component"]
    assert vc.filter(pl.col("model") == "a")["component"].to_list() == [
        "split",
        "seed",
        "test_sample",
        "total",
    ]
    p = scores.filter(pl.col("model") == "b")["score"].to_numpy()
    row = vc.filter((pl.col("model") == "b") & (pl.col("component") == "test_sample")).row(
        0, named=True
    )
    # binomial variance of a proportion on 100 test subjects, averaged over trials
    assert row["variance"] == pytest.approx(np.mean(p * (1 - p) / 100), rel=1e-12)
    assert row["n_test"] == 100.0


def test_variance_components_errors() -> None:
    scores = _scores(4, 2, 0.03, 0.01)
    with pytest.raises(AnalysisError, match="2 rows for outer_fold=0, seed=0"):
        variance_components(pl.concat([scores, scores.head(1)]))
    with pytest.raises(AnalysisError, match="at least 2 splits"):
        variance_components(scores.filter(pl.col("outer_fold") == 0))
    with pytest.raises(AnalysisError, match="one seed per split"):
        variance_components(scores.filter(pl.col("seed") == 0))
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['fold'\]"):
        variance_components(scores, split="fold")
    preds = pl.DataFrame({"outer_fold": [0, 0], "seed": [0, 1], "subject_id": ["a", "a"]})
    preds = preds.with_columns(v=pl.lit(1.0))
    with pytest.raises(AnalysisError, match=r"no predictions for outer_fold in \[1, 2, 3\]"):
        variance_components(scores, predictions=preds, metric="mean", sample_value="v")
    with pytest.raises(AnalysisError, match="metric='f1'"):
        variance_components(scores, metric="f1")  # type: ignore[arg-type]


def test_sample_size_power_matches_statsmodels_ttest_power() -> None:
    comp = {"split": 4e-4, "seed": 2e-4, "test_sample": 1e-4}
    plan = sample_size(
        comp, delta=0.02, n_splits=[5, 10], n_seeds=[1, 3], n_test=[50, 200], pilot_n_test=100
    )
    assert plan.height == 8
    for row in plan.iter_rows(named=True):
        k, s, n = row["n_splits"], row["n_seeds"], row["n_test"]
        var = 2 * ((4e-4 + 1e-4 * 100 / n) / k + 2e-4 / (k * s))
        assert row["se"] == pytest.approx(np.sqrt(var), rel=1e-12)
        # one-sample t-test on K split means: statsmodels TTestPower(effect = delta / sd, nobs = K)
        sd_split_mean = np.sqrt(var * k)
        ref = TTestPower().power(effect_size=0.02 / sd_split_mean, nobs=k, alpha=0.05)
        assert row["power"] == pytest.approx(ref, rel=1e-6)
    assert plan["cost"].is_sorted()


def test_sample_size_recommends_the_cheapest_sufficient_design() -> None:
    comp = {"split": 1e-4, "seed": 4e-4}
    plan = sample_size(comp, delta=0.02, cost_trial=1.0)
    best = plan.filter(pl.col("recommended"))
    assert best.height == 1
    row = best.row(0, named=True)
    assert row["power"] >= 0.8
    cheaper = plan.filter((pl.col("cost") < row["cost"]) & pl.col("meets_target"))
    assert cheaper.height == 0
    # at a fixed number of trials K*S, Var = 2 (s2_split S + s2_seed) / (K S) grows with S:
    # when splits are free to vary, one seed per split is cheapest (Bouthillier et al. 2021)
    assert row["n_seeds"] == 1
    # when splits are capped (e.g. 8 folds), seed noise is averaged with more seeds
    capped = sample_size(comp, delta=0.02, n_splits=range(2, 9)).filter(pl.col("recommended"))
    assert capped["n_splits"][0] == 8 and capped["n_seeds"][0] > 1
    # components of the difference are not doubled: fewer trials needed
    paired = sample_size(comp, delta=0.02, components_of="difference")
    assert paired.filter(pl.col("recommended"))["cost"][0] < row["cost"]
    # unreachable target: nothing recommended
    none = sample_size({"split": 1.0, "seed": 1.0}, delta=0.01, n_splits=[2, 3], n_seeds=[1])
    assert not none["recommended"].any()


def test_sample_size_reads_variance_components_and_checks_input() -> None:
    scores = _scores(6, 3, 0.03, 0.01)
    vc = variance_components(scores, n_test=80, n_boot=100)
    plan = sample_size(vc, delta=0.05, n_splits=[5], n_seeds=[2], n_train=400)
    row = plan.row(0, named=True)
    comp = dict(zip(vc["component"], vc["variance"], strict=True))
    var = 2 * ((comp["split"] + comp["test_sample"]) * (1 / 5 + 80 / 400) + comp["seed"] / 10)
    assert row["se"] == pytest.approx(np.sqrt(var), rel=1e-12)
    assert "Nadeau-Bengio" in row["method"]
    # bound="upper" plans with the upper interval bounds: a larger SE, never more power
    upper = sample_size(vc, delta=0.05, n_splits=[5], n_seeds=[2], bound="upper").row(0, named=True)
    upper_var = dict(zip(vc["component"], vc["ci_high"], strict=True))
    var = 2 * ((upper_var["split"] + upper_var["test_sample"]) / 5 + upper_var["seed"] / 10)
    assert upper["se"] == pytest.approx(np.sqrt(var), rel=1e-12)
    with pytest.raises(AnalysisError, match="bound='upper' needs the output"):
        sample_size({"split": 1.0, "seed": 1.0}, delta=0.1, bound="upper")
    with pytest.raises(AnalysisError, match="no 'seed' component"):
        sample_size({"split": 1.0}, delta=0.1)
    with pytest.raises(AnalysisError, match="pilot_n_test"):
        sample_size({"split": 1.0, "seed": 1.0, "test_sample": 0.1}, delta=0.1)
    with pytest.raises(AnalysisError, match="delta=0"):
        sample_size({"split": 1.0, "seed": 1.0}, delta=0)
    with pytest.raises(AnalysisError, match="several rows per component"):
        sample_size(pl.concat([vc, vc]), delta=0.1)
