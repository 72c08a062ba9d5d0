"""Obuchowski's clustered AUC: reduces to DeLong (pROC-checked) with one row per cluster, and its
variance agrees with the cluster bootstrap's on clustered data; clusters matter."""

from __future__ import annotations

import numpy as np
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.delong import delong, delong_auc
from raybench_analysis.metrics import auc
from raybench_analysis.obuchowski import obuchowski, obuchowski_auc


def _clustered(n_clusters: int, per: int, rng: np.random.Generator, shift: float = 1.0):
    cluster = np.repeat(np.arange(n_clusters), per)
    y = rng.integers(0, 2, n_clusters * per)
    effect = rng.normal(0, 1.0, n_clusters)[cluster]  # shared by a patient's images
    a = shift * y + effect + rng.normal(0, 0.7, len(y))
    b = 0.7 * shift * y + effect + rng.normal(0, 0.7, len(y))
    return y, a, b, cluster


def test_singleton_clusters_give_delong():
    rng = np.random.default_rng(0)
    y, a, b, _ = _clustered(80, 1, rng)
    ids = np.arange(len(y))
    one = obuchowski_auc(y, a, ids).row(0, named=True)
    ref = delong_auc(y, a).row(0, named=True)
    assert one["estimate"] == pytest.approx(ref["estimate"], abs=1e-14)
    assert one["var"] == pytest.approx(ref["var"], rel=1e-12)
    two = obuchowski(y, a, b, ids).row(0, named=True)
    ref2 = delong(y, a, b).row(0, named=True)
    for col in ("estimate", "se", "cov", "statistic", "p_value"):
        assert two[col] == pytest.approx(ref2[col], rel=1e-10)


def test_variance_matches_the_cluster_bootstrap():
    rng = np.random.default_rng(1)
    y, a, b, cluster = _clustered(60, 6, rng)
    out = obuchowski(y, a, b, cluster).row(0, named=True)
    # reference: the cluster bootstrap (patients drawn with replacement) of auc(a) − auc(b);
    # Obuchowski's variance is its analytic counterpart (B = 2000: Monte Carlo SE about 3%)
    boot = np.random.default_rng(2)
    diffs = []
    for _ in range(2000):
        pick = boot.integers(0, 60, 60)
        rows = (pick[:, None] * 6 + np.arange(6)).ravel()
        diffs.append(auc(y[rows], a[rows]) - auc(y[rows], b[rows]))
    assert out["se"] == pytest.approx(np.std(diffs, ddof=1), rel=0.12)
    # ignoring the clusters (DeLong on images) understates it here: correlated images
    naive = delong(y, a, b).row(0, named=True)
    assert out["auc_a"] == pytest.approx(naive["auc_a"], abs=1e-14)
    single = obuchowski_auc(y, a, cluster).row(0, named=True)
    assert single["n_clusters"] == 60 and single["unit"] == "cluster"


def test_patient_level_labels_inflate_the_variance():
    # six images per patient, one label per patient, a patient effect on every image: the images
    # are far from independent, and DeLong on images understates the SE
    rng = np.random.default_rng(3)
    cluster = np.repeat(np.arange(50), 6)
    y = rng.integers(0, 2, 50)[cluster]
    score = y + rng.normal(0, 1.0, 50)[cluster] + rng.normal(0, 0.3, len(y))
    clustered = obuchowski_auc(y, score, cluster)["se"][0]
    assert clustered > 1.8 * delong_auc(y, score)["se"][0]


def test_needs_two_clusters_with_each_class():
    with pytest.raises(AnalysisError, match="at least 2"):
        obuchowski_auc([0, 1, 0, 1], [0.1, 0.9, 0.2, 0.8], ["a", "a", "a", "a"])
    with pytest.raises(AnalysisError, match="2 clusters with each"):
        obuchowski_auc([0, 0, 1, 1], [0.1, 0.2, 0.9, 0.8], ["a", "a", "b", "b"])
