"""``run_trial``: train, select and evaluate one trial of the plan (no Ray here).

The runner calls :func:`run_trial` inside a Ray Tune worker with a :class:`TrialContext` (cache
folder, device, threads, a per-epoch callback) and commits the returned :class:`TrialOutcome` to the
result store. The order of events is what makes a result trustworthy:

1. seeds and determinism switches from ``spec.seed`` (:mod:`raybench.training.determinism`);
2. the network is trained on ``spec.train_ids``; after every epoch it is scored on
   ``spec.val_ids`` only, which drive early stopping and the choice of the best epoch;
3. only then are the best weights evaluated on the evaluation ids — ``spec.test_ids`` for a
   ``refit`` trial (clean and under each perturbation), ``spec.val_ids`` for a ``search`` trial
   (clean) — so the test fold is never seen before the final evaluation;
4. a refit trial of a suite with ``evaluation.explanations`` then explains a stratified subset of
   its test samples (:mod:`raybench.training.explain`); a refit trial also records its validation
   predictions (``split = "val"``, clean), which calibration needs;
5. a refit trial with ``evaluation.uncertainty`` then adds its uncertainty variants
   (:mod:`raybench.training.uncertainty`): temperature scaling fitted on its validation
   predictions only, input-noise and MC-dropout passes over its validation and test samples.
"""

from __future__ import annotations

import dataclasses
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
from raybench_analysis.vocabulary import FINAL_PROTOCOL
from torch.utils.data import DataLoader, Sampler

from raybench.data.cohort import Cohort
from raybench.errors import DataError, SuiteError, TrialError
from raybench.plan.config import TaskConfig, TrainingConfig, TrialConfig
from raybench.plan.spec import TrialSpec
from raybench.store.rows import resample_columns
from raybench.store.schemas import table_from_rows
from raybench.training.augment import Augmenter
from raybench.training.balance import balanced_sampler, class_weights
from raybench.training.cache import (
    CachedVolumes,
    VolumeCache,
    node_cache_dir,
    preprocess_for,
    rows_of,
)
from raybench.training.determinism import (
    backend_settings,
    configure_torch,
    derive_seed,
    make_generator,
    seed_everything,
    seed_worker,
)
from raybench.training.explain import ExplainResult, explain_samples, select_samples
from raybench.training.loop import Predictions, TaskHead, make_head, predict, train_epoch
from raybench.training.metrics import score
from raybench.training.models import build_network, check_forward
from raybench.training.perturb import Perturbation, build_perturbation
from raybench.training.saved import model_bytes, model_path, sha256_hex
from raybench.training.uncertainty import Variant, calibrated_rows, uncertainty_variants

__all__ = ["TrialContext", "TrialOutcome", "run_trial"]


@dataclass
class TrialContext:
    """Where and how a trial runs (not part of its identity: results do not depend on it).

    ``cache_dir``: folder of the volume cache, shared by all trials of the node (``None``: the
    node's own, :func:`~raybench.training.cache.node_cache_dir`);
    ``device``: ``"cpu"`` or ``"cuda"`` (``"cuda:N"``); ``cpu_threads``: torch intra-op threads
    (keep it fixed across runs for bit-identical results); ``on_epoch``: called with one dict per
    epoch (``epoch``, ``train_loss``, ``val_loss``, ``val_<metric>``, ``lr``, ``seconds``).
    """

    cache_dir: Path | str | None = None
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
    explanations: pa.Table | None = None
    maps: dict[str, bytes] = field(default_factory=dict)
    model_sha256: str | None = None
    backends: dict[str, bool] = field(default_factory=dict)


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


