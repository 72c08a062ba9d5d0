"""The worker side: what one trial runs, under either executor.

:func:`run_committed` runs the trial function, checks that the result is finite, commits the
tables to the store from the worker and returns; anything that goes wrong raises
:class:`~raybench.runner.failures.TrialFailure`, so that the executor retries the trial as the
suite says. The default executor (:mod:`raybench.runner.pool`) calls it in long-lived actors;
with ``executor="tune"``, :func:`make_trainable` ships the stage's specs, cohorts, store and
trial function to the object store **once** (``tune.with_parameters``) and :func:`run_one` looks
each trial's spec up by the ``trial_id`` of its Tune config.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray import tune
from ray.tune.execution.placement_groups import (
    PlacementGroupFactory,
    resource_dict_to_pg_factory,
)

from raybench.data.cohort import Cohort
from raybench.errors import TrialError
from raybench.plan.spec import TrialSpec
from raybench.runner.failures import wrap
from raybench.runner.options import TrialFn
from raybench.runner.resources import override_column
from raybench.runner.tracking import trial_run


@dataclass
class WorkerContext:
    """What the runner gives a trial function besides its spec and cohort.

    ``device`` is ``"cuda:0"`` when the trial was given a GPU and torch sees one, else ``"cpu"``;
    ``num_threads`` the CPUs reserved for the trial; ``on_epoch`` logs one ``epochs`` row (to W&B)
    or is None; ``attempt`` counts from 1; ``node`` is the hostname and ``node_id`` Ray's node id.
    """

    cache_dir: Path | None
    device: str
    num_threads: int
    on_epoch: Any
    attempt: int
    node: str
    node_id: str
    started_at: float = field(default_factory=time.time)
    store: Any = None  # the ResultStore: kept explanation maps are written through it


@ray.remote(num_cpus=0)
class AttemptCounter:
    """Counts the attempts of each trial across workers and nodes (for the ``attempts`` column)."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def next(self, trial_id: str) -> int:
        self._counts[trial_id] = self._counts.get(trial_id, 0) + 1
        return self._counts[trial_id]

    def get(self, trial_id: str) -> int:
        return self._counts.get(trial_id, 0)


@dataclass(frozen=True)
class Payload:
    """Everything a stage's trials share; shipped once through the object store."""

    specs: Mapping[str, TrialSpec]
    cohorts: Mapping[str, Cohort]
    store: Any
    trial_fn: TrialFn
    cache_dir: Path | None
    wandb_dir: Path | None
    counter: Any = None  # the AttemptCounter actor (Tune executor only)


def _device(spec: TrialSpec) -> str:
    if spec.resources.gpu <= 0:
        return "cpu"
    try:
        import torch

        return "cuda:0" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def check_tables(trial_id: str, tables: Mapping[str, pa.Table]) -> None:
    """Refuse a result without its ``trials`` row or with a non-finite ``val_score``."""
    if "trials" not in tables or tables["trials"].num_rows != 1:
        raise TrialError(
            f"trial {trial_id}: the trial function returned tables {sorted(tables)} without "
            "exactly one 'trials' row; it must return trials, predictions, epochs and splits"
        )
    trials = tables["trials"]
    if "val_score" in trials.column_names:
        score = trials.column("val_score")[0].as_py()
        if score is not None and not math.isfinite(score):
            raise TrialError(f"trial {trial_id}: non-finite val_score {score}")


def with_override(spec: TrialSpec, tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    """``tables`` with the run's resource override (``--gpus``) in the ``trials`` row, if any."""
    out = dict(tables)
    value = override_column(spec)
    trials = out["trials"]
    if value is not None and "resources_override" in trials.column_names:
        index = trials.column_names.index("resources_override")
        column = pa.array([value], type=trials.schema.field(index).type)
        out["trials"] = trials.set_column(index, trials.schema.field(index), column)
    return out


def run_committed(spec: TrialSpec, payload: Payload, attempt: int) -> str:
    """Run, check and commit one trial in this worker; return the node id it ran on.

    Shared by both executors (the Tune trainable :func:`run_one` and the plain Ray
    :class:`~raybench.runner.pool.TrialWorker`). Any error is raised as a
    :class:`~raybench.runner.failures.TrialFailure`, which the executor retries.
    """
    try:
        with trial_run(spec, payload.wandb_dir) as on_epoch:
            ctx = WorkerContext(
                cache_dir=payload.cache_dir,
                device=_device(spec),
                num_threads=max(1, int(spec.resources.cpu)),
                on_epoch=on_epoch,
                attempt=attempt,
                node=socket.gethostname(),
                node_id=ray.get_runtime_context().get_node_id(),
                store=payload.store,
            )
            tables = payload.trial_fn(spec, payload.cohorts[spec.dataset], ctx)
            check_tables(spec.trial_id, tables)
            tables = with_override(spec, tables)
            if on_epoch is not None:  # W&B summary: best epoch, val score, test metrics
                on_epoch.log_result(tables)
        payload.store.commit(spec.trial_id, tables)
    except Exception as exc:
        raise wrap(exc) from None
    return ctx.node_id


def run_one(config: dict[str, Any], payload: Payload) -> None:
    """The Tune function trainable: count the attempt, run and commit the trial, report."""
    trial_id = config["trial_id"]
    try:
        attempt = int(ray.get(payload.counter.next.remote(trial_id), timeout=60))
    except Exception:  # the count is provenance; never fail a trial because of it
        attempt = 0
    node_id = run_committed(payload.specs[trial_id], payload, attempt)
    tune.report({"committed": 1, "attempt": attempt, "pid": os.getpid(), "node_id": node_id})


class PerTrialResources:
    """Tune resource callable for a stage whose trials ask for different resources."""

    def __init__(self, by_trial: Mapping[str, Mapping[str, float]]) -> None:
        self.by_trial = {k: dict(v) for k, v in by_trial.items()}

    def __call__(self, config: dict[str, Any]) -> PlacementGroupFactory:
        return resource_dict_to_pg_factory(dict(self.by_trial[config["trial_id"]]))


def make_trainable(payload: Payload, resources: Mapping[str, float] | PerTrialResources) -> Any:
    """The Tune trainable of a stage: :func:`run_one` with ``payload`` and per-trial resources."""
    spec = resources if isinstance(resources, PerTrialResources) else dict(resources)
    return tune.with_resources(tune.with_parameters(run_one, payload=payload), spec)
