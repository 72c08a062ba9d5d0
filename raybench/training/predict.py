"""Predictions of a saved model on any cohort, exactly as its trial made them (no Ray here).

:func:`predict_saved` evaluates a model kept by ``training.save_model: best``
(:mod:`raybench.training.saved`) with the same loader, batch size, device settings and
perturbation seeds as the trial's own evaluation (:mod:`raybench.training.trial`), so on the
trial's test fold it reproduces the trial's predictions bit for bit on CPU, and on another dataset
it gives the rows ``raybench predict`` and ``validation.external`` append (``split = "external"``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import torch
from raybench_analysis.vocabulary import EXTERNAL_SPLIT

from raybench.data.cohort import Cohort
from raybench.plan.config import TrialConfig
from raybench.store.schemas import table_from_rows
from raybench.training.cache import CachedVolumes, VolumeCache, node_cache_dir, rows_of
from raybench.training.determinism import configure_torch, seed_everything
from raybench.training.features import penultimate_features
from raybench.training.loop import make_head, predict
from raybench.training.perturb import build_perturbation
from raybench.training.saved import SavedModel
from raybench.training.trial import _device, _loader, _perturber, _prediction_rows, _Targets

__all__ = ["predict_saved", "saved_features"]


def predict_saved(
    saved: SavedModel,
    cohort: Cohort,
    cache_dir: Path | str | None,
    *,
    entry_id: str,
    sample_ids: Sequence[str] | None = None,
    split: str = EXTERNAL_SPLIT,
    perturbations: bool = False,
    device: str = "cpu",
    cpu_threads: int = 1,
) -> pa.Table:
    """The ``predictions`` rows of ``saved`` on ``cohort`` (all samples, or ``sample_ids``).

    Rows carry ``trial_id = entry_id``, ``dataset = cohort.name``, ``split`` and the model's
    ``model``, ``protocol``, ``outer_fold`` and ``seed``; clean, then under each perturbation level
    of the trial's config when ``perturbations`` (same per-sample seeds as the trial's own
    evaluation). Labels are encoded with the saved encoding: a class the model does not know is a
    :class:`~raybench.errors.DataError` naming the sample.
    """
    config = TrialConfig.from_dict(saved.config)
    t = saved.targets
    targets = _Targets(t["task_type"], t["label"], tuple(t["classes"]), t["mean"], t["sd"])
    torch_device = _device(device)
    configure_torch(torch_device.type, cpu_threads)
    seed = int(saved.trial["seed"])
    seed_everything(seed)
    drawn = {"train_fraction": None, "train_resample": None, "n_train_subjects": None}
    drawn |= {**saved.trial, "trial_id": entry_id, "dataset": cohort.name}
    ident = SimpleNamespace(**drawn)
    ids = list(sample_ids) if sample_ids is not None else cohort.table["sample_id"].sort().to_list()
    rows = rows_of(cohort, ids)
    if targets.task_type == "segmentation":
        for row in rows:
            row["mask"] = row[targets.label]
    model = saved.build(torch_device)
    cache = VolumeCache(node_cache_dir(cache_dir), cohort, saved.preprocess)
    head = make_head(targets.task_type, mean=targets.mean, sd=targets.sd)
    levels = config.evaluation.perturbations if perturbations else ()
    amp = config.training.amp and torch_device.type == "cuda"
    out_rows: list[dict[str, Any]] = []
    for level in [None, *levels]:
        perturbation = None if level is None else build_perturbation(dataclasses.asdict(level))
        data = CachedVolumes(
            cache, rows, targets.encode(rows, cohort.name), _perturber(perturbation, ident, rows)
        )
        loader = _loader(
            data,
            int(config.training.batch_size),  # type: ignore[arg-type]  # resolved in the trial
            shuffle=False,
            seed=seed,
            workers=config.training.num_workers,
        )
        out = predict(model, loader, head, torch_device, amp=amp)
        out_rows += _prediction_rows(ident, rows, split, perturbation, out, targets)  # type: ignore[arg-type]
    return table_from_rows("predictions", out_rows)


def saved_features(
    saved: SavedModel,
    cohort: Cohort,
    cache_dir: Path | str | None,
    *,
    sample_ids: Sequence[str],
    origin: str,
    entry: dict[str, Any],
    device: str = "cpu",
    cpu_threads: int = 1,
) -> list[dict[str, Any]]:
    """``features`` rows (docs/results.md) of ``saved``'s network on ``sample_ids`` of ``cohort``.

    Each row holds the input of the network's last linear layer on one clean, preprocessed image
    (:func:`raybench.training.features.penultimate_features`), the image's ids and class, and
    ``origin`` (``test`` or ``generated``); ``entry`` gives the row's ``trial_id`` (the predict
    entry) and what it copies of the refit (``refit_trial_id``, ``model``, ...).
    """
    torch_device = _device(device)
    configure_torch(torch_device.type, cpu_threads)
    rows = rows_of(cohort, list(sample_ids))
    cache = VolumeCache(node_cache_dir(cache_dir), cohort, saved.preprocess)
    images = torch.stack([torch.from_numpy(cache.load(row)["image"]) for row in rows])
    values = penultimate_features(saved.build(torch_device), images.to(torch_device))
    label = saved.targets["label"]
    return [
        {
            **entry,
            "dataset": cohort.name,
            "origin": origin,
            "sample_id": str(row["sample_id"]),
            "subject_id": str(row["subject_id"]),
            "label": None if row.get(label) is None else str(row[label]),
            "features": vector.tolist(),
        }
        for row, vector in zip(rows, values, strict=True)
    ]