def _targets(task: TaskConfig, cohort: Cohort, train_rows: list[dict]) -> _Targets:
    """How labels become training targets: classes in index order, or the training mean and SD."""
    label = task.label
    if label not in cohort.table.columns:
        raise DataError(
            f"dataset {cohort.name!r} has no column {label!r} (task.label); columns: "
            f"{cohort.table.columns}"
        )
    if task.type == "classification":
        return _Targets(task.type, label, classes=_class_order(task, cohort))
    if task.type == "regression":
        try:
            values = np.array([float(r[label]) for r in train_rows], dtype=float)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"dataset {cohort.name!r}: column {label!r} (task.label) must be numeric for "
                f"regression ({exc})"
            ) from exc
        sd = float(values.std()) if len(values) > 1 else 1.0
        return _Targets(task.type, label, mean=float(values.mean()), sd=sd if sd > 0 else 1.0)
    return _Targets(task.type, label)


def _class_order(task: TaskConfig, cohort: Cohort) -> tuple[str, ...]:
    """``task.classes``, else the cohort's sorted labels; a binary task's positive class last."""
    classes = list(task.classes or ())
    if not classes:
        values = cohort.table.get_column(task.label).drop_nulls().cast(str).unique().to_list()
        classes = sorted(values)
    if task.positive is not None and len(classes) == 2:
        if task.positive not in classes:
            raise DataError(
                f"task.positive={task.positive!r} is not a class of dataset {cohort.name!r} "
                f"(classes: {classes})"
            )
        classes = [c for c in classes if c != task.positive] + [task.positive]
    if len(classes) < 2:
        raise DataError(
            f"dataset {cohort.name!r}: column {task.label!r} has {len(classes)} class(es) "
            f"{classes}; classification needs at least 2"
        )
    return tuple(classes)


# --------------------------------------------------------------------------- optimisation


