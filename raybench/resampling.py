"""Draws of training subjects inside an outer training fold: subsamples and bootstrap samples.

``validation.train_resampling`` asks how a model's score depends on *which* and *how many*
subjects it was trained on. :class:`TrainResampler` draws, from the subjects of one outer
training fold (the test fold is never touched), ``repeats`` subject-level sets per fraction:

- ``subsample``: ``round(fraction * n)`` subjects without replacement (Politis, Romano & Wolf
  1999); at fraction 1 the draw is the whole fold, so none is made (the whole fold is always
  trained by the compiler anyway).
- ``bootstrap``: ``round(fraction * n)`` subjects with replacement (Efron & Tibshirani 1993); a
  subject drawn twice is trained on twice (its images appear as copies in the training ids).

Both are stratified like the protocol: the draw's size is shared between strata (the protocol's
``stratify`` columns, per subject) in proportion to their sizes by the largest-remainder method,
as :class:`raybench.splits.GroupHoldout` does, so a draw keeps the fold's class balance. Each draw
has its own random stream derived from the split seed (:func:`raybench.splits.protocol_seed`), so
the same suite draws the same subjects on any machine and trial ids stay content hashes.

References
----------
Efron, B. & Tibshirani, R. J. (1993). *An Introduction to the Bootstrap*. Chapman & Hall.
Politis, D. N., Romano, J. P. & Wolf, M. (1999). *Subsampling*. Springer.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
from raybench_analysis.vocabulary import TRAIN_RESAMPLING_SCHEMES

from raybench.errors import DataError, SuiteError
from raybench.splits import _subjects, protocol_seed, resolve_stratify

__all__ = ["Draw", "TrainResampler", "resampler_from_suite", "with_copies"]


@dataclass(frozen=True)
class Draw:
    """One draw of training subjects: its fraction, its index and each drawn subject's copies.

    ``copies`` maps a subject id to how many times it was drawn (always 1 for ``subsample``);
    ``train_ids`` are the sample ids of the draw, sorted, each repeated once per copy.
    """

    fraction: float
    repeat: int
    copies: Mapping[str, int]
    train_ids: tuple[str, ...]

    @property
    def n_subjects(self) -> int:
        """Subjects drawn, copies counted (the draw's size)."""
        return sum(self.copies.values())


class TrainResampler:
    """Subject-level draws of a training fold, stratified, reproducible from ``seed``.

    >>> import polars as pl
    >>> t = pl.DataFrame({"sample_id": [f"s{i}" for i in range(8)],
    ...                   "subject_id": [f"p{i}" for i in range(8)]})
    >>> draws = TrainResampler("subsample", [0.5, 1.0], repeats=2, seed=0).draws(t)
    >>> [(d.fraction, d.repeat, d.n_subjects) for d in draws]
    [(0.5, 0, 4), (0.5, 1, 4)]
    >>> boot = TrainResampler("bootstrap", [1.0], repeats=1, seed=0).draws(t)[0]
    >>> boot.n_subjects, len(boot.train_ids)
    (8, 8)
    """

    def __init__(
        self,
        scheme: str,
        fractions: Sequence[float],
        repeats: int = 1,
        *,
        stratify: Sequence[str] = (),
        continuous: Sequence[str] = (),
        seed: int = 0,
        n_bins: int = 4,
    ) -> None:
        if scheme not in TRAIN_RESAMPLING_SCHEMES:
            raise SuiteError(
                f"train_resampling: scheme={scheme!r} is unknown; allowed: "
                f"{', '.join(TRAIN_RESAMPLING_SCHEMES)}."
            )
        bad = [f for f in fractions if not isinstance(f, int | float) or not 0.0 < f <= 1.0]
        if bad or not fractions:
            raise SuiteError(
                f"train_resampling: fractions={list(fractions)!r}; give one or more numbers in "
                "(0, 1] (e.g. [0.25, 0.5, 1.0])."
            )
        if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
            raise SuiteError(f"train_resampling: repeats={repeats!r} must be an integer >= 1.")
        self.scheme = scheme
        self.fractions = tuple(sorted(float(f) for f in fractions))
        self.repeats = repeats
        self.stratify = tuple(stratify)
        self.continuous = tuple(continuous)
        self.seed = int(seed)
        self.n_bins = n_bins

    def draws(self, table: pl.DataFrame) -> list[Draw]:
        """The draws of the training fold ``table`` (one row per image), by fraction then repeat.

        A subsample at fraction 1 is the whole fold and is not drawn. Raises :class:`DataError`
        when a fraction draws fewer than 2 subjects.
        """
        subjects = _subjects(
            table, self.stratify, self.continuous, self.n_bins, 2, "train_resampling"
        )
        n = len(subjects.ids)
        by_stratum: dict[tuple[Any, ...], list[int]] = defaultdict(list)
        for i, key in enumerate(subjects.strata):
            by_stratum[key].append(i)
        keys = sorted(by_stratum, key=repr)
        sizes = np.array([len(by_stratum[k]) for k in keys])
        out: list[Draw] = []
        for fraction in self.fractions:
            if self.scheme == "subsample" and fraction == 1.0:
                continue
            size = round(fraction * n)
            if size < 2:
                raise DataError(
                    f"train_resampling: fraction={fraction} of {n} training subjects draws "
                    f"{size}; a draw needs at least 2 subjects. Raise the fraction to at least "
                    f"{2 / n:.3g} or add subjects."
                )
            quota = _quotas(sizes, size)
            for r in range(self.repeats):
                rng = np.random.default_rng(protocol_seed(self.seed, self.scheme, fraction, r))
                picked: list[str] = []
                for key, q in zip(keys, quota, strict=True):
                    members = by_stratum[key]
                    if self.scheme == "subsample":
                        chosen = rng.permutation(len(members))[:q]
                    else:
                        chosen = rng.integers(0, len(members), q)
                    picked.extend(subjects.ids[members[int(c)]] for c in chosen)
                copies = dict(sorted(Counter(picked).items()))
                train = tuple(
                    sorted(s for subj, c in copies.items() for s in subjects.samples[subj] * c)
                )
                out.append(Draw(fraction, r, copies, train))
        return out


def _quotas(sizes: np.ndarray, total: int) -> np.ndarray:
    """``total`` shared between strata of ``sizes`` by largest remainders (Hamilton's method)."""
    share = total * sizes / sizes.sum()
    quota = np.floor(share).astype(int)
    for j in np.argsort(-(share - quota), kind="stable")[: total - int(quota.sum())]:
        quota[j] += 1
    return quota


def with_copies(
    ids: Sequence[str], copies: Mapping[str, int], subject_of: Mapping[str, str]
) -> tuple[str, ...]:
    """``ids`` (sorted) with each sample repeated as many times as its subject was drawn.

    >>> with_copies(["a1", "b1"], {"a": 2, "b": 1}, {"a1": "a", "b1": "b"})
    ('a1', 'a1', 'b1')
    """
    return tuple(sorted(s for s in ids for _ in range(copies.get(subject_of[s], 1))))


def resampler_from_suite(suite: Any, protocol: Any, seed: int) -> TrainResampler | None:
    """The resampler of ``validation.train_resampling`` for one protocol, or None when unset.

    Stratified on the protocol's ``stratify`` columns (resolved as its splitter resolves them).
    """
    spec = suite.validation.train_resampling
    if spec is None:
        return None
    stratify, continuous = resolve_stratify(protocol, suite.task)
    return TrainResampler(
        spec.scheme,
        spec.fractions,
        spec.repeats,
        stratify=stratify,
        continuous=continuous,
        seed=seed,
    )
