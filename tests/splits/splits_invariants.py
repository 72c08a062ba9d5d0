"""Invariant checkers reused across splitters (scikit-learn's test_split.py habit).

Each checker asserts one property of a list of folds against the cohort table; the property tests
call them over random cohorts and settings.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence

import numpy as np
import polars as pl

from raybench.splits import Fold


def subject_of(table: pl.DataFrame) -> dict[str, str]:
    return dict(zip(table["sample_id"].to_list(), table["subject_id"].to_list(), strict=True))


def assert_groups_never_cross(folds: Sequence[Fold], table: pl.DataFrame) -> None:
    """No subject has images on both sides of any fold."""
    subj = subject_of(table)
    for f in folds:
        train = {subj[s] for s in f.train_ids}
        test = {subj[s] for s in f.test_ids}
        assert not train & test, f"{f.name}: subjects on both sides {sorted(train & test)[:3]}"


def assert_partition(fold: Fold, table: pl.DataFrame) -> None:
    """Train and test are disjoint and together hold every sample exactly once."""
    assert not set(fold.train_ids) & set(fold.test_ids)
    assert sorted(fold.train_ids + fold.test_ids) == sorted(table["sample_id"].to_list())
    assert list(fold.train_ids) == sorted(fold.train_ids)
    assert list(fold.test_ids) == sorted(fold.test_ids)


def assert_each_sample_tested_once(folds: Sequence[Fold], table: pl.DataFrame) -> None:
    """Within one k-fold repeat, every sample is in exactly one test fold."""
    counts = Counter(s for f in folds for s in f.test_ids)
    assert set(counts) == set(table["sample_id"].to_list())
    assert set(counts.values()) == {1}


def subject_values(table: pl.DataFrame, column: str) -> dict[str, str]:
    """Each subject's value of ``column`` (test cohorts hold one value per subject)."""
    out: dict[str, str] = {}
    for subj, value in zip(table["subject_id"], table[column], strict=True):
        out.setdefault(subj, str(value))
    return out


def assert_stratum_balance(
    folds: Sequence[Fold], table: pl.DataFrame, columns: Sequence[str]
) -> None:
    """Stated tolerance: each test fold holds floor(n_s/k) or ceil(n_s/k) subjects of stratum s."""
    k = len(folds)
    subj = subject_of(table)
    values = [subject_values(table, c) for c in columns]
    key = {s: tuple(v[s] for v in values) for s in set(subj.values())}
    total = Counter(key.values())
    for f in folds:
        in_fold = Counter(key[s] for s in {subj[x] for x in f.test_ids})
        for stratum, n in total.items():
            got = in_fold.get(stratum, 0)
            assert math.floor(n / k) <= got <= math.ceil(n / k), (f.name, stratum, got, n, k)


def assert_holdout_quotas(fold: Fold, table: pl.DataFrame, columns: Sequence[str]) -> None:
    """Stated tolerance: each stratum's held-out count is within 1 of its proportional share."""
    subj = subject_of(table)
    subjects = set(subj.values())
    n = len(subjects)
    held = {subj[x] for x in fold.test_ids}
    values = [subject_values(table, c) for c in columns]
    key = {s: tuple(v[s] for v in values) for s in subjects}
    total = Counter(key.values())
    got = Counter(key[s] for s in held)
    for stratum, n_s in total.items():
        share = len(held) * n_s / n
        assert abs(got.get(stratum, 0) - share) < 1.0, (stratum, got.get(stratum, 0), share)


def strata_by_quantile(values: dict[str, float], bins: int) -> dict[str, int]:
    """Quantile bins as documented (for regression targets)."""
    ids = sorted(values)
    arr = np.array([values[s] for s in ids])
    edges = np.quantile(arr, np.linspace(0, 1, bins + 1)[1:-1])
    return dict(zip(ids, np.searchsorted(edges, arr, side="right").tolist(), strict=True))


def sites_of(fold_ids: Sequence[str], table: pl.DataFrame) -> set[str]:
    site = dict(zip(table["sample_id"], table["site"], strict=True))
    return {site[s] for s in fold_ids}


def by_subject(table: pl.DataFrame) -> dict[str, list[str]]:
    out: dict[str, list[str]] = defaultdict(list)
    for s, subj in zip(table["sample_id"], table["subject_id"], strict=True):
        out[subj].append(s)
    return out
