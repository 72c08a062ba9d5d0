"""The leakage audit of external datasets: no external subject or image is in development data.

An external dataset (``validation.external``, ``raybench predict --dataset``) estimates how a
model does on *other* patients, typically of other hospitals. Its estimate means nothing if some
of its subjects were trained on, so before anything runs raybench checks, against every
development dataset (at compile time) or every subject in the run's ``splits`` table (at predict
time):

- the two cohorts are not the same data (equal fingerprints: a dataset declared twice);
- no ``subject_id`` is in both: the same person under the same id;
- when both tables declare :data:`IMAGE_HASH_COLUMN` (``image_sha256``, the sha256 of each image
  file: a manifest may carry it), no image is in both: the same scan under another subject id.

Two independent cohorts whose ids coincide by naming convention (``sub-001`` in both) fail the
subject check: rename the external ids (a manifest column, or ``subject_prefix`` of a synthetic
dataset), since from ids alone raybench cannot tell them from the same people.

A generated dataset (``source: generated``) named in ``validation.external`` is no other cohort: its
samples are drawn from a model of the training side of outer fold 0 of its ``from`` dataset
(docs/generated.md). Its subjects (``gen-NNNNN``) pass the audit above, but what makes its scores
honest is another condition, checked by :func:`generated_scopes`: it is scored only by the models
of fold 0 of ``validation.outer`` on ``from`` (trained on the subjects the generator was fitted to,
or a draw of them), and none of the generator's subjects is a test subject of that fold, so fold
0's real test images are unseen by the model and by the generator alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import polars as pl

from raybench.data.cohort import Cohort
from raybench.errors import DataError, LeakageError, SuiteError

__all__ = [
    "GENERATED_FOLD",
    "IMAGE_HASH_COLUMN",
    "check_external_cohort",
    "check_external_subjects",
    "external_fingerprints",
    "generated_scopes",
]

#: The outer fold of ``validation.outer`` whose training side a generated dataset is fitted to.
GENERATED_FOLD = 0

#: Optional column of a cohort table: the sha256 hex digest of each image file.
IMAGE_HASH_COLUMN = "image_sha256"

#: Ids shown in a leakage message.
_SHOWN = 5


def _shown(values: Iterable[str]) -> str:
    found = sorted(values)
    more = f" and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
    return f"{found[:_SHOWN]}{more}"


def check_external_subjects(development: Iterable[str], external: pl.DataFrame, where: str) -> None:
    """Raise :class:`LeakageError` when a ``subject_id`` of ``external`` is in ``development``."""
    shared = set(map(str, development)) & set(external["subject_id"].cast(pl.String).to_list())
    if shared:
        raise LeakageError(
            f"{where}: {len(shared)} subject(s) of the external dataset are in the development "
            f"data: {_shown(shared)}. An external dataset must hold other subjects; if these are "
            "other people whose ids coincide, give the external dataset distinct ids."
        )


def check_external_cohort(development: Cohort, external: Cohort) -> None:
    """The audit of one external cohort against one development cohort (see the module doc)."""
    where = f"external dataset {external.name!r} vs development dataset {development.name!r}"
    if development.fingerprint == external.fingerprint:
        raise SuiteError(
            f"{where}: the same data (equal fingerprints); an external dataset must be another "
            "cohort, never the development data under another name"
        )
    check_external_subjects(development.table["subject_id"].to_list(), external.table, where)
    dev, ext = development.table, external.table
    if IMAGE_HASH_COLUMN in dev.columns and IMAGE_HASH_COLUMN in ext.columns:
        shared = set(dev[IMAGE_HASH_COLUMN].drop_nulls().to_list()) & set(
            ext[IMAGE_HASH_COLUMN].drop_nulls().to_list()
        )
        if shared:
            samples = ext.filter(pl.col(IMAGE_HASH_COLUMN).is_in(list(shared)))["sample_id"]
            raise LeakageError(
                f"{where}: {len(shared)} image(s) of the external dataset are also development "
                f"images (same {IMAGE_HASH_COLUMN}): external samples "
                f"{_shown(samples.to_list())}. Remove them from one of the datasets."
            )


def external_fingerprints(suite: Any, cohorts: Mapping[str, Cohort]) -> dict[str, str]:
    """``{name: fingerprint}`` of the suite's external datasets, each audited against every
    development dataset (raises :class:`LeakageError` / :class:`SuiteError`)."""
    names = list(suite.validation.external)
    missing = [n for n in names if n not in cohorts]
    if missing:
        raise DataError(
            f"validation.external names {missing} but no cohort was loaded for them (got "
            f"{sorted(cohorts)}); load every dataset of the suite before compiling"
        )
    development = [ds.name for ds in suite.datasets if ds.name not in names]
    for name in names:
        for dev in development:
            check_external_cohort(cohorts[dev], cohorts[name])
    return {name: cohorts[name].fingerprint for name in names}


def generated_scopes(
    suite: Any, cohorts: Mapping[str, Cohort], fold_test_ids: Mapping[str, Sequence[str]]
) -> dict[str, dict[str, Any]]:
    """Which refit models may be scored on each generated dataset of ``validation.external``.

    ``fold_test_ids`` maps each development dataset to the test sample ids of fold
    :data:`GENERATED_FOLD` of ``validation.outer`` as compiled. Returns ``{name: {"dataset": from,
    "protocol": "outer", "outer_fold": 0}}``. Raises :class:`LeakageError` when a subject the
    generator was fitted to is a test subject of that fold (the generator would have seen the
    real test data its samples are compared with).
    """
    from raybench.data.generated import fit_sample_ids  # torch: imported for generated data only
    from raybench.suite.schema import GeneratedDataset

    scopes: dict[str, dict[str, Any]] = {}
    for ds in suite.datasets:
        if ds.name not in suite.validation.external or not isinstance(ds, GeneratedDataset):
            continue
        origin = ds.params.from_
        source = cohorts[origin]
        subject = dict(zip(source.table["sample_id"], source.table["subject_id"], strict=True))
        fitted = {subject[s] for s in fit_sample_ids(source, suite)}
        shared = fitted & {subject[s] for s in fold_test_ids.get(origin, ())}
        if shared:
            raise LeakageError(
                f"generated dataset {ds.name!r}: {len(shared)} subject(s) its generator was "
                f"fitted to are test subjects of fold {GENERATED_FOLD} of validation.outer on "
                f"{origin!r}: {_shown(shared)}"
            )
        scopes[ds.name] = {"dataset": origin, "protocol": "outer", "outer_fold": GENERATED_FOLD}
    return scopes
