"""Tests of raybench_analysis.simulate: the tables follow docs/results.md and the truth is right."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from raybench_analysis._frames import AnalysisError
from raybench_analysis.simulate import simulate_predictions, write_results_dir
from scipy import stats

PRED_COLUMNS = [
    "trial_id",
    "dataset",
    "model",
    "protocol",
    "outer_fold",
    "seed",
    "sample_id",
    "subject_id",
    "session_id",
    "scanner",
    "site",
    "split",
    "perturbation",
    "perturbation_type",
    "severity",
    "y_true",
    "y_pred",
    "score",
    "probs",
    "dice",
    "loss",
]


def test_tables_follow_results_contract() -> None:
    run = simulate_predictions(
        n_sites=3, subjects_per_site=6, n_seeds=2, n_folds=3, perturbations={"noise": [0.1]}
    )
    p = run.predictions
    assert p.columns == PRED_COLUMNS
    # every subject is tested exactly once per (model, seed, perturbation): folds partition them
    per = p.group_by("model", "seed", "perturbation", "sample_id").len()
    assert per["len"].max() == 1
    assert per.group_by("model", "seed", "perturbation").len()["len"].unique().to_list() == [36]
    # a subject never spans two outer folds
    assert p.group_by("subject_id").agg(pl.col("outer_fold").n_unique())["outer_fold"].max() == 1
    assert run.trials.height == 3 * 2 * 3
    assert set(run.trials["trial_id"]) == set(p["trial_id"])
    probs = np.array(p["probs"].to_list())
    np.testing.assert_allclose(probs[:, 1], p["score"].to_numpy(), rtol=0, atol=1e-15)
    assert set(p["perturbation"]) == {"none", "noise(severity=0.1)"}


def test_same_seed_same_tables() -> None:
    a = simulate_predictions(n_sites=2, subjects_per_site=4, n_seeds=1, n_folds=2, seed=5)
    b = simulate_predictions(n_sites=2, subjects_per_site=4, n_seeds=1, n_folds=2, seed=5)
    c = simulate_predictions(n_sites=2, subjects_per_site=4, n_seeds=1, n_folds=2, seed=6)
    assert a.predictions.equals(b.predictions) and a.truth.equals(b.truth)
    assert not a.predictions.equals(c.predictions)


def test_truth_closed_form_without_seed_effects() -> None:
    # With no seed/split effects, AUC = Phi(mu / sqrt(s1^2 + s0^2)) (binormal model; Hanley 1988);
    # the model-specific subject effect adds its variance to both classes.
    run = simulate_predictions(
        models={"m": 1.2},
        seed_sd=0,
        split_sd=0,
        n_sites=2,
        subjects_per_site=4,
        site_sd=0.5,
        site_effect_sd=0.3,
        subject_sd=0.8,
        model_subject_sd=0.4,
        session_sd=0.3,
        noise_sd=0.5,
    )
    var0 = 0.5**2 + 0.8**2 + 0.4**2 + 0.3**2 + 0.5**2
    expected = stats.norm.cdf(1.2 / np.sqrt(2 * var0 + 0.3**2))
    for estimand in ("trained", "procedure"):
        for metric in ("auc", "auc_pooled"):
            got = run.truth.filter(metric=metric, estimand=estimand)["value"][0]
            assert got == pytest.approx(expected, abs=1e-12)


def test_large_sample_matches_truth() -> None:
    # Law of large numbers: 1,500 subjects from 300 sites; accuracy is a mean over images, so the
    # sample value is within ~3 SE (SE ~ 0.01 with site and subject clustering) of the truth.
    run = simulate_predictions(
        models={"m": 1.5}, n_sites=300, subjects_per_site=5, n_seeds=1, n_folds=3, seed=11
    )
    p = run.predictions
    acc = float((p["y_true"] == p["y_pred"]).mean())
    truth = run.truth.filter(metric="accuracy", estimand="trained")["value"][0]
    assert acc == pytest.approx(truth, abs=0.03)


def test_per_cell_auc_truth_matches_large_sample() -> None:
    # auc_cell is the mean over (seed, fold) trained models of each one's own AUC on new patients
    # of new sites: with 400 sites of 6 subjects the mean of the per-trial sample AUCs is within
    # ~3 SE (SE ~ 0.01) of it.
    run = simulate_predictions(
        models={"m": 1.5}, n_sites=400, subjects_per_site=6, n_seeds=2, n_folds=3, split_sd=0.8,
        seed=5,
    )  # fmt: skip
    sample = run.scores.filter(metric="auc", perturbation="none")["value"].mean()
    truth = run.truth.filter(estimand="trained")
    cell = truth.filter(metric="auc_cell")["value"][0]
    assert sample == pytest.approx(cell, abs=0.03)


def test_segmentation_variant_truth() -> None:
    # the Dice truth is E[sigmoid(N(mu, s^2))] by quadrature: check it against scipy's adaptive
    # quadrature of the same integral, then against a large sample
    from raybench_analysis.simulate import _logit_normal_mean
    from scipy import integrate, special

    for mu, sd in [(1.5, 1.0), (-0.3, 2.5), (0.0, 0.1)]:
        f = lambda x, mu=mu, sd=sd: special.expit(x) * stats.norm.pdf(x, mu, sd)  # noqa: E731
        ref = integrate.quad(f, -50, 50)[0]
        assert float(_logit_normal_mean(np.array(mu), sd)) == pytest.approx(ref, abs=1e-7)
    run = simulate_predictions(
        task="segmentation", models={"good": 2.0, "poor": 0.5}, n_sites=150, subjects_per_site=8,
        n_seeds=1, n_folds=2, seed=3,
    )  # fmt: skip
    p = run.predictions
    assert p["dice"].is_between(0, 1, closed="none").all() and p["score"].is_null().all()
    for model in ("good", "poor"):
        truth = run.truth.filter(model=model, metric="dice", estimand="trained")["value"][0]
        assert float(p.filter(model=model)["dice"].mean()) == pytest.approx(truth, abs=0.03)
    dice = run.truth.filter(metric="dice", estimand="procedure").sort("model")["value"].to_list()
    assert dice[0] > dice[1]  # "good" sorts first


def test_regression_variant_truth() -> None:
    run = simulate_predictions(
        task="regression",
        models={"biased": 2.0, "unbiased": 0.0},
        n_sites=100,
        subjects_per_site=10,
        n_seeds=1,
        n_folds=2,
        seed=2,
    )
    p = run.predictions
    assert p["score"].is_null().all() and p["probs"].is_null().all()
    for model in ("biased", "unbiased"):
        err = p.filter(model=model).select((pl.col("y_pred") - pl.col("y_true")).abs()).to_series()
        truth = run.truth.filter(model=model, metric="mae", estimand="trained")["value"][0]
        # folded-normal mean E|N(mu, s^2)|; sample of 2,000 images: within 0.15
        assert float(err.mean()) == pytest.approx(truth, abs=0.15)
    mae = run.truth.filter(metric="mae", estimand="procedure").sort("model")["value"].to_list()
    assert mae[0] > mae[1]  # the biased model is worse


def test_write_results_dir(tmp_path) -> None:
    run = simulate_predictions(n_sites=2, subjects_per_site=4, n_seeds=1, n_folds=2)
    root = write_results_dir(run, tmp_path / "run")
    preds = pl.read_parquet(root / "predictions" / "*.parquet")
    assert preds.sort("trial_id", "sample_id").equals(run.predictions.sort("trial_id", "sample_id"))
    trials = pl.read_parquet(root / "trials" / "*.parquet")
    assert trials.height == run.trials.height
    splits = pl.read_parquet(root / "splits" / "*.parquet")
    assert set(splits["role"]) == {"test"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "survival"}, "task='survival'"),
        ({"models": {}}, "models=\\{\\} is empty"),
        ({"n_sites": 0}, "n_sites=0"),
        ({"prevalence": 1.0}, "prevalence=1.0"),
        ({"noise_sd": 0.0}, "noise_sd=0.0"),
        ({"site_sd": -1.0}, "site_sd=-1.0"),
        ({"n_folds": 50, "n_sites": 2, "subjects_per_site": 3}, "n_folds=50"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        simulate_predictions(**kwargs)