def _optimizer(model: torch.nn.Module, training: TrainingConfig) -> torch.optim.Optimizer:
    name = training.optimizer
    lr = float(training.lr)  # type: ignore[arg-type]  # resolved: see _config
    wd = float(training.weight_decay)  # type: ignore[arg-type]
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
    if name == "none":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=max(epochs // 3, 1), gamma=0.1)
    raise SuiteError(f"training.scheduler={name!r}; allowed: none, cosine, step")


def _loader(
    dataset: CachedVolumes,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int,
    workers: int,
    sampler: Sampler[int] | None = None,
) -> DataLoader:
    n = len(dataset)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
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

    The phases: set up (:func:`_prepare`: config, device, seeds, samples, targets, cache), build the
    network (:func:`_network`), train and keep the best epoch (:func:`_train_and_select`),
    evaluate (:func:`_evaluate`), the uncertainty variants (:func:`_uncertainty`), and gather the
    outcome.

    Raises :class:`TrialError` for a non-finite loss (``"non-finite loss at epoch E, batch B"``),
    :class:`SuiteError` / :class:`DataError` for a bad config or dataset.
    """
    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    run = _prepare(spec, cohort, ctx)
    model = _network(run)
    epoch_rows, best = _train_and_select(run, model)
    model.load_state_dict(best.state)
    train_seconds = time.perf_counter() - t0
    t_eval = time.perf_counter()
    prediction_rows = _evaluate(run, model)
    explained = _explain(run, model)
    prediction_rows += _uncertainty(run, model, prediction_rows)
    eval_seconds = time.perf_counter() - t_eval
    saved = _saved_model(run, best.state)
    return TrialOutcome(
        predictions=table_from_rows("predictions", prediction_rows),
        epochs=table_from_rows("epochs", epoch_rows),
        splits=table_from_rows("splits", _split_rows(spec, run.train_rows, run.val_rows, cohort)),
        best_epoch=best.epoch,
        val_score=None if math.isnan(best.value) else best.value,
        selection_metric=run.config.selection.metric,
        train_seconds=train_seconds,
        eval_seconds=eval_seconds,
        device=str(run.device),
        started_at=started_at,
        finished_at=datetime.now(UTC),
        n_train=len(run.train_rows),
        n_val=len(run.val_rows),
        n_test=len(rows_of(cohort, spec.test_ids)) if spec.test_ids else 0,
        cache={"hits": run.cache.stats.hits, "misses": run.cache.stats.misses},
        explanations=None if explained is None else table_from_rows("explanations", explained.rows),
        maps={**({} if explained is None else explained.maps), **saved},
        model_sha256=sha256_hex(next(iter(saved.values()))) if saved else None,
        backends=backend_settings(run.amp),
    )


def _saved_model(run: _Run, state: Mapping[str, torch.Tensor]) -> dict[str, bytes]:
    """``{models/<trial_id>.pt: bytes}`` of a refit trial that keeps its model, else ``{}``."""
    if run.config.training.save_model != "best" or run.spec.stage != "refit":
        return {}
    data = model_bytes(run.spec, run.config, run.targets, run.cache.preprocess, state)
    return {model_path(run.spec.trial_id): data}


@dataclass
class _Run:
    """What the phases of one trial share: its spec and config, device, samples and data."""

    spec: TrialSpec
    config: TrialConfig
    ctx: TrialContext
    cohort: Cohort
    device: torch.device
    train_rows: list[dict[str, Any]]
    val_rows: list[dict[str, Any]]
    eval_rows: list[dict[str, Any]]
    eval_split: str
    targets: _Targets
    cache: VolumeCache

    @property
    def amp(self) -> bool:
        """Mixed precision: asked for by the config, and on a GPU."""
        return self.config.training.amp and self.device.type == "cuda"

    def train_loader(self) -> DataLoader:
        """The training DataLoader: shuffled or class-balanced, augmented (training samples only).

        ``training.augment`` and ``training.sampler`` act here and nowhere else: validation and
        test samples go through :meth:`loader`, never augmented.
        """
        training = self.config.training
        targets = self.targets.encode(self.train_rows, self.cohort.name)
        augment = None
        if training.augment:
            augment = Augmenter(
                training.augment,
                self.spec.seed,
                with_mask=self.targets.task_type == "segmentation",
            )
        sampler = None
        if training.sampler == "balanced" and targets is not None:
            sampler = balanced_sampler(targets, self.targets.n_out, self.spec.seed)
        data = CachedVolumes(self.cache, self.train_rows, targets, augment=augment)
        return _loader(
            data,
            int(training.batch_size),  # type: ignore[arg-type]  # resolved
            shuffle=True,
            seed=self.spec.seed,
            workers=training.num_workers,
            sampler=sampler,
        )

    def loader(
        self,
        rows: list[dict[str, Any]],
        *,
        shuffle: bool,
        perturbation: Perturbation | None = None,
    ) -> DataLoader:
        """A DataLoader over ``rows`` (optionally perturbed), seeded by the trial seed."""
        data = CachedVolumes(
            self.cache,
            rows,
            self.targets.encode(rows, self.cohort.name),
            _perturber(perturbation, self.spec, rows),
        )
        return _loader(
            data,
            int(self.config.training.batch_size),  # type: ignore[arg-type]  # resolved
            shuffle=shuffle,
            seed=self.spec.seed,
            workers=self.config.training.num_workers,
        )


def _config(spec: TrialSpec) -> TrialConfig:
    """The trial's typed config; every searchable key must have its value by now."""
    config = spec.settings
    unresolved = config.training.unresolved()
    if unresolved:
        raise SuiteError(
            f"trial {spec.trial_id}: training keys {unresolved} are searched and no search point "
            "was applied to this refit (raybench.plan.apply_point)"
        )
    return config


def _prepare(spec: TrialSpec, cohort: Cohort, ctx: TrialContext) -> _Run:
    """Config, device and seeds; the samples of each role, their targets and the volume cache."""
    config = _config(spec)
    device = _device(ctx.device)
    configure_torch(device.type, ctx.cpu_threads)
    seed_everything(spec.seed)
    train_rows = rows_of(cohort, spec.train_ids)
    val_rows = rows_of(cohort, spec.val_ids)
    eval_split = "test" if spec.stage == "refit" else "val"
    eval_ids = spec.test_ids if spec.stage == "refit" else spec.val_ids
    eval_rows = rows_of(cohort, eval_ids) if eval_ids else []
    if not train_rows:
        raise DataError(f"trial {spec.trial_id}: no training samples (train_ids is empty)")
    if not eval_rows and not (spec.stage == "refit" and spec.protocol == FINAL_PROTOCOL):
        raise DataError(f"trial {spec.trial_id}: no {eval_split} samples to evaluate on")
    targets = _targets(config.task, cohort, train_rows)
    seg = targets.task_type == "segmentation"
    if seg:
        for rows in (train_rows, val_rows, eval_rows):
            for row in rows:
                row["mask"] = row[targets.label]
    preprocess = preprocess_for(cohort, with_mask=seg, config=config.preprocess)
    cache = VolumeCache(node_cache_dir(ctx.cache_dir), cohort, preprocess)
    return _Run(
        spec=spec,
        config=config,
        ctx=ctx,
        cohort=cohort,
        device=device,
        train_rows=train_rows,
        val_rows=val_rows,
        eval_rows=eval_rows,
        eval_split=eval_split,
        targets=targets,
        cache=cache,
    )


def _network(run: _Run) -> torch.nn.Module:
    """The trial's network on its device, checked with one forward pass."""
    shape = run.cache.preprocess.spatial_size
    model_config = run.config.model
    model = build_network(
        model_config.arch,
        model_config.params,
        run.targets.task_type,
        run.targets.n_out,
        spatial_size=shape,
        plugins=run.config.plugins,
    )
    model.to(run.device)
    check_forward(model, model_config.arch, (1, *shape), run.targets.n_out)
    return model


def _evaluate(run: _Run, model: torch.nn.Module) -> list[dict[str, Any]]:
    """Predictions on the evaluation samples, clean and (refit) under each perturbation."""
    perturbations: list[Perturbation] = []
    if run.spec.stage == "refit":
        levels = run.config.evaluation.perturbations
        perturbations = [build_perturbation(dataclasses.asdict(p)) for p in levels]
    head = make_head(run.targets.task_type, mean=run.targets.mean, sd=run.targets.sd)
    rows: list[dict[str, Any]] = []
    for perturbation in [None, *perturbations] if run.eval_rows else []:  # final: none
        loader = run.loader(run.eval_rows, shuffle=False, perturbation=perturbation)
        out = predict(model, loader, head, run.device, amp=run.amp)
        rows += _prediction_rows(
            run.spec, run.eval_rows, run.eval_split, perturbation, out, run.targets
        )
    if run.spec.stage == "refit" and run.val_rows:
        out = predict(model, run.loader(run.val_rows, shuffle=False), head, run.device, amp=run.amp)
        rows += _prediction_rows(run.spec, run.val_rows, "val", None, out, run.targets)
    return rows


def _explain(run: _Run, model: torch.nn.Module) -> ExplainResult | None:
    """Attribution maps of a refit trial's test samples, scored (None when none are asked for).

    The samples are drawn stratified on the label, seeded by the test fold; the explained output
    is the positive class of a binary task, the predicted class of a multi-class task, the value of
    a regression. Masks come from the cohort's ``mask`` column, on the network's grid. The
    weakly supervised segmentation threshold is chosen on validation samples drawn the same way
    (never on the test fold); the stability maps use the suite's perturbations with the seeds of
    the perturbed predictions, so they explain exactly the images that were scored.
    """
    explain = run.config.evaluation.explain
    if explain is None or run.spec.stage != "refit" or not explain.methods or not run.eval_rows:
        return None
    if run.targets.task_type == "segmentation":
        raise SuiteError(
            "evaluation.explanations: attribution methods need one score per image; "
            "task.type 'segmentation' has one per voxel"
        )
    rows = run.eval_rows
    labels = [row.get(run.targets.label) for row in rows]
    # the draw depends on the test fold only, not on the model or its seed: every model and seed
    # of a fold explains the same samples (paired comparisons, stability across seeds)
    spec = run.spec
    draw = derive_seed(0, "explain", spec.dataset, spec.protocol, spec.outer_fold)
    chosen = [rows[i] for i in select_samples(rows, labels, explain.samples, draw)]
    has_mask = "mask" in run.cohort.table.columns
    masks = (
        VolumeCache(
            node_cache_dir(run.ctx.cache_dir),
            run.cohort,
            preprocess_for(
                run.cohort,
                with_mask=True,
                spatial_size=run.cache.preprocess.spatial_size,
                config=run.config.preprocess,
            ),
        )
        if has_mask
        else None
    )

    def loaded(picked: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for row in picked:
            image = torch.from_numpy(run.cache.load(row)["image"])[None].to(run.device)
            mask = None
            if masks is not None and row.get("mask"):
                mask = masks.load(row)["mask"][0]
            out.append({"row": row, "image": image, "mask": mask})
        return out

    # the segmentation threshold is chosen on validation samples only, drawn like the test ones
    val_labels = [row.get(run.targets.label) for row in run.val_rows]
    val_draw = derive_seed(draw, "threshold")
    val_chosen = [
        run.val_rows[i]
        for i in select_samples(run.val_rows, val_labels, explain.threshold_samples, val_draw)
    ]
    base = {
        "trial_id": run.spec.trial_id,
        "dataset": run.spec.dataset,
        "model": run.spec.model,
        "protocol": run.spec.protocol,
        "outer_fold": run.spec.outer_fold,
        "seed": run.spec.seed,
    }
    return explain_samples(
        model,
        loaded(chosen),
        explain,
        target_of=lambda x: _explained_output(model, x, run.targets),
        score_of=lambda t: _output_score(model, t, run.targets),
        trial_seed=run.spec.seed,
        base_row=base,
        affine_of=lambda row: _affine(run, row),
        val_samples=loaded(val_chosen) if explain.threshold_samples else [],
        perturbations=_explained_perturbations(run) if explain.stability else [],
    )


def _explained_perturbations(run: _Run) -> list[tuple[str, Callable[[torch.Tensor, str], Any]]]:
    """The suite's perturbations as applied to an explained image: the images predictions saw."""
    out = []
    for entry in run.config.evaluation.perturbations:
        perturbation = build_perturbation(dataclasses.asdict(entry))

        def apply(x: torch.Tensor, sample_id: str, p: Perturbation = perturbation) -> torch.Tensor:
            seed = derive_seed(run.spec.seed, p.id, sample_id)
            return p(x[0].detach().cpu(), seed)[None].to(x.device)

        out.append((perturbation.id, apply))
    return out


def _explained_output(
    model: torch.nn.Module, x: torch.Tensor, targets: _Targets
) -> tuple[int, str]:
    """The output explained: the positive class (binary), the predicted class, or the value."""
    if targets.task_type == "regression":
        return 0, "value"
    if len(targets.classes) == 2:
        return 1, targets.classes[1]
    with torch.no_grad():
        k = int(model(x).argmax(dim=1)[0])
    return k, targets.classes[k]


def _output_score(
    model: torch.nn.Module, target: int, targets: _Targets
) -> Callable[[torch.Tensor], torch.Tensor]:
    """What the deletion/insertion curves follow: the target's probability, or the value."""

    def score(batch: torch.Tensor) -> torch.Tensor:
        out = model(batch)
        if targets.task_type == "classification":
            return torch.softmax(out.float(), dim=1)[:, target]
        return out.float().reshape(out.shape[0], -1)[:, target]

    return score


def _affine(run: _Run, row: Mapping[str, Any]) -> np.ndarray:
    """Voxel-to-world matrix of a sample on the network's grid (the image's after preprocessing)."""
    out = run.cache.preprocess.transforms()({"image": row["image"]})
    affine = getattr(out["image"], "affine", None)
    return np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)


def _uncertainty(
    run: _Run, model: torch.nn.Module, rows: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The uncertainty variants of a refit trial (none without ``evaluation.uncertainty``)."""
    config = run.config.evaluation.uncertainty
    if config is None or run.spec.stage != "refit":
        return []
    head = make_head(run.targets.task_type, mean=run.targets.mean, sd=run.targets.sd)
    splits = {"val": run.val_rows, "test": run.eval_rows}
    loaders = {
        split: (run.loader(r, shuffle=False), [str(x["sample_id"]) for x in r])
        for split, r in splits.items()
        if r
    }
    batch = int(run.config.training.batch_size)  # type: ignore[arg-type]  # resolved
    out: list[dict[str, Any]] = calibrated_rows(rows) if config.calibration else []
    variants: list[Variant] = uncertainty_variants(
        model,
        config,
        loaders,
        head,
        run.device,
        seed=run.spec.seed,
        chunk=max([batch, *(m.draws for m in (config.input_noise, config.mc_dropout) if m)]),
        amp=run.amp,
    )
    for v in variants:
        out += _prediction_rows(
            run.spec, splits[v.split], v.split, None, v.predictions, run.targets, v.name, v.extra
        )
    return out


def _train_and_select(run: _Run, model: torch.nn.Module) -> tuple[list[dict[str, Any]], _Best]:
    """The epoch loop: train, score on validation ids, keep the best weights, stop early."""
    training = run.config.training
    epochs = int(training.epochs)  # type: ignore[arg-type]  # resolved: see _config
    optimizer = _optimizer(model, training)
    scheduler = _scheduler(optimizer, training.scheduler, epochs)
    scaler = torch.amp.GradScaler("cuda") if run.amp else None
    weights = None
    if training.class_weights == "balanced":
        labels = run.targets.encode(run.train_rows, run.cohort.name) or []
        weights = class_weights(labels, run.targets.n_out)
    head = make_head(
        run.targets.task_type, mean=run.targets.mean, sd=run.targets.sd, class_weights=weights
    )
    train_loader = run.train_loader()
    val_loader = run.loader(run.val_rows, shuffle=False)
    selection = run.config.selection
    stopping = training.early_stopping
    has_val = len(run.val_rows) > 0
    epoch_rows: list[dict[str, Any]] = []
    best = _Best(selection.higher_is_better, stopping.min_delta if stopping else 0.0)
    for epoch in range(epochs):
        t_epoch = time.perf_counter()
        train_loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]  # CachedVolumes
        train_loss = train_epoch(
            model, train_loader, head, optimizer, run.device, epoch, amp=run.amp, scaler=scaler
        )
        if scheduler is not None:
            scheduler.step()
        lr = float(optimizer.param_groups[0]["lr"])
        t_train = time.perf_counter() - t_epoch
        row: dict[str, Any] = {"epoch": epoch, "train_loss": train_loss, "lr": lr}
        epoch_rows.append(_epoch_row(run.spec, epoch, "train", train_loss, None, None, lr, t_train))
        if has_val:
            val_loss, value, seconds = _validate(run, model, val_loader, head)
            metric = selection.metric
            epoch_rows.append(
                _epoch_row(run.spec, epoch, "val", val_loss, metric, value, lr, seconds)
            )
            row.update({"val_loss": val_loss, f"val_{metric}": value})
            best.update(epoch, value, model)
        else:
            best.update(epoch, math.nan, model, always=True)
        row["seconds"] = time.perf_counter() - t_epoch
        if run.ctx.on_epoch is not None:
            run.ctx.on_epoch(row)
        if stopping and has_val and epoch - best.epoch >= stopping.patience:
            break
    return epoch_rows, best


def _validate(
    run: _Run, model: torch.nn.Module, loader: DataLoader, head: TaskHead
) -> tuple[float, float, float]:
    """Mean validation loss, selection metric and seconds of one pass over the validation ids."""
    t_val = time.perf_counter()
    val = predict(model, loader, head, run.device, amp=run.amp)
    value = _score(run.config.selection.metric, val, run.targets)
    val_loss = float(np.mean(val.loss)) if len(val.loss) else math.nan
    return val_loss, value, time.perf_counter() - t_val


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
    variant: str = "raw",
    extra: Mapping[str, np.ndarray] | None = None,
) -> list[dict[str, Any]]:
    """One predictions row per sample of ``out`` (``extra``: per-sample columns of a variant)."""
    result = []
    binary = targets.task_type == "classification" and len(targets.classes) == 2
    extra = extra or {}
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
                "variant": variant,
                **resample_columns(spec),
                **{name: values[k].item() for name, values in extra.items()},
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
