"""Search stages with early stopping or adaptive points: Ray Tune schedulers and Optuna's TPE.

The driver runs a plain search stage (a grid, or random points drawn at compile time, without a
scheduler) as every other stage. A search stage whose trials carry a ``search`` entry in their
config (docs/search.md) comes here, :func:`run_search_stage`:

- **Early stopping** (``scheduler: asha | hyperband``): each search trial reports its validation
  metric to Tune after every epoch (:class:`EpochReports`), and Ray Tune's
  ``AsyncHyperBandScheduler`` — asynchronous successive halving, one bracket for ``asha``, several
  for ``hyperband`` (Li et al. 2020, "A system for massively parallel hyperparameter tuning",
  MLSys) — stops the trials that fall below the top ``1/reduction_factor`` of their rung. One
  scheduler per search and inner fold (:class:`GroupedScheduler`): a trial is only compared with
  other points of its own search, on the same inner fold. A stopped trial is recorded with status
  ``pruned`` (not ``failed``) and its point is left out of the refit's selection; nothing else is.
- **TPE** (``algorithm: tpe``): Optuna's Tree-structured Parzen Estimator (Bergstra et al. 2011,
  "Algorithms for hyper-parameter optimization", NeurIPS 24), through
  ``ray.tune.search.optuna.OptunaSearch``. Each search (dataset × model × protocol × outer fold
  × seed) runs one point at a time, its inner folds in parallel, and point ``n`` is asked from a
  sampler seeded with ``protocol_seed("tpe", search, n)`` told the results of points ``0..n-1``:
  the sequence of points is a function of the seed and the results alone. Each point's trial ids
  are the hash of (template, point) (:func:`raybench.plan.compiler.search_trial`), and the points
  are recorded, atomically, in ``search/<search id>.json`` of the results directory before their
  trials start; a resumed run reads them back, skips the committed trials, reruns the others with
  the same points and goes on asking until ``num_samples`` points are done: the same search,
  continued, never a new one.

The test fold never appears here: search trials have no test ids (the compiler's templates
neither), and the refit selects by the mean inner validation score (:mod:`.selection`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

from ray import tune
from ray.tune.schedulers import AsyncHyperBandScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from raybench_analysis.vocabulary import higher_is_better

from raybench.errors import StorageError
from raybench.plan.compiler import search_trial
from raybench.plan.ids import content_hash
from raybench.plan.search import is_template
from raybench.plan.spec import TrialSpec
from raybench.runner.failures import describe_error
from raybench.runner.interrupt import StopOnInterrupt, interrupted
from raybench.runner.options import TrialFn
from raybench.runner.progress import TuneEvents
from raybench.runner.records import failed_row
from raybench.runner.trainable import Payload, run_one
from raybench.splits import protocol_seed

__all__ = [
    "EpochReports",
    "GroupedScheduler",
    "TpeSearcher",
    "expand_refits",
    "finished_templates",
    "needs_search_runner",
    "points_file",
    "run_search_stage",
]

#: The key of the per-epoch validation metric in Tune's results (``val_<metric>``).
_VAL = "val_{}"


def needs_search_runner(specs: Sequence[TrialSpec]) -> bool:
    """True when a search stage has a scheduler or an adaptive algorithm (a ``search`` entry)."""
    return any(s.stage == "search" and s.config.get("search") for s in specs)


def _settings(specs: Sequence[TrialSpec]) -> dict[str, Any]:
    return next(s.config["search"] for s in specs if s.config.get("search"))


def _slot(spec: TrialSpec) -> tuple[Any, ...]:
    return (spec.dataset, spec.model, spec.protocol, spec.outer_fold, spec.seed)


def search_id(templates: Sequence[str]) -> str:
    """The id of one adaptive search: the hash of its template trial ids (content-addressed)."""
    return content_hash(sorted(templates), 16)


def points_file(search: str) -> str:
    """Where the points of adaptive search ``search`` are recorded, in the results directory."""
    return f"search/{search}.json"


def finished_templates(
    templates: Sequence[TrialSpec], statuses: Mapping[str, str], read_file: Any
) -> set[str]:
    """The ``tpe`` templates whose search has nothing left to run (a resume skips them).

    A search is finished when its recorded points (``read_file(points_file(id))``) hold at least
    ``num_samples`` points and every inner-fold trial of the first ``num_samples`` is committed
    as completed or pruned: what :class:`TpeSearcher` would replay into a full history without
    asking Tune for a trial. A failed trial leaves its search unfinished (resume reruns it), as a
    failed grid trial is rerun.
    """
    by_slot: dict[tuple[Any, ...], list[TrialSpec]] = {}
    for t in templates:
        by_slot.setdefault(_slot(t), []).append(t)
    out: set[str] = set()
    for group in by_slot.values():
        raw = read_file(points_file(search_id([t.trial_id for t in group])))
        points = json.loads(raw)["points"] if raw else []
        budget = int(_settings(group)["num_samples"])
        if len(points) >= budget and all(
            statuses.get(search_trial(t, p["point"]).trial_id) in ("completed", "pruned")
            for p in points[:budget]
            for t in group
        ):
            out.update(t.trial_id for t in group)
    return out


# --------------------------------------------------------------------------- per-epoch reports


@dataclasses.dataclass(frozen=True)
class EpochReports:
    """A trial function that reports each epoch's validation metric to Tune, then the score.

    Wraps the stage's trial function: its ``ctx.on_epoch`` is chained with a ``tune.report`` of
    ``{"epoch", "val_<metric>"}`` (the metric left out when not finite, so the scheduler skips that
    epoch); once the trial returns, ``{"val_score"}`` is reported for the TPE searcher. A trial the
    scheduler stops ends inside its report (Ray Tune ends the function), before any commit.
    """

    fn: TrialFn
    metric: str

    def __call__(self, spec: TrialSpec, cohort: Any, ctx: Any) -> Mapping[str, Any]:
        inner = ctx.on_epoch
        key = _VAL.format(self.metric)

        def on_epoch(row: dict[str, Any]) -> None:
            if inner is not None:
                inner(row)
            value = row.get(key)
            report: dict[str, Any] = {"epoch": row.get("epoch")}
            if isinstance(value, int | float) and math.isfinite(value):
                report[key] = float(value)
            tune.report(report)

        tables = self.fn(spec, cohort, dataclasses.replace(ctx, on_epoch=on_epoch))
        trials = tables.get("trials")
        if trials is not None and "val_score" in trials.column_names:
            tune.report({"val_score": trials.column("val_score")[0].as_py()})
        return tables


def _search_trainable(config: dict[str, Any], payload: Payload) -> None:
    """The Tune function of a search stage: a planned trial, or a TPE point on its template."""
    trial_id = config["trial_id"]
    if trial_id not in payload.specs:
        spec = search_trial(payload.specs[config["template"]], config["point"])
        if spec.trial_id != trial_id:  # the driver and the worker must hash alike
            raise RuntimeError(f"search trial {trial_id} resolved to id {spec.trial_id}")
        payload = dataclasses.replace(payload, specs={trial_id: spec})
    run_one(config, payload)


# --------------------------------------------------------------------------- scheduler


class GroupedScheduler(FIFOScheduler):
    """One ``AsyncHyperBandScheduler`` per search and inner fold; records what it stopped.

    ``group_of`` maps a Tune trial config to its group; ``pruned`` maps each raybench trial id
    the scheduler stopped to ``{"epoch", "value"}`` of its last report.
    """

    def __init__(self, settings: Mapping[str, Any], group_of: Any) -> None:
        super().__init__()
        self.settings = dict(settings)
        self.group_of = group_of
        self.result_key = _VAL.format(settings["metric"])
        self.direction = "max" if higher_is_better(settings["metric"]) else "min"
        self.pruned: dict[str, dict[str, Any]] = {}
        self._groups: dict[Any, AsyncHyperBandScheduler] = {}

    def _brackets(self) -> int:
        if self.settings["type"] == "asha":
            return 1
        eta, grace = self.settings["reduction_factor"], self.settings["grace_period"]
        ratio = max(self.settings["max_t"] / grace, 1.0)
        return math.floor(math.log(ratio, eta) + 1e-9) + 1

    def _of(self, trial: Any) -> AsyncHyperBandScheduler:
        key = self.group_of(trial.config)
        if key not in self._groups:
            self._groups[key] = AsyncHyperBandScheduler(
                time_attr="training_iteration",
                metric=self.result_key,
                mode=self.direction,
                max_t=int(self.settings["max_t"]),
                grace_period=int(self.settings["grace_period"]),
                reduction_factor=float(self.settings["reduction_factor"]),
                brackets=self._brackets(),
                stop_last_trials=False,  # a trial that reaches max_t finishes and commits
            )
        return self._groups[key]

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = self._of(trial).on_trial_result(tune_controller, trial, result)
        if action == TrialScheduler.STOP:
            self.pruned[trial.config["trial_id"]] = {
                "epoch": result.get("epoch"),
                "value": result.get(self.result_key),
            }
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def reason(self, trial_id: str) -> str:
        """The ``error`` text of a pruned trial's row: who stopped it, when, at what value."""
        last = self.pruned[trial_id]
        return (
            f"pruned by {self.settings['type']} after epoch {last['epoch']} "
            f"({self.result_key}={last['value']}): below the top "
            f"1/{self.settings['reduction_factor']} of its rung"
        )


