"""Progress of a run as events, and a rich display of them.

The driver emits plain dict events (``run_start``, ``stage_start``, ``trial_start``,
``trial_retry``, ``trial_done``, ``trial_failed``, ``trials_waiting``, ``stage_end``,
``run_end``) through ``RunOptions.on_event``; :class:`TuneEvents` turns Tune's callbacks into
them. :class:`RichProgress` shows one bar per stage with done/running/failed counts, the trials
waiting for resources (CPUs, GPUs or nodes still to come) and an ETA.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from raybench.runner.options import EventFn


class TuneEvents(Callback):
    """Tune callback forwarding trial starts, completions and errors to an event function."""

    def __init__(self, emit: EventFn, stage: str) -> None:
        self._emit = emit
        self._stage = stage
        self._waiting = 0

    def __getstate__(self) -> dict[str, Any]:  # Tune may pickle its run config: drop the sink
        return {"_emit": _noop, "_stage": self._stage, "_waiting": 0}

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        """Emit ``trials_waiting`` when the number of trials waiting for resources changes."""
        waiting = sum(getattr(t, "status", None) == "PENDING" for t in trials)
        if waiting != self._waiting:
            self._waiting = waiting
            self._emit({"type": "trials_waiting", "stage": self._stage, "waiting": waiting})

    def _send(self, kind: str, trial: Any, **extra: Any) -> None:
        trial_id = (getattr(trial, "config", None) or {}).get("trial_id")
        self._emit({"type": kind, "stage": self._stage, "trial_id": trial_id, **extra})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send("trial_start", trial)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send("trial_done", trial)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send("trial_retry", trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._send("trial_error", trial)


def _noop(event: dict[str, Any]) -> None:
    return None


class RichProgress:
    """A live display: one line per stage (bar, done/total, running, failed, waiting, ETA)."""

    def __init__(self, console: Console | None = None) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.fields[stage]:<7}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("running {task.fields[running]}  [red]failed {task.fields[failed]}"),
            TextColumn("{task.fields[waiting]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._tasks: dict[str, TaskID] = {}
        self._running: dict[str, set[str]] = {}
        self._failed: dict[str, int] = {}

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, event: dict[str, Any]) -> None:
        kind, stage = event.get("type"), event.get("stage")
        if kind == "stage_start" and stage is not None:
            total, skipped = int(event.get("total", 0)), int(event.get("skipped", 0))
            self._running[stage] = set()
            self._failed[stage] = 0
            self._tasks[stage] = self.progress.add_task(
                stage, total=total, completed=skipped, stage=stage, running=0, failed=0, waiting=""
            )
            return
        task = self._tasks.get(stage) if stage is not None else None
        if task is None:
            return
        running, trial = self._running[stage], event.get("trial_id")
        if kind == "trial_start" and trial:
            running.add(trial)
        elif kind in ("trial_retry", "trial_error") and trial:
            running.discard(trial)
        elif kind == "trial_done" and trial:
            running.discard(trial)
            self.progress.advance(task)
        elif kind == "trial_failed":
            self._failed[stage] += 1
            self.progress.advance(task)
        elif kind == "trials_waiting":
            n = int(event.get("waiting", 0))
            self.progress.update(task, waiting=f"[yellow]{n} waiting for resources" if n else "")
        self.progress.update(task, running=len(running), failed=self._failed[stage])
