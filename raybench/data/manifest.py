"""Manifest data source: a TSV or CSV file listing one image per row.

Columns (names configurable with :class:`~raybench.suite.schema.ColumnMap`): ``image`` (path
relative to the manifest), ``subject_id``, ``session_id`` (required); ``scanner`` and ``site``
(optional, default ``"unknown"``); ``label`` and ``mask`` (optional unless named explicitly in the
column map); ``sample_id`` (optional, default ``<subject_id>_<session_id>``). Every other column is
kept, as a string, so that ``task.label`` can name it. See docs/data.md.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Collection, Mapping
from pathlib import Path

import polars as pl

from raybench.data.cohort import REQUIRED_COLUMNS, Cohort
from raybench.data.fingerprint import HashCache, table_fingerprint
from raybench.data.validate import check_cohort, did_you_mean, raise_problems
from raybench.errors import DataError
from raybench.suite.schema import ColumnMap

__all__ = [
    "DEFAULT_SITE",
    "missing_columns",
    "read_manifest",
    "read_manifest_table",
    "read_table_file",
    "rename_columns",
    "standard_table",
]

#: Value of ``scanner`` / ``site`` when the manifest has no such column.
DEFAULT_SITE = "unknown"
_REQUIRED_KEYS = ("image", "subject_id", "session_id")
_OPTIONAL_KEYS = ("scanner", "site", "label", "mask")
_SEPARATORS = {".tsv": "\t", ".tab": "\t", ".csv": ","}


def _separator(path: Path, first_line: str) -> str:
    for suffix, separator in _SEPARATORS.items():
        if path.name.lower().endswith(suffix):
            return separator
    return "\t" if first_line.count("\t") >= first_line.count(",") else ","


def read_table_file(path: Path) -> pl.DataFrame:
    """Read a TSV/CSV file as strings (stripped, empty cells null); raise DataError on failure.

    The separator comes from the suffix (``.tsv``/``.tab``: tab, ``.csv``: comma), otherwise from
    whichever of tab and comma is more frequent on the header line.
    """
    if not path.is_file():
        hint = " (it is a directory)" if path.is_dir() else ""
        raise DataError(f"{path}: table file not found{hint}; check the path in the suite")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            first = handle.readline()
            separator = _separator(path, first)
            header = next(csv.reader([first], delimiter=separator), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc}); it must be a UTF-8 text file") from None
    header = [h.strip() for h in header]
    if not header or not any(header):
        raise DataError(f"{path}, row 1: empty header; the first row must name the columns")
    problems = [f"{path}, row 1: column {i + 1} has no name" for i, h in enumerate(header) if not h]
    problems += [
        f"{path}, row 1: column {h!r} appears {header.count(h)} times; names must be unique"
        for h in sorted({h for h in header if h and header.count(h) > 1})
    ]
    if problems:
        raise DataError("\n".join(problems))
    try:
        table = pl.read_csv(
            path,
            separator=separator,
            infer_schema=False,
            encoding="utf8-lossy",
            new_columns=header,
            truncate_ragged_lines=False,
        )
    except Exception as exc:  # polars raises ComputeError/NoDataError/... for malformed text
        kind = ("TSV", "CSV")[separator == ","]
        raise DataError(
            f"{path}{_ragged_row(path, separator, len(header))}: malformed {kind}: "
            f"{str(exc).splitlines()[0]}"
        ) from None
    return table.with_columns(pl.col(c).str.strip_chars().replace("", None) for c in table.columns)


def _ragged_row(path: Path, separator: str, width: int) -> str:
    """``", row N (K fields, header has W)"`` for the first row of the wrong width, or ``""``."""
    with path.open(newline="", encoding="utf-8-sig", errors="replace") as handle:
        for number, row in enumerate(csv.reader(handle, delimiter=separator), start=1):
            if row and len(row) != width:
                return f", row {number} ({len(row)} fields, the header has {width})"
    return ""


def _resolve(values: pl.Series, base: Path) -> pl.Series:
    return values.map_elements(
        lambda v: os.path.normpath(os.path.join(base, os.path.expanduser(v))),
        return_dtype=pl.String,
    )


def missing_columns(
    found: list[str], mapping: Mapping[str, str], needed: Collection[str], where: str
) -> list[str]:
    """Problems for each ``needed`` key whose mapped column is not in ``found``.

    ``mapping`` maps standard names (``label``) to the table's own (``columns.label``); ``where``
    names the table file. Shared by the manifest and BIDS readers.
    """
    return [
        f"{where}, row 1: missing column {source!r} (columns.{key})"
        f"{did_you_mean(source, found)}; columns found: {found}; rename the "
        f"column or set columns.{key}: <its name> in the suite"
        for key, source in mapping.items()
        if key in needed and source not in found
    ]


def rename_columns(
    table: pl.DataFrame, mapping: Mapping[str, str], where: str
) -> tuple[pl.DataFrame, dict[str, str]]:
    """``table`` with its mapped columns renamed to the standard names, and what was renamed.

    A standard name that exists besides the column mapped to it is an error (which one is meant?).
    """
    present = {key: source for key, source in mapping.items() if source in table.columns}
    clashes = [k for k, s in present.items() if k != s and k in table.columns]
    if clashes:
        raise DataError(
            f"{where}, row 1: columns {clashes} exist but the column map reads them from "
            f"{[present[k] for k in clashes]}; rename or drop one of each pair"
        )
    renamed = {k: s for k, s in present.items() if s != k}
    return table.rename({s: k for k, s in renamed.items()}), renamed


def standard_table(table: pl.DataFrame) -> pl.DataFrame:
    """Standard columns first (``scanner``/``site`` default to ``"unknown"``), then the rest."""
    for key in ("scanner", "site"):
        if key not in table.columns:
            table = table.with_columns(pl.lit(DEFAULT_SITE, dtype=pl.String).alias(key))
    rest = [c for c in table.columns if c not in REQUIRED_COLUMNS]
    return table.select(*REQUIRED_COLUMNS, *rest)


def read_manifest_table(
    path: str | Path, columns: ColumnMap | None = None, *, name: str = ""
) -> Cohort:
    """Parse a manifest into a cohort table without checking files or fingerprinting.

    Renames the mapped columns to their standard names, adds defaults, resolves ``image``/``mask``
    paths against the manifest's directory and records each row's line for error messages.
    """
    path = Path(os.path.abspath(path))
    columns = columns or ColumnMap()
    raw = read_table_file(path)
    blank = raw.select(pl.all_horizontal(pl.all().is_null())).to_series()
    row_numbers = tuple(i + 2 for i, is_blank in enumerate(blank.to_list()) if not is_blank)
    raw = raw.filter(~blank)  # blank lines are skipped; rows keep their numbers in the file
    if raw.height == 0:
        raise DataError(f"{path}: no rows after the header; list one image per row")
    name = name or path.stem
    mapping = {key: getattr(columns, key) for key in (*_REQUIRED_KEYS, *_OPTIONAL_KEYS)}
    needed = {*_REQUIRED_KEYS, *columns.model_fields_set}
    raise_problems(name, missing_columns(raw.columns, mapping, needed, str(path)))
    table, renamed = rename_columns(raw, mapping, str(path))
    for key in ("image", "mask"):
        if key in table.columns:
            table = table.with_columns(_resolve(table[key], path.parent).alias(key))
    if "sample_id" not in table.columns:
        table = table.with_columns(
            pl.concat_str("subject_id", "session_id", separator="_").alias("sample_id")
        )
    return Cohort(
        name=name,
        table=standard_table(table),
        fingerprint="",
        source=str(path),
        rows=row_numbers,
        columns=renamed,
    )


def read_manifest(
    path: str | Path,
    columns: ColumnMap | None = None,
    *,
    name: str = "",
    write_cache: bool = True,
) -> Cohort:
    """Read, validate and fingerprint a manifest (TSV or CSV); raise DataError naming file/row.

    ``write_cache=False`` leaves the content-hash memo (``.raybench-hashes.json`` next to the
    manifest) untouched, so nothing at all is written.
    """
    cohort = read_manifest_table(path, columns, name=name)
    check_cohort(cohort)
    base = Path(cohort.source).parent
    fingerprint = table_fingerprint(cohort.table, base, HashCache(base, write=write_cache))
    return Cohort(
        cohort.name, cohort.table, fingerprint, cohort.source, cohort.rows, cohort.columns
    )