# --------------------------------------------------------------------------- TPE


@dataclasses.dataclass
class _Point:
    """A point in flight: its inner-fold trials, those still running, and each one's outcome."""

    point: dict[str, Any]
    specs: list[TrialSpec]
    pending: set[str] = dataclasses.field(default_factory=set)
    states: dict[str, str] = dataclasses.field(default_factory=dict)
    scores: dict[str, float | None] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Search:
    """One adaptive search: its templates (one per inner fold), budget, points and history."""

    id: str
    templates: list[TrialSpec]
    budget: int
    recorded: list[dict[str, Any]]
    history: list[tuple[dict[str, Any], str, float | None]] = dataclasses.field(
        default_factory=list
    )
    current: _Point | None = None

    @property
    def done(self) -> bool:
        return self.current is None and len(self.history) >= self.budget


class TpeSearcher(Searcher):
    """Tune searcher multiplexing one Optuna TPE search per outer fold × seed (and dataset, model).

    ``suggest`` hands out the inner-fold trials of the current point of some search, or asks a
    search without a point in flight for its next one: a recorded point when resuming, else
    :meth:`_ask`. A point's result goes into its search's history once all its inner folds are
    back: the mean ``val_score``, or pruned / failed.
    """

    def __init__(
        self,
        templates: Sequence[TrialSpec],
        store: Any,
        pruned: Mapping[str, Any],
        statuses: Mapping[str, str],
        scores: Mapping[str, float | None],
    ) -> None:
        settings = _settings(templates)
        self.metric_name = next(
            (t.settings.selection.metric for t in templates), "loss"
        )  # the mean val_score is in the selection metric's direction
        super().__init__()  # no metric for Tune to check: results come back per point
        self.direction = "max" if higher_is_better(self.metric_name) else "min"
        self.settings = settings
        self.store = store
        self.pruned = pruned
        self._statuses = dict(statuses)
        self._scores = dict(scores)
        self._queue: collections.deque[dict[str, Any]] = collections.deque()
        self._running: dict[str, tuple[_Search, str]] = {}
        self._last: dict[str, float | None] = {}
        self.searches: list[_Search] = []
        by_slot: dict[tuple[Any, ...], list[TrialSpec]] = {}
        for t in templates:
            by_slot.setdefault(_slot(t), []).append(t)
        for group in by_slot.values():
            sid = search_id([t.trial_id for t in group])
            raw = store.read_file(points_file(sid))
            recorded = json.loads(raw)["points"] if raw else []
            search = _Search(sid, group, int(settings["num_samples"]), recorded)
            self._replay(search, statuses, scores)
            self.searches.append(search)

    def _replay(
        self, search: _Search, statuses: Mapping[str, str], scores: Mapping[str, float | None]
    ) -> None:
        """Put the recorded points whose trials are all committed into the history, in order."""
        for rec in search.recorded:
            specs = [search_trial(t, rec["point"]) for t in search.templates]
            states = [statuses.get(s.trial_id) for s in specs]
            if any(s not in ("completed", "pruned") for s in states):
                return  # from here on the points are run again (the same points: recorded)
            values = [scores.get(s.trial_id) for s in specs]
            search.history.append((rec["point"], *_outcome(states, values)))

    def set_search_properties(self, metric: Any, mode: Any, config: Any, **spec: Any) -> bool:
        return True

    def _ask(self, search: _Search) -> dict[str, Any]:
        """Point ``n`` of ``search``: Optuna's TPE, seeded by (search, n), told the history."""
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        from raybench.suite.search import parse_distribution

        n = len(search.history)
        space = {k: parse_distribution(d).to_tune() for k, d in self.settings["space"].items()}
        seed = protocol_seed("tpe", search.id, n) % 2**32
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        algo = OptunaSearch(
            space=space,
            metric="val_score",
            mode=self.direction,
            sampler=optuna.samplers.TPESampler(seed=seed),
        )
        for point, state, value in search.history:
            searched = {k: point[k] for k in space}
            algo.add_evaluated_point(
                searched,
                value if state == "completed" else None,
                error=state == "failed",
                pruned=state == "pruned",
            )
        return dict(algo.suggest(f"{search.id}-{n}"))

    def _next_point(self, search: _Search) -> _Point:
        n = len(search.history)
        if n < len(search.recorded):
            point = search.recorded[n]["point"]
        else:
            point = _full_point(search.templates[0], self._ask(search))
            search.recorded.append({"index": n, "point": point})
            self._write(search)
        return _Point(point, [search_trial(t, point) for t in search.templates])

    def _write(self, search: _Search) -> None:
        doc = {
            "search": search.id,
            "templates": [t.trial_id for t in search.templates],
            "algorithm": "tpe",
            "points": search.recorded,
        }
        self.store.write_file(points_file(search.id), json.dumps(doc, sort_keys=True).encode())

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        while not self._queue:
            idle = [s for s in self.searches if s.current is None and not s.done]
            if not idle:
                busy = any(s.current is not None for s in self.searches)
                return None if busy else Searcher.FINISHED
            search = idle[0]
            current = self._next_point(search)
            for spec, template in zip(current.specs, search.templates, strict=True):
                state = self._statuses.get(spec.trial_id)
                if state in ("completed", "pruned"):  # committed by an earlier run
                    current.states[spec.trial_id] = state
                    current.scores[spec.trial_id] = self._scores.get(spec.trial_id)
                    continue
                current.pending.add(spec.trial_id)
                self._queue.append(
                    {
                        "trial_id": spec.trial_id,
                        "template": template.trial_id,
                        "point": current.point,
                        "search": search.id,
                    }
                )
            search.current = current
            if not current.pending:  # every inner fold already committed (a resumed run)
                self._finish(search)
        config = self._queue.popleft()
        self._running[trial_id] = (self._search(config["search"]), config["trial_id"])
        return config

    def _search(self, sid: str) -> _Search:
        return next(s for s in self.searches if s.id == sid)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if "val_score" in result:
            self._last[trial_id] = result["val_score"]

    def on_trial_complete(
        self, trial_id: str, result: dict | None = None, error: bool = False
    ) -> None:
        search, rid = self._running.pop(trial_id)
        current = search.current
        if current is None:
            return
        current.pending.discard(rid)
        if rid in self.pruned:
            current.states[rid] = "pruned"
        else:  # no error: run_one committed the trial before its last report
            current.states[rid] = "failed" if error else "completed"
        current.scores[rid] = self._last.pop(trial_id, None)
        if not current.pending:
            self._finish(search)

    def _finish(self, search: _Search) -> None:
        """Close the current point: its outcome joins the history."""
        current = search.current
        if current is None:
            return
        ids = [s.trial_id for s in current.specs]
        outcome = _outcome([current.states[i] for i in ids], [current.scores.get(i) for i in ids])
        search.history.append((current.point, *outcome))
        search.current = None


