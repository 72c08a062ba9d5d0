"""The result store: atomic per-trial commits of the four tables on any pyarrow filesystem.

Layout (docs/results.md): ``<root>/<table>/<trial_id>.parquet`` for the tables ``predictions``,
``epochs``, ``splits`` and ``trials``. :meth:`ResultStore.commit` first writes every table to
``<table>/.tmp/<trial_id>.<random>.parquet``, then renames each into place, ``trials`` last: a
trial is committed exactly when its ``trials`` file exists, so a process killed at any point leaves
either a committed trial or none (files renamed before the kill are overwritten by the retry and
ignored by readers meanwhile). Renames are atomic on local and POSIX filesystems; on object stores
(``s3://``, ``gs://``) a rename is a copy of a complete object, so a reader still never sees a
partial file.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raybench.errors import ResultsError
from raybench.store.reader import RunLock, committed_ids, read_statuses, scan_table
from raybench.store.schemas import SCHEMAS, TABLES, conform

__all__ = ["ResultStore"]


def _resolve(uri: str, filesystem: pafs.FileSystem | None) -> tuple[pafs.FileSystem, str, bool]:
    if filesystem is not None:
        return filesystem, uri.rstrip("/"), isinstance(filesystem, pafs.LocalFileSystem)
    if "://" not in uri:
        return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(uri)), True
    try:
        fs, path = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ResultsError(
            f"results location {uri!r} is not a usable pyarrow filesystem URI ({exc}); use a local "
            "path or a URI such as s3://bucket/prefix"
        ) from exc
    return fs, path.rstrip("/"), isinstance(fs, pafs.LocalFileSystem)


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
        self.uri = str(uri)
        self._given_fs = filesystem
        self.fs, self.root, self.local = _resolve(self.uri, filesystem)

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
        if not trial_id or "/" in trial_id or trial_id.startswith("."):
            raise ResultsError(f"trial_id={trial_id!r} cannot name a results file")
        unknown = sorted(set(tables) - set(SCHEMAS))
        if unknown:
            raise ResultsError(f"commit of {trial_id}: unknown tables {unknown}; allowed {TABLES}")
        if "trials" not in tables:
            raise ResultsError(f"commit of {trial_id}: the 'trials' table is required")
        checked = {name: conform(name, tables[name]) for name in TABLES if name in tables}
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
        staged: list[tuple[str, str]] = []
        suffix = uuid.uuid4().hex[:12]
        try:
            for name, table in checked.items():  # TABLES order: trials last
                tmp_dir = f"{self.root}/{name}/.tmp"
                self.fs.create_dir(tmp_dir, recursive=True)
                tmp = f"{tmp_dir}/{trial_id}.{suffix}.parquet"
                pq.write_table(table, tmp, filesystem=self.fs)
                staged.append((tmp, self.path(name, trial_id)))
            for tmp, final in staged:
                self.fs.move(tmp, final)
        except BaseException:
            for tmp, _ in staged:
                with suppress(FileNotFoundError, OSError):
                    self.fs.delete_file(tmp)
            raise

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

    def committed_ids(self) -> list[str]:
        """Ids of committed trials (completed or failed)."""
        return committed_ids(self.fs, self.root)

    def statuses(self) -> dict[str, str]:
        """``trial_id -> status`` of committed trials."""
        return read_statuses(self.fs, self.root)

    def failed_ids(self) -> list[str]:
        """Ids of committed trials whose status is ``failed`` (resume reruns them)."""
        return sorted(t for t, s in self.statuses().items() if s == "failed")

    def completed_ids(self) -> list[str]:
        """Ids of committed trials whose status is ``completed``."""
        return sorted(t for t, s in self.statuses().items() if s == "completed")

    def scan(self, table: str) -> pl.LazyFrame:
        """The committed rows of ``table`` as a lazy polars frame (fixed schema, any number)."""
        return scan_table(self.fs, self.root, table, local=self.local)

    @contextmanager
    def lock(self) -> Iterator[RunLock]:
        """Hold the directory's run lock; a second live holder gets a :class:`ResultsError`.

        Once the lock is held no other run can be committing here, so staged files left in
        ``<table>/.tmp/`` by a killed run are deleted on entry.
        """
        with RunLock(self.fs, self.root, self.local).held() as held:
            self.cleanup_tmp()
            yield held
