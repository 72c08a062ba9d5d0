"""Property tests of the splitters over random cohorts and settings (hypothesis).

Stated tolerances (docs/validation.md): k-fold test folds hold floor(n_s/k) or ceil(n_s/k)
subjects of every stratum s and of every value of the first stratify column; a hold-out holds each
stratum's proportional share of the held-out subjects to within one subject.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from splits_invariants import (
    assert_each_sample_tested_once,
    assert_groups_never_cross,
    assert_holdout_quotas,
    assert_partition,
    assert_stratum_balance,
    sites_of,
    strata_by_quantile,
    subject_values,
)

from raybench.errors import DataError, LeakageError
from raybench.splits import (
    Fold,
    GroupHoldout,
    LeaveOneSiteOut,
    StratifiedGroupKFold,
    check_no_leakage,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_cohort(seed: int, n_subjects: int, n_sites: int, n_classes: int, max_sessions: int):
    """A random cohort table: subjects at one site each, 1..max_sessions images, shuffled rows."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_subjects):
        site = f"site{rng.integers(n_sites)}"
        dx = f"c{rng.integers(n_classes)}"
        age = float(np.round(rng.uniform(50, 90), 3))
        for j in range(int(rng.integers(1, max_sessions + 1))):
            rows.append(
                {
                    "sample_id": f"sub{i:03d}_ses{j}",
                    "subject_id": f"sub{i:03d}",
                    "session_id": f"ses{j}",
                    "scanner": f"{site}-a",
                    "site": site,
                    "diagnosis": dx,
                    "age": age,
                }
            )
    order = rng.permutation(len(rows))
    return pl.DataFrame([rows[i] for i in order])


cohorts = st.builds(
    make_cohort,
    seed=st.integers(0, 2**32 - 1),
    n_subjects=st.integers(2, 40),
    n_sites=st.integers(1, 4),
    n_classes=st.integers(2, 3),
    max_sessions=st.integers(1, 3),
)
STRATIFY = [(), ("diagnosis",), ("diagnosis", "site"), ("site",), ("age",)]


def too_small(table: pl.DataFrame, stratify, minimum: int) -> bool:
    n = table["subject_id"].n_unique()
    if n < minimum:
        return True
    for col in stratify:
        if col == "age":
            continue
        if min(Counter(subject_values(table, col).values()).values()) < minimum:
            return True
    return False


