"""The fixed pyarrow schemas of the four result tables (docs/results.md is the contract).

Every Parquet file a trial commits has exactly one of these schemas, column for column, so that a
folder of per-trial files reads as one table in polars, pyarrow and DuckDB without schema merging.
:func:`conform` is the single gate through which tables reach the store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from raybench.errors import ResultsError

__all__ = [
    "EPOCHS",
    "PREDICTIONS",
    "SCHEMAS",
    "SPLITS",
    "TABLES",
    "TRIALS",
    "conform",
    "empty_table",
    "table_from_rows",
]

_ts = pa.timestamp("us", tz="UTC")

TRIALS = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("suite", pa.string()),
        pa.field("dataset", pa.string()),
        pa.field("model", pa.string()),
        pa.field("task", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("protocol", pa.string()),
        pa.field("outer_fold", pa.int64()),
        pa.field("inner_fold", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("params", pa.string()),
        pa.field("status", pa.string()),
        pa.field("error", pa.string()),
        pa.field("traceback", pa.string()),
        pa.field("attempts", pa.int64()),
        pa.field("started_at", _ts),
        pa.field("finished_at", _ts),
        pa.field("train_seconds", pa.float64()),
        pa.field("eval_seconds", pa.float64()),
        pa.field("node", pa.string()),
        pa.field("device", pa.string()),
        pa.field("raybench_version", pa.string()),
        pa.field("torch_version", pa.string()),
        pa.field("monai_version", pa.string()),
        pa.field("ray_version", pa.string()),
        pa.field("python_version", pa.string()),
        pa.field("git_commit", pa.string()),
        pa.field("config_hash", pa.string()),
        pa.field("data_fingerprint", pa.string()),
        pa.field("n_train", pa.int64()),
        pa.field("n_val", pa.int64()),
        pa.field("n_test", pa.int64()),
        pa.field("best_epoch", pa.int64()),
        pa.field("val_score", pa.float64()),
    ]
)

PREDICTIONS = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("dataset", pa.string()),
        pa.field("model", pa.string()),
        pa.field("protocol", pa.string()),
        pa.field("outer_fold", pa.int64()),
        pa.field("seed", pa.int64()),
        pa.field("sample_id", pa.string()),
        pa.field("subject_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("scanner", pa.string()),
        pa.field("site", pa.string()),
        pa.field("split", pa.string()),
        pa.field("perturbation", pa.string()),
        pa.field("perturbation_type", pa.string()),
        pa.field("severity", pa.float64()),
        pa.field("y_true", pa.float64()),
        pa.field("y_pred", pa.float64()),
        pa.field("score", pa.float64()),
        pa.field("probs", pa.list_(pa.float64())),
        pa.field("dice", pa.float64()),
        pa.field("loss", pa.float64()),
    ]
)

EPOCHS = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("epoch", pa.int64()),
        pa.field("split", pa.string()),
        pa.field("loss", pa.float64()),
        pa.field("metric", pa.string()),
        pa.field("value", pa.float64()),
        pa.field("lr", pa.float64()),
        pa.field("seconds", pa.float64()),
    ]
)

SPLITS = pa.schema(
    [
        pa.field("trial_id", pa.string(), nullable=False),
        pa.field("sample_id", pa.string()),
        pa.field("subject_id", pa.string()),
        pa.field("session_id", pa.string()),
        pa.field("site", pa.string()),
        pa.field("role", pa.string()),
    ]
)

#: Table name -> schema. ``trials`` is committed last (see :mod:`raybench.store.writer`).
SCHEMAS: dict[str, pa.Schema] = {
    "predictions": PREDICTIONS,
    "epochs": EPOCHS,
    "splits": SPLITS,
    "trials": TRIALS,
}
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
    missing = [n for n in schema.names if n not in table.column_names]
    extra = [n for n in table.column_names if n not in schema.names]
    if missing or extra:
        raise ResultsError(
            f"table {name!r} does not match its schema: missing columns {missing}, unknown columns "
            f"{extra}; see docs/results.md for the contract"
        )
    table = table.select(schema.names)
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
