"""``raybench compact``: merge committed per-trial files into batch files, atomically.

A run writes one Parquet file per trial and table (the commit protocol of
:mod:`raybench.store.writer`). With 100,000 trials that is 400,000 small files, and every reader
(``status``, ``analyze``, ``report``, a resume) opens each of them: seconds on a local disk,
minutes on object storage, where each file is a request. Compaction rewrites the completed
trials' rows as a few ``<table>/_batch-<id>.parquet`` files of up to ``batch_trials`` trials each.

Protocol, under the results directory's run lock (no run commits meanwhile):

1. Files left by a compaction that was cut short (a batch without its ``trials`` file) are
   deleted: they were never committed.
2. For each batch: every data table's rows are written aside (``<table>/.tmp/``) with, in the
   file's footer metadata, the row count of each trial, and renamed into place; the ``trials``
   batch file is renamed last. That rename commits the batch.
3. The per-trial files of the batch's trials are deleted, ``trials`` first.

Readers stay correct at every point (:func:`raybench_analysis.contract.inventory`): a trial that
has both a per-trial ``trials`` file and a batch row is read from its per-trial files (their
content is the same), so a kill between 2 and 3 leaves a directory that reads the same; the next
compaction deletes the leftovers. Failed trials are not compacted (a resume runs them again), and
a trial run again after it was compacted (its batch was damaged) is read from its new per-trial
files. Integrity checks keep working: the batch's footer counts are checked against the
``trials`` rows, as the per-trial files' footers are.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from raybench_analysis.contract import (
    BATCH_PREFIX,
    BATCH_ROWS_KEY,
    BATCH_TRIALS,
    DATA_TABLES,
    TABLE_NAMES,
    Inventory,
    is_batch,
    polars_schema,
)

from raybench.store.faults import storage_errors
from raybench.store.schemas import SCHEMAS

if TYPE_CHECKING:
    from raybench.store.writer import ResultStore

__all__ = ["CompactResult", "compact"]


@dataclass(frozen=True)
class CompactResult:
    """What a compaction did: trials moved into batches, batch files written, files removed."""

    trials: int
    batches: int
    files_removed: int
    seconds: float

    def as_dict(self) -> dict[str, float | int]:
        """JSON-able counts."""
        return {
            "trials": self.trials,
            "batches": self.batches,
            "files_removed": self.files_removed,
            "seconds": round(self.seconds, 3),
        }


def compact(
    store: ResultStore, *, batch_trials: int = BATCH_TRIALS, held: bool = False
) -> CompactResult:
    """Merge the completed trials' per-trial files of ``store`` into batch files (see above).

    Takes the store's lock: refused with :class:`~raybench.errors.ResultsError` while a run
    holds it. ``held``: the caller holds the lock already (a run compacting at its end,
    :func:`raybench.runner.driver.run_plan`). Damaged and failed trials keep their per-trial
    files.
    """
    start = time.perf_counter()
    removed = batches = moved = 0
    with nullcontext() if held else store.lock():
        inv = store.inventory()
        listing = {t: _names(store, t) for t in TABLE_NAMES}
        removed += _drop_uncommitted_batches(store, listing)
        batched = _batched_ids(inv)
        todo = sorted(
            t
            for t, s in inv.statuses.items()
            if s == "completed" and f"{store.root}/trials/{t}.parquet" in inv.files["trials"]
        )
        removed += _drop_leftovers(store, listing, batched - set(todo))
        for i in range(0, len(todo), max(1, batch_trials)):
            chunk = todo[i : i + batch_trials]
            _write_batch(store, chunk, listing)
            removed += _drop_per_trial(store, chunk, listing)
            batches += 1
            moved += len(chunk)
    return CompactResult(moved, batches, removed, time.perf_counter() - start)


def _names(store: ResultStore, table: str) -> set[str]:
    import pyarrow.fs as pafs

    selector = pafs.FileSelector(f"{store.root}/{table}", allow_not_found=True)
    return {
        info.base_name[: -len(".parquet")]
        for info in store.fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
    }


def _delete(store: ResultStore, path: str) -> int:
    with suppress(FileNotFoundError), storage_errors("a results file", path):
        store.fs.delete_file(path)
        return 1
    return 0


def _drop_uncommitted_batches(store: ResultStore, listing: dict[str, set[str]]) -> int:
    """Delete batch data files whose ``trials`` batch file does not exist (a cut-short run)."""
    removed = 0
    for table in DATA_TABLES:
        for name in sorted(n for n in listing[table] if is_batch(n)):
            if name not in listing["trials"]:
                removed += _delete(store, f"{store.root}/{table}/{name}.parquet")
                listing[table].discard(name)
    return removed


def _batched_ids(inv: Inventory) -> set[str]:
    """Trials read from a batch (committed, with no per-trial ``trials`` file)."""
    singles = {p.rsplit("/", 1)[-1][: -len(".parquet")] for p in inv.files["trials"]}
    return {t for t in inv.statuses if t not in singles}


def _drop_leftovers(store: ResultStore, listing: dict[str, set[str]], batched: set[str]) -> int:
    """Delete per-trial data files of trials read from a batch (a compaction cut short in 3)."""
    removed = 0
    for table in DATA_TABLES:
        for trial_id in sorted(listing[table] & batched):
            removed += _delete(store, f"{store.root}/{table}/{trial_id}.parquet")
            listing[table].discard(trial_id)
    return removed


def _read(
    store: ResultStore, table: str, ids: Sequence[str], listing: dict[str, set[str]]
) -> pa.Table:
    """The rows of ``table`` of trials ``ids`` (their per-trial files), in the store's schema."""
    paths = [f"{store.root}/{table}/{t}.parquet" for t in ids if t in listing[table]]
    if not paths:
        return SCHEMAS[table].empty_table()
    if store.local:
        frame = pl.scan_parquet(
            paths, schema=polars_schema(table), missing_columns="insert", extra_columns="ignore"
        ).collect()
        return frame.to_arrow().cast(SCHEMAS[table])
    import pyarrow.dataset as ds

    dataset = ds.dataset(paths, schema=SCHEMAS[table], format="parquet", filesystem=store.fs)
    return dataset.to_table()


