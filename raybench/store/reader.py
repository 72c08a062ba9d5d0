"""Reading a results directory: committed trials, their tables, and the run lock.

A trial is *committed* when ``trials/<trial_id>.parquet`` exists (see :mod:`raybench.store.writer`);
every reader here considers committed trials only, so a trial cut off mid-commit never appears.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import polars as pl
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from raybench.errors import ResultsError
from raybench.store.schemas import SCHEMAS, empty_table

__all__ = ["RunLock", "committed_ids", "read_statuses", "scan_table"]

LOCK_NAME = ".lock"


def _list_parquet(fs: pafs.FileSystem, folder: str) -> list[pafs.FileInfo]:
    selector = pafs.FileSelector(folder, allow_not_found=True, recursive=False)
    return [
        info
        for info in fs.get_file_info(selector)
        if info.type == pafs.FileType.File and info.base_name.endswith(".parquet")
    ]


def committed_ids(fs: pafs.FileSystem, root: str) -> list[str]:
    """Ids of the committed trials (completed or failed), sorted."""
    files = _list_parquet(fs, f"{root}/trials")
    return sorted(info.base_name[: -len(".parquet")] for info in files)


def read_statuses(fs: pafs.FileSystem, root: str) -> dict[str, str]:
    """``trial_id -> status`` of every committed trial, read from the ``trials`` files."""
    out: dict[str, str] = {}
    for info in _list_parquet(fs, f"{root}/trials"):
        try:
            table = pq.read_table(info.path, filesystem=fs, columns=["trial_id", "status"])
        except Exception as exc:  # pyarrow raises several types for a damaged file
            raise ResultsError(
                f"results file {info.path!r} is unreadable ({exc}); delete it to rerun that trial"
            ) from exc
        for trial_id, status in zip(
            table.column("trial_id").to_pylist(), table.column("status").to_pylist(), strict=True
        ):
            out[str(trial_id)] = str(status)
    return out


def scan_table(fs: pafs.FileSystem, root: str, table: str, *, local: bool) -> pl.LazyFrame:
    """A lazy polars frame over the committed trials' files of ``table``.

    Files of trials whose ``trials`` file does not exist (a commit cut off before its end) are
    left out. Local directories are scanned by polars natively; other filesystems through a
    pyarrow dataset.
    """
    if table not in SCHEMAS:
        raise ResultsError(f"unknown results table {table!r}; tables are {list(SCHEMAS)}")
    committed = set(committed_ids(fs, root))
    paths = sorted(
        info.path
        for info in _list_parquet(fs, f"{root}/{table}")
        if info.base_name[: -len(".parquet")] in committed
    )
    if not paths:
        return pl.from_arrow(empty_table(table)).lazy()  # type: ignore[union-attr]
    if local:
        return pl.scan_parquet(paths)
    dataset = ds.dataset(paths, schema=SCHEMAS[table], format="parquet", filesystem=fs)
    return pl.scan_pyarrow_dataset(dataset)


# --------------------------------------------------------------------------- lock


@dataclass
class RunLock:
    """The ``.lock`` file of a results directory: one live run at a time.

    The file holds the pid, hostname, start time and a random token of the holder. A second
    :meth:`acquire` is refused with a :class:`ResultsError` naming the holder, unless the holder is
    a dead process on this host (a run killed with SIGKILL), whose stale lock is taken over. On a
    local directory creation is exclusive (``O_EXCL``); on object stores, which have no exclusive
    create, the check-then-write leaves a small race that two runs started in the same second
    could both pass.
    """

    fs: pafs.FileSystem
    root: str
    local: bool
    token: str = ""

    @property
    def path(self) -> str:
        return f"{self.root}/{LOCK_NAME}"

    def acquire(self) -> None:
        """Take the lock or raise :class:`ResultsError`."""
        self.fs.create_dir(self.root, recursive=True)
        me = {
            "pid": os.getpid(),
            "hostname": socket.gethostname(),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "token": uuid.uuid4().hex,
        }
        for _ in range(3):
            if self._create(me):
                self.token = me["token"]
                return
            holder = self._read()
            if holder is not None and not _stale(holder):
                raise ResultsError(
                    f"results directory {self.root!r} is in use by another run (pid "
                    f"{holder.get('pid')} on host {holder.get('hostname')}, started "
                    f"{holder.get('started_at')}). Wait for it to finish, or pass another "
                    f"--results directory. If no such run is alive, delete {self.path!r}."
                )
            self._remove()  # stale lock of a dead process on this host (or unreadable): take it
        raise ResultsError(f"could not take the lock {self.path!r}; delete it and retry")

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
        if self.fs.get_file_info(self.path).type != pafs.FileType.NotFound:
            return False
        with self.fs.open_output_stream(self.path) as out:
            out.write(data)
        return True

    def _read(self) -> dict[str, Any] | None:
        try:
            with self.fs.open_input_stream(self.path) as stream:
                return json.loads(stream.read().decode() or "{}")
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _remove(self) -> None:
        with suppress(FileNotFoundError):
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
