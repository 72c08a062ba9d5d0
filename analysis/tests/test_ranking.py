"""Tests of raybench_analysis.ranking: resampling on the right unit and rank distributions."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.metrics import auc
from raybench_analysis.ranking import ranking_stability, resample_weights
from raybench_analysis.simulate import simulate_predictions


def test_weights_respect_the_hierarchy() -> None:
    # 3 sites with 2, 3 and 5 subjects; each subject has 2 rows
    sizes = [2, 3, 5]
    subj = [f"s{i}-{j}" for i, n in enumerate(sizes) for j in range(n)]
    site = [f"s{i}" for i, n in enumerate(sizes) for _ in range(n)]
    df = pl.DataFrame({"site": site * 2, "subject_id": subj * 2})
    scheme = resample_weights(df, ["site", "subject_id"], n_boot=4000, seed=1)
    w = scheme.weights
    assert w.shape == (4000, 10) and scheme.n_units == {"site": 3, "subject_id": 10}
    # rows of one subject share the subject's unit
    assert np.array_equal(scheme.unit_index[:10], scheme.unit_index[10:])
    # per site, the subject draws are (number of times the site was drawn) x (its size)
    site_of_unit = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 2])
    for s, n in enumerate(sizes):
        draws = w[:, site_of_unit == s].sum(axis=1)
        assert np.all(draws % n == 0)
        # E[site draws] = 1 (3 draws among 3 sites), so E[subject draws] = n: within 4 SE
        assert draws.mean() / n == pytest.approx(1.0, abs=4 * np.sqrt(2 / 3 / 4000))
    # total draws vary (sites have different sizes) but the expectation is 10
    assert w.sum(axis=1).mean() == pytest.approx(10, abs=0.25)
    # cluster scheme (default): a site's subjects are all drawn as often as the site
    for s in range(3):
        block = w[:, site_of_unit == s]
        assert np.all(block == block[:, [0]])
    assert scheme.resampling == "cluster bootstrap" and (scheme.n_top, scheme.n_strata) == (3, 1)
    two = resample_weights(df, ["site", "subject_id"], n_boot=500, seed=1, scheme="two_stage")
    assert two.resampling == "two-stage bootstrap"
    assert np.any(two.weights[:, 5] != two.weights[:, 6])  # subjects redrawn within a site


def test_iid_scheme_resamples_images() -> None:
    df = pl.DataFrame({"sample_id": ["a", "b", "a", "b"], "model": ["x", "x", "y", "y"]})
    scheme = resample_weights(df, [], n_boot=10, seed=0)
    assert scheme.unit == "sample_id (iid)"
    assert np.array_equal(scheme.unit_index, [0, 1, 0, 1])  # models paired on the same image
    assert np.all(scheme.weights.sum(axis=1) == 2)


def test_clearly_separated_models_rank_stably() -> None:
    run = simulate_predictions(
        models={"bad": 0.3, "mid": 1.5, "top": 3.5},
        n_sites=5,
        subjects_per_site=12,
        n_seeds=2,
        n_folds=3,
        seed=4,
    )
    out = ranking_stability(run.predictions, "auc", n_boot=300, seed=1)
    assert out["model"].to_list() == ["top", "mid", "bad"]
    assert out["rank"].to_list() == [1.0, 2.0, 3.0]
    assert out["p_rank_1"][0] > 0.99 and out["p_rank_3"][2] > 0.99
    # probabilities over ranks sum to 1 for every model, and over models for every rank
    p = out.select("p_rank_1", "p_rank_2", "p_rank_3").to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-12)
    assert set(out["unit"]) == {"site>subject_id"} and set(out["method"]) == {
        "bootstrap_rank, cluster bootstrap"
    }


def test_equal_models_have_unstable_ranks() -> None:
    run = simulate_predictions(
        models={"a": 1.5, "b": 1.5},
        seed_sd=0,
        split_sd=0,
        n_sites=4,
        subjects_per_site=10,
        n_seeds=1,
        n_folds=2,
        seed=0,
    )
    out = ranking_stability(run.predictions, "accuracy", n_boot=400)
    # identical generating models: neither is first in more than 95% of samples
    assert out["p_rank_1"].max() < 0.95
    assert out["rank_ci_low"].min() == 1.0 and out["rank_ci_high"].max() == 2.0


def test_estimate_is_the_mean_over_folds_of_seed_averaged_cell_metrics() -> None:
    run = simulate_predictions(n_sites=3, subjects_per_site=8, n_seeds=2, n_folds=2, seed=3)
    out = ranking_stability(run.predictions, "auc", n_boot=20)
    p = run.predictions.filter(perturbation="none")
    for model in out["model"]:
        # hand computation: AUC of each trained model (fold × seed), seeds averaged within each
        # fold, then folds averaged: bootstrap(average_over=("outer_fold", "seed"))'s estimand
        cells = p.filter(model=model).partition_by("outer_fold", "seed", as_dict=True)
        per_cell = {key: auc(f["y_true"], f["score"]) for key, f in cells.items()}
        folds = sorted({fold for fold, _ in per_cell})
        expected = np.mean(
            [np.mean([v for (f, _), v in per_cell.items() if f == fold]) for fold in folds]
        )
        assert out.filter(model=model)["estimate"][0] == pytest.approx(expected, abs=1e-12)


def test_lower_is_better_metric_and_perturbed_rows_ignored() -> None:
    run = simulate_predictions(
        task="regression",
        models={"good": 0.0, "bad": 5.0},
        n_sites=3,
        subjects_per_site=6,
        n_seeds=1,
        n_folds=2,
        perturbations={"noise": [1.0]},
    )
    out = ranking_stability(run.predictions, "mae", n_boot=50)
    assert out["model"].to_list() == ["good", "bad"]
    clean = run.predictions.filter(perturbation="none", model="good")
    mae = float((clean["y_pred"] - clean["y_true"]).abs().mean())
    assert out["estimate"][0] == pytest.approx(mae, abs=1e-12)


def test_errors() -> None:
    run = simulate_predictions(
        models={"only": 1.0}, n_sites=2, subjects_per_site=4, n_seeds=1, n_folds=2
    )
    with pytest.raises(AnalysisError, match="a ranking needs 2 models"):
        ranking_stability(run.predictions, "auc", n_boot=10)
    with pytest.raises(AnalysisError, match="missing column"):
        ranking_stability(run.predictions.drop("site"), "auc", n_boot=10)
    with pytest.raises(AnalysisError, match="metric='nope' is unknown"):
        ranking_stability(run.predictions, "nope", n_boot=10)
    with pytest.raises(AnalysisError, match="n_boot=0"):
        resample_weights(run.predictions, ["site"], n_boot=0)


@pytest.mark.parametrize("metric", ["ece", "brier", "log_loss"])
def test_probability_metrics_read_probs_when_score_is_incomplete(metric: str) -> None:
    """A probability metric reads ``probs`` when ``score`` has gaps, as ``bootstrap`` does."""
    from raybench_analysis import bootstrap

    run = simulate_predictions(models={"a": 2.0, "b": 0.5}, n_sites=4, subjects_per_site=8, seed=2)
    preds = run.predictions.with_columns(
        probs=pl.concat_list(1 - pl.col("score"), pl.col("score")),
        score=pl.lit(None, pl.Float64),  # as a run writes multi-class predictions
    )
    out = ranking_stability(preds, metric, n_boot=100, seed=0)
    ref = bootstrap(preds, metric=metric, by=["model"], n_boot=100, seed=0)
    assert out.sort("model")["estimate"].to_list() == pytest.approx(
        ref.sort("model")["estimate"].to_list(), abs=1e-12
    )