def _outcome(states: Sequence[str | None], values: Sequence[float | None]) -> tuple[str, Any]:
    """(state, mean score) of a point from its inner-fold trials' statuses and val_scores."""
    if "pruned" in states:
        return "pruned", None
    if any(s != "completed" for s in states):
        return "failed", None
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if len(finite) != len(values):
        return "failed", None
    return "completed", sum(finite) / len(finite)


def _full_point(template: TrialSpec, searched: Mapping[str, Any]) -> dict[str, Any]:
    """The point as the compiler writes points: every searchable key (fixed ones from config)."""
    from raybench_analysis.vocabulary import SEARCHABLE_TRAINING_KEYS

    training = template.config.get("training", {})
    params = template.config.get("model", {}).get("params", {})
    point: dict[str, Any] = {k: training.get(k) for k in SEARCHABLE_TRAINING_KEYS}
    point.update({f"model.{k}": v for k, v in params.items()})
    point.update(searched)
    return {k: point[k] for k in sorted(point)}


def _scores_of(store: Any, ids: Sequence[str]) -> dict[str, float | None]:
    if not ids:
        return {}
    import polars as pl

    frame = (
        store.scan("trials")
        .filter(pl.col("trial_id").is_in(list(ids)))
        .select("trial_id", "val_score")
        .collect()
    )
    return dict(zip(frame["trial_id"].to_list(), frame["val_score"].to_list(), strict=True))


