"""The driver: run a compiled plan on Ray, stage after stage.

``run_plan`` takes the store's lock and, unless every trial is already completed (then Ray is
not started at all), starts or joins Ray, checks that the cluster can ever schedule each trial
(:mod:`raybench.runner.resources`), and for each stage in order: skips the trials already
committed as completed (resume; the store is scanned once per run, not per stage), resolves the
refits' search points from the committed search trials, runs the rest with the suite's resources
and retries, and records every trial that failed after its retries as a ``failed`` row. A stage
starts only when the previous one has finished, so each refit sees all its search trials.

Two executors run a stage (``RunOptions.executor``): the default, :mod:`raybench.runner.pool`,
runs the trials as calls on long-lived plain Ray actors kept across stages (flat overhead per
trial, no start-up after the first stage); ``"tune"`` runs the stage as one ``Tuner`` over
``{"trial_id": grid_search(ids)}`` with actor reuse. See docs/running.md and docs/scale.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from raybench.data.cohort import Cohort
from raybench.errors import RaybenchError, StorageError
from raybench.plan.search import is_template
from raybench.plan.spec import Plan, TrialSpec
from raybench.runner.cluster import ClusterInfo, init_ray
from raybench.runner.failures import describe_error
from raybench.runner.interrupt import RunInterrupted, StopOnInterrupt, catch_sigint, interrupted
from raybench.runner.options import EventFn, RunOptions, RunSummary
from raybench.runner.pool import TrialPool
from raybench.runner.progress import TuneEvents
from raybench.runner.records import failed_row
from raybench.runner.resources import override_gpus, schedulable_or_raise
from raybench.runner.search import (
    expand_refits,
    finished_templates,
    needs_search_runner,
    run_search_stage,
)
from raybench.runner.selection import resolve_refits
from raybench.runner.trainable import AttemptCounter, Payload, PerTrialResources, make_trainable

log = logging.getLogger(__name__)

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?\s*$", re.IGNORECASE)


def parse_memory(text: str) -> float:
    """Bytes in ``"4GB"``, ``"512MiB"``, ``"2G"`` or ``"1000000"``.

    >>> parse_memory("4GB"), parse_memory("1KiB")
    (4000000000.0, 1024.0)
    """
    m = _MEMORY.match(text)
    if not m:
        raise RaybenchError(
            f"resources.memory={text!r} is not a size; write e.g. '4GB', '512MiB' or bytes"
        )
    unit = (m.group(2) or "").upper().removesuffix("B")
    base = 1024 if unit.endswith("I") else 1000
    exponent = " KMGT".index(unit[:1]) if unit else 0
    return float(m.group(1)) * base**exponent


def trial_resources(spec: TrialSpec) -> dict[str, float]:
    """Tune resources of a trial from its config: cpu, gpu (fractions allowed), memory, custom."""
    res = spec.resources
    out: dict[str, float] = {"cpu": float(res.cpu), "gpu": float(res.gpu)}
    if res.memory:
        out["memory"] = parse_memory(res.memory)
    for name, amount in res.custom.items():
        out[str(name)] = float(amount)
    return out


def _retries(specs: Sequence[TrialSpec], options: RunOptions) -> int:
    if options.max_retries is not None:
        return options.max_retries
    return max(s.resources.max_retries for s in specs)


def _done_ids(plan: Plan, store: Any) -> set[str]:
    """The plan's trials a resume skips: committed and not failed, and the ``tpe`` templates
    whose search is finished (:func:`finished_templates`), so that a resumed run with nothing
    left to do starts no Ray, whatever its search algorithm."""
    statuses = store.statuses()
    done = {t for t, status in statuses.items() if status != "failed"}
    templates = [t for t in plan.trials if is_template(t)]
    if templates:
        done |= finished_templates(templates, statuses, store.read_file)
    return done


def _scores(store: Any, ids: set[str]) -> dict[str, float | None]:
    """val_score of the completed trials among ``ids``, read from the store's ``trials`` table."""
    if not ids:
        return {}
    import polars as pl

    frame = (
        store.scan("trials")
        .filter(pl.col("trial_id").is_in(sorted(ids)) & (pl.col("status") == "completed"))
        .select("trial_id", "val_score")
        .collect()
    )
    return dict(zip(frame["trial_id"].to_list(), frame["val_score"].to_list(), strict=True))


