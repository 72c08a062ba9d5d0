"""No test-fold information reaches the search: scrambled test labels change nothing before it.

Real training (16³ volumes, 1 epoch) of the search trials of outer fold 0 of a random search, on
the cohort and on a copy whose outer-fold-0 test subjects have their labels flipped: the search
trials see the same data, give bit-identical validation predictions and scores, and the refit
selection picks the same point (the nested CV of Varma & Simon 2006).
"""

from __future__ import annotations

import dataclasses

import polars as pl

from raybench.data.cohort import Cohort
from raybench.plan import compile_suite
from raybench.runner.selection import choose_point
from raybench.suite.schema import Suite
from raybench.training import TrialContext, run_trial


def _suite() -> Suite:
    return Suite.model_validate(
        {
            "name": "leak",
            "datasets": [{"name": "tiny", "source": "synthetic", "params": {"subjects": 8}}],
            "task": {"type": "classification", "label": "diagnosis", "positive": "AD"},
            "models": [
                {"name": "cnn", "arch": "classifier", "params": {"channels": [[4, 8]]}},
            ],
            "training": {"epochs": 1, "batch_size": 2, "lr": 1.0e-3},
            "validation": {  # stratify: [] so that the folds do not depend on the labels
                "outer": {"strategy": "group_kfold", "k": 2, "stratify": []},
                "inner": {"strategy": "group_holdout", "fraction": 0.25, "stratify": []},
            },
            "evaluation": {"selection_metric": "loss"},
            "search": {
                "algorithm": "random",
                "num_samples": 2,
                "space": {"lr": {"loguniform": [1.0e-4, 1.0e-1]}},
            },
        }
    )


def _search_of_fold0(cohort: Cohort, tmp_path) -> tuple[list, dict, dict]:
    plan = compile_suite(_suite(), {"tiny": cohort})
    search = [t for t in plan.trials if t.stage == "search" and t.outer_fold == 0]
    refit = next(t for t in plan.trials if t.stage == "refit" and t.outer_fold == 0)
    ctx = TrialContext(cache_dir=tmp_path / "cache")
    outcomes = {t.trial_id: run_trial(t, cohort, ctx) for t in search}
    return search, refit, outcomes


def test_scrambled_test_labels_change_nothing_before_the_refit(cohort, tmp_path):
    search, refit, outcomes = _search_of_fold0(cohort, tmp_path)
    test = set(refit.test_ids)
    assert test and all(not test & {*t.train_ids, *t.val_ids} and not t.test_ids for t in search)

    flipped = pl.col("sample_id").is_in(sorted(test))
    swap = pl.when(pl.col("diagnosis") == "AD").then(pl.lit("CN")).otherwise(pl.lit("AD"))
    table = cohort.table.with_columns(
        pl.when(flipped).then(swap).otherwise(pl.col("diagnosis")).alias("diagnosis")
    )
    scrambled = dataclasses.replace(cohort, table=table, fingerprint=cohort.fingerprint + "x")
    search2, refit2, outcomes2 = _search_of_fold0(scrambled, tmp_path)

    assert table["diagnosis"].to_list() != cohort.table["diagnosis"].to_list()
    assert [t.params for t in search] == [t.params for t in search2]
    assert set(refit2.test_ids) == test  # the same folds: the labels of test subjects differ
    for a, b in zip(search, search2, strict=True):
        before, after = outcomes[a.trial_id], outcomes2[b.trial_id]
        assert before.val_score == after.val_score
        cols = ["sample_id", "split", "y_true", "y_pred", "loss"]
        assert before.predictions.select(cols).equals(after.predictions.select(cols))
    scores = {t: o.val_score for t, o in outcomes.items()}
    scores2 = {t: o.val_score for t, o in outcomes2.items()}
    assert choose_point(refit, {t.trial_id: t for t in search}, scores) == choose_point(
        refit2, {t.trial_id: t for t in search2}, scores2
    )
