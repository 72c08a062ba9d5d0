"""The pyarrow schemas of the result tables, derived from the one results contract.

The tables, their columns, types and nullability are declared once, in
:mod:`raybench_analysis.contract` (docs/results.md is generated from it); this module turns the
declaration into the pyarrow schemas the store writes. Every Parquet file a trial commits has
exactly one of these schemas, column for column, so that a folder of per-trial files reads as one
table in polars, pyarrow and DuckDB without schema merging. :func:`conform` is the single gate
through which tables reach the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from raybench_analysis.contract import TABLE_NAMES, arrow_schema

from raybench.errors import ResultsError

__all__ = ["SCHEMAS", "TABLES", "conform", "empty_table", "table_from_rows"]

#: Table name -> schema, in commit order: ``trials`` last (see :mod:`raybench.store.writer`).
SCHEMAS: dict[str, pa.Schema] = {name: arrow_schema(name) for name in TABLE_NAMES}
TABLES: tuple[str, ...] = tuple(SCHEMAS)


def empty_table(name: str) -> pa.Table:
    """A table with no rows and the schema of ``name``."""
    return _schema(name).empty_table()


def table_from_rows(name: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """Build table ``name`` from dict rows; missing keys are null, unknown keys are an error."""
    schema = _schema(name)
    allowed = set(schema.names)
    for i, row in enumerate(rows):
        extra = set(row) - allowed
        if extra:
            raise ResultsError(
                f"table {name!r}, row {i}: unknown column(s) {sorted(extra)}; the schema has "
                f"{schema.names} (docs/results.md)"
            )
    columns = {f.name: [row.get(f.name) for row in rows] for f in schema}
    try:
        return pa.table(columns, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise ResultsError(f"table {name!r}: a value does not fit the schema: {exc}") from exc


def conform(name: str, table: pa.Table) -> pa.Table:
    """``table`` with exactly the schema of ``name``: columns reordered and safely cast.

    A missing or extra column, or a value that cannot be cast without loss, is a
    :class:`ResultsError` naming the table and the column.
    """
    schema = _schema(name)
    names, given = schema.names, table.column_names  # each a new list per access: read once
    known, present = set(names), set(given)
    missing = [n for n in names if n not in present]
    extra = [n for n in given if n not in known]
    if missing or extra:
        raise ResultsError(
            f"table {name!r} does not match its schema: missing columns {missing}, unknown columns "
            f"{extra}; see docs/results.md for the contract"
        )
    table = table.select(names)
    if table.schema.equals(schema, check_metadata=False):
        return table.replace_schema_metadata(None)
    columns = []
    for fld in schema:
        column = table.column(fld.name)
        try:
            columns.append(column.cast(fld.type, safe=True))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ResultsError(
                f"table {name!r}, column {fld.name!r}: type {column.type} cannot be stored as "
                f"{fld.type} ({exc})"
            ) from exc
        if not fld.nullable and column.null_count:
            raise ResultsError(f"table {name!r}, column {fld.name!r} holds nulls; it must not")
    return pa.Table.from_arrays(columns, schema=schema)


def _schema(name: str) -> pa.Schema:
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ResultsError(f"unknown results table {name!r}; tables are {list(SCHEMAS)}") from None
