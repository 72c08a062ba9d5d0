"""A cohort: the validated table of one dataset's images, whatever its source.

Every data source (synthetic generator, manifest, BIDS tree) ends as a :class:`Cohort` whose table
has one row per image and at least the columns of :data:`REQUIRED_COLUMNS`; other columns of the
source (diagnosis, age, mask, ...) are kept so that ``task.label`` can name them.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

#: Columns every cohort table has, all strings; ``image`` is an absolute path to a 3-D NIfTI file.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "subject_id",
    "session_id",
    "scanner",
    "site",
    "image",
)


@dataclass(frozen=True)
class Cohort:
    """A dataset ready for splitting: its table and a content fingerprint.

    ``fingerprint`` is a hash of the table and of each file's size and modification time: it goes
    into trial ids, so a changed dataset gives new trials.
    """

    name: str
    table: pl.DataFrame
    fingerprint: str
