"""A cohort: the validated table of one dataset's images, whatever its source.

Every data source (synthetic generator, manifest, BIDS tree) ends as a :class:`Cohort` whose table
has one row per image and at least the columns of :data:`REQUIRED_COLUMNS`; other columns of the
source (diagnosis, age, mask, ...) are kept so that ``task.label`` can name them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

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

    ``fingerprint`` is a content hash of the table and of the files it references (see
    :mod:`raybench.data.fingerprint`): it goes into trial ids, so a changed dataset gives new
    trials. ``source``, ``rows`` and ``columns`` say where each row came from, so that validation
    errors can name the file, the row (1-based, header = row 1) and the column as the user wrote it.
    """

    name: str
    table: pl.DataFrame
    fingerprint: str
    #: The file the rows come from (manifest, participants.tsv); "" for a table built in code.
    source: str = ""
    #: For each table row, its row in ``source`` (1-based, the header is row 1); empty if unknown.
    rows: tuple[int, ...] = ()
    #: Table column -> column name in ``source`` where they differ (e.g. ``subject_id`` ->
    #: ``participant_id``).
    columns: Mapping[str, str] = field(default_factory=dict)

    def where(self, index: int | None = None, column: str | None = None) -> str:
        """Human location of table row ``index`` / ``column``: ``"data.tsv, row 5, column 'x'"``."""
        parts = [self.source or f"dataset {self.name!r}"]
        if index is not None:
            if index < len(self.rows):
                parts.append(f"row {self.rows[index]}")
            elif "sample_id" in self.table.columns:
                parts.append(f"sample {self.table['sample_id'][index]!r}")
            else:
                parts.append(f"table row {index + 1}")
        if column is not None:
            parts.append(f"column {self.columns.get(column, column)!r}")
        return ", ".join(parts)