# --------------------------------------------------------------------------- the stage


def _group_of(specs: Mapping[str, TrialSpec]) -> Any:
    def group(config: Mapping[str, Any]) -> tuple[Any, ...]:
        spec = specs.get(config["trial_id"]) or specs[config["template"]]
        return (*_slot(spec), spec.inner_fold)

    return group


def run_search_stage(
    run: Any,
    todo: list[TrialSpec],
    counter: Any,
    scratch: Any,
    *,
    trial_fn: TrialFn,
    resources: Mapping[str, float],
    max_failures: int,
) -> None:
    """Run the search trials ``todo`` of the driver's ``run`` with a scheduler and/or TPE.

    ``run`` is the driver's run state (its ``store``, ``opts``, ``cohorts``, ``emit``,
    ``record_failure``, ``completed``, ``specs``); ``trial_fn``, ``resources`` (per trial, for
    Tune) and ``max_failures`` are the stage's, as the driver reads them. Pruned trials get a
    ``pruned`` row.
    """
    settings = _settings(todo)
    by_id = {s.trial_id: s for s in todo}
    sched_settings = settings.get("scheduler")
    metric = sched_settings["metric"] if sched_settings else todo[0].settings.selection.metric
    payload = Payload(
        specs=by_id,
        cohorts={name: run.cohorts[name] for name in {s.dataset for s in todo}},
        store=run.store,
        trial_fn=EpochReports(trial_fn, metric),
        cache_dir=run.opts.cache_dir,
        wandb_dir=run.opts.wandb_dir,
        counter=counter,
    )
    scheduler = GroupedScheduler(sched_settings, _group_of(by_id)) if sched_settings else None
    pruned: Mapping[str, Any] = scheduler.pruned if scheduler else {}
    templates = [s for s in todo if is_template(s)]
    searcher = None
    param_space: dict[str, Any] = {}
    if templates:
        statuses = run.store.statuses()
        searcher = TpeSearcher(
            templates,
            run.store,
            pruned,
            statuses,
            _scores_of(run.store, [i for i, s in statuses.items() if s == "completed"]),
        )
    else:
        param_space = {"trial_id": tune.grid_search(list(by_id))}
    tuner = tune.Tuner(
        tune.with_resources(
            tune.with_parameters(_search_trainable, payload=payload), dict(resources)
        ),
        param_space=param_space,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=-1 if searcher else 1,
            reuse_actors=True,
            max_concurrent_trials=run.opts.max_concurrent,
        ),
        run_config=tune.RunConfig(
            name=f"search-{os.getpid()}-{id(run)}",
            storage_path=str(scratch),
            failure_config=tune.FailureConfig(max_failures=max_failures),
            stop=StopOnInterrupt(),
            callbacks=[TuneEvents(run.emit, "search")],
            verbose=0,
            log_to_file=False,
        ),
    )
    quiet = not os.environ.get("RAYBENCH_DEBUG")
    with contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext():
        grid = tuner.fit()
    _record(run, grid, scheduler, by_id, counter)


