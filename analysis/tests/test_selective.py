"""Selective prediction: risk-coverage curves, AURC, accuracy at coverage (issue 9)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis import (
    AnalysisError,
    risk_coverage,
    selective,
    selective_risk,
    simulate_uncertainty,
)


def test_oracle_and_uninformative_scores_by_hand():
    loss = np.array([0, 0, 1, 0, 1, 0, 0, 1, 0, 0], dtype=float)  # error rate 0.3
    # an uncertainty equal to the loss ranks every error last (Geifman et al. 2019's optimal
    # AURC): risk(k) = 0 for k <= 7, then (k - 7)/k
    oracle = selective_risk(loss, loss)
    expected = np.array([0] * 7 + [1 / 8, 2 / 9, 3 / 10])
    np.testing.assert_allclose(oracle, expected, atol=1e-15)
    # a constant score: every order equally likely, so the expected risk is 0.3 at every k
    np.testing.assert_allclose(selective_risk(np.zeros(10), loss), 0.3, atol=1e-15)


def test_selective_risk_does_not_depend_on_row_order():
    rng = np.random.default_rng(0)
    u = rng.integers(0, 4, 50).astype(float)  # many ties
    loss = (rng.random(50) < 0.3).astype(float)
    perm = rng.permutation(50)
    np.testing.assert_allclose(selective_risk(u, loss), selective_risk(u[perm], loss[perm]))


def _frame(n: int = 400, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    p = rng.uniform(0, 1, n)
    y = (rng.random(n) < p).astype(float)
    return pl.DataFrame(
        {
            "model": "m",
            "subject_id": np.arange(n).astype(str),
            "y_true": y,
            "score": p,
            "mutual_information": rng.random(n),  # pure noise: no better than chance
        }
    )


def test_aurc_and_accuracy_at_coverage_match_manual_computation():
    df = _frame()
    out = selective(df, n_boot=50, average_over=None)
    p, y = df["score"].to_numpy(), df["y_true"].to_numpy()
    loss = ((p >= 0.5).astype(float) != y).astype(float)
    u = 1 - np.maximum(p, 1 - p)
    order = np.argsort(u)
    risk = np.cumsum(loss[order]) / np.arange(1, len(p) + 1)  # no ties in continuous scores
    row = out.filter(uncertainty="max_prob", quantity="aurc").row(0, named=True)
    # reference: AURC = (1/n) sum_k risk(k) (Geifman & El-Yaniv 2017)
    assert row["estimate"] == pytest.approx(risk.mean(), abs=1e-12)
    acc90 = out.filter(uncertainty="max_prob", quantity="accuracy_at", coverage=0.9)
    # keep ceil(0.9 * 400) = 360 most confident
    assert acc90["estimate"][0] == pytest.approx(1 - risk[359], abs=1e-12)
    assert set(out["uncertainty"]) == {"max_prob", "entropy", "mutual_information"}
    # informative (max_prob) beats noise (mutual_information column of random numbers)
    mi = out.filter(uncertainty="mutual_information", quantity="aurc")["estimate"][0]
    assert row["estimate"] < mi


def test_binary_entropy_ranks_like_max_probability():
    out = selective(_frame(seed=1), n_boot=30, average_over=None)
    a = out.filter(uncertainty="max_prob")["estimate"].to_numpy()
    b = out.filter(uncertainty="entropy")["estimate"].to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-12)


def test_seed_spread_and_custom_scores_and_curves():
    df = simulate_uncertainty(n_sites=2, subjects_per_site=20, n_seeds=3, seed_sd=0.5, seed=2)
    df = df.with_columns(my_score=pl.col("score").sub(0.5).abs().neg())
    out = selective(df, uncertainty={"custom": "my_score"}, n_boot=30)
    assert {"max_prob", "entropy", "seed_spread", "custom"} == set(out["uncertainty"])
    # |p - 0.5| is the same ordering as max probability for a binary model
    a = out.filter(uncertainty="custom")["estimate"].to_numpy()
    b = out.filter(uncertainty="max_prob")["estimate"].to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-12)
    curve = risk_coverage(df, grid=20)
    full = curve.filter(uncertainty="max_prob", coverage=1.0)["risk"][0]
    test = df.filter(split="test")
    err = (test["y_pred"] != test["y_true"]).cast(pl.Float64)
    per_trial = test.with_columns(err=err).group_by("outer_fold", "seed").agg(pl.col("err").mean())
    # at full coverage the risk is the error rate, averaged over seeds then folds
    expected = per_trial.group_by("outer_fold").agg(pl.col("err").mean())["err"].mean()
    assert full == pytest.approx(expected, abs=1e-12)


def test_bad_input():
    with pytest.raises(AnalysisError, match="coverages"):
        selective(_frame(), coverages=[1.2])
    reg = pl.DataFrame({"y_true": [1.0, 2.0], "y_pred": [1.0, 2.5]})
    with pytest.raises(AnalysisError, match="probabilities"):
        selective(reg)


def test_recorded_scores_only_for_the_variants_that_have_them():
    df = simulate_uncertainty(n_sites=2, subjects_per_site=15, n_seeds=1, seed=4)
    test = df.filter(split="test")
    rng = np.random.default_rng(0)
    mc = test.with_columns(variant=pl.lit("mc_dropout"),
                           mutual_information=pl.Series(rng.random(test.height)))  # fmt: skip
    both = pl.concat([test, mc], how="diagonal_relaxed")
    out = selective(both, n_boot=20)
    mi = out.filter(uncertainty="mutual_information")
    assert mi["variant"].unique().to_list() == ["mc_dropout"]
    assert set(out.filter(variant="raw")["uncertainty"]) == {"max_prob", "entropy"}
    curves = risk_coverage(both, grid=5)
    assert curves.filter(uncertainty="mutual_information")["variant"].unique().to_list() == [
        "mc_dropout"
    ]