class _Run:
    """State of one ``run_plan`` call (kept out of the public function to keep it short).

    ``done`` is the set of completed trials, read from the store once when the run starts and
    kept up to date as trials complete, so a stage does not rescan the store.
    """

    def __init__(
        self,
        plan: Plan,
        cohorts: Mapping[str, Cohort],
        store: Any,
        opts: RunOptions,
        done: set[str],
    ):
        self.plan, self.cohorts, self.store, self.opts = plan, cohorts, store, opts
        self.emit: EventFn = opts.on_event or (lambda event: None)
        self.done = done
        self.completed: list[str] = []
        self.failed: dict[str, str] = {}
        self.skipped: list[str] = []
        self.specs: dict[str, TrialSpec] = {t.trial_id: t for t in plan.trials}
        self.pool: TrialPool | None = None
        self.counter: Any = None

    def skip_all(self) -> None:
        """Every trial is already completed: report each stage as skipped (Ray is not started)."""
        for stage, specs in self.plan.stages:
            self.emit(
                {"type": "stage_start", "stage": stage, "total": len(specs), "skipped": len(specs)}
            )
            self.emit({"type": "stage_end", "stage": stage})
        self.skipped = [t.trial_id for t in self.plan.trials]

    def record_failure(self, spec: TrialSpec, error: str, traceback: str, attempts: int) -> None:
        self.store.commit(spec.trial_id, {"trials": failed_row(spec, error, traceback, attempts)})
        self.failed[spec.trial_id] = error
        self.emit({"type": "trial_failed", "stage": spec.stage, "trial_id": spec.trial_id})

    def run_stage(self, stage: str, specs: Sequence[TrialSpec], scratch: Path) -> None:
        todo = [s for s in specs if s.trial_id not in self.done]
        self.skipped += [s.trial_id for s in specs if s.trial_id in self.done]
        self.emit(
            {
                "type": "stage_start",
                "stage": stage,
                "total": len(specs),
                "skipped": len(specs) - len(todo),
            }
        )
        if stage == "search" and needs_search_runner(todo):  # scheduler or tpe: docs/search.md
            self.release_pool()  # Tune's trials need the CPUs the pool's actors hold
            run_search_stage(
                self,
                todo,
                self.attempt_counter(),
                scratch,
                trial_fn=self.opts.trial_fn or _default_trial_fn(),
                resources=trial_resources(todo[0]),
                max_failures=_retries(todo, self.opts),
            )
            self.emit({"type": "stage_end", "stage": stage})
            return
        if stage == "refit":
            todo = expand_refits(self, todo)
            deps = {d for s in todo for d in s.depends_on}
            todo, errors = resolve_refits(todo, self.specs, _scores(self.store, deps))
            for trial_id, exc in errors.items():
                self.record_failure(self.specs[trial_id], str(exc).splitlines()[0], str(exc), 0)
        if todo and self.opts.executor == "tune":
            self._tune(stage, todo, scratch)
        elif todo:
            self._pool(stage, todo)
        self.emit({"type": "stage_end", "stage": stage})

    def external_jobs(self) -> list[tuple[str, list[Any], list[str]]]:
        """(dataset, jobs to run, entries done) of each ``validation.external`` dataset.

        The plan's completed refits with a saved model (a failed refit has none) are evaluated,
        with the suite's perturbations when it has some (as on the test fold). A generated
        dataset is evaluated by the refits of its scope only (``plan.meta["external_scope"]``:
        fold 0 of ``validation.outer`` on its ``from`` dataset; docs/generated.md).
        """
        from raybench.runner.predict import plan_predictions

        external = self.plan.meta.get("external") or {}
        refits = [s for stage, specs in self.plan.stages if stage == "refit" for s in specs]
        if not external or not refits:
            return []
        perturbed = bool((refits[0].config.get("evaluation") or {}).get("perturbations"))
        resources = {s.trial_id: (s.resources.cpu, s.resources.gpu) for s in refits}
        done = self.done  # the store's completed trials at the start, and this run's since
        scopes = self.plan.meta.get("external_scope") or {}
        out = []
        for name, fingerprint in sorted(external.items()):
            scope = scopes.get(name)
            saved = [
                s.trial_id
                for s in refits
                if s.trial_id in done
                and (
                    scope is None
                    or (s.dataset, s.protocol, s.outer_fold)
                    == (scope["dataset"], scope["protocol"], scope["outer_fold"])
                )
            ]
            if saved:
                out.append(
                    (
                        name,
                        *plan_predictions(
                            self.store,
                            name,
                            fingerprint,
                            perturbations=perturbed,
                            refit_ids=saved,
                            resources=resources,
                        ),
                    )
                )
        return out

    def run_external(self) -> None:
        """Evaluate the saved refit models on each external dataset (Ray tasks; resumable)."""
        from raybench.runner.predict import run_predict_jobs

        cache = self.opts.cache_dir
        for name, jobs, skipped in self.external_jobs():
            stage = f"external:{name}"
            total = len(jobs) + len(skipped)
            self.emit(
                {
                    "type": "stage_start",
                    "stage": stage,
                    "total": total,
                    "skipped": total - len(jobs),
                }
            )
            scope = (self.plan.meta.get("external_scope") or {}).get(name)
            done, failed = run_predict_jobs(
                self.store,
                self.cohorts[name],
                jobs,
                cache,
                self.emit,
                stage,
                real=None if scope is None else self.cohorts[scope["dataset"]],
            )
            self.completed += done
            self.failed.update(failed)
            self.skipped += skipped
            self.emit({"type": "stage_end", "stage": stage})

    def attempt_counter(self) -> Any:
        """The run's :class:`AttemptCounter` actor (Tune executors), started on first use."""
        if self.counter is None:
            self.counter = AttemptCounter.options(  # on the driver's node: outlives workers
                scheduling_strategy=NodeAffinitySchedulingStrategy(
                    ray.get_runtime_context().get_node_id(), soft=False
                )
            ).remote()
        return self.counter

    def _payload(self, todo: Sequence[TrialSpec], counter: Any = None) -> Payload:
        return Payload(
            specs={s.trial_id: s for s in todo},
            cohorts={name: self.cohorts[name] for name in {s.dataset for s in todo}},
            store=self.store,
            trial_fn=self.opts.trial_fn or _default_trial_fn(),
            cache_dir=self.opts.cache_dir,
            wandb_dir=self.opts.wandb_dir,
            counter=counter,
        )

    def mark_completed(self, trial_id: str) -> None:
        """Record ``trial_id`` as committed by this run (in the summary and in ``done``)."""
        self.completed.append(trial_id)
        self.done.add(trial_id)

    def _pool(self, stage: str, todo: list[TrialSpec]) -> None:
        """Run ``todo`` on the run's :class:`TrialPool` (plain Ray actors, no Tune)."""
        if self.pool is None:
            self.pool = TrialPool(self.opts.max_concurrent)
        outcome = self.pool.run_stage(
            stage,
            todo,
            self._payload(todo),
            trial_resources,
            lambda spec: (
                self.opts.max_retries
                if self.opts.max_retries is not None
                else spec.resources.max_retries
            ),
            self.emit,
        )
        for trial_id in outcome.completed:
            self.mark_completed(trial_id)
        if interrupted():
            return
        for trial_id, (error, traceback, attempts) in outcome.failed.items():
            if error.startswith(f"{StorageError.__name__}: "):  # not the model's failure:
                raise StorageError(error.split(": ", 1)[1])  # stop; resume redoes the trial
            self.record_failure(self.specs[trial_id], error, traceback, attempts)

    def release_pool(self) -> None:
        """Kill the pool's actors: they hold their trials' resources between stages, which Tune
        trials and the external datasets' Ray tasks would otherwise wait for forever."""
        if self.pool is not None:
            self.pool.close()
            self.pool = None

    def _tune(self, stage: str, todo: list[TrialSpec], scratch: Path) -> None:
        """Run ``todo`` as one Ray Tune run over ``{"trial_id": grid_search(ids)}``."""
        counter = self.attempt_counter()
        payload = self._payload(todo, counter)
        by_id = payload.specs
        resources = {tid: trial_resources(s) for tid, s in by_id.items()}
        distinct = {tuple(sorted(r.items())) for r in resources.values()}
        per_trial: Any = (
            next(iter(resources.values())) if len(distinct) == 1 else PerTrialResources(resources)
        )
        tuner = tune.Tuner(
            make_trainable(payload, per_trial),
            param_space={"trial_id": tune.grid_search(list(by_id))},
            tune_config=tune.TuneConfig(
                reuse_actors=True, max_concurrent_trials=self.opts.max_concurrent
            ),
            run_config=tune.RunConfig(
                name=f"{stage}-{int(time.time() * 1000)}",
                storage_path=str(scratch),
                failure_config=tune.FailureConfig(max_failures=_retries(todo, self.opts)),
                stop=StopOnInterrupt(),
                callbacks=[TuneEvents(self.emit, stage)],
                verbose=0,
                log_to_file=False,
            ),
        )
        quiet = not os.environ.get("RAYBENCH_DEBUG")
        with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
            grid = tuner.fit()  # Tune prints its own banners and error blocks: ours say it all
        committed = set(self.store.committed_ids())
        for result in grid:
            trial_id = (result.config or {}).get("trial_id")
            if trial_id not in by_id:
                continue
            if result.error is None and trial_id in committed:
                self.mark_completed(trial_id)
            elif not interrupted():
                error, traceback = (
                    describe_error(result.error)
                    if result.error is not None
                    else ("RuntimeError: the trial ended without a committed result", "")
                )
                if error.startswith(f"{StorageError.__name__}: "):  # not the model's failure:
                    raise StorageError(error.split(": ", 1)[1])  # stop; resume redoes the trial
                attempts = int(ray.get(counter.get.remote(trial_id)))
                self.record_failure(by_id[trial_id], error, traceback, attempts)


