"""Feature distances: formulas checked by direct computation, valid p-values, known truth."""

from __future__ import annotations

import numpy as np
import pytest
from raybench_analysis import AnalysisError
from raybench_analysis.shift import feature_distance, frechet_distance, mmd2


def test_mmd_matches_the_double_sum_of_gretton_et_al() -> None:
    # Gretton et al. (2012), eq. (3): the unbiased statistic as an explicit double sum
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 2)), rng.normal(0.5, 1.0, size=(5, 2))

    def k(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.exp(-np.sum((x - y) ** 2) / (2 * 0.8**2)))

    xx = sum(k(a[i], a[j]) for i in range(7) for j in range(7) if i != j) / (7 * 6)
    yy = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    xy = sum(k(a[i], b[j]) for i in range(7) for j in range(5)) / (7 * 5)
    assert mmd2(a, b, bandwidth=0.8) == pytest.approx(xx + yy - 2 * xy, abs=1e-12)


def test_frechet_matches_the_closed_form_with_scipy_sqrtm() -> None:
    # d² = |mu_a - mu_b|² + Tr(S_a + S_b - 2 sqrtm(S_a S_b)), scipy.linalg.sqrtm as the reference
    from scipy.linalg import sqrtm

    rng = np.random.default_rng(1)
    a = rng.normal(size=(60, 4)) @ rng.normal(size=(4, 4))
    b = rng.normal(1.0, 2.0, size=(50, 4))
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    mu = a.mean(0) - b.mean(0)
    ref = mu @ mu + np.trace(ca + cb - 2 * np.real(sqrtm(ca @ cb)))
    assert frechet_distance(a, b) == pytest.approx(ref, rel=1e-8)


def test_permutation_p_values_are_uniform_under_the_null() -> None:
    # under H0 P(p <= 0.1) <= 0.1 (up to Monte Carlo error: 99% binomial limit 0.225 for 40 draws)
    rng = np.random.default_rng(2)
    ps = np.array(
        [
            feature_distance(rng.normal(size=(20, 3)), rng.normal(size=(20, 3)), n_perm=99, seed=i)[
                "p_value"
            ].to_numpy()
            for i in range(40)
        ]
    )
    assert (ps > 0).all() and (ps <= 1).all()
    assert np.mean(ps <= 0.1, axis=0).max() <= 0.225


def test_two_halves_of_one_sample_are_closer_than_two_distributions() -> None:
    # known truth: same distribution vs. a mean shift of one SD in every feature
    rng = np.random.default_rng(3)
    real, other = rng.normal(size=(80, 5)), rng.normal(1.0, 1.0, size=(40, 5))
    halves = feature_distance(real[:40], real[40:], n_perm=199)
    shifted = feature_distance(real[:40], other, n_perm=199)
    assert (halves["estimate"] < shifted["estimate"]).all()
    assert (shifted["p_value"] <= 0.01).all() and (halves["p_value"] > 0.01).all()


def test_bad_input() -> None:
    with pytest.raises(AnalysisError, match="2-D"):
        feature_distance(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(AnalysisError, match="must match"):
        feature_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(AnalysisError, match="NaN"):
        feature_distance(np.full((4, 3), np.nan), np.zeros((4, 3)))
    with pytest.raises(AnalysisError, match="allowed"):
        feature_distance(np.zeros((4, 3)), np.zeros((4, 3)), distances=["kl"])


def test_many_features_are_reduced_to_their_span_without_changing_anything() -> None:
    # 200 features of 12 + 10 images: computed in the 21-dimensional span of the pooled rows, the
    # estimates equal the direct formulas on all 200 columns (to rounding of the rank-deficient
    # 200 × 200 covariance square root)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(12, 200)), rng.normal(0.3, 1.0, size=(10, 200))
    out = feature_distance(a, b, n_perm=50).sort("distance")
    assert out["estimate"].to_list() == pytest.approx(
        [frechet_distance(a, b), mmd2(a, b)], rel=1e-6
    )
    assert (out["n_features"] == 200).all()
