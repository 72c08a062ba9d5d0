"""Tests of raybench_analysis.robustness: paired deltas against clean predictions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.metrics import auc
from raybench_analysis.robustness import robustness
from raybench_analysis.simulate import simulate_predictions


@pytest.fixture(scope="module")
def run():
    return simulate_predictions(
        models={"m": 2.0},
        n_sites=6,
        subjects_per_site=20,
        n_seeds=1,
        n_folds=2,
        perturbations={"noise": [0.05, 0.25]},
        seed=7,
    )


def test_delta_equals_hand_computed_auc_difference(run) -> None:
    out = robustness(run.predictions, "auc", n_boot=200)
    assert out.height == 2
    p = run.predictions
    clean = p.filter(perturbation="none")
    for row in out.iter_rows(named=True):
        pert = p.filter(perturbation=row["perturbation"])

        # one seed: the metric is the mean over outer folds of each fold's AUC (one trained
        # model per fold; metrics.auc = Mann-Whitney, as pROC::auc)
        def fold_mean_auc(frame: pl.DataFrame) -> float:
            return float(
                np.mean([auc(f["y_true"], f["score"]) for f in frame.partition_by("outer_fold")])
            )

        expected = fold_mean_auc(pert) - fold_mean_auc(clean)
        assert row["estimate"] == pytest.approx(expected, abs=1e-12)
        assert row["ci_low"] <= row["estimate"] <= row["ci_high"]
        assert row["n_samples"] == clean.height


def test_interval_covers_known_truth_and_severity_orders(run) -> None:
    out = robustness(run.predictions, "auc", n_boot=400).sort("severity")
    truth = run.truth.filter(metric="auc", estimand="trained")
    clean_truth = truth.filter(perturbation="none")["value"][0]
    for row in out.iter_rows(named=True):
        true_delta = truth.filter(perturbation=row["perturbation"])["value"][0] - clean_truth
        # simulate.py's closed form; a 95% interval may miss, so allow 1 SE beyond it
        assert row["ci_low"] - row["se"] <= true_delta <= row["ci_high"] + row["se"]
    assert out["estimate"][1] < out["estimate"][0] < 0
    assert out["p_value"][1] < 0.01


def test_paired_interval_is_narrower_than_unpaired(run) -> None:
    # pairing removes the between-subject variance common to clean and perturbed predictions
    out = robustness(run.predictions, "accuracy", n_boot=300).sort("severity")
    from raybench_analysis.bootstrap import bootstrap

    clean = run.predictions.filter(perturbation="none")
    se_clean = bootstrap(clean, metric="accuracy", levels=["site", "subject_id"], n_boot=300)["se"][
        0
    ]
    assert out["se"][0] < np.sqrt(2) * se_clean


def test_only_pairs_present_clean_are_used(run) -> None:
    p = run.predictions
    extra = (
        p.filter(perturbation="noise(severity=0.05)")
        .head(5)
        .with_columns(pl.lit("orphan").alias("trial_id"))
    )
    a = robustness(p, "auc", n_boot=50)
    b = robustness(pl.concat([p, extra]), "auc", n_boot=50)
    assert a["estimate"].to_list() == b["estimate"].to_list()


def test_errors(run) -> None:
    clean = run.predictions.filter(perturbation="none")
    with pytest.raises(AnalysisError, match="no perturbed rows"):
        robustness(clean, "auc", n_boot=10)
    with pytest.raises(AnalysisError, match="no clean rows"):
        robustness(run.predictions.filter(pl.col("perturbation") != "none"), "auc", n_boot=10)
    with pytest.raises(AnalysisError, match="missing column"):
        robustness(run.predictions.drop("trial_id"), "auc", n_boot=10)


def test_t_and_percentile_intervals_and_their_labels(run) -> None:
    t = robustness(run.predictions, "auc", n_boot=300).sort("severity")
    pct = robustness(run.predictions, "auc", n_boot=300, interval="percentile").sort("severity")
    two = robustness(run.predictions, "auc", n_boot=300, scheme="two_stage").sort("severity")
    assert set(t["method"]) == {"paired cluster bootstrap of the delta, few-cluster t interval"}
    assert set(pct["method"]) == {"paired cluster bootstrap of the delta, percentile interval"}
    assert set(two["method"]) == {"paired two-stage bootstrap of the delta, few-cluster t interval"}
    g = 6  # sites
    for rt, rp in zip(t.iter_rows(named=True), pct.iter_rows(named=True), strict=True):
        # same draws: the t se is the replicate sd times sqrt(G/(G-1)) (Cameron et al. 2008)
        assert rt["se"] == pytest.approx(rp["se"] * np.sqrt(g / (g - 1)), rel=1e-10)
        # reference: scipy.stats.t.ppf(0.975, 5) (R: qt(0.975, 5) = 2.570582)
        assert rt["ci_high"] - rt["estimate"] == pytest.approx(2.570582 * rt["se"], rel=1e-6)
        # the t test rejects at 5% exactly when 0 is outside the 95% interval
        assert (rt["p_value"] < 0.05) == (not rt["ci_low"] <= 0 <= rt["ci_high"])
    with pytest.raises(AnalysisError, match="scheme='bogus'"):
        robustness(run.predictions, "auc", n_boot=50, scheme="bogus")
