"""Impossible settings and unsplittable data raise errors that give the numbers and the fix."""

from __future__ import annotations

import polars as pl
import pytest

from raybench.errors import DataError, LeakageError, SuiteError
from raybench.splits import (
    Fold,
    GroupHoldout,
    LeaveOneSiteOut,
    StratifiedGroupKFold,
    check_no_leakage,
    splitter_from_protocol,
)
from raybench.suite.schema import Protocol, Task


def table(subjects: list[str], sites: list[str] | None = None, labels=None) -> pl.DataFrame:
    n = len(subjects)
    return pl.DataFrame(
        {
            "sample_id": [f"{s}_{i}" for i, s in enumerate(subjects)],
            "subject_id": subjects,
            "site": sites or ["a"] * n,
            "diagnosis": labels or ["CN"] * n,
        }
    )


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: StratifiedGroupKFold(k=1), r"k=1 is not allowed; k must be an integer >= 2"),
        (lambda: StratifiedGroupKFold(k=3, repeats=0), r"repeats=0 is not allowed"),
        (lambda: StratifiedGroupKFold(seed="x"), r"seed='x' must be an integer"),
        (lambda: StratifiedGroupKFold(stratify=["a", "a"]), r"repeats a column"),
        (lambda: GroupHoldout(fraction=1.5), r"fraction=1.5 is not allowed.*between 0 and 1"),
        (lambda: GroupHoldout(fraction=0.0), r"fraction=0.0 is not allowed"),
    ],
)
def test_settings_are_checked_in_the_constructor(make, match):
    with pytest.raises(SuiteError, match=match):
        make()


def test_too_few_subjects_for_k():
    t = table(["a", "a", "b", "c"])
    with pytest.raises(DataError, match=r"k=5 folds need at least 5 subjects, the cohort has 3"):
        StratifiedGroupKFold(k=5).split(t)


def test_a_class_with_fewer_subjects_than_folds():
    t = table(list("abcdef"), labels=["CN"] * 5 + ["AD"])
    with pytest.raises(DataError, match=r"diagnosis='AD' has 1 subject\(s\), fewer than k=3"):
        StratifiedGroupKFold(k=3, stratify=["diagnosis"]).split(t)
    # without stratification the same split is possible
    assert len(StratifiedGroupKFold(k=3).split(t)) == 3


def test_holdout_needs_two_subjects():
    with pytest.raises(DataError, match=r"at least 2 subjects, the cohort has 1"):
        GroupHoldout().split(table(["a", "a"]))


def test_leave_one_site_out_needs_two_sites():
    with pytest.raises(DataError, match=r"at least 2 sites, the cohort has 1 \(\['a'\]\)"):
        LeaveOneSiteOut().split(table(list("abc")))


def test_leave_one_site_out_rejects_a_subject_at_two_sites():
    t = table(["a", "a", "b"], sites=["x", "y", "y"])
    with pytest.raises(DataError, match=r"subject 'a' is recorded at sites 'x' and 'y' \(row 3"):
        LeaveOneSiteOut().split(t)


def test_missing_column_and_empty_value_are_located():
    t = table(list("abcd"))
    with pytest.raises(DataError, match=r"no column\(s\) \['age'\]"):
        StratifiedGroupKFold(k=2, stratify=["age"]).split(t)
    t = t.with_columns(
        pl.when(pl.col("subject_id") == "c").then(None).otherwise(pl.col("site")).alias("site")
    )
    with pytest.raises(DataError, match=r"column 'site' is empty at row 4 \(sample 'c_2'\)"):
        StratifiedGroupKFold(k=2, stratify=["site"]).split(t)


def test_duplicate_sample_ids_are_rejected():
    t = table(list("abc")).with_columns(pl.lit("same").alias("sample_id"))
    with pytest.raises(
        DataError, match=r"sample_id 'same' appears more than once \(rows 2 and 3\)"
    ):
        GroupHoldout().split(t)


def test_leakage_names_the_site_and_the_fold():
    t = table(list("abc"), sites=["x", "x", "y"])
    bad = Fold("site=x", 0, ("a_0", "c_2"), ("b_1",))
    with pytest.raises(LeakageError, match=r"fold 'site=x' \(#0\): site 'x' is on both sides"):
        check_no_leakage([bad], t, unit="site")
    check_no_leakage([bad], t, unit="subject_id")  # no subject crosses
    with pytest.raises(DataError, match=r"sample 'zz' \(test\) is not in the cohort table"):
        check_no_leakage([Fold("f", 0, ("a_0",), ("zz",))], t)


def test_protocol_mapping_resolves_label_per_task():
    kfold = Protocol(strategy="group_kfold", k=3, stratify=["label", "site"])
    clf = splitter_from_protocol(kfold, Task(type="classification", label="diagnosis"), 4)
    assert (clf.stratify, clf.continuous, clf.k, clf.seed) == (("diagnosis", "site"), (), 3, 4)
    reg = splitter_from_protocol(kfold, Task(type="regression", label="age"), 0)
    assert (reg.stratify, reg.continuous) == (("age", "site"), ("age",))
    seg = splitter_from_protocol(
        Protocol(strategy="group_holdout", stratify=["site"]),
        Task(type="segmentation", label="mask"),
        0,
    )
    assert seg.stratify == ("site",)
    loso = splitter_from_protocol(Protocol(strategy="leave_one_site_out", stratify=[]), clf, 0)
    assert isinstance(loso, LeaveOneSiteOut)


def test_a_holdout_missing_a_class_warns():
    t = table(list("abcdefghij"), labels=["CN"] * 8 + ["AD"] * 2)
    with pytest.warns(UserWarning, match=r"no subject with diagnosis in \['AD'\]"):
        (fold,) = GroupHoldout(fraction=0.1, stratify=["diagnosis"]).split(t)
    assert len(fold.test_ids) == 1
