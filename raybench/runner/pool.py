"""The default executor: a stage's trials as calls on a pool of long-lived Ray actors.

Ray Tune keeps a ``Trial`` object, its results and its events for every trial of a run and
walks them at every step of its loop, so its cost per trial grows with the size of the stage
(39 ms per trial at 1,000 trivial trials, 100 ms at 4,000 on 2 cores, docs/scale.md). A stage
whose trials need no Tune feature (no search algorithm, no scheduler: a grid's search trials and
every refit) runs here instead, with the same contract:

- **Resources**: one :class:`TrialWorker` actor per concurrent trial, created with the trial's
  resources (CPUs, GPU share, memory, custom), one node each, as a Tune trial is placed. As many
  actors as fit the alive nodes (at least one per resource shape, so an autoscaler sees the
  demand), at most ``max_concurrent``. An actor that cannot be placed yet is a trial *waiting for
  resources* (the ``trials_waiting`` event).
- **Reuse**: an actor runs one trial after another (Tune's ``reuse_actors``) and survives the
  stage, so the next stage starts without starting processes. The stage's cohorts and store
  travel once through the object store (an actor keeps the current stage's payload only); each
  call carries its trial's spec (a few KB), so a stage's start does not grow with its size.
- **Retries**: a trial that raises, or whose worker dies (the actor is replaced), is run again up
  to its ``resources.max_retries`` (or ``--max-retries``); the driver counts the attempts.
- **Resume**: as with Tune, a trial is done once the worker committed it to the store.
- **Visibility**: each call is a Ray task named after its stage on the dashboard, run by a
  ``TrialWorker`` actor whose log (the dashboard's actor logs) has one line per trial: stage,
  trial id, attempt. Not one task name per trial: Ray keeps state and metrics per distinct task
  name, and a name per trial made the driver grow by about 15 KB per trial (3.4 KB with one name
  per stage; docs/scale.md).

The driver's work per trial is constant (one ``ray.wait`` over the calls in flight, one call),
so the overhead per trial stays flat with the stage's size.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from raybench.errors import RaybenchError
from raybench.plan.spec import TrialSpec
from raybench.runner.failures import describe_error
from raybench.runner.interrupt import interrupted
from raybench.runner.options import EventFn
from raybench.runner.resources import node_shapes, ray_name
from raybench.runner.trainable import Payload, run_committed

#: A trial's resources as a hashable key: sorted ``(name, amount)`` pairs (suite names).
Shape = tuple[tuple[str, float], ...]


@ray.remote(num_cpus=0)
class TrialWorker:
    """Runs trials one after another in one worker process (resources set at creation)."""

    def __init__(self) -> None:
        self._payload: Payload | None = None

    def ready(self, box: list[Any]) -> bool:
        """Take the stage's payload (``box = [ObjectRef]``: boxed, so that Ray does not resolve
        it for the call) and return once the actor is placed and started."""
        self._payload = ray.get(box[0])
        return True

    def run(self, spec: TrialSpec, attempt: int) -> str:
        """Run and commit the trial ``spec`` of the current stage; return the node id. The
        stage's shared payload came with :meth:`ready`, the actor's previous call."""
        assert self._payload is not None, "ready() first"
        print(f"{spec.stage}:{spec.trial_id} attempt {attempt}", flush=True)  # the actor's log
        return run_committed(spec, self._payload, attempt)


def shape_of(resources: Mapping[str, float]) -> Shape:
    """The hashable key of a trial's resources."""
    return tuple(sorted((k, float(v)) for k, v in resources.items()))


def _actor_options(shape: Shape) -> dict[str, Any]:
    res = dict(shape)
    custom = {ray_name(k): v for k, v in res.items() if k not in ("cpu", "gpu", "memory")}
    options: dict[str, Any] = {
        "num_cpus": res.get("cpu", 0.0),
        "num_gpus": res.get("gpu", 0.0),
        "name": None,
        "max_restarts": 0,
        "max_task_retries": 0,
    }
    if res.get("memory"):
        options["memory"] = res["memory"]
    if custom:
        options["resources"] = custom
    return options


def capacity(shape: Shape, nodes: Sequence[Mapping[str, float]]) -> int:
    """How many trials of ``shape`` the ``nodes`` can hold at once (each on one node)."""
    need = {ray_name(k): v for k, v in shape if v > 0}
    if not need:
        return 1 << 30
    return sum(
        min(math.floor(node.get(k, 0.0) / v + 1e-9) for k, v in need.items()) for node in nodes
    )


@dataclass
class _Slot:
    actor: Any
    shape: Shape
    ready: bool = False
    busy: str | None = None  # the trial id it runs


@dataclass
class StageOutcome:
    """What the pool reports back for one stage: committed ids, and failures with their attempts."""

    completed: list[str] = field(default_factory=list)
    failed: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # id -> error, tb, tries


