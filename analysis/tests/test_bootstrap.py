"""Hierarchical bootstrap: draws, agreement with the slow loop, analytic SEs, coverage sanity."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from raybench_analysis import bootstrap, bootstrap_replicates
from raybench_analysis._frames import AnalysisError
from raybench_analysis.bootstrap import build_hierarchy, draw_counts
from raybench_analysis.metrics import accuracy, auc


def test_draw_counts_structure():
    # two sites: s1 with 3 subjects, s2 with 2; a drawn site copy redraws all its subjects
    frame = pl.DataFrame(
        {"site": ["s1", "s1", "s1", "s2", "s2"], "subject_id": ["a", "b", "c", "d", "e"]}
    )
    h = build_hierarchy(frame, ["site", "subject_id"])
    assert h.sizes == (2, 5)
    assert h.parents[0].tolist() == [0, 0, 0, 1, 1]
    counts = next(draw_counts(h, 4000, np.random.default_rng(0)))
    per_site = np.column_stack([counts[:, :3].sum(1), counts[:, 3:].sum(1)])
    # subjects drawn per site are multiples of the site's size (c copies x m subjects)
    assert np.all(per_site[:, 0] % 3 == 0) and np.all(per_site[:, 1] % 2 == 0)
    # two sites drawn per replicate
    assert np.all(per_site[:, 0] // 3 + per_site[:, 1] // 2 == 2)
    # every unit is drawn once per replicate on average (unbiased resampling)
    assert counts.mean(0) == pytest.approx(np.ones(5), abs=0.06)


def test_reused_subject_id_across_sites_warns_and_splits_units():
    frame = pl.DataFrame({"site": ["x", "y"], "subject_id": ["a", "a"]})
    with pytest.warns(UserWarning, match="more than one 'site'"):
        h = build_hierarchy(frame, ["site", "subject_id"])
    assert h.n_units == 2


@pytest.mark.filterwarnings("ignore:.*replicates left auc undefined")
@pytest.mark.parametrize("levels", [[], ["subject_id"], ["site", "subject_id"]])
def test_vectorised_equals_loop_over_replicates(predictions, levels):
    """Same draws: the matrix form and a per-replicate callable give identical replicates."""
    data = predictions.filter(model="a", seed=0)
    fast = bootstrap_replicates(data, metric="auc", levels=levels, n_boot=60, seed=5)
    slow = bootstrap_replicates(
        data,
        metric=lambda f: auc(f["y_true"], f["score"]),
        levels=levels,
        n_boot=60,
        seed=5,
    )
    expected = slow["value"].to_numpy()
    assert fast["value"].to_numpy() == pytest.approx(expected, abs=1e-12, nan_ok=True)
    fast = bootstrap_replicates(data, metric="accuracy", levels=levels, n_boot=60, seed=5)
    slow = bootstrap_replicates(
        data, metric=lambda f: accuracy(f["y_true"], f["y_pred"]), levels=levels, n_boot=60, seed=5
    )
    expected = slow["value"].to_numpy()
    assert fast["value"].to_numpy() == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_iid_se_matches_analytic():
    rng = np.random.default_rng(1)
    x = rng.normal(size=400)
    out = bootstrap({"x": x}, value="x", levels=[], n_boot=4000, seed=0)
    # reference: the bootstrap SE of a mean is sd(x, ddof=0) / sqrt(n) (Efron & Tibshirani 1993)
    assert out["se"][0] == pytest.approx(x.std() / np.sqrt(len(x)), rel=0.05)
    assert out["estimate"][0] == pytest.approx(x.mean(), abs=1e-12)
    assert out["method"][0] == "percentile bootstrap, iid observations"
    assert out["unit"][0] == "observation"


def test_cluster_se_matches_analytic_and_naive_is_too_small():
    rng = np.random.default_rng(2)
    n_subj, per = 60, 5
    subj = np.repeat(np.arange(n_subj), per)
    x = rng.normal(0, 1, n_subj)[subj] + rng.normal(0, 0.3, n_subj * per)
    frame = pl.DataFrame({"subject_id": subj.astype(str), "x": x})
    out = bootstrap(frame, value="x", levels=["subject_id"], n_boot=4000, seed=0)
    means = x.reshape(n_subj, per).mean(1)
    # reference: with equal cluster sizes the cluster bootstrap SE is sd(cluster means) / sqrt(J)
    assert out["se"][0] == pytest.approx(means.std() / np.sqrt(n_subj), rel=0.06)
    assert out["n_subject_id"][0] == n_subj and out["n_obs"][0] == n_subj * per
    naive = bootstrap(frame, value="x", levels=[], n_boot=2000, seed=0)
    assert naive["se"][0] < 0.6 * out["se"][0]  # images as independent: far too confident


@pytest.mark.filterwarnings("ignore:.*replicates left auc undefined")  # a one-class site
def test_same_seed_same_numbers_and_by_groups(predictions):
    a = bootstrap(predictions, metric="auc", levels=["site", "subject_id"], by="model", n_boot=200)
    b = bootstrap(predictions, metric="auc", levels=["site", "subject_id"], by="model", n_boot=200)
    assert a.equals(b)
    c = bootstrap(
        predictions, metric="auc", levels=["site", "subject_id"], by="model", n_boot=200, seed=1
    )
    assert not a["ci_low"].equals(c["ci_low"])
    assert a.columns == [
        "model",
        "metric",
        "estimate",
        "se",
        "ci_low",
        "ci_high",
        "n_site",
        "n_subject_id",
        "n_obs",
        "n_boot",
        "method",
        "unit",
    ]
    assert a["unit"].to_list() == ["site>subject_id"] * 2
    assert a["method"][0] == "percentile bootstrap, hierarchical"
    assert a["n_site"].to_list() == [4, 4] and a["n_subject_id"].to_list() == [40, 40]
    for row in a.iter_rows(named=True):
        assert row["ci_low"] < row["estimate"] < row["ci_high"]


def test_pandas_input_and_metric_settings(predictions):
    out = bootstrap(predictions.to_pandas(), metric="ece", n_bins=5, n_boot=50)
    assert isinstance(out, pl.DataFrame)
    assert out["metric"][0].startswith("ece(n_bins=5")
    assert isinstance(predictions.to_pandas(), pd.DataFrame)


def test_coverage_sanity_iid():
    """95% percentile intervals of a normal mean cover the truth about 95% of the time."""
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(150):
        x = rng.normal(1.0, 1.0, 60)
        out = bootstrap({"x": x}, value="x", levels=[], n_boot=400, seed=int(rng.integers(1e9)))
        hits += out["ci_low"][0] <= 1.0 <= out["ci_high"][0]
    # binomial(150, 0.95): 0.88-0.99 holds with probability > 0.99 (percentile CIs run a bit short)
    assert 0.88 <= hits / 150 <= 0.995


def test_errors_are_clear(predictions):
    with pytest.raises(AnalysisError, match="exactly one of value="):
        bootstrap(predictions, value="loss", metric="auc")
    with pytest.raises(AnalysisError, match=r"missing column\(s\) \['hospital'\]"):
        bootstrap(predictions, value="loss", levels=["hospital"])
    with pytest.raises(AnalysisError, match="n_boot=1"):
        bootstrap(predictions, value="loss", n_boot=1)
    with pytest.raises(AnalysisError, match="null value"):
        bootstrap(pl.DataFrame({"subject_id": ["a", None], "x": [1.0, 2.0]}), value="x")
    with pytest.raises(AnalysisError, match="value='site'"):
        bootstrap(predictions, value="site")
