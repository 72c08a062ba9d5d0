"""Saved models of a finished run evaluated on another dataset, through Ray tasks, resumable.

One *predict entry* is one saved refit model (``training.save_model: best``) evaluated on one
dataset: a Ray task reads ``models/<refit>.pt`` through the store, checks its sha256 against the
refit's ``trials.model_sha256``, predicts every sample of the dataset
(:func:`raybench.training.predict.predict_saved`) and commits, under the entry's own id, a
``trials`` row (``stage = "predict"``, ``refit_trial_id`` = the refit, ``dataset`` = the new
dataset, the refit's model, protocol, fold and seed) and its ``predictions`` rows
(``split = "external"``). The entry id hashes the refit, the model's hash, the dataset's name and
fingerprint and whether perturbations are applied, so predicting again skips what is committed
(resume) and a changed dataset is predicted anew.

Two callers: ``raybench predict`` (:func:`predict_results`, which takes the store's lock, audits
the dataset against every subject of the run's ``splits`` table and starts or joins Ray) and
``raybench run`` for ``validation.external`` (:func:`run_predict_jobs` inside the run's Ray, after
the refit stage). Failures are data, as for trials: a failed entry is a ``failed`` row, redone by
the next call.
"""

from __future__ import annotations

import dataclasses
import time
import traceback as tb
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import ray
from raybench_analysis.vocabulary import PREDICT_STAGE

from raybench.data.cohort import Cohort
from raybench.errors import ResultsError
from raybench.plan.external import check_external_subjects
from raybench.plan.ids import content_hash
from raybench.store import collect_provenance, table_from_rows

__all__ = [
    "PredictJob",
    "PredictOptions",
    "PredictSummary",
    "entry_id",
    "plan_predictions",
    "predict_results",
    "run_predict_jobs",
]

#: Columns of the refit's ``trials`` row that a predict entry copies.
_COPIED = ("suite", "model", "task", "protocol", "outer_fold", "seed", "params", "config_hash")


def entry_id(
    refit_trial_id: str, model_sha256: str, dataset: str, fingerprint: str, perturbations: bool
) -> str:
    """The id of a predict entry: a content hash of what determines its predictions.

    >>> entry_id("r", "m", "ext", "f", False) == entry_id("r", "m", "ext", "f", False)
    True
    >>> entry_id("r", "m", "ext", "f", False) == entry_id("r", "m", "ext", "f", True)
    False
    """
    return content_hash(
        {
            "stage": PREDICT_STAGE,
            "refit": refit_trial_id,
            "model_sha256": model_sha256,
            "dataset": dataset,
            "data_fingerprint": fingerprint,
            "perturbations": bool(perturbations),
        }
    )


@dataclass(frozen=True)
class PredictJob:
    """One saved refit model to evaluate on one dataset (one Ray task, one committed entry)."""

    entry_id: str
    refit: dict[str, Any]
    dataset: str
    fingerprint: str
    perturbations: bool
    cpu: float = 1.0
    gpu: float = 0.0


