"""validation.train_resampling: draws of training subjects inside each outer training fold."""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl
import pytest
from plan_fixtures import cohort, cohort_table, make_suite

from raybench.errors import DataError, SuiteError
from raybench.plan.compiler import compile_suite
from raybench.resampling import TrainResampler
from raybench.splits import check_disjoint, unit_map

PROTOCOLS = {
    "outer": {"strategy": "group_kfold", "k": 3},
    "inner": {"strategy": "group_holdout", "fraction": 0.25},
}


def _suite(scheme: str, fractions: list[float], repeats: int, **validation: Any):
    resampling = {"scheme": scheme, "fractions": fractions, "repeats": repeats}
    return make_suite(
        validation={**PROTOCOLS, **validation, "train_resampling": resampling},
        models=[{"name": "small", "arch": "classifier"}],
        training={"epochs": 1, "lr": [1.0e-3, 3.0e-4]},
    )


@pytest.mark.parametrize(
    ("scheme", "per_fold"),
    [("subsample", 1 + 1 * 3), ("bootstrap", 1 + 2 * 3)],  # whole fold + draws
)
def test_counts_and_the_whole_fold_trials_keep_their_ids(scheme: str, per_fold: int) -> None:
    plan = compile_suite(_suite(scheme, [0.5, 1.0], 3), {"synth": cohort()})
    plain = compile_suite(make_suite(validation=PROTOCOLS, models=[
        {"name": "small", "arch": "classifier"}], training={"epochs": 1, "lr": [1.0e-3, 3.0e-4]}),
        {"synth": cohort()})  # fmt: skip
    refits = [t for t in plan.trials if t.stage == "refit"]
    assert len(refits) == 3 * 2 * per_fold  # folds x seeds x (whole + draws)
    assert len(plan.trials) == len(refits) * 3  # each refit with 2 search points x 1 inner fold
    whole = {t.trial_id for t in plan.trials if t.train_resample is None}
    assert whole == {t.trial_id for t in plain.trials}  # resumable: the old trials are kept
    assert {t.train_fraction for t in refits if t.train_resample is None} == {1.0}
    assert {t.train_fraction for t in plain.trials} == {None}


def test_draws_never_touch_the_test_fold_and_are_stratified() -> None:
    table = cohort_table(n_subjects=36)
    plan = compile_suite(_suite("subsample", [0.5], 2), {"synth": cohort(table=table)})
    refits = [t for t in plan.trials if t.stage == "refit" and t.seed == 0]
    whole = {t.outer_fold: t for t in refits if t.train_resample is None}
    dx = dict(zip(table["sample_id"], table["diagnosis"], strict=True))
    unit = unit_map(table)
    for t in refits:
        assert t.test_ids == whole[t.outer_fold].test_ids
        if t.train_resample is None:
            continue
        pool = set(whole[t.outer_fold].train_ids) | set(whole[t.outer_fold].val_ids)
        assert set(t.train_ids) | set(t.val_ids) <= pool
        subjects = {unit[s] for s in (*t.train_ids, *t.val_ids)}
        assert len(subjects) == 12  # half of the 24 training subjects of the fold
        classes = Counter(dx[s] for s in {min(s for s in pool if unit[s] == u) for u in subjects})
        assert abs(classes["AD"] - classes["CN"]) <= 1  # the fold's 1:1 balance kept
        assert t.n_train_subjects == len({unit[s] for s in t.train_ids})


def test_bootstrap_copies_stay_on_one_side_and_pass_the_audit() -> None:
    table = cohort_table(n_subjects=36)
    plan = compile_suite(_suite("bootstrap", [1.0], 3), {"synth": cohort(table=table)})
    unit = unit_map(table)
    sessions = Counter(unit.values())
    copied = 0
    for t in plan.trials:
        if t.train_resample is None:
            continue
        roles = {"train": t.train_ids, "val": t.val_ids, "test": t.test_ids}
        check_disjoint(roles, table, unit_of=unit)  # the leakage audit holds with copies
        images = Counter(unit[s] for s in t.train_ids)
        for subject, n in images.items():  # a copy is the whole subject: all its sessions
            assert n % sessions[subject] == 0
        copied += sum(n // sessions[s] > 1 for s, n in images.items())
        assert len(set(t.val_ids)) == len(t.val_ids)  # validation holds each subject once
        if t.stage == "refit":
            assert t.n_train_subjects == sum(n // sessions[s] for s, n in images.items())
    assert copied > 0


def test_draws_are_reproducible_and_follow_the_split_seed() -> None:
    cohorts = {"synth": cohort(table=cohort_table(n_subjects=36))}
    ids = [
        [t.trial_id for t in compile_suite(_suite("bootstrap", [0.5], 2, seed=s), cohorts).trials]
        for s in (0, 0, 1)
    ]
    assert ids[0] == ids[1]
    assert set(ids[0]).isdisjoint(ids[2])


def test_a_fraction_too_small_to_draw_is_located() -> None:
    with pytest.raises(DataError, match=r"validation.train_resampling: .*fraction=0.05 .*2 subj"):
        compile_suite(_suite("subsample", [0.05], 1), {"synth": cohort()})


def test_the_resampler_checks_its_settings_and_is_seeded() -> None:
    t = pl.DataFrame({"sample_id": [f"s{i}" for i in range(10)],
                      "subject_id": [f"p{i}" for i in range(10)]})  # fmt: skip
    with pytest.raises(SuiteError, match="scheme='jackknife'"):
        TrainResampler("jackknife", [0.5])
    with pytest.raises(SuiteError, match=r"fractions=\[0.0\]"):
        TrainResampler("subsample", [0.0])
    with pytest.raises(SuiteError, match="repeats=0"):
        TrainResampler("subsample", [0.5], 0)
    a = TrainResampler("subsample", [0.5], 4, seed=3).draws(t)
    assert a == TrainResampler("subsample", [0.5], 4, seed=3).draws(t)
    assert len({d.train_ids for d in a}) == 4  # new subjects each repeat
    boot = TrainResampler("bootstrap", [1.0], 20, seed=0).draws(t)
    assert all(d.n_subjects == 10 for d in boot)
    distinct = sum(len(d.copies) for d in boot) / (10 * 20)
    assert 0.5 < distinct < 0.8  # about 1 - 1/e of the subjects are distinct