class TrialPool:
    """Long-lived :class:`TrialWorker` actors, kept across the stages of one run.

    ``max_concurrent`` caps the actors (None: as many as the alive nodes hold); call
    :meth:`close` at the end of the run (the driver does, in a ``finally``).
    """

    def __init__(self, max_concurrent: int | None = None) -> None:
        self.max_concurrent = max_concurrent
        self.slots: list[_Slot] = []

    def close(self) -> None:
        """Kill every actor of the pool."""
        for slot in self.slots:
            ray.kill(slot.actor)
        self.slots = []

    def _retire(self, slot: _Slot) -> None:
        ray.kill(slot.actor)
        self.slots.remove(slot)

    def _size(self, queues: Mapping[Shape, Sequence[str]]) -> dict[Shape, int]:
        """Actors wanted per shape: what fits the alive nodes, at least one, capped overall."""
        alive, _ = node_shapes()
        budget = self.max_concurrent if self.max_concurrent is not None else 1 << 30
        wanted: dict[Shape, int] = {}
        for shape, queue in sorted(queues.items(), key=lambda kv: -len(kv[1])):
            n = min(len(queue), max(1, capacity(shape, alive)), max(1, budget))
            wanted[shape] = n
            budget -= n
        return wanted

    def _staff(self, queues: Mapping[Shape, Sequence[str]]) -> None:
        """Keep the actors of the shapes this stage needs (up to the wanted number), create the
        missing ones, kill the others (they would hold resources the new ones need)."""
        wanted = self._size(queues)
        for slot in list(self.slots):
            if wanted.get(slot.shape, 0) > 0:
                wanted[slot.shape] -= 1
            else:
                self._retire(slot)
        for shape, n in wanted.items():
            for _ in range(n):
                self._add(shape)

    def _add(self, shape: Shape) -> _Slot:
        actor = TrialWorker.options(**_actor_options(shape)).remote()
        slot = _Slot(actor, shape)
        self.slots.append(slot)
        return slot

    def run_stage(
        self,
        stage: str,
        todo: Sequence[TrialSpec],
        payload: Payload,
        resources: Callable[[TrialSpec], Mapping[str, float]],
        retries: Callable[[TrialSpec], int],
        emit: EventFn,
    ) -> StageOutcome:
        """Run ``todo`` to the end (or until interrupted); failures are returned, not raised."""
        shapes = {spec.trial_id: shape_of(resources(spec)) for spec in todo}
        queues: dict[Shape, collections.deque[str]] = collections.defaultdict(collections.deque)
        for spec in todo:
            queues[shapes[spec.trial_id]].append(spec.trial_id)
        self._staff(queues)
        return _Stage(self, stage, payload, shapes, queues, retries, emit).run()


class _Stage:
    """The driver loop of one stage: one call in flight per actor, a queue per resource shape."""

    def __init__(
        self,
        pool: TrialPool,
        stage: str,
        payload: Payload,
        shapes: Mapping[str, Shape],
        queues: dict[Shape, collections.deque[str]],
        retries: Callable[[TrialSpec], int],
        emit: EventFn,
    ) -> None:
        self.pool, self.stage, self.specs, self.shapes = pool, stage, payload.specs, shapes
        self.queues, self.retries, self.emit = queues, retries, emit
        self.box = [ray.put(dataclasses.replace(payload, specs={}))]  # specs go with each call
        self.attempts: collections.Counter[str] = collections.Counter()
        self.calls: dict[Any, _Slot] = {}  # ObjectRef in flight -> the slot running it
        self.out = StageOutcome()
        self.replaced = 0

    def run(self) -> StageOutcome:
        for slot in self.pool.slots:
            slot.ready, slot.busy = False, None
            self.calls[slot.actor.ready.remote(self.box)] = slot
        waiting = -1
        while self.calls:
            if interrupted():
                self.pool.close()  # trials in flight are lost: nothing half-written is kept
                break
            pending = sum(not s.ready for s in self.pool.slots)
            if pending != waiting:
                waiting = pending
                self.emit({"type": "trials_waiting", "stage": self.stage, "waiting": pending})
            done, _ = ray.wait(list(self.calls), num_returns=1, timeout=0.5)
            for ref in done:
                self._settle(ref)
        return self.out

    def _settle(self, ref: Any) -> None:
        slot = self.calls.pop(ref)
        trial_id = slot.busy
        try:
            ray.get(ref)
        except RayActorError as exc:  # the worker process (or its node) died
            self.pool.slots.remove(slot)
            if trial_id is not None:
                self._failed(trial_id, exc)
            if any(self.queues.values()):
                self._replace(slot.shape, exc)
            return
        except RayError as exc:  # the trial raised (RayTaskError); the actor lives on
            if trial_id is not None:
                self._failed(trial_id, exc)
        else:
            if trial_id is not None:
                self.out.completed.append(trial_id)
                self.emit({"type": "trial_done", "stage": self.stage, "trial_id": trial_id})
        slot.ready = True
        self._dispatch(slot)

    def _replace(self, shape: Shape, exc: BaseException) -> None:
        self.replaced += 1
        if self.replaced > 10 * max(1, len(self.pool.slots)) + len(self.specs):
            raise RaybenchError(f"the trial workers keep dying: {describe_error(exc)[0]}")
        slot = self.pool._add(shape)
        self.calls[slot.actor.ready.remote(self.box)] = slot

    def _dispatch(self, slot: _Slot) -> None:
        queue = self.queues.get(slot.shape)
        slot.busy = None
        if not queue:
            if any(not s.ready for s in self.pool.slots):
                self.pool._retire(slot)  # free its resources for an actor still waiting
            return
        trial_id = queue.popleft()
        self.attempts[trial_id] += 1
        slot.busy = trial_id
        call = slot.actor.run.options(name=f"raybench:{self.stage}")  # bounded set of names
        self.calls[call.remote(self.specs[trial_id], self.attempts[trial_id])] = slot
        self.emit({"type": "trial_start", "stage": self.stage, "trial_id": trial_id})

    def _failed(self, trial_id: str, exc: BaseException) -> None:
        """Queue the trial again if it has retries left, else record it as failed."""
        spec = self.specs[trial_id]
        if self.attempts[trial_id] <= self.retries(spec) and not interrupted():
            self.queues[self.shapes[trial_id]].appendleft(trial_id)
            self.emit({"type": "trial_retry", "stage": self.stage, "trial_id": trial_id})
            return
        error, traceback = describe_error(exc)
        self.out.failed[trial_id] = (error, traceback, self.attempts[trial_id])
        self.emit({"type": "trial_error", "stage": self.stage, "trial_id": trial_id})