@dataclass(frozen=True)
class PredictOptions:
    """How ``raybench predict`` runs: Ray address, local CPUs/GPUs, per-task resources, cache."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    cpu: float = 1.0
    gpu: float = 0.0
    perturbations: bool = False
    cache_dir: Path | None = None
    include_dashboard: bool = False


@dataclass(frozen=True)
class PredictSummary:
    """What a predict call did: entries committed now, failed (id -> error), skipped (done)."""

    results: str
    dataset: str
    completed: tuple[str, ...] = ()
    failed: dict[str, str] = field(default_factory=dict)
    skipped: tuple[str, ...] = ()
    seconds: float = 0.0


def _saved_refits(store: Any, refit_ids: Iterable[str] | None) -> pl.DataFrame:
    """Completed refit rows with a saved model (those of ``refit_ids`` only, when given)."""
    frame = (
        store.scan("trials")
        .filter((pl.col("stage") == "refit") & (pl.col("status") == "completed"))
        .collect()
    )
    if refit_ids is not None:
        frame = frame.filter(pl.col("trial_id").is_in(list(refit_ids)))
    return frame.filter(pl.col("model_sha256").is_not_null()).sort("trial_id")


def plan_predictions(
    store: Any,
    dataset: str,
    fingerprint: str,
    *,
    perturbations: bool,
    refit_ids: Iterable[str] | None = None,
    resources: Mapping[str, tuple[float, float]] | None = None,
) -> tuple[list[PredictJob], list[str]]:
    """(jobs to run, entry ids already committed as completed) for ``dataset``.

    ``resources`` maps a refit id to its (cpu, gpu) (default 1 CPU). Raises
    :class:`~raybench.errors.ResultsError` when no completed refit has a saved model.
    """
    refits = _saved_refits(store, refit_ids)
    if refits.is_empty():
        raise ResultsError(
            f"{store.uri}: no completed refit trial kept its model, so nothing can be "
            "predicted; run the suite with `training: {save_model: best}` (models/ then holds "
            "one file per refit trial)"
        )
    done = set(store.completed_ids())
    jobs, skipped = [], []
    for row in refits.iter_rows(named=True):
        eid = entry_id(row["trial_id"], row["model_sha256"], dataset, fingerprint, perturbations)
        if eid in done:
            skipped.append(eid)
            continue
        cpu, gpu = (resources or {}).get(row["trial_id"], (1.0, 0.0))
        jobs.append(PredictJob(eid, row, dataset, fingerprint, perturbations, cpu, gpu))
    return jobs, skipped


def _entry_row(job: PredictJob, **values: Any) -> Any:
    """The one-row ``trials`` table of a predict entry (``values``: status, timings, ...)."""
    row = {
        "trial_id": job.entry_id,
        **{k: job.refit.get(k) for k in _COPIED},
        "dataset": job.dataset,
        "stage": PREDICT_STAGE,
        "data_fingerprint": job.fingerprint,
        "model_sha256": job.refit["model_sha256"],
        "refit_trial_id": job.refit["trial_id"],
        **collect_provenance(),
        **values,
    }
    return table_from_rows("trials", [row])


def _predict_one(
    job: PredictJob, cohort: Cohort, store: Any, cache_dir: str | None, real: Cohort | None = None
) -> str:
    """The Ray task: verify the model, predict, commit the entry; returns its id.

    With ``real`` (the ``from`` cohort of a generated dataset) it also commits the ``features``
    rows: the network's penultimate features on its refit's real test images (read from the
    ``splits`` table) and on every generated sample (docs/generated.md).
    """
    import torch

    from raybench.training.predict import predict_saved, saved_features
    from raybench.training.saved import load_saved_model, model_path

    started = datetime.now(UTC)
    t0 = time.perf_counter()
    name = model_path(job.refit["trial_id"])
    data = store.read_file(name)
    if data is None:
        raise ResultsError(
            f"{store.uri}/{name}: missing, though trial {job.refit['trial_id']} recorded a "
            "saved model; restore it from a copy of the results"
        )
    saved = load_saved_model(data, job.refit["model_sha256"], f"{store.uri}/{name}")
    device = "cuda:0" if job.gpu > 0 and torch.cuda.is_available() else "cpu"
    predictions = predict_saved(
        saved,
        cohort,
        cache_dir,
        entry_id=job.entry_id,
        perturbations=job.perturbations,
        device=device,
        cpu_threads=max(1, int(job.cpu)),
    )
    trials = _entry_row(
        job,
        status="completed",
        attempts=1,
        started_at=started,
        finished_at=datetime.now(UTC),
        train_seconds=0.0,
        eval_seconds=time.perf_counter() - t0,
        device=device,
        n_test=cohort.table.height,
    )
    tables = {"trials": trials, "predictions": predictions}
    if real is not None:
        entry = {"trial_id": job.entry_id, "refit_trial_id": job.refit["trial_id"]}
        entry |= {k: job.refit.get(k) for k in ("model", "protocol", "outer_fold", "seed")}
        args = {"entry": entry, "device": device, "cpu_threads": max(1, int(job.cpu))}
        rows = saved_features(
            saved, real, cache_dir, sample_ids=_test_ids(store, job), origin="test", **args
        )
        ids = cohort.table["sample_id"].sort().to_list()
        rows += saved_features(saved, cohort, cache_dir, sample_ids=ids, origin="generated", **args)
        tables["features"] = table_from_rows("features", rows)
    store.commit(job.entry_id, tables)
    return job.entry_id


def _test_ids(store: Any, job: PredictJob) -> list[str]:
    """Sample ids of the refit's test role (its ``splits`` rows), sorted."""
    frame = (
        store.scan("splits")
        .filter((pl.col("trial_id") == job.refit["trial_id"]) & (pl.col("role") == "test"))
        .select("sample_id")
        .collect()
    )
    return sorted(set(frame["sample_id"].to_list()))


