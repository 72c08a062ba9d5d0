"""Typed settings and results of a run: :class:`RunOptions` in, :class:`RunSummary` out."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from raybench.data.cohort import Cohort
from raybench.plan.spec import TrialSpec

#: What a worker runs for one trial: ``(spec, cohort, ctx) -> {table name: pyarrow Table}``, the
#: trial's tables ready to commit (``trials`` included). The default runs
#: :func:`raybench.training.run_trial` and builds the ``trials`` row with the store's
#: ``trial_row``; tests inject small functions here to exercise scheduling, failures and resume.
TrialFn = Callable[[TrialSpec, Cohort, Any], Mapping[str, pa.Table]]

#: A run that committed at least this many trials ends by compacting its results (1,000 per-trial
#: files per table cost readers about a second; the compaction about as much, once): docs/scale.md.
COMPACT_AFTER = 1_000

#: Called on the driver for every progress event (see :mod:`raybench.runner.progress`).
EventFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunOptions:
    """How to run a plan.

    ``address``: join an existing Ray cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``);
    ``None`` starts a private local Ray with ``num_cpus`` CPUs (all of them when ``None``), all its
    services and the dashboard on 127.0.0.1 (:func:`raybench.runner.cluster.init_ray`).
    ``max_concurrent``: trials running at once per stage (``None``: as many as the resources
    allow). ``max_retries``: retries of a failed trial before it is recorded as failed
    (``None``: the suite's ``resources.max_retries``, read from each trial's config).
    ``gpus``: GPUs per trial overriding every trial's ``resources.gpu`` (``0``: a CPU-only
    try; recorded in the trials table's ``resources_override``; ``None``: the suite's).
    ``scratch_dir``: Ray Tune's own folders (``None``: the results directory's hidden
    ``.scratch/``, emptied when a run starts and removed when it ends; never read by analysis).
    ``cache_dir``: the cache of decoded volumes (``None``: each node's own,
    :func:`raybench.training.cache.node_cache_dir`).
    ``wandb_dir``: where W&B writes its offline runs (``None``: W&B off).
    ``resume_command``: the exact shell command that resumes this run, printed on interruption.
    ``files``: files written at the root of the results directory once its lock is held (the CLI
    writes ``suite.yaml`` and ``plan.json`` this way, so a refused second run overwrites nothing).
    ``executor``: ``"pool"`` runs a stage's trials on long-lived plain Ray actors, with an overhead
    per trial that stays flat with the stage's size (:mod:`raybench.runner.pool`); ``"tune"``
    runs each stage as one Ray Tune run (its cost per trial grows with the stage: docs/scale.md).
    ``compact_after``: when this run committed at least that many trials, it ends by merging the
    per-trial files into batch files (``raybench compact``, still under the run's lock), so that
    ``status``, ``analyze`` and ``report`` of a large run read a few files (docs/scale.md);
    ``0`` never compacts.
    """

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    gpus: float | None = None
    include_dashboard: bool = True
    max_concurrent: int | None = None
    max_retries: int | None = None
    scratch_dir: Path | None = None
    cache_dir: Path | None = None
    wandb_dir: Path | None = None
    resume_command: str | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)
    executor: Literal["pool", "tune"] = "pool"
    compact_after: int = COMPACT_AFTER
    trial_fn: TrialFn | None = None
    on_event: EventFn | None = field(default=None, compare=False)
    ray_init_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSummary:
    """What a run did: trial ids by outcome, and where the results are.

    ``skipped`` are trials already committed as completed before this run started (resume);
    ``failed`` maps each failed trial id to the first line of its error.
    """

    results: str
    completed: tuple[str, ...]
    failed: dict[str, str]
    skipped: tuple[str, ...]
    seconds: float
    dashboard_url: str | None = None

    @property
    def ok(self) -> bool:
        """True when no trial failed (the CLI exits 0)."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able summary (counts and ids)."""
        return {
            "results": self.results,
            "completed": len(self.completed),
            "failed": len(self.failed),
            "skipped": len(self.skipped),
            "seconds": round(self.seconds, 3),
            "failed_trials": dict(self.failed),
            "dashboard_url": self.dashboard_url,
        }
