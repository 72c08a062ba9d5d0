"""Storage faults: a read-only results directory or a full disk becomes a :class:`StorageError`.

The operating system reports these as ``OSError`` with an errno (pyarrow's filesystems keep it, or
at least write ``[Errno N]`` in the message). :func:`storage_errors` turns them into one message
that says what was being written, where, and what to do; any other ``OSError`` passes unchanged.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Iterator
from contextlib import contextmanager

from raybench.errors import StorageError

__all__ = ["fault_errno", "storage_errors"]

_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}
_IN_MESSAGE = re.compile(r"\[Errno (\d+)\]")


def fault_errno(exc: BaseException) -> int | None:
    """The errno of ``exc`` when it is a full-disk or read-only fault, else None."""
    if not isinstance(exc, OSError):
        return None
    code = exc.errno
    if code is None:
        found = _IN_MESSAGE.search(str(exc))
        code = int(found.group(1)) if found else None
    return code if code in _FULL | _READ_ONLY else None


@contextmanager
def storage_errors(what: str, where: str) -> Iterator[None]:
    """Raise :class:`StorageError` naming ``what`` and ``where`` for a full or read-only store."""
    try:
        yield
    except OSError as exc:
        code = fault_errno(exc)
        if code is None:
            raise
        if code in _FULL:
            problem = "the disk (or quota) is full"
            fix = "free space there, or pass another --results directory, then run again"
        else:
            problem = "the location is read-only or not writable by this user"
            fix = "make it writable, or pass another --results directory"
        raise StorageError(
            f"cannot write {what} at {where}: {problem} ({errno.errorcode.get(code, code)}). "
            f"Nothing half-written was kept; {fix} (completed trials are kept, the rest resume)."
        ) from exc
