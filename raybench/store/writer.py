"""The result store: atomic per-trial commits of the four tables on any pyarrow filesystem.

Layout (docs/results.md): ``<root>/<table>/<trial_id>.parquet`` for the tables ``predictions``,
``epochs``, ``splits`` and ``trials``. :meth:`ResultStore.commit` writes ``trials`` last: a trial is
committed exactly when its ``trials`` file exists, so a process killed at any point leaves either
a committed trial or none (files written before the kill are overwritten by the retry and ignored
by readers meanwhile). On a local (POSIX) filesystem each table is first written to
``<table>/.tmp/<trial_id>.<random>.parquet`` and renamed into place, atomically. Object stores
(``s3://``, ``gs://``) have no rename (pyarrow's ``move`` is a copy and a delete), but a single
put is atomic: each table is serialised to a complete Parquet file in memory and put at its final
key in one request, so a reader sees the whole object or none (docs/object-storage.md).

Integrity: the ``trials`` row records how many rows each other table's file holds
(``rows_<table>``, set here, 0 for a table not committed, whose stale file from an earlier attempt
is deleted), and every reader verifies the files against it (:func:`raybench_analysis.contract.
inventory`), so a file truncated or replaced after the commit makes its trial *damaged*: reported
by :meth:`ResultStore.status`, not committed, redone by the next run.

Storage faults (a read-only directory, a full disk) raise :class:`~raybench.errors.StorageError`
after the staged files are removed: the trial stays uncommitted and is redone on resume.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from raybench_analysis import AnalysisError
from raybench_analysis.contract import (
    BATCH_TRIALS,
    DATA_TABLES,
    Inventory,
    count_column,
    is_batch,
)
from raybench_analysis.io import check_uri

from raybench.errors import ResultsError
from raybench.store.faults import storage_errors
from raybench.store.guard import SuiteCheck, check_suite
from raybench.store.reader import RunLock, scan_inventory, scan_table
from raybench.store.schemas import SCHEMAS, TABLES, conform
from raybench.store.status import store_status

if TYPE_CHECKING:
    from raybench.store.compact import CompactResult

__all__ = ["ResultStore"]


def _resolve(uri: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str, bool]:
    if filesystem is not None:
        return filesystem, uri.rstrip("/"), isinstance(filesystem, pafs.LocalFileSystem)
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri)), True
    try:
        check_uri(uri)
        fs, path = pafs.FileSystem.from_uri(uri)
    except AnalysisError as exc:
        raise ResultsError(str(exc)) from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise ResultsError(
            f"results location {uri!r} is not a usable pyarrow filesystem URI ({exc}); use a local "
            "path or a URI such as s3://bucket/prefix"
        ) from exc
    return fs, path.rstrip("/"), isinstance(fs, pafs.LocalFileSystem)


def _parquet_bytes(table: pa.Table) -> pa.Buffer:
    """``table`` as a complete Parquet file in memory: what one put sends to an object store."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue()


