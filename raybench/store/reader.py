"""Reading a results directory: committed trials, their tables, and the run lock.

Which trials are committed is decided by the one scanner of the results contract,
:func:`raybench_analysis.contract.inventory`: a trial is committed when its
``trials/<trial_id>.parquet`` exists (see :mod:`raybench.store.writer`) and every file of the trial
passes the integrity check (readable, the contract's schema, the row counts recorded at commit).
Every reader here considers committed trials only, so a trial cut off mid-commit or damaged
afterwards never appears; a damaged one is redone by the next run.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs as pafs
from raybench_analysis.contract import Inventory, inventory, polars_schema, scan_committed
from raybench_analysis.vocabulary import PREDICT_STAGE

from raybench.errors import ResultsError
from raybench.store.faults import storage_errors
from raybench.store.objectlock import ConditionalPut, lock_primitive
from raybench.store.schemas import SCHEMAS, empty_table

__all__ = [
    "RunLock",
    "committed_ids",
    "predict_entry_ids",
    "read_statuses",
    "scan_inventory",
    "scan_table",
]

LOCK_NAME = ".lock"


def scan_inventory(fs: pafs.FileSystem, root: str) -> Inventory:
    """What the directory holds: committed (verified) trials, damaged ones, their files."""
    return inventory(fs, root)


def committed_ids(fs: pafs.FileSystem, root: str) -> list[str]:
    """Ids of the committed, verified trials (completed or failed), sorted."""
    return list(scan_inventory(fs, root).committed)


def read_statuses(fs: pafs.FileSystem, root: str) -> dict[str, str]:
    """``trial_id -> status`` of every committed, verified trial."""
    return scan_inventory(fs, root).statuses


def scan_table(
    fs: pafs.FileSystem, root: str, table: str, *, local: bool, inv: Inventory | None = None
) -> pl.LazyFrame:
    """A lazy polars frame over the committed trials' files of ``table``.

    Files of trials that are not committed (a commit cut off before its end, or damaged) are left
    out. Local directories are scanned by polars natively; other filesystems through a pyarrow
    dataset. ``inv``: an inventory already taken, to avoid scanning twice.
    """
    if table not in SCHEMAS:
        raise ResultsError(f"unknown results table {table!r}; tables are {list(SCHEMAS)}")
    inv = inv or scan_inventory(fs, root)
    if not inv.files[table]:
        return pl.from_arrow(empty_table(table)).lazy()  # type: ignore[union-attr]
    return scan_committed(inv, table, lambda paths: _scan_files(fs, table, paths, local=local))


def _scan_files(fs: pafs.FileSystem, table: str, paths: list[str], *, local: bool) -> pl.LazyFrame:
    if local:  # by the contract's schema: files written before a column existed read it as null
        return pl.scan_parquet(
            paths, schema=polars_schema(table), missing_columns="insert", extra_columns="ignore"
        )
    dataset = ds.dataset(paths, schema=SCHEMAS[table], format="parquet", filesystem=fs)
    return pl.scan_pyarrow_dataset(dataset)


def predict_entry_ids(
    fs: pafs.FileSystem, root: str, *, local: bool, inv: Inventory | None = None
) -> set[str]:
    """Ids of the committed ``predict`` entries (saved models evaluated on another dataset).

    They are derived from refit trials, never planned: ``status`` counts them apart and the
    suite guard does not take them for another suite's trials.
    """
    inv = inv or scan_inventory(fs, root)
    if not inv.files["trials"]:
        return set()
    frame = (
        scan_table(fs, root, "trials", local=local, inv=inv)
        .filter(pl.col("stage") == PREDICT_STAGE)
        .select("trial_id")
        .collect()
    )
    return set(frame["trial_id"].to_list())


# --------------------------------------------------------------------------- lock


@dataclass
class RunLock:
    """The ``.lock`` file of a results directory: one live run at a time.

    The file holds the pid, hostname, start time and a random token of the holder. A second
    :meth:`acquire` is refused with a :class:`ResultsError` naming the holder, unless the holder is
    a dead process on this host (a run killed with SIGKILL), whose stale lock is taken over. On a
    local directory creation is exclusive (``O_EXCL``); on ``s3://`` it is a conditional put
    (``If-None-Match``), the takeover of a stale lock one with ``If-Match``; on other object
    stores, which offer pyarrow no precondition, a put verified after a pause
    (:mod:`raybench.store.objectlock`, docs/object-storage.md).
    """

    fs: pafs.FileSystem
    root: str
    local: bool
    token: str = ""
    uri: str = ""  # the results URI (its query may name the endpoint of a conditional put)

    @property
    def path(self) -> str:
        return f"{self.root}/{LOCK_NAME}"

    def acquire(self) -> None:
        """Take the lock or raise :class:`ResultsError` (:class:`StorageError` when unwritable)."""
        with storage_errors("the results directory", self.root):
            self.fs.create_dir(self.root, recursive=True)
        me = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex,
        }
        for _ in range(3):
            with storage_errors("the run lock", self.path):
                if self._create(me):
                    self.token = me["token"]
                    return
            holder = self._settled()
            if holder == {}:
                raise ResultsError(self._unreadable_message())
            if holder is not None and not _stale(holder):
                raise ResultsError(
                    f"results directory {self.root!r} is in use by another run (pid "
                    f"{holder.get('pid')} on host {holder.get('hostname')}, started "
                    f"{holder.get('started_at')}). Wait for it to finish, or pass another "
                    f"--results directory. If no such run is alive, delete {self.path!r}."
                )
            # stale lock of a dead process on this host: take it over
            primitive = None if self.local else lock_primitive(self.fs, self.uri)
            if isinstance(primitive, ConditionalPut):
                with storage_errors("the run lock", self.path):
                    taken = primitive.take_over(
                        self.path, json.dumps(me).encode(), holder.get("token") if holder else None
                    )
                if taken:
                    self.token = me["token"]
                    return
                continue  # another run changed the lock meanwhile: look again
            self._remove()
        raise ResultsError(f"could not take the lock {self.path!r}; delete it and retry")

    def holder(self) -> dict[str, Any] | None:
        """Who holds the lock (pid, hostname, started_at, token); ``{}`` when the file is
        unreadable (empty, not JSON, not a raybench lock); None when nobody holds it."""
        return self._read()

    def _settled(self, wait_s: float = 1.0) -> dict[str, Any] | None:
        """The holder, re-read for up to ``wait_s`` while the file is unreadable: a run that has
        just created it may not have written it yet."""
        deadline = time.monotonic() + wait_s
        holder = self._read()
        while holder == {} and time.monotonic() < deadline:
            time.sleep(0.1)
            holder = self._read()
        return holder

    def _unreadable_message(self) -> str:
        try:
            with self.fs.open_input_stream(self.path) as stream:
                raw = stream.read(60)
        except OSError:
            raw = b""
        found = f"its content starts {raw!r}" if raw else "it is empty"
        return (
            f"the lock file {self.path!r} is unreadable ({found}; a raybench run writes its pid, "
            "host and start time there). It may be left by a crash or by another program. If no "
            f"raybench run is using {self.root!r}, delete {self.path!r} and run again."
        )

    def release(self) -> None:
        """Remove the lock if this object still holds it."""
        holder = self._read()
        if holder is not None and holder.get("token") == self.token:
            self._remove()
        self.token = ""

    def _create(self, content: dict[str, Any]) -> bool:
        data = json.dumps(content).encode()
        if self.local:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            return True
        return lock_primitive(self.fs, self.uri).create(self.path, data)

    def _read(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.path) as stream:
                content = json.loads(stream.read().decode() or "{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}
        if not isinstance(content, dict) or not {"pid", "hostname"} <= set(content):
            return {}
        return content

    def _remove(self) -> None:
        with suppress(FileNotFoundError), storage_errors("the run lock", self.path):
            self.fs.delete_file(self.path)

    @contextmanager
    def held(self) -> Iterator[RunLock]:
        """Context manager: acquire on entry, release on exit (also on errors and Ctrl-C)."""
        self.acquire()
        try:
            yield self
        finally:
            self.release()


def _stale(holder: dict[str, Any]) -> bool:
    """True when the lock's process is known dead: same host and no such pid."""
    if not holder:
        return False  # unreadable or being written: assume alive, the user decides
    if holder.get("hostname") != socket.gethostname():
        return False
    try:
        pid = int(holder.get("pid", -1))
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