def run_predict_jobs(
    store: Any,
    cohort: Cohort,
    jobs: Sequence[PredictJob],
    cache_dir: Path | None,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    stage: str = PREDICT_STAGE,
    real: Cohort | None = None,
) -> tuple[list[str], dict[str, str]]:
    """Run ``jobs`` as Ray tasks (Ray must be initialised); return (completed ids, failed).

    ``real``: for a generated dataset, its ``from`` cohort (the entries then store ``features``).

    A task that raises is recorded as a ``failed`` entry with the first line of its error (a
    model whose hash does not match, a label the model does not know, ...). ``on_event`` gets
    ``trial_done`` / ``trial_failed`` events of ``stage`` (the run's progress display).
    """
    emit = on_event or (lambda event: None)
    task = ray.remote(max_retries=1)(_predict_one)
    cohort_ref, store_ref, real_ref = ray.put(cohort), ray.put(store), ray.put(real)
    pending = {
        task.options(num_cpus=job.cpu, num_gpus=job.gpu).remote(
            job, cohort_ref, store_ref, None if cache_dir is None else str(cache_dir), real_ref
        ): job
        for job in jobs
    }
    completed: list[str] = []
    failed: dict[str, str] = {}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        job = pending.pop(ready[0])
        try:
            completed.append(ray.get(ready[0]))
            emit({"type": "trial_done", "stage": stage, "trial_id": job.entry_id})
        except Exception as exc:  # the task's error, re-raised by Ray: recorded, not raised
            cause = getattr(exc, "cause", None) or exc
            error = f"{type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else ''}"
            now = datetime.now(UTC)
            row = _entry_row(
                job,
                status="failed",
                error=error,
                traceback="".join(tb.format_exception(cause)),
                attempts=1,
                started_at=now,
                finished_at=now,
            )
            store.commit(job.entry_id, {"trials": row})
            failed[job.entry_id] = error
            emit({"type": "trial_failed", "stage": stage, "trial_id": job.entry_id})
    return completed, failed


def development_subjects(store: Any) -> set[str]:
    """Every subject of the run's ``splits`` table (any trial, any role): the development data."""
    frame = store.scan("splits").select("subject_id").unique().collect()
    return set(frame["subject_id"].cast(pl.String).to_list())


def predict_results(store: Any, cohort: Cohort, options: PredictOptions) -> PredictSummary:
    """``raybench predict``: evaluate every saved model of ``store`` on ``cohort``.

    Holds the store's lock; refuses a cohort that shares a subject with the run's development
    data (:class:`~raybench.errors.LeakageError`); skips the entries already committed; starts a
    local Ray (or joins ``options.address``) only when something is left to do.
    """
    from raybench.runner.cluster import init_ray

    start = time.time()
    with store.lock():
        check_external_subjects(
            development_subjects(store),
            cohort.table,
            f"raybench predict --dataset {cohort.name}",
        )
        jobs, skipped = plan_predictions(
            store,
            cohort.name,
            cohort.fingerprint,
            perturbations=options.perturbations,
            resources=None,
        )
        jobs = [dataclasses.replace(j, cpu=options.cpu, gpu=options.gpu) for j in jobs]
        completed: list[str] = []
        failed: dict[str, str] = {}
        if jobs:
            info = init_ray(
                options.address,
                num_cpus=options.num_cpus,
                num_gpus=options.num_gpus,
                include_dashboard=options.include_dashboard,
            )
            try:
                completed, failed = run_predict_jobs(store, cohort, jobs, options.cache_dir)
            finally:
                if info.started_here:
                    ray.shutdown()
    return PredictSummary(
        results=str(store.uri),
        dataset=cohort.name,
        completed=tuple(completed),
        failed=failed,
        skipped=tuple(skipped),
        seconds=time.time() - start,
    )
