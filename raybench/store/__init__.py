"""The result store: fixed Parquet tables, one file per trial, committed atomically.

``ResultStore(uri)`` is the one entry (local path or any pyarrow filesystem URI); see
docs/results.md for the tables and :mod:`raybench.store.writer` for the commit protocol.
"""

from raybench.store.guard import SuiteCheck
from raybench.store.rows import (
    collect_provenance,
    config_hash,
    git_commit,
    spec_columns,
    trial_row,
)
from raybench.store.schemas import SCHEMAS, TABLES, conform, empty_table, table_from_rows
from raybench.store.writer import ResultStore

__all__ = [
    "SCHEMAS",
    "TABLES",
    "ResultStore",
    "SuiteCheck",
    "collect_provenance",
    "config_hash",
    "conform",
    "empty_table",
    "git_commit",
    "spec_columns",
    "table_from_rows",
    "trial_row",
]
