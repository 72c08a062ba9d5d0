"""Clean stop on Ctrl+C: Tune stops its trials, the lock is released, the resume command printed.

Tune's own SIGINT handler is replaced (``TUNE_DISABLE_SIGINT_HANDLER=1``) by :func:`catch_sigint`,
which only sets a flag; :class:`StopOnInterrupt`, a Tune stopper, reads it at every step of the
Tune loop and stops the experiment. Trials in flight are lost (nothing half-written is ever
committed); a second Ctrl+C raises ``KeyboardInterrupt`` at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune import Stopper

from raybench.errors import RaybenchError

_INTERRUPTED = threading.Event()


class RunInterrupted(RaybenchError):
    """The run was stopped by SIGINT; committed trials are kept and a rerun resumes."""

    exit_code = 130


class StopOnInterrupt(Stopper):
    """Tune stopper that ends the whole experiment once SIGINT was received."""

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return _INTERRUPTED.is_set()

    def stop_all(self) -> bool:
        return _INTERRUPTED.is_set()


def interrupted() -> bool:
    """True once SIGINT was received during :func:`catch_sigint`."""
    return _INTERRUPTED.is_set()


def request_stop() -> None:
    """Ask the running plan to stop as on Ctrl+C (used by tests and embedding applications)."""
    _INTERRUPTED.set()


@contextmanager
def catch_sigint() -> Iterator[None]:
    """Within the block, the first SIGINT sets the stop flag; the second interrupts at once."""
    _INTERRUPTED.clear()
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if on_main else None

    def handler(signum: int, frame: Any) -> None:
        if _INTERRUPTED.is_set():
            raise KeyboardInterrupt
        _INTERRUPTED.set()

    if on_main:
        signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        if on_main:
            signal.signal(signal.SIGINT, previous)