def _record(
    run: Any,
    grid: Any,
    scheduler: GroupedScheduler | None,
    by_id: Mapping[str, TrialSpec],
    counter: Any,
) -> None:
    """After the Tune run: completed, pruned (a ``pruned`` row), failed (as the driver)."""
    import ray

    committed = set(run.store.committed_ids())
    for result in grid:
        config = result.config or {}
        trial_id = config.get("trial_id")
        if trial_id is None:
            continue
        spec = by_id.get(trial_id)
        if spec is None:
            spec = search_trial(by_id[config["template"]], config["point"])
            run.specs[trial_id] = spec
        if trial_id in committed and result.error is None:
            run.mark_completed(trial_id)
        elif scheduler is not None and trial_id in scheduler.pruned:
            row = failed_row(spec, scheduler.reason(trial_id), "", 1, status="pruned")
            run.store.commit(trial_id, {"trials": row})  # Tune already said the trial ended
        elif not interrupted():
            error, traceback = (
                describe_error(result.error)
                if result.error is not None
                else ("RuntimeError: the trial ended without a committed result", "")
            )
            if error.startswith(f"{StorageError.__name__}: "):
                raise StorageError(error.split(": ", 1)[1])
            attempts = int(ray.get(counter.get.remote(trial_id)))
            run.record_failure(spec, error, traceback, attempts)