def scratch_root(store: Any) -> Path:
    """Where Tune's own folders go: ``<results>/.scratch`` for a local results directory.

    A results URI (``s3://...``) gets a folder of the temporary directory named after the URI.
    Either way the folder belongs to the run holding the store's lock: it is emptied when a run
    starts (a killed run's folders go then) and removed when it ends.
    """
    if getattr(store, "local", False):
        return Path(store.root) / ".scratch"
    digest = hashlib.sha256(str(getattr(store, "uri", store)).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / "raybench-scratch" / digest


def _write_files(store: Any, files: Mapping[str, bytes]) -> None:
    """Write ``files`` at the store's root through its filesystem (local path or URI)."""
    for name, data in files.items():
        if hasattr(store, "write_file"):
            store.write_file(name, data)  # atomic; a full or read-only store: StorageError
        else:
            (Path(str(store.uri)) / name).write_bytes(data)


def _default_trial_fn() -> Any:
    from raybench.runner.execute import execute_trial

    return execute_trial


def _run_on_ray(run: _Run, todo: Sequence[TrialSpec]) -> ClusterInfo | None:
    """Start or join Ray, check that ``todo`` can be scheduled, run the stages; shut down."""
    opts, store = run.opts, run.store
    info: ClusterInfo | None = None
    scratch = opts.scratch_dir or scratch_root(store)
    if opts.scratch_dir is None:
        shutil.rmtree(scratch, ignore_errors=True)  # a killed run's Tune folders
    scratch.mkdir(parents=True, exist_ok=True)
    tune_logger = logging.getLogger("ray.tune")
    level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
    try:
        info = init_ray(
            opts.address,
            num_cpus=opts.num_cpus,
            num_gpus=opts.num_gpus,
            include_dashboard=opts.include_dashboard,
            **opts.ray_init_kwargs,
        )
        schedulable_or_raise({t.trial_id: trial_resources(t) for t in todo})
        run.emit({"type": "run_start", "cluster": info, "trials": len(run.plan.trials)})
        with catch_sigint():
            for stage, specs in run.plan.stages:
                run.run_stage(stage, specs, scratch)
                if interrupted():
                    break
            if not interrupted():
                run.release_pool()
                run.run_external()
        if interrupted():
            hint = opts.resume_command or "run the same command again"
            raise RunInterrupted(
                f"interrupted: {len(run.completed) + len(run.skipped)} trial(s) committed, "
                f"the others are pending; nothing half-written was kept. Resume with: {hint}"
            )
    finally:
        tune_logger.setLevel(level)
        if run.counter is not None:  # on a shared cluster, leave no actor of this run behind
            ray.kill(run.counter)
        run.release_pool()
        if opts.scratch_dir is None:
            shutil.rmtree(scratch, ignore_errors=True)
        if info is not None and info.started_here:
            ray.shutdown()
    return info


def run_plan(
    plan: Plan,
    cohorts: Mapping[str, Cohort],
    store: Any,
    options: RunOptions | None = None,
) -> RunSummary:
    """Run every trial of ``plan`` that has no completed result in ``store``; return a summary.

    ``store`` is a :class:`raybench.store.ResultStore` (or anything with its ``lock``, ``commit``,
    ``statuses``, ``committed_ids``, ``scan`` and ``compact``). A run that committed at least
    ``options.compact_after`` trials ends by compacting the store under its lock. Failed trials
    are recorded, not raised: check :attr:`RunSummary.failed`. Raises :class:`RunInterrupted`
    after a clean stop on SIGINT and :class:`~raybench.errors.ResultsError` when another run
    holds the store's lock.
    """
    opts = options or RunOptions()
    start = time.time()
    plan = override_gpus(plan, opts.gpus)
    with store.lock():
        _write_files(store, opts.files)
        if hasattr(store, "cleanup_tmp"):
            store.cleanup_tmp()  # staged files of a driver that was killed: never committed
        done = _done_ids(plan, store)
        run = _Run(plan, cohorts, store, opts, done)
        todo = [t for t in plan.trials if t.trial_id not in done]
        if todo or any(jobs for _, jobs, _ in run.external_jobs()):
            info = _run_on_ray(run, todo)
        else:  # a resume with nothing to do: no Ray, no Tune, just the tally
            info = None
            run.skip_all()
        if opts.compact_after and len(run.completed) >= opts.compact_after:
            run.emit({"type": "compacted", "result": store.compact(held=True)})
    summary = RunSummary(
        results=str(getattr(store, "uri", store)),
        completed=tuple(run.completed),
        failed=dict(run.failed),
        skipped=tuple(run.skipped),
        seconds=time.time() - start,
        dashboard_url=info.dashboard_url if info else None,
    )
    run.emit({"type": "run_end", "summary": summary})
    return summary