@SETTINGS
@given(
    table=cohorts,
    k=st.integers(2, 6),
    repeats=st.integers(1, 2),
    stratify=st.sampled_from(STRATIFY),
    seed=st.integers(0, 2**31),
)
def test_group_kfold_invariants(table, k, repeats, stratify, seed):
    splitter = StratifiedGroupKFold(k=k, repeats=repeats, stratify=stratify, seed=seed)
    if too_small(table, stratify, k):
        with pytest.raises(DataError, match="subject"):
            splitter.split(table)
        return
    folds = splitter.split(table)
    assert [f.index for f in folds] == list(range(k * repeats))
    assert_groups_never_cross(folds, table)
    check_no_leakage(folds, table)
    for r in range(repeats):
        repeat = folds[r * k : (r + 1) * k]
        assert_each_sample_tested_once(repeat, table)
        for f in repeat:
            assert_partition(f, table)
        if stratify == ("age",):
            ages = {s: float(v) for s, v in subject_values(table, "age").items()}
            bins = strata_by_quantile(ages, max(1, min(4, len(ages) // k)))
            binned = table.with_columns(
                pl.col("subject_id").replace_strict(bins, return_dtype=pl.Int64).alias("bin")
            )
            assert_stratum_balance(repeat, binned, ["bin"])
        elif stratify:
            assert_stratum_balance(repeat, table, list(stratify))
            assert_stratum_balance(repeat, table, [stratify[0]])


@pytest.mark.filterwarnings("ignore:group_holdout:UserWarning")  # small hold-outs miss a class
@SETTINGS
@given(
    table=cohorts,
    fraction=st.floats(0.05, 0.95),
    stratify=st.sampled_from(STRATIFY[:4]),
    seed=st.integers(0, 2**31),
)
def test_group_holdout_invariants(table, fraction, stratify, seed):
    splitter = GroupHoldout(fraction=fraction, stratify=stratify, seed=seed)
    if too_small(table, stratify, 2):
        with pytest.raises(DataError):
            splitter.split(table)
        return
    (fold,) = splitter.split(table)
    assert_partition(fold, table)
    assert_groups_never_cross([fold], table)
    n = table["subject_id"].n_unique()
    held = table.filter(pl.col("sample_id").is_in(list(fold.test_ids)))["subject_id"].n_unique()
    assert held == min(max(round(fraction * n), 1), n - 1)
    assert_holdout_quotas(fold, table, list(stratify))


@SETTINGS
@given(table=cohorts)
def test_leave_one_site_out_invariants(table):
    sites = sorted(table["site"].unique().to_list())
    if len(sites) < 2:
        with pytest.raises(DataError, match="at least 2 sites"):
            LeaveOneSiteOut().split(table)
        return
    folds = LeaveOneSiteOut().split(table)
    assert [sites_of(f.test_ids, table) for f in folds] == [{s} for s in sites]
    for f in folds:
        assert_partition(f, table)
        assert not sites_of(f.train_ids, table) & sites_of(f.test_ids, table)
    assert_each_sample_tested_once(folds, table)
    assert_groups_never_cross(folds, table)
    check_no_leakage(folds, table, unit="site")


@SETTINGS
@given(table=cohorts, seed=st.integers(0, 2**31), perm_seed=st.integers(0, 2**31))
def test_same_seed_same_splits_in_any_row_order(table, seed, perm_seed):
    shuffled = table.sample(fraction=1.0, shuffle=True, seed=perm_seed)
    for make in (
        lambda: StratifiedGroupKFold(k=2, repeats=2, stratify=("age",), seed=seed),
        lambda: GroupHoldout(fraction=0.3, seed=seed),
    ):
        assert make().split(table) == make().split(shuffled)


@SETTINGS
@given(table=cohorts, data=st.data())
def test_a_moved_sample_is_reported_as_leakage(table, data):
    subjects = table.group_by("subject_id").len().filter(pl.col("len") >= 2)["subject_id"]
    if subjects.len() == 0 or table["subject_id"].n_unique() < 2:
        return
    folds = StratifiedGroupKFold(k=2, seed=0).split(table)
    fold = folds[0]
    subject = data.draw(st.sampled_from(sorted(subjects.to_list())))
    ids = table.filter(pl.col("subject_id") == subject)["sample_id"].sort().to_list()
    moved = ids[0]
    train = tuple(sorted(set(fold.train_ids) - {moved}))
    test = tuple(sorted(set(fold.test_ids) | {moved}))
    if not set(ids) & set(train):  # subject was in test: move one of its samples to train
        train = tuple(sorted(set(fold.train_ids) | {moved}))
        test = tuple(sorted(set(fold.test_ids) - {moved}))
    with pytest.raises(LeakageError, match=rf"fold 'fold0' \(#0\): subject_id '{subject}' is on"):
        check_no_leakage([Fold("fold0", 0, train, test)], table)


def test_seeds_change_the_shuffle():
    table = make_cohort(7, 30, 3, 2, 2)
    a = StratifiedGroupKFold(k=3, stratify=("diagnosis",), seed=0).split(table)
    b = StratifiedGroupKFold(k=3, stratify=("diagnosis",), seed=1).split(table)
    assert a != b
    repeats = StratifiedGroupKFold(k=3, repeats=2, seed=0).split(table)
    assert [f.test_ids for f in repeats[:3]] != [f.test_ids for f in repeats[3:]]
