"""Split-conformal sets: finite-sample quantile, coverage on exchangeable data, site shift."""

from __future__ import annotations

import math
import warnings

import numpy as np
import polars as pl
import pytest
from raybench_analysis import (
    AnalysisError,
    conformal,
    conformal_quantile,
    conformal_sets,
    simulate_uncertainty,
)
from scipy import special


def test_quantile_rank_is_ceil_n_plus_one_times_one_minus_alpha():
    # reference: Angelopoulos & Bates (2023), q = ceil((n+1)(1-alpha))/n empirical quantile
    scores = np.arange(1.0, 100.0)  # n = 99
    assert conformal_quantile(scores, 0.1) == 90.0  # (99+1)*0.9 = 90 exactly (float guard)
    assert conformal_quantile(scores[:19], 0.1) == 18.0  # ceil(20*0.9) = 18
    assert conformal_quantile(scores[:20], 0.1) == 19.0  # ceil(21*0.9) = ceil(18.9) = 19
    assert math.isinf(conformal_quantile(scores[:8], 0.1))  # ceil(9*0.9) = 9 > 8
    with pytest.raises(AnalysisError):
        conformal_quantile(scores, 1.5)


def _exchangeable(n_val: int, n_test: int, k: int, rng: np.random.Generator) -> pl.DataFrame:
    logits = rng.normal(0, 1.5, (n_val + n_test, k))
    p = special.softmax(logits, axis=1)
    y = (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1).astype(float)
    q = special.softmax(1.7 * logits, axis=1)  # miscalibrated: conformal must not care
    return pl.DataFrame(
        {
            "model": "m",
            "sample_id": np.arange(len(p)).astype(str),
            "split": ["val"] * n_val + ["test"] * n_test,
            "y_true": y,
            "probs": q.tolist(),
        }
    )


@pytest.mark.parametrize("score", ["lac", "aps", "aps_randomized"])
@pytest.mark.parametrize("k", [2, 4])
def test_marginal_coverage_on_exchangeable_data(score: str, k: int):
    # reference: Vovk et al. (2005); Angelopoulos & Bates (2023) Thm D.1: with n calibration
    # scores, E[coverage] >= 1 - alpha, and <= 1 - alpha + 1/(n+1) when scores have no ties
    # (not so for non-randomised APS). 300 runs x 100 test cases: Monte Carlo s.d. of the mean
    # coverage about sqrt(.09/30000 + var(beta)/300) ~ 0.0033; tolerance 0.012.
    rng = np.random.default_rng(k)
    alpha, n_val = 0.1, 49
    cover = [
        conformal_sets(_exchangeable(n_val, 100, k, rng), alpha=alpha, score=score, seed=rep)[
            "covered"
        ].mean()
        for rep in range(300)
    ]
    lower, upper = 1 - alpha, 1 - alpha + 1 / (n_val + 1)
    assert lower - 0.012 <= np.mean(cover)
    if score != "aps":
        assert np.mean(cover) <= upper + 0.012