# --------------------------------------------------------------------------- refits


def expand_refits(run: Any, refits: list[TrialSpec]) -> list[TrialSpec]:
    """Refits with their real search trials and candidates, pruned points left out.

    A ``tpe`` refit depends on templates: its ``depends_on`` becomes the trial ids of its search's
    recorded points and its ``candidates`` those points. Under a scheduler, a candidate with a
    pruned inner-fold trial is removed (the scheduler decided against it); nothing else is.
    """
    statuses: dict[str, str] | None = None
    out = []
    for refit in refits:
        if refit.params is not None or not refit.depends_on:
            out.append(refit)
            continue
        if statuses is None:
            statuses = run.store.statuses()
        deps = [run.specs[d] for d in refit.depends_on if d in run.specs]
        templates = [d for d in deps if is_template(d)]
        if templates:
            raw = run.store.read_file(points_file(search_id([t.trial_id for t in templates])))
            points = json.loads(raw)["points"] if raw else []
            deps = [search_trial(t, p["point"]) for p in points for t in templates]
            for d in deps:
                run.specs.setdefault(d.trial_id, d)
            candidates: tuple[dict[str, Any], ...] = tuple(p["point"] for p in points)
        else:
            candidates = refit.candidates
        pruned = {
            json.dumps(d.params, sort_keys=True, default=str)
            for d in deps
            if statuses.get(d.trial_id) == "pruned"
        }
        kept = tuple(
            c for c in candidates if json.dumps(c, sort_keys=True, default=str) not in pruned
        )
        out.append(
            dataclasses.replace(refit, depends_on=tuple(d.trial_id for d in deps), candidates=kept)
        )
    return out