class ResultStore:
    """One suite's results directory (local path or pyarrow filesystem URI).

    Picklable: the runner ships it to workers, which call :meth:`commit`; the filesystem is
    re-created from the URI in each process.

    >>> import tempfile, pyarrow as pa
    >>> from raybench.store.schemas import table_from_rows
    >>> store = ResultStore(tempfile.mkdtemp())
    >>> store.commit("t1", {"trials": table_from_rows("trials", [{"trial_id": "t1",
    ...     "status": "completed"}])})
    >>> store.committed_ids()
    ['t1']
    """

    def __init__(self, uri: str | os.PathLike[str], filesystem: pafs.FileSystem | None = None):
        self._given_fs = filesystem
        self.fs, self.root, self.local = _resolve(str(uri), filesystem)
        # a relative local path is made absolute here: workers (other cwd) unpickle the store
        self.uri = self.root if "://" not in str(uri) and filesystem is None else str(uri)

    def __getstate__(self) -> dict[str, Any]:
        return {"uri": self.uri, "fs": self._given_fs}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["uri"], state["fs"])  # type: ignore[misc]

    def __repr__(self) -> str:
        return f"ResultStore({self.uri!r})"

    def path(self, table: str, trial_id: str) -> str:
        """Where ``table``'s file of ``trial_id`` lives once committed."""
        return f"{self.root}/{table}/{trial_id}.parquet"

    # ----------------------------------------------------------------------- writing

    def commit(self, trial_id: str, tables: Mapping[str, pa.Table]) -> None:
        """Commit one trial's tables atomically (``trials`` required, the others optional).

        Each table is checked against its fixed schema (:func:`raybench.store.schemas.conform`)
        before anything is written, and every row must carry this ``trial_id``.
        """
        if not trial_id or "/" in trial_id or trial_id.startswith(".") or is_batch(trial_id):
            raise ResultsError(f"trial_id={trial_id!r} cannot name a results file")
        unknown = sorted(set(tables) - set(SCHEMAS))
        if unknown:
            raise ResultsError(f"commit of {trial_id}: unknown tables {unknown}; allowed {TABLES}")
        if "trials" not in tables:
            raise ResultsError(f"commit of {trial_id}: the 'trials' table is required")
        given = {name: tables[name] for name in TABLES if name in tables}
        given["trials"] = _with_counts(given["trials"], given)
        checked = {name: conform(name, table) for name, table in given.items()}
        for name, table in checked.items():
            ids = set(table.column("trial_id").to_pylist())
            if ids - {trial_id}:
                raise ResultsError(
                    f"commit of {trial_id}: table {name!r} holds rows of other trials "
                    f"{sorted(map(str, ids - {trial_id}))[:3]}"
                )
        if checked["trials"].num_rows != 1:
            raise ResultsError(
                f"commit of {trial_id}: 'trials' must have exactly one row, "
                f"found {checked['trials'].num_rows}"
            )
        with storage_errors(f"the results of trial {trial_id}", self.root):
            self._write(trial_id, checked)

    def _write(self, trial_id: str, checked: Mapping[str, pa.Table]) -> None:
        """Put every table in place, ``trials`` last (see the module's commit protocol)."""
        if not self.local:  # object store: each table is one put of a complete object
            self._drop_stale(trial_id, checked)
            for name, table in checked.items():  # TABLES order: trials last
                self._put(self.path(name, trial_id), _parquet_bytes(table))
            return
        staged: list[tuple[str, str]] = []
        suffix = uuid.uuid4().hex[:12]
        try:
            for name, table in checked.items():  # TABLES order: trials last
                tmp_dir = f"{self.root}/{name}/.tmp"
                self.fs.create_dir(tmp_dir, recursive=True)
                tmp = f"{tmp_dir}/{trial_id}.{suffix}.parquet"
                staged.append((tmp, self.path(name, trial_id)))
                pq.write_table(table, tmp, filesystem=self.fs)
            self._drop_stale(trial_id, checked)
            for tmp, final in staged:
                self.fs.move(tmp, final)
        except BaseException:
            for tmp, _ in staged:
                with suppress(FileNotFoundError, OSError):
                    self.fs.delete_file(tmp)
            raise

    def _drop_stale(self, trial_id: str, checked: Mapping[str, pa.Table]) -> None:
        """Delete an earlier attempt's file of each data table not committed now."""
        for name in DATA_TABLES:
            if name not in checked:
                with suppress(FileNotFoundError):
                    self.fs.delete_file(self.path(name, trial_id))

    def _put(self, path: str, data: bytes | pa.Buffer) -> None:
        """One object written whole: the bytes are complete before the upload starts, so an
        object store publishes all of them or nothing (no rename needed)."""
        try:
            out = self.fs.open_output_stream(path)
        except FileNotFoundError:  # a filesystem with folders (e.g. fsspec's local one behind a
            self.fs.create_dir(path.rsplit("/", 1)[0], recursive=True)  # PyFileSystem)
            out = self.fs.open_output_stream(path)
        with out:
            out.write(data)

    def cleanup_tmp(self, older_than_s: float = 0.0) -> int:
        """Delete staged files left by commits that died; returns how many were removed.

        Call it while holding :meth:`lock` (then every staged file is stale); ``older_than_s``
        keeps files younger than that, for cleaning while workers may be committing.
        """
        removed = 0
        now = time.time()
        for name in TABLES:
            selector = pafs.FileSelector(f"{self.root}/{name}/.tmp", allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.type != pafs.FileType.File:
                    continue
                mtime = info.mtime.timestamp() if info.mtime is not None else 0.0
                if now - mtime >= older_than_s:
                    try:
                        self.fs.delete_file(info.path)
                        removed += 1
                    except FileNotFoundError:
                        pass
        return removed

    # ----------------------------------------------------------------------- reading

    def inventory(self) -> Inventory:
        """Committed (verified) trials, damaged trials and their files (the contract's scanner)."""
        return scan_inventory(self.fs, self.root)

    def committed_ids(self) -> list[str]:
        """Ids of committed, verified trials (completed or failed); damaged ones are left out,
        so a run redoes them."""
        return list(self.inventory().committed)

    def statuses(self) -> dict[str, str]:
        """``trial_id -> status`` of committed, verified trials."""
        return self.inventory().statuses

    def failed_ids(self) -> list[str]:
        """Ids of committed trials whose status is ``failed`` (resume reruns them)."""
        return sorted(t for t, s in self.statuses().items() if s == "failed")

    def completed_ids(self) -> list[str]:
        """Ids of committed trials whose status is ``completed``."""
        return sorted(t for t, s in self.statuses().items() if s == "completed")

    def scan(self, table: str) -> pl.LazyFrame:
        """The committed rows of ``table`` as a lazy polars frame (fixed schema, any number)."""
        return scan_table(self.fs, self.root, table, local=self.local)

    def status(self, planned: Sequence[str] | None = None) -> dict[str, Any]:
        """What the directory holds: planned, completed, failed, damaged, pending, leakage.

        ``planned``: the trial ids of the plan (default: read from the saved ``plan.json``). See
        :func:`raybench.store.status.store_status` for the keys.
        """
        return store_status(self, planned)

    def check_suite(
        self, suite_yaml: bytes, planned: Iterable[str], *, allow_change: bool = False
    ) -> SuiteCheck:
        """Refuse to run another suite into this directory; return which rule let the run in.

        See :func:`raybench.store.guard.check_suite` (rules in docs/results.md).
        """
        return check_suite(self, suite_yaml, planned, allow_change=allow_change)

    def write_file(self, name: str, data: bytes) -> None:
        """Write ``<root>/name`` (``suite.yaml``, ``plan.json``, ``maps/<trial>/<file>``) whole or
        not at all (locally: write aside, rename; on an object store: one put); a full or
        read-only store is a :class:`~raybench.errors.StorageError`."""
        final = f"{self.root}/{name}"
        folder, _, base = final.rpartition("/")
        tmp = f"{folder}/.{base}.{uuid.uuid4().hex[:12]}.tmp"
        with storage_errors(name, final):
            if not self.local:
                self._put(final, data)
                return
            self.fs.create_dir(folder, recursive=True)
            try:
                with self.fs.open_output_stream(tmp) as out:
                    out.write(data)
                self.fs.move(tmp, final)
            except BaseException:
                with suppress(FileNotFoundError, OSError):
                    self.fs.delete_file(tmp)
                raise

    def read_file(self, name: str) -> bytes | None:
        """The bytes of ``<root>/name`` (``suite.yaml``, ``plan.json``), or None when absent."""
        try:
            with self.fs.open_input_stream(f"{self.root}/{name}") as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ResultsError(f"{self.root}/{name}: unreadable ({exc})") from exc

    def compact(self, batch_trials: int = BATCH_TRIALS, *, held: bool = False) -> CompactResult:
        """Merge the completed trials' per-trial files into batch files, under the lock.

        See :func:`raybench.store.compact.compact` (``raybench compact``); ``held``: the caller
        holds :meth:`lock` already.
        """
        from raybench.store.compact import compact

        return compact(self, batch_trials=batch_trials, held=held)

    @contextmanager
    def lock(self) -> Iterator[RunLock]:
        """Hold the directory's run lock; a second live holder gets a :class:`ResultsError`.

        Once the lock is held no other run can be committing here, so staged files left in
        ``<table>/.tmp/`` by a killed run are deleted on entry.
        """
        with RunLock(self.fs, self.root, self.local, uri=self.uri).held() as held:
            self.cleanup_tmp()
            yield held


def _with_counts(trials: pa.Table, tables: Mapping[str, pa.Table]) -> pa.Table:
    """``trials`` with its ``rows_<table>`` columns set from the tables being committed."""
    for name in DATA_TABLES:
        column = count_column(name)
        if column in trials.column_names:
            trials = trials.drop_columns([column])
        rows = tables[name].num_rows if name in tables else 0
        trials = trials.append_column(column, pa.array([rows] * trials.num_rows, pa.int64()))
    return trials
