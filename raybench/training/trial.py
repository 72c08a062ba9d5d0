"""``run_trial``: train, select and evaluate one trial of the plan (no Ray here).

The runner calls :func:`run_trial` inside a Ray Tune worker with a :class:`TrialContext` (cache
folder, device, threads, a per-epoch callback) and commits the returned :class:`TrialOutcome` to the
result store. The order of events is what makes a result trustworthy:

1. seeds and determinism switches from ``spec.seed`` (:mod:`raybench.training.determinism`);
2. the network is trained on ``spec.train_ids``; after every epoch it is scored on
   ``spec.val_ids`` only, which drive early stopping and the choice of the best epoch;
3. only then are the best weights evaluated on the evaluation ids — ``spec.test_ids`` for a
   ``refit`` trial (clean and under each perturbation), ``spec.val_ids`` for a ``search`` trial
   (clean) — so the test fold is never seen before the final evaluation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader

from raybench.data.cohort import Cohort
from raybench.errors import DataError, SuiteError, TrialError
from raybench.plan.spec import TrialSpec
from raybench.store.schemas import table_from_rows
from raybench.training.cache import CachedVolumes, VolumeCache, preprocess_for, rows_of
from raybench.training.determinism import (
    configure_torch,
    derive_seed,
    make_generator,
    seed_everything,
    seed_worker,
)
from raybench.training.loop import Predictions, TaskHead, make_head, predict, train_epoch
from raybench.training.metrics import higher_is_better, score, selection_metric
from raybench.training.models import build_network, check_forward
from raybench.training.perturb import Perturbation, build_perturbation

__all__ = ["TrialContext", "TrialOutcome", "run_trial"]


@dataclass
class TrialContext:
    """Where and how a trial runs (not part of its identity: results do not depend on it).

    ``cache_dir``: node-local folder of the volume cache, shared by all trials of the node;
    ``device``: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``); ``cpu_threads``: torch intra-op threads
    (keep it fixed across runs for bit-identical results); ``on_epoch``: called with one dict per
    epoch (``epoch``, ``train_loss``, ``val_loss``, ``val_<metric>``, ``lr``, ``seconds``).
    """

    cache_dir: Path | str
    device: str = "cpu"
    cpu_threads: int = 1
    on_epoch: Callable[[dict[str, Any]], None] | None = None


@dataclass
class TrialOutcome:
    """What a completed trial returns: its tables (schemas of docs/results.md) and summary."""

    predictions: pa.Table
    epochs: pa.Table
    splits: pa.Table
    best_epoch: int | None
    val_score: float | None
    selection_metric: str
    train_seconds: float
    eval_seconds: float
    device: str
    started_at: datetime
    finished_at: datetime
    n_train: int
    n_val: int
    n_test: int
    cache: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- labels


@dataclass(frozen=True)
class _Targets:
    task_type: str
    label: str
    classes: tuple[str, ...] = ()
    mean: float = 0.0
    sd: float = 1.0

    @property
    def n_out(self) -> int:
        if self.task_type == "classification":
            return len(self.classes)
        return 1 if self.task_type == "regression" else 2

    def encode(self, rows: Sequence[Mapping[str, Any]], dataset: str) -> list[float] | None:
        """Training targets of ``rows``: class indices, standardised values, or None (masks)."""
        if self.task_type == "segmentation":
            return None
        out: list[float] = []
        for row in rows:
            value = row.get(self.label)
            if value is None:
                raise DataError(
                    f"dataset {dataset!r}, sample_id={row['sample_id']!r}: column "
                    f"{self.label!r} (task.label) is empty"
                )
            if self.task_type == "classification":
                try:
                    out.append(self.classes.index(str(value)))
                except ValueError:
                    raise DataError(
                        f"dataset {dataset!r}, sample_id={row['sample_id']!r}: label "
                        f"{value!r} is not one of task.classes={list(self.classes)}"
                    ) from None
            else:
                out.append((float(value) - self.mean) / self.sd)
        return out


def _targets(config: Mapping[str, Any], cohort: Cohort, train_rows: list[dict]) -> _Targets:
    task = config.get("task") or {}
    task_type = task.get("type")
    if task_type not in ("classification", "regression", "segmentation"):
        raise SuiteError(
            f"task.type={task_type!r}; allowed: classification, regression, segmentation"
        )
    label = task.get("label") or "label"
    if label not in cohort.table.columns:
        raise DataError(
            f"dataset {cohort.name!r} has no column {label!r} (task.label); columns: "
            f"{cohort.table.columns}"
        )
    if task_type == "classification":
        classes = [str(c) for c in (task.get("classes") or [])]
        if not classes:
            values = cohort.table.get_column(label).drop_nulls().cast(str).unique().to_list()
            classes = sorted(values)
        positive = task.get("positive")
        if positive is not None and len(classes) == 2:
            if str(positive) not in classes:
                raise DataError(
                    f"task.positive={positive!r} is not a class of dataset {cohort.name!r} "
                    f"(classes: {classes})"
                )
            classes = [c for c in classes if c != str(positive)] + [str(positive)]
        if len(classes) < 2:
            raise DataError(
                f"dataset {cohort.name!r}: column {label!r} has {len(classes)} class(es) "
                f"{classes}; classification needs at least 2"
            )
        return _Targets(task_type, label, classes=tuple(classes))
    if task_type == "regression":
        try:
            values = np.array([float(r[label]) for r in train_rows], dtype=float)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"dataset {cohort.name!r}: column {label!r} (task.label) must be numeric for "
                f"regression ({exc})"
            ) from exc
        sd = float(values.std()) if len(values) > 1 else 1.0
        return _Targets(task_type, label, mean=float(values.mean()), sd=sd if sd > 0 else 1.0)
    return _Targets(task_type, label)


# --------------------------------------------------------------------------- optimisation


def _optimizer(model: torch.nn.Module, training: Mapping[str, Any]) -> torch.optim.Optimizer:
    name = training.get("optimizer", "adam")
    lr = float(training.get("lr", 1e-3))
    wd = float(training.get("weight_decay", 0.0))
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    if name == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, weight_decay=wd, momentum=0.9)
    raise SuiteError(f"training.optimizer={name!r}; allowed: adam, adamw, sgd")


def _scheduler(
    optimizer: torch.optim.Optimizer, name: str, epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    if name in ("none", None):
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(epochs // 3, 1), gamma=0.1)
    raise SuiteError(f"training.scheduler={name!r}; allowed: none, cosine, step")


def _loader(
    dataset: CachedVolumes, batch_size: int, *, shuffle: bool, seed: int, workers: int
) -> DataLoader:
    n = len(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        # a last batch of one sample breaks batch norm in training; drop it then
        drop_last=shuffle and n > batch_size and n % batch_size == 1,
        num_workers=workers,
        generator=make_generator(seed),
        worker_init_fn=seed_worker if workers > 0 else None,
        persistent_workers=False,
    )


def _device(requested: str) -> torch.device:
    if requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise TrialError(f"device={requested!r} was requested but CUDA is not available here")
        device = torch.device(requested)
        return torch.device("cuda", device.index if device.index is not None else 0)
    return torch.device("cpu")


# --------------------------------------------------------------------------- the trial


def run_trial(spec: TrialSpec, cohort: Cohort, ctx: TrialContext) -> TrialOutcome:
    """Train, select on validation, evaluate; return the trial's tables (see module docstring).

    Raises :class:`TrialError` for a non-finite loss (``"non-finite loss at epoch E, batch B"``),
    :class:`SuiteError` / :class:`DataError` for a bad config or dataset.
    """
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    config = spec.config
    device = _device(ctx.device)
    configure_torch(device.type, ctx.cpu_threads)
    seed_everything(spec.seed)

    train_rows = rows_of(cohort, spec.train_ids)
    val_rows = rows_of(cohort, spec.val_ids)
    eval_ids = spec.test_ids if spec.stage == "refit" else spec.val_ids
    eval_split = "test" if spec.stage == "refit" else "val"
    eval_rows = rows_of(cohort, eval_ids)
    if not train_rows:
        raise DataError(f"trial {spec.trial_id}: no training samples (train_ids is empty)")
    if not eval_rows:
        raise DataError(f"trial {spec.trial_id}: no {eval_split} samples to evaluate on")

    targets = _targets(config, cohort, train_rows)
    seg = targets.task_type == "segmentation"
    if seg:
        for rows in (train_rows, val_rows, eval_rows):
            for row in rows:
                row["mask"] = row[targets.label]
    cache = VolumeCache(Path(ctx.cache_dir), cohort, preprocess_for(cohort, with_mask=seg))
    shape = cache.preprocess.spatial_size

    model_cfg = config.get("model") or {}
    arch = model_cfg.get("arch")
    if not arch:
        raise SuiteError(f"trial {spec.trial_id}: config.model.arch is missing")
    model = build_network(
        arch,
        model_cfg.get("params") or {},
        targets.task_type,
        targets.n_out,
        spatial_size=shape,
        plugins=config.get("plugins") or {},
    )
    model.to(device)
    check_forward(model, arch, (1, *shape), targets.n_out)

    training = config.get("training") or {}
    epochs = int(training.get("epochs", 10))
    batch_size = int(training.get("batch_size", 8))
    workers = int(training.get("num_workers", 0))
    amp = bool(training.get("amp", True)) and device.type == "cuda"
    optimizer = _optimizer(model, training)
    scheduler = _scheduler(optimizer, training.get("scheduler", "none"), epochs)
    scaler = torch.amp.GradScaler("cuda") if amp else None
    head = make_head(targets.task_type, mean=targets.mean, sd=targets.sd)
    metric = selection_metric(config, targets.task_type)
    stopping = training.get("early_stopping") or None

    train_data = CachedVolumes(cache, train_rows, targets.encode(train_rows, cohort.name))
    val_data = CachedVolumes(cache, val_rows, targets.encode(val_rows, cohort.name))
    train_loader = _loader(train_data, batch_size, shuffle=True, seed=spec.seed, workers=workers)
    val_loader = _loader(val_data, batch_size, shuffle=False, seed=spec.seed, workers=workers)

    epoch_rows, best = _train_and_select(
        spec, ctx, model, (train_loader, val_loader), head, optimizer, scheduler, scaler,
        epochs=epochs, metric=metric, stopping=stopping, targets=targets, device=device, amp=amp,
    )  # fmt: skip
    model.load_state_dict(best.state)
    train_seconds = time.perf_counter() - t0

    t_eval = time.perf_counter()
    perturbations: list[Perturbation] = []
    if spec.stage == "refit":
        entries = (config.get("evaluation") or {}).get("perturbations") or []
        perturbations = [build_perturbation(p) for p in entries]
    eval_targets = targets.encode(eval_rows, cohort.name)
    prediction_rows: list[dict[str, Any]] = []
    for perturbation in [None, *perturbations]:
        data = CachedVolumes(
            cache, eval_rows, eval_targets, _perturber(perturbation, spec, eval_rows)
        )
        loader = _loader(data, batch_size, shuffle=False, seed=spec.seed, workers=workers)
        out = predict(model, loader, head, device, amp=amp)
        prediction_rows += _prediction_rows(spec, eval_rows, eval_split, perturbation, out, targets)
    eval_seconds = time.perf_counter() - t_eval

    return TrialOutcome(
        predictions=table_from_rows("predictions", prediction_rows),
        epochs=table_from_rows("epochs", epoch_rows),
        splits=table_from_rows("splits", _split_rows(spec, train_rows, val_rows, cohort)),
        best_epoch=best.epoch,
        val_score=None if math.isnan(best.value) else best.value,
        selection_metric=metric,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        device=str(device),
        started_at=started_at,
        finished_at=datetime.now(UTC),
        n_train=len(train_rows),
        n_val=len(val_rows),
        n_test=len(rows_of(cohort, spec.test_ids)) if spec.test_ids else 0,
        cache={"hits": cache.stats.hits, "misses": cache.stats.misses},
    )


def _train_and_select(
    spec: TrialSpec,
    ctx: TrialContext,
    model: torch.nn.Module,
    loaders: tuple[DataLoader, DataLoader],
    head: TaskHead,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    scaler: torch.amp.GradScaler | None,
    *,
    epochs: int,
    metric: str,
    stopping: Mapping[str, Any] | None,
    targets: _Targets,
    device: torch.device,
    amp: bool,
) -> tuple[list[dict[str, Any]], _Best]:
    """The epoch loop: train, score on validation ids, keep the best weights, stop early."""
    train_loader, val_loader = loaders
    has_val = len(val_loader.dataset) > 0  # type: ignore[arg-type]
    epoch_rows: list[dict[str, Any]] = []
    best = _Best(higher_is_better(metric), float((stopping or {}).get("min_delta", 0.0)))
    for epoch in range(epochs):
        t_epoch = time.perf_counter()
        train_loss = train_epoch(
            model, train_loader, head, optimizer, device, epoch, amp=amp, scaler=scaler
        )
        if scheduler is not None:
            scheduler.step()
        lr = float(optimizer.param_groups[0]["lr"])
        t_train = time.perf_counter() - t_epoch
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
        epoch_rows.append(_epoch_row(spec, epoch, "train", train_loss, None, None, lr, t_train))
        if has_val:
            t_val = time.perf_counter()
            val = predict(model, val_loader, head, device, amp=amp)
            value = _score(metric, val, targets)
            val_loss = float(np.mean(val.loss)) if len(val.loss) else math.nan
            seconds = time.perf_counter() - t_val
            epoch_rows.append(_epoch_row(spec, epoch, "val", val_loss, metric, value, lr, seconds))
            row.update({"val_loss": val_loss, f"val_{metric}": value})
            best.update(epoch, value, model)
        else:
            best.update(epoch, math.nan, model, always=True)
        row["seconds"] = time.perf_counter() - t_epoch
        if ctx.on_epoch is not None:
            ctx.on_epoch(row)
        if stopping and has_val and epoch - best.epoch >= int(stopping.get("patience", 5)):
            break
    return epoch_rows, best


class _Best:
    """Best epoch so far on the validation metric, with a CPU copy of its weights."""

    def __init__(self, higher: bool, min_delta: float) -> None:
        self.higher = higher
        self.min_delta = min_delta
        self.epoch = -1
        self.value = math.nan
        self.state: dict[str, torch.Tensor] = {}

    def update(
        self, epoch: int, value: float, model: torch.nn.Module, always: bool = False
    ) -> None:
        if always:
            better = True
        elif math.isnan(value):
            better = self.epoch < 0  # keep the first epoch if nothing better ever comes
        elif math.isnan(self.value):
            better = True
        elif self.higher:
            better = value > self.value + self.min_delta
        else:
            better = value < self.value - self.min_delta
        if better:
            self.epoch = epoch
            self.value = value
            self.state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _score(metric: str, val: Predictions, targets: _Targets) -> float:
    return score(
        metric,
        val.y_true if val.y_true is not None else np.zeros(len(val.loss)),
        probs=val.probs,
        y_pred=val.y_pred,
        dice=val.dice,
        loss=val.loss,
    )


def _perturber(
    perturbation: Perturbation | None, spec: TrialSpec, rows: Sequence[Mapping[str, Any]]
) -> Callable[[torch.Tensor, int], torch.Tensor] | None:
    if perturbation is None:
        return None

    def apply(image: torch.Tensor, i: int) -> torch.Tensor:
        return perturbation(image, derive_seed(spec.seed, perturbation.id, rows[i]["sample_id"]))

    return apply


def _epoch_row(
    spec: TrialSpec,
    epoch: int,
    split: str,
    loss: float,
    metric: str | None,
    value: float | None,
    lr: float,
    seconds: float,
) -> dict[str, Any]:
    return {
        "trial_id": spec.trial_id,
        "epoch": epoch,
        "split": split,
        "loss": loss,
        "metric": metric,
        "value": value,
        "lr": lr,
        "seconds": seconds,
    }


def _prediction_rows(
    spec: TrialSpec,
    rows: Sequence[Mapping[str, Any]],
    split: str,
    perturbation: Perturbation | None,
    out: Predictions,
    targets: _Targets,
) -> list[dict[str, Any]]:
    result = []
    binary = targets.task_type == "classification" and len(targets.classes) == 2
    for k, i in enumerate(out.index.tolist()):
        row = rows[i]
        probs = out.probs[k].tolist() if out.probs is not None else None
        result.append(
            {
                "trial_id": spec.trial_id,
                "dataset": spec.dataset,
                "model": spec.model,
                "protocol": spec.protocol,
                "outer_fold": spec.outer_fold,
                "seed": spec.seed,
                "sample_id": str(row["sample_id"]),
                "subject_id": str(row["subject_id"]),
                "session_id": str(row["session_id"]),
                "scanner": str(row["scanner"]),
                "site": str(row["site"]),
                "split": split,
                "perturbation": perturbation.id if perturbation else "none",
                "perturbation_type": perturbation.type if perturbation else "none",
                "severity": perturbation.severity if perturbation else None,
                "y_true": _y_true(row, k, out, targets),
                "y_pred": float(out.y_pred[k]) if out.y_pred is not None else None,
                "score": probs[1] if binary and probs is not None else None,
                "probs": probs,
                "dice": float(out.dice[k]) if out.dice is not None else None,
                "loss": float(out.loss[k]),
            }
        )
    return result


def _y_true(row: Mapping[str, Any], k: int, out: Predictions, targets: _Targets) -> float | None:
    if targets.task_type == "regression":
        return float(row[targets.label])  # exact, not the float32 round trip of training
    return float(out.y_true[k]) if out.y_true is not None else None


def _split_rows(
    spec: TrialSpec, train_rows: list[dict], val_rows: list[dict], cohort: Cohort
) -> list[dict[str, Any]]:
    test_rows = rows_of(cohort, spec.test_ids) if spec.test_ids else []
    return [
        {
            "trial_id": spec.trial_id,
            "sample_id": str(r["sample_id"]),
            "subject_id": str(r["subject_id"]),
            "session_id": str(r["session_id"]),
            "site": str(r["site"]),
            "role": role,
        }
        for role, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows))
        for r in rows
    ]
