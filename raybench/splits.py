"""Leakage-safe splitters on subject groups, in scikit-learn's shape.

Every splitter groups the images of a cohort by ``subject_id`` (all images of one subject land on
the same side of every split), optionally stratifies on columns of the cohort table, and is fully
determined by its settings and its ``seed``: the same table (in any row order) and the same seed
give the same folds on any machine. Settings are checked in the constructor (:class:`SuiteError`),
data in :meth:`Splitter.split` (:class:`DataError`).

- :class:`StratifiedGroupKFold`: ``k`` folds of subjects, repeated ``repeats`` times with new
  shuffles (repeated cross-validation; Kohavi 1995; Bouthillier et al. 2021).
- :class:`GroupHoldout`: one stratified train / held-out split of subjects (inner validation).
- :class:`LeaveOneSiteOut`: one fold per acquisition site, the site held out (external validation
  across sites).

:func:`check_no_leakage` proves that no subject (or, for site protocols, no site) is on both sides
of any fold; the compiler calls it on every fold it plans. See docs/validation.md.

References
----------
Kohavi, R. (1995). A study of cross-validation and bootstrap for accuracy estimation and model
selection. IJCAI, 1137-1145.
Bouthillier, X. et al. (2021). Accounting for variance in machine learning benchmarks. MLSys 3.
Varoquaux, G. & Colliot, O. (2023). Evaluating machine learning models and their diagnostic value.
In Machine Learning for Brain Disorders, Springer, 601-630.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import polars as pl

from raybench.errors import DataError, LeakageError, SuiteError

__all__ = [
    "Fold",
    "GroupHoldout",
    "LeaveOneSiteOut",
    "Splitter",
    "StratifiedGroupKFold",
    "check_disjoint",
    "check_no_leakage",
    "protocol_seed",
    "resolve_stratify",
    "splitter_from_protocol",
    "unit_map",
]

SUBJECT = "subject_id"
SAMPLE = "sample_id"
SITE = "site"


@dataclass(frozen=True)
class Fold:
    """One split of a cohort: sample ids to train on and sample ids to test (or validate) on.

    ``index`` is the fold's position within its protocol (``repeat * k + fold`` for repeated
    k-fold); ``name`` is human-readable (``fold2``, ``repeat1-fold0``, ``site=s03``, ``holdout``).
    Both id tuples are sorted, so equal membership means equal tuples.
    """

    name: str
    index: int
    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]


def protocol_seed(*parts: Any) -> int:
    """A 63-bit seed derived from JSON-able ``parts`` (stable across processes and machines).

    Used to give each protocol and each outer fold's inner splitter its own random stream from the
    one split seed of the suite, without Python's salted ``hash``.

    >>> protocol_seed(0, "outer") == protocol_seed(0, "outer")
    True
    >>> protocol_seed(0, "outer") != protocol_seed(1, "outer")
    True
    """
    blob = json.dumps(parts, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:8], "big") >> 1


# --------------------------------------------------------------------------- subject table


@dataclass(frozen=True)
class _Subjects:
    """The cohort reduced to subjects: ids (sorted), their samples and their stratum keys."""

    ids: tuple[str, ...]
    samples: dict[str, tuple[str, ...]]
    strata: tuple[tuple[Any, ...], ...]  # one key per subject, aligned with ids


def _require_columns(table: pl.DataFrame, columns: Sequence[str], who: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise DataError(
            f"{who}: the cohort table has no column(s) {missing}; it has {table.columns}. "
            "Fix the dataset (or the task's label / the protocol's stratify) so the columns exist."
        )


def _subjects(
    table: pl.DataFrame,
    stratify: Sequence[str],
    continuous: Sequence[str],
    n_bins: int,
    k: int,
    who: str,
) -> _Subjects:
    """Group ``table`` by subject and compute each subject's stratum key.

    A categorical column's subject value is its most frequent value over the subject's images
    (ties: the smallest as a string); a continuous column's is the subject's mean, binned into
    at most ``n_bins`` quantile bins over subjects (fewer when subjects are few, so that each bin
    holds about ``k`` subjects or more).
    """
    _require_columns(table, [SAMPLE, SUBJECT, *stratify], who)
    if table.height == 0:
        raise DataError(f"{who}: the cohort table is empty; a split needs subjects.")
    for col in (SAMPLE, SUBJECT, *stratify):
        nulls = table.get_column(col).is_null()
        if nulls.any():
            row = int(nulls.arg_max()) + 2  # 1-based, header is row 1
            raise DataError(
                f"{who}: column {col!r} is empty at row {row} (sample "
                f"{table.get_column(SAMPLE)[row - 2]!r}); every image needs a value to be split. "
                "Fill the value or drop the row from the dataset."
            )
    ids_col = table.get_column(SAMPLE)
    dupes = ~ids_col.is_first_distinct()
    if dupes.any():
        row = int(dupes.arg_max()) + 2
        dup = ids_col[row - 2]
        first = int((ids_col == dup).arg_max()) + 2
        raise DataError(
            f"{who}: sample_id {dup!r} appears more than once (rows {first} and {row}); "
            "sample ids must be unique. Fix the dataset's sample ids."
        )
    key = pl.col(SUBJECT).cast(pl.String)
    aggs: list[pl.Expr] = [pl.col(SAMPLE).cast(pl.String).sort().alias("__samples")]
    for i, c in enumerate(stratify):
        if c in continuous or table.schema[c].is_float():
            value = pl.col(c)
            if not table.schema[c].is_numeric():
                value = value.cast(pl.Float64, strict=False)
                bad = table.filter(value.is_null())
                if bad.height:
                    raise DataError(
                        f"{who}: column {c!r} must be numeric to be binned into quantiles; found "
                        f"{bad.get_column(c)[0]!r} (sample {bad.get_column(SAMPLE)[0]!r}). "
                        "Fix the column or the task type."
                    )
            aggs.append(value.cast(pl.Float64).mean().alias(f"__s{i}"))
        else:
            # the most frequent value over the subject's images; ties: the smallest as a string
            aggs.append(pl.col(c).cast(pl.String).mode().min().alias(f"__s{i}"))
    grouped = table.group_by(key.alias("__subject")).agg(aggs).sort("__subject")
    ids = tuple(grouped.get_column("__subject").to_list())
    per_column: list[list[Any]] = []
    for i in range(len(stratify)):
        column = grouped.get_column(f"__s{i}")
        if column.dtype == pl.Float64:
            means = column.to_numpy()
            bins = max(1, min(n_bins, len(ids) // max(k, 1)))
            edges = np.quantile(means, np.linspace(0.0, 1.0, bins + 1)[1:-1])
            per_column.append(np.searchsorted(edges, means, side="right").tolist())
        else:
            per_column.append(column.to_list())
    strata = tuple(zip(*per_column, strict=True)) if per_column else tuple(() for _ in ids)
    samples = dict(zip(ids, map(tuple, grouped.get_column("__samples").to_list()), strict=True))
    return _Subjects(ids, samples, strata)


def _flatten(subjects: _Subjects, chosen: Sequence[str]) -> tuple[str, ...]:
    return tuple(sorted(sid for s in chosen for sid in subjects.samples[s]))


# --------------------------------------------------------------------------- splitters


class Splitter:
    """Base of the splitters: :meth:`split` is written once, each splitter supplies ``_folds``.

    ``stratify`` names columns of the cohort table (already resolved: the task's label column, not
    the word ``label``); ``continuous`` names those to bin into quantiles (float columns are
    binned anyway); ``n_bins`` bounds the number of quantile bins.
    """

    name: str = "splitter"

    def __init__(
        self,
        *,
        stratify: Sequence[str] = (),
        continuous: Sequence[str] = (),
        seed: int = 0,
        n_bins: int = 4,
    ) -> None:
        if isinstance(stratify, str):
            stratify = (stratify,)
        if not isinstance(seed, int | np.integer) or isinstance(seed, bool):
            raise SuiteError(f"{self.name}: seed={seed!r} must be an integer (e.g. seed=0).")
        if not isinstance(n_bins, int) or n_bins < 1:
            raise SuiteError(f"{self.name}: n_bins={n_bins!r} must be an integer >= 1.")
        if len(set(stratify)) != len(stratify):
            raise SuiteError(f"{self.name}: stratify={list(stratify)} repeats a column.")
        self.stratify = tuple(stratify)
        self.continuous = tuple(continuous)
        self.seed = int(seed)
        self.n_bins = n_bins

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"

    def split(self, table: pl.DataFrame) -> list[Fold]:
        """Split the cohort ``table`` (one row per image) into folds of sample ids."""
        return self._folds(table)

    def _folds(self, table: pl.DataFrame) -> list[Fold]:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_classes(self, subjects: _Subjects, minimum: int, setting: str, fix: str) -> None:
        """Each value of each categorical stratify column needs ``minimum`` subjects."""
        for i, col in enumerate(self.stratify):
            if col in self.continuous:
                continue
            counts = Counter(key[i] for key in subjects.strata)
            small = sorted((n, v) for v, n in counts.items() if n < minimum)
            if small:
                n, v = small[0]
                raise DataError(
                    f"{self.name}: {col}={v!r} has {n} subject(s), fewer than {setting}; "
                    f"each value of a stratify column needs at least {minimum} subjects "
                    f"(counts: {dict(sorted(counts.items()))}). {fix}, add subjects, or remove "
                    f"{col!r} from stratify."
                )


class StratifiedGroupKFold(Splitter):
    """Subject-level stratified k-fold, optionally repeated with new shuffles.

    Within each stratum (the combination of the stratify columns' values), subjects are shuffled
    and each is placed in the fold that has the fewest subjects of its stratum, then the fewest of
    its first stratify column's value (usually the class), then the fewest subjects and images,
    ties broken by a random fold order. Guarantees, for every repeat: each subject is in exactly
    one test fold; every fold holds ``floor(n/k)`` or ``ceil(n/k)`` subjects of each stratum and of
    each value of the first stratify column.

    >>> import polars as pl
    >>> t = pl.DataFrame({"sample_id": [f"s{i}" for i in range(6)],
    ...                   "subject_id": ["a", "a", "b", "c", "d", "e"]})
    >>> folds = StratifiedGroupKFold(k=2, seed=0).split(t)
    >>> [len(f.test_ids) + len(f.train_ids) for f in folds]
    [6, 6]
    """

    name = "group_kfold"

    def __init__(
        self,
        k: int = 5,
        repeats: int = 1,
        stratify: Sequence[str] = (),
        seed: int = 0,
        *,
        continuous: Sequence[str] = (),
        n_bins: int = 4,
    ) -> None:
        super().__init__(stratify=stratify, continuous=continuous, seed=seed, n_bins=n_bins)
        if not isinstance(k, int) or isinstance(k, bool) or k < 2:
            raise SuiteError(f"group_kfold: k={k!r} is not allowed; k must be an integer >= 2.")
        if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
            raise SuiteError(
                f"group_kfold: repeats={repeats!r} is not allowed; repeats must be an integer >= 1."
            )
        self.k = k
        self.repeats = repeats

    def _folds(self, table: pl.DataFrame) -> list[Fold]:
        subjects = _subjects(
            table, self.stratify, self.continuous, self.n_bins, self.k, "group_kfold"
        )
        n = len(subjects.ids)
        if n < self.k:
            raise DataError(
                f"group_kfold: k={self.k} folds need at least {self.k} subjects, the cohort has "
                f"{n}. Lower k to at most {n} or add subjects."
            )
        self._check_classes(subjects, self.k, f"k={self.k}", "Lower k")
        by_stratum: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, key in enumerate(subjects.strata):
            by_stratum[key].append(i)
        folds: list[Fold] = []
        for r in range(self.repeats):
            rng = np.random.default_rng([self.seed, r])
            assignment = self._assign(subjects, by_stratum, rng)
            for f in range(self.k):
                test = [s for s, a in zip(subjects.ids, assignment, strict=True) if a == f]
                train = [s for s, a in zip(subjects.ids, assignment, strict=True) if a != f]
                name = f"fold{f}" if self.repeats == 1 else f"repeat{r}-fold{f}"
                folds.append(
                    Fold(name, r * self.k + f, _flatten(subjects, train), _flatten(subjects, test))
                )
        return folds

    def _assign(
        self,
        subjects: _Subjects,
        by_stratum: Mapping[tuple[Any, ...], list[int]],
        rng: np.random.Generator,
    ) -> list[int]:
        k = self.k
        priority = rng.permutation(k)  # random tie-break order of folds
        in_stratum = np.zeros((len(by_stratum), k), int)
        first = defaultdict(lambda: np.zeros(k, int))  # first stratify column's value per fold
        n_subj = np.zeros(k, int)
        n_img = np.zeros(k, int)
        assignment = [-1] * len(subjects.ids)
        for si, key in enumerate(sorted(by_stratum, key=repr)):
            members = np.asarray(by_stratum[key])[rng.permutation(len(by_stratum[key]))]
            marg = first[key[0] if key else None]
            for i in members:
                f = min(
                    range(k),
                    key=lambda f: (in_stratum[si, f], marg[f], n_subj[f], n_img[f], priority[f]),
                )
                assignment[int(i)] = f
                in_stratum[si, f] += 1
                marg[f] += 1
                n_subj[f] += 1
                n_img[f] += len(subjects.samples[subjects.ids[int(i)]])
        return assignment


class GroupHoldout(Splitter):
    """One stratified split of subjects: ``fraction`` of them held out (validation), the rest train.

    The held-out count is ``round(fraction * n)`` clipped to ``[1, n - 1]``, shared between strata
    in proportion to their sizes by the largest-remainder method (Hamilton), so every stratum gets
    ``floor`` or ``ceil`` of its proportional share; subjects within a stratum are drawn at random.

    >>> import polars as pl
    >>> t = pl.DataFrame({"sample_id": list("abcdefghij"), "subject_id": list("abcdefghij")})
    >>> [len(f.test_ids) for f in GroupHoldout(fraction=0.3).split(t)]
    [3]
    """

    name = "group_holdout"

    def __init__(
        self,
        fraction: float = 0.2,
        stratify: Sequence[str] = (),
        seed: int = 0,
        *,
        continuous: Sequence[str] = (),
        n_bins: int = 4,
    ) -> None:
        super().__init__(stratify=stratify, continuous=continuous, seed=seed, n_bins=n_bins)
        if not isinstance(fraction, int | float) or not 0.0 < fraction < 1.0:
            raise SuiteError(
                f"group_holdout: fraction={fraction!r} is not allowed; it must be a number "
                "strictly between 0 and 1 (e.g. 0.2)."
            )
        self.fraction = float(fraction)

    def _folds(self, table: pl.DataFrame) -> list[Fold]:
        bins_k = max(2, round(1.0 / min(self.fraction, 1.0 - self.fraction)))
        subjects = _subjects(
            table, self.stratify, self.continuous, self.n_bins, bins_k, "group_holdout"
        )
        n = len(subjects.ids)
        if n < 2:
            raise DataError(
                f"group_holdout: a hold-out split needs at least 2 subjects, the cohort has {n}. "
                "Add subjects."
            )
        self._check_classes(subjects, 2, "2 (one per side)", "Merge rare classes")
        n_test = min(max(round(self.fraction * n), 1), n - 1)
        by_stratum: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, key in enumerate(subjects.strata):
            by_stratum[key].append(i)
        keys = sorted(by_stratum, key=repr)
        share = np.array([n_test * len(by_stratum[key]) / n for key in keys])
        quota = np.floor(share).astype(int)
        # largest remainders first; ties by stratum order (deterministic)
        for j in np.argsort(-(share - quota), kind="stable")[: n_test - int(quota.sum())]:
            quota[j] += 1
        rng = np.random.default_rng([self.seed, 0])
        test: list[str] = []
        for key, q in zip(keys, quota, strict=True):
            members = by_stratum[key]
            picked = rng.permutation(len(members))[:q]
            test.extend(subjects.ids[members[int(p)]] for p in picked)
        test_set = set(test)
        train = [s for s in subjects.ids if s not in test_set]
        if self.stratify and self.stratify[0] not in self.continuous:
            held = {subjects.strata[i][0] for i, s in enumerate(subjects.ids) if s in test_set}
            missing = sorted({key[0] for key in subjects.strata} - held)
            if missing:  # degenerate but computable: say so (scikit-learn's habit)
                warnings.warn(
                    f"group_holdout: fraction={self.fraction} holds out {len(test)} of {n} "
                    f"subjects and no subject with {self.stratify[0]} in {missing}; metrics that "
                    "need every class (AUC) are undefined on this split. Raise fraction.",
                    UserWarning,
                    stacklevel=3,
                )
        return [Fold("holdout", 0, _flatten(subjects, train), _flatten(subjects, test))]


class LeaveOneSiteOut(Splitter):
    """One fold per acquisition site (sorted by name): that site's images tested, all others train.

    Needs at least two sites, and every subject at one site only (a subject scanned at two sites
    would leak across the split).

    >>> import polars as pl
    >>> t = pl.DataFrame({"sample_id": list("abcd"), "subject_id": list("abcd"),
    ...                   "site": ["x", "x", "y", "z"]})
    >>> [f.name for f in LeaveOneSiteOut().split(t)]
    ['site=x', 'site=y', 'site=z']
    """

    name = "leave_one_site_out"

    def __init__(self) -> None:
        super().__init__()

    def _folds(self, table: pl.DataFrame) -> list[Fold]:
        _subjects(table, (), (), 1, 1, self.name)  # checks ids, nulls and duplicates
        _require_columns(table, [SITE], self.name)
        site_of: dict[str, str] = {}
        rows = zip(
            table.get_column(SUBJECT).to_list(),
            table.get_column(SITE).to_list(),
            table.get_column(SAMPLE).to_list(),
            strict=True,
        )
        by_site: dict[str, list[str]] = defaultdict(list)
        for row, (subj, site, sid) in enumerate(rows, start=2):
            if site is None:
                raise DataError(f"{self.name}: column 'site' is empty at row {row} ({sid!r}).")
            subj, site = str(subj), str(site)
            if site_of.setdefault(subj, site) != site:
                raise DataError(
                    f"{self.name}: subject {subj!r} is recorded at sites {site_of[subj]!r} and "
                    f"{site!r} (row {row}, sample {sid!r}); a subject must belong to one site "
                    "for a site-held-out protocol. Fix the site column."
                )
            by_site[site].append(str(sid))
        sites = sorted(by_site)
        if len(sites) < 2:
            raise DataError(
                f"{self.name}: leave-one-site-out needs at least 2 sites, the cohort has "
                f"{len(sites)} ({sites}). Use group_kfold, or add data from other sites."
            )
        folds = []
        for i, site in enumerate(sites):
            train = sorted(sid for s in sites if s != site for sid in by_site[s])
            folds.append(Fold(f"site={site}", i, tuple(train), tuple(sorted(by_site[site]))))
        return folds


# --------------------------------------------------------------------------- from a suite


def resolve_stratify(protocol: Any, task: Any) -> tuple[list[str], list[str]]:
    """The cohort columns a suite ``Protocol`` stratifies on, and those to bin into quantiles.

    ``label`` means the task's label column (binned for regression, dropped for segmentation).
    """
    stratify: list[str] = []
    continuous: list[str] = []
    for name in protocol.stratify:
        if name == "label":
            if task.type == "segmentation":
                continue
            name = task.label
            if task.type == "regression":
                continuous.append(name)
        if name not in stratify:
            stratify.append(name)
    return stratify, continuous


def splitter_from_protocol(protocol: Any, task: Any, seed: int) -> Splitter:
    """Build the splitter of a suite ``Protocol`` for a suite ``Task``, with its split ``seed``.

    ``stratify: [label]`` means the task's label column; for regression the target is binned into
    quantiles; for segmentation (the label is a mask path) ``label`` is dropped, since there is no
    class to balance. ``site`` and ``scanner`` are used as they are.
    """
    stratify, continuous = resolve_stratify(protocol, task)
    if protocol.strategy == "group_kfold":
        return StratifiedGroupKFold(
            protocol.k, protocol.repeats, stratify, seed, continuous=continuous
        )
    if protocol.strategy == "group_holdout":
        return GroupHoldout(protocol.fraction, stratify, seed, continuous=continuous)
    if protocol.strategy == "leave_one_site_out":
        return LeaveOneSiteOut()
    raise SuiteError(
        f"validation: strategy={protocol.strategy!r} is unknown; allowed: group_kfold, "
        "group_holdout, leave_one_site_out."
    )


# --------------------------------------------------------------------------- leakage checks


def unit_map(table: pl.DataFrame, unit: str = SUBJECT) -> dict[str, str]:
    """Map each ``sample_id`` of ``table`` to its ``unit`` (``subject_id`` or ``site``)."""
    if unit not in (SUBJECT, SITE):
        raise ValueError(f"unit={unit!r}; allowed: 'subject_id', 'site'")
    _require_columns(table, [SAMPLE, unit], "leakage check")
    return dict(
        zip(
            table.get_column(SAMPLE).cast(pl.String).to_list(),
            table.get_column(unit).cast(pl.String).to_list(),
            strict=True,
        )
    )


def check_disjoint(
    roles: Mapping[str, Sequence[str]],
    table: pl.DataFrame,
    *,
    unit: Literal["subject_id", "site"] = "subject_id",
    where: str = "",
    unit_of: Mapping[str, str] | None = None,
) -> None:
    """Raise :class:`LeakageError` if one ``unit`` (subject or site) has samples in two roles.

    ``roles`` maps a role (``train``, ``val``, ``test``) to sample ids; ``where`` names the fold or
    trial in the message; ``unit_of`` (from :func:`unit_map`) saves recomputing the map when
    many splits of one table are checked. Sample ids absent from ``table`` raise
    :class:`DataError`.
    """
    if unit_of is None:
        unit_of = unit_map(table, unit)
    owner: dict[str, tuple[str, str]] = {}  # unit value -> (role, sample)
    for role, ids in roles.items():
        for sid in ids:
            try:
                u = unit_of[sid]
            except KeyError:
                raise DataError(
                    f"{where}: sample {sid!r} ({role}) is not in the cohort table; splits must "
                    "only hold the cohort's sample ids."
                ) from None
            prev = owner.setdefault(u, (role, sid))
            if prev[0] != role:
                raise LeakageError(
                    f"{where}: {unit} {u!r} is on both sides of the split: sample {prev[1]!r} in "
                    f"{prev[0]} and sample {sid!r} in {role}. Every image of one {unit} must stay "
                    f"on one side; split by groups of {unit}."
                )


def check_no_leakage(
    folds: Sequence[Fold],
    table: pl.DataFrame,
    unit: Literal["subject_id", "site"] = "subject_id",
) -> None:
    """Raise :class:`LeakageError` naming the subject (or site) and fold that crosses a split.

    >>> import polars as pl
    >>> t = pl.DataFrame({"sample_id": ["a1", "a2"], "subject_id": ["a", "a"]})
    >>> check_no_leakage([Fold("bad", 0, ("a1",), ("a2",))], t)
    Traceback (most recent call last):
    ...
    raybench.errors.LeakageError: fold 'bad' (#0): subject_id 'a' is on both sides of the split: sample 'a1' in train and sample 'a2' in test. Every image of one subject_id must stay on one side; split by groups of subject_id.
    """  # noqa: E501
    unit_of = unit_map(table, unit)
    for fold in folds:
        check_disjoint(
            {"train": fold.train_ids, "test": fold.test_ids},
            table,
            unit=unit,
            where=f"fold {fold.name!r} (#{fold.index})",
            unit_of=unit_of,
        )
