"""Bring existing results in: a predictions table, a ClinicaDL MAPS or nnU-Net folds.

:func:`import_results` is the one entry (``raybench import`` calls it): it reads a source with the
importer of its format into trials of the results contract, checks them (located errors; the
contract's leakage check on the source's own split files) and commits them atomically and
idempotently through the result store. See docs/import.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raybench.importers.base import (
    ImportSource,
    Participants,
    SourceError,
    check_source,
    sha256_file,
)
from raybench.importers.writer import IMPORT_FILE, ImportReport, write_import

__all__ = ["FORMATS", "IMPORT_FILE", "ImportReport", "SourceError", "import_results", "read_source"]

#: The source formats ``raybench import`` reads.
FORMATS: tuple[str, ...] = ("table", "clinicadl", "nnunet")


def read_source(
    fmt: str,
    source: str | Path,
    *,
    participants: str | Path | None = None,
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> ImportSource:
    """Read ``source`` with the importer of ``fmt`` (no check, nothing written).

    ``options`` are the format's own keywords: ``mapping``, ``labels``, ``task`` (``table``);
    ``dataset``, ``positive``, ``validation_as_test`` (``clinicadl``); ``dataset``, ``splits``
    (``nnunet``).
    """
    opts = dict(options or {})
    table = Participants.read(participants) if participants is not None else None
    if fmt == "table":
        from raybench.importers.table import read_table_source as reader
    elif fmt == "clinicadl":
        from raybench.importers.clinicadl import read_maps as reader
    elif fmt == "nnunet":
        from raybench.importers.nnunet import read_nnunet as reader
    else:
        raise SourceError(f"import format {fmt!r} is not one of {list(FORMATS)}")
    read = reader(source, participants=table, name=name, **opts)
    if table is not None:  # sites come from it: a changed participants table is a changed import
        read.mapping["_participants"] = {table.path.name: sha256_file(table.path)}
    return read


def import_results(
    fmt: str,
    source: str | Path,
    results: str | Path,
    *,
    participants: str | Path | None = None,
    name: str | None = None,
    replace: bool = False,
    options: Mapping[str, Any] | None = None,
) -> ImportReport:
    """Import ``source`` (format ``fmt``) into the results directory ``results``.

    Returns an :class:`ImportReport` (trials committed, unchanged and removed, the leakage
    verdict, notes such as participant rows that could not be joined). Raises
    :class:`SourceError` / :class:`~raybench.errors.LeakageError` (exit 2) naming the file, line
    and column of what cannot be imported, and :class:`~raybench.errors.ResultsError` when the
    directory holds a run or another import (``replace=True`` replaces the latter).
    """
    read = read_source(fmt, source, participants=participants, name=name, options=options)
    verdict = check_source(read)
    return write_import(read, str(results), verdict, replace=replace)
