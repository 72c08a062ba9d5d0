"""Failures as data: the error of a trial that exhausted its retries becomes a ``trials`` row.

A worker wraps whatever its trial raised in :class:`TrialFailure`, which carries the first line
of the original error and its formatted traceback across Ray (it pickles), so the driver can record
exactly what went wrong even though Tune hands it a ``RayTaskError``. A worker process or node
that died gives a ``RayActorError`` instead; :func:`describe_error` reads both.
"""

from __future__ import annotations

import re
import traceback as tb_module

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class TrialFailure(Exception):
    """A trial attempt failed; ``first_line`` and ``traceback`` describe the original error."""

    def __init__(self, first_line: str, traceback: str) -> None:
        super().__init__(first_line)
        self.first_line = first_line
        self.traceback = traceback

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (TrialFailure, (self.first_line, self.traceback))


def first_line(exc: BaseException) -> str:
    """``"ValueError: message"`` with only the first line of the message."""
    text = str(exc).strip().splitlines()
    msg = text[0] if text else ""
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else name


def wrap(exc: BaseException) -> TrialFailure:
    """The :class:`TrialFailure` for an exception being handled (call inside ``except``)."""
    return TrialFailure(first_line(exc), tb_module.format_exc())


def describe_error(error: BaseException | None) -> tuple[str, str]:
    """(first line, traceback) of the error Tune reports for a trial.

    Looks through Ray's wrappers for a :class:`TrialFailure`; otherwise (a dead worker or node)
    uses the wrapper's own message with Ray's colour codes removed.
    """
    if error is None:
        return "unknown error", ""
    seen: set[int] = set()
    cur: BaseException | None = error
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, TrialFailure):
            return cur.first_line, cur.traceback
        cause = getattr(cur, "cause", None)
        cur = cause if isinstance(cause, BaseException) else (cur.__cause__ or cur.__context__)
    text = _ANSI.sub("", str(error)).strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    name = type(error).__name__
    if "ActorDied" in name or "ActorError" in name or "WorkerCrashed" in name or "NodeDied" in name:
        head = f"{name}: the trial's worker process or node died"
    else:
        head = f"{name}: {lines[-1] if lines else ''}".rstrip(": ")
    return head, text