def _write_batch(store: ResultStore, ids: Sequence[str], listing: dict[str, set[str]]) -> str:
    """Write one batch (data tables, then ``trials``: the commit); return its name."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    name = f"{BATCH_PREFIX}{stamp}-{uuid.uuid4().hex[:8]}"
    for table in (*DATA_TABLES, "trials"):  # trials last: its rename commits the batch
        rows = _read(store, table, ids, listing)
        if table != "trials" and rows.num_rows == 0:
            continue
        counts = pl.from_arrow(rows.select(["trial_id"])).group_by("trial_id").len()
        meta = {t: int(n) for t, n in counts.iter_rows()}
        rows = rows.replace_schema_metadata({BATCH_ROWS_KEY: json.dumps(meta).encode()})
        folder = f"{store.root}/{table}"
        tmp = f"{folder}/.tmp/{name}.{uuid.uuid4().hex[:8]}.parquet"
        with storage_errors(f"the {table} batch file", folder):
            store.fs.create_dir(f"{folder}/.tmp", recursive=True)
            try:
                pq.write_table(rows, tmp, filesystem=store.fs, row_group_size=_row_group(rows))
                store.fs.move(tmp, f"{folder}/{name}.parquet")
            except BaseException:
                with suppress(FileNotFoundError, OSError):
                    store.fs.delete_file(tmp)
                raise
        listing[table].add(name)
    return name


def _row_group(table: pa.Table) -> int:
    return max(1, min(table.num_rows, 1 << 20))


def _drop_per_trial(store: ResultStore, ids: Sequence[str], listing: dict[str, set[str]]) -> int:
    """Delete the per-trial files of ``ids``: ``trials`` first (the trial then reads from the
    batch), the data tables after (leftovers a reader ignores)."""
    removed = 0
    for table in ("trials", *DATA_TABLES):
        for trial_id in ids:
            if trial_id in listing[table]:
                removed += _delete(store, f"{store.root}/{table}/{trial_id}.parquet")
                listing[table].discard(trial_id)
    return removed
