"""Repeatability over seeds, prediction churn and the seed ensemble (issue 9)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis import (
    AnalysisError,
    compare,
    repeatability,
    repeatability_samples,
    seed_ensemble,
    simulate_uncertainty,
)


def _noisy(n: int = 300, seeds: int = 4, sd: float = 0.05, rng_seed: int = 0) -> pl.DataFrame:
    """Each sample's probability is base + N(0, sd²) per seed: true s_r = sd (no clipping)."""
    rng = np.random.default_rng(rng_seed)
    base = rng.uniform(0.3, 0.7, n)
    p = base[:, None] + rng.normal(0, sd, (n, seeds))
    return pl.DataFrame(
        {
            "model": "m",
            "outer_fold": np.repeat(np.arange(n) % 3, seeds),
            "seed": np.tile(np.arange(seeds), n),
            "sample_id": np.repeat(np.arange(n), seeds).astype(str),
            "subject_id": np.repeat(np.arange(n) // 2, seeds).astype(str),
            "y_true": np.repeat((rng.random(n) < base).astype(float), seeds),
            "score": p.ravel(),
        }
    )


def test_pooled_repeatability_sd_matches_iso_formula():
    df = _noisy()
    out = repeatability(df, n_boot=200)
    p = df["score"].to_numpy().reshape(-1, 4)
    # reference: ISO 5725-2 pooled within-cell variance, sum (n_i - 1) s_i^2 / sum (n_i - 1)
    s_r = np.sqrt((3 * p.var(axis=1, ddof=1)).sum() / (3 * len(p)))
    est = dict(zip(out["quantity"], out["estimate"], strict=True))
    assert est["s_r"] == pytest.approx(s_r, abs=1e-12)
    # reference: ISO 5725-2 repeatability limit r = 2.8 s_r
    assert est["r"] == pytest.approx(2.8 * s_r, abs=1e-12)
    # known truth: s_r = 0.05; 1200 values, 900 degrees of freedom: se about 0.0012
    row = out.filter(quantity="s_r").row(0, named=True)
    assert row["ci_low"] < 0.05 < row["ci_high"]
    assert row["ci_high"] - row["ci_low"] < 0.01


def test_churn_and_pairwise_disagreement_by_hand():
    df = pl.DataFrame(
        {
            "model": "m",
            "outer_fold": 0,
            "seed": [0, 1, 2, 0, 1, 2],
            "sample_id": ["a"] * 3 + ["b"] * 3,
            "subject_id": ["a"] * 3 + ["b"] * 3,
            "y_true": [1.0] * 6,
            "score": [0.7, 0.8, 0.4, 0.9, 0.9, 0.9],
        }
    )
    s = repeatability_samples(df)
    # a: classes 1, 1, 0 -> flips; pairs (1,1) agree, two (1,0) disagree: 2/3
    # (formula (n^2 - sum c_k^2) / (n(n-1)) = (9 - 5) / 6)
    assert s["flip"].to_list() == [1.0, 0.0]
    assert s["disagreement"].to_list() == pytest.approx([2 / 3, 0.0], abs=1e-15)
    out = repeatability(df, n_boot=50)
    est = dict(zip(out["quantity"], out["estimate"], strict=True))
    assert est["churn"] == 0.5
    assert est["disagreement"] == pytest.approx(1 / 3, abs=1e-15)


def test_identical_seeds_have_zero_spread_and_ensemble_equals_the_model():
    df = simulate_uncertainty(n_sites=2, subjects_per_site=10, n_seeds=3, seed_sd=0.0, seed=1)
    test = df.filter(split="test")
    out = repeatability(test, n_boot=50)
    assert out.filter(quantity="s_r")["estimate"][0] == pytest.approx(0.0, abs=1e-12)
    assert out.filter(quantity="churn")["estimate"][0] == 0.0
    ens = seed_ensemble(test, with_members=False)
    single = test.filter(seed=0).sort("outer_fold", "sample_id")
    ens = ens.sort("outer_fold", "sample_id")
    assert ens.columns == test.columns
    assert ens["model"].unique().to_list() == ["m+ens"]
    np.testing.assert_allclose(ens["score"].to_numpy(), single["score"].to_numpy(), atol=1e-15)
    np.testing.assert_allclose(
        np.asarray(ens["probs"].to_list()), np.asarray(single["probs"].to_list()), atol=1e-15
    )
    assert ens["y_pred"].to_list() == single["y_pred"].to_list()
    # the paired comparison of the model with its ensemble of identical seeds: difference 0
    cmp = compare(seed_ensemble(test), metric="brier", levels=["subject_id"], n_boot=50)
    assert cmp["estimate"][0] == pytest.approx(0.0, abs=1e-12)


def test_ensemble_is_the_mean_over_seeds_and_a_model_for_compare():
    df = simulate_uncertainty(n_sites=2, subjects_per_site=15, n_seeds=3, seed_sd=0.5, seed=2)
    test = df.filter(split="test")
    ens = seed_ensemble(test, with_members=False)
    mean = test.group_by("outer_fold", "sample_id").agg(pl.col("score").mean())
    joined = ens.join(mean, on=["outer_fold", "sample_id"], suffix="_mean")
    np.testing.assert_allclose(joined["score"], joined["score_mean"], atol=1e-15)
    assert ens["seed"].unique().to_list() == [-1]
    assert ens["trial_id"].null_count() == ens.height
    both = seed_ensemble(test)
    assert both.height == test.height + ens.height
    cmp = compare(both, metric="brier", levels=["site", "subject_id"], n_boot=100)
    assert cmp.select("model_a", "model_b").row(0) == ("m", "m+ens")


def test_multiclass_and_regression_values():
    df = simulate_uncertainty(n_sites=2, subjects_per_site=8, n_seeds=2, n_classes=3,
                              seed_sd=0.4, seed=3).filter(split="test")  # fmt: skip
    s = repeatability_samples(df)
    p = np.asarray(df.sort("outer_fold", "sample_id", "seed")["probs"].to_list())
    p = p.reshape(-1, 2, 3)
    # root of the mean over classes of the per-class variance over seeds (ddof 1)
    expected = np.sqrt(p.var(axis=1, ddof=1).mean(axis=1))
    got = s.sort("outer_fold", "sample_id")["sd"].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    reg = pl.DataFrame({"model": "r", "outer_fold": 0, "seed": [0, 1, 0, 1],
                        "sample_id": ["a", "a", "b", "b"], "y_true": [1.0, 1.0, 2.0, 2.0],
                        "y_pred": [1.0, 2.0, 2.0, 2.0]})  # fmt: skip
    sr = repeatability_samples(reg)
    assert sr["sd"].to_list() == pytest.approx([np.sqrt(0.5), 0.0])
    assert sr["flip"].is_nan().all()


def test_single_seed_is_a_clear_error():
    df = _noisy(seeds=1)
    with pytest.raises(AnalysisError, match="two or more seeds"):
        repeatability(df, n_boot=50)