def test_regression_intervals_cover_and_have_the_gaussian_width():
    rng = np.random.default_rng(0)
    n = 4000
    y = rng.normal(0, 1, n)
    df = pl.DataFrame(
        {
            "sample_id": np.arange(n).astype(str),
            "split": ["val", "test"] * (n // 2),
            "y_true": y,
            "y_pred": y + rng.normal(0, 2.0, n),
        }
    )
    sets = conformal_sets(df, alpha=0.1)
    # reference: |N(0, 2^2)| 90% quantile = 2 * 1.6449; coverage 0.9 (s.d. 0.0067 at 2000)
    assert sets["covered"].mean() == pytest.approx(0.9, abs=0.02)
    assert sets["set_size"][0] == pytest.approx(2 * 2 * 1.6449, rel=0.06)
    assert sets["score"][0] == "absolute_residual"


def test_aps_sets_contain_lac_mass_order_and_label_membership_is_consistent():
    rng = np.random.default_rng(3)
    df = _exchangeable(200, 200, 4, rng)
    for score in ("lac", "aps", "aps_randomized"):
        sets = conformal_sets(df, alpha=0.2, score=score)
        assert sets["set_size"].min() >= 0 and sets["set_size"].max() <= 4
        assert set(sets["covered"].unique()) <= {0.0, 1.0}


def test_shifted_site_falls_short_and_mondrian_restores_it():
    # known truth: the last site's labels come from softmax(eta / 3) while the model reports
    # softmax(eta): calibrated without that site, its coverage falls short of 1 - alpha
    common = dict(n_sites=4, subjects_per_site=60, n_seeds=2, shifted_sites=1, seed=5)
    unseen = simulate_uncertainty(shifted_in_val=False, **common)
    out = conformal(unseen, alpha=0.1, by="site", n_boot=300)
    cov = out.filter(quantity="coverage").sort("site")
    shifted = cov.filter(site="site-3").row(0, named=True)
    assert shifted["ci_high"] < 0.9
    others = cov.filter(pl.col("site") != "site-3")
    assert (others["ci_high"] > 0.9).all()
    seen = simulate_uncertainty(shifted_in_val=True, **common)
    mond = conformal(seen, alpha=0.1, by="site", mondrian=True, n_boot=300)
    row = mond.filter(quantity="coverage", site="site-3").row(0, named=True)
    assert row["calibration"] == "mondrian"
    assert row["ci_low"] < 0.9 < row["ci_high"] or row["estimate"] >= 0.9
    size = mond.filter(quantity="set_size", site="site-3")["estimate"][0]
    base = out.filter(quantity="set_size", site="site-3")["estimate"][0]
    assert size > base  # wider sets where the model is overconfident


def test_mondrian_site_without_calibration_cases_gets_full_sets():
    df = simulate_uncertainty(n_sites=3, subjects_per_site=20, n_seeds=1, shifted_sites=1,
                              shifted_in_val=False, seed=2)  # fmt: skip
    with pytest.warns(UserWarning, match="no validation case"):
        sets = conformal_sets(df, alpha=0.1, mondrian="site")
    shifted = sets.filter(site="site-2")
    assert shifted["qhat"].is_infinite().all()
    assert (shifted["set_size"] == 2.0).all() and (shifted["covered"] == 1.0).all()


def test_output_columns_and_errors():
    df = simulate_uncertainty(n_sites=2, subjects_per_site=15, n_seeds=1, seed=1)
    out = conformal(df, alpha=0.2, n_boot=50)
    assert out.columns[:9] == [
        "dataset", "model", "variant", "perturbation", "site", "quantity", "target", "alpha",
        "score",
    ]  # fmt: skip
    assert {"calibration", "estimate", "ci_low", "ci_high", "method", "unit"} <= set(out.columns)
    with pytest.raises(AnalysisError, match="no validation predictions"):
        conformal_sets(df.filter(split="test"))
    with pytest.raises(AnalysisError, match="score="):
        conformal_sets(df, score="raps")  # type: ignore[arg-type]
    with pytest.raises(AnalysisError, match="alpha="):
        conformal(df, alpha=0.0)
    with pytest.raises(AnalysisError, match="mondrian"):
        conformal(df, by=None, mondrian=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conformal_sets(df, alpha=0.2)  # enough calibration cases: no warning


def test_deterministic_for_a_seed():
    df = simulate_uncertainty(n_sites=2, subjects_per_site=15, n_seeds=2, n_classes=3, seed=6)
    a = conformal(df, score="aps_randomized", n_boot=50, seed=3)
    b = conformal(df.sample(fraction=1.0, shuffle=True, seed=1), score="aps_randomized",
                  n_boot=50, seed=3)  # fmt: skip
    np.testing.assert_allclose(a["estimate"], b["estimate"], atol=1e-12)
    assert a.equals(conformal(df, score="aps_randomized", n_boot=50, seed=3))
