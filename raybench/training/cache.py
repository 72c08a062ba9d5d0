"""Decoded and preprocessed volumes, cached once per dataset × transform on each node.

Decoding a ``.nii.gz`` costs milliseconds per volume; a trial reads each of its volumes once per
epoch, and a suite runs many trials on the same images. :class:`VolumeCache` runs MONAI's
deterministic preprocessing (:class:`Preprocess`) once per image and stores the result as plain
``.npy`` arrays under ``<cache_dir>/<dataset>-<key>/``, where ``key`` hashes the dataset's
fingerprint (its table and every file's size and content hash), the preprocessing description (the
suite's ``preprocess:`` and the common grid, :mod:`raybench.data.preprocess`), the cache format and
the MONAI version: a changed file or a changed transform gives a new key, never a stale
hit.

Several trial processes may fill one cache at once: each array is written to a temporary file in
the same folder and renamed into place (``os.replace`` is atomic on POSIX), so a reader sees either
no file or a complete one, and two writers of the same volume write the same bytes. An unreadable
file (a crash of the machine mid-write) is recomputed.

This plays the role of MONAI's ``PersistentDataset`` with two differences that matter here: its
temporary file lives in the system temp folder, so the final move is a copy (not atomic) when the
cache is on another filesystem, and its key ignores changes of a file's content under the same path.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import monai
import numpy as np
import polars as pl
import torch
from torch.utils.data import Dataset

from raybench.data.cohort import Cohort
from raybench.data.preprocess import Preprocess, preprocess_for
from raybench.errors import DataError

__all__ = [
    "CACHE_ENV",
    "CachedVolumes",
    "Preprocess",
    "VolumeCache",
    "node_cache_dir",
    "preprocess_for",
]

#: Environment variable naming a node's cache folder (set per node, e.g. to a local SSD).
CACHE_ENV = "RAYBENCH_CACHE_DIR"


def node_cache_dir(configured: Path | str | None = None) -> Path:
    """The volume cache folder of the node this runs on.

    ``configured`` (``raybench run --cache-dir``) when given; otherwise the node's own
    ``$RAYBENCH_CACHE_DIR``, else ``raybench-cache`` in the node's temporary folder. Resolved where
    the trial runs, never on the driver: on a cluster every node builds and reads its own cache
    (a node-local disk is faster than any shared one, and no node waits on another's files),
    and a folder named explicitly may be shared (writes are atomic renames; docs/cluster.md).
    """
    if configured is not None:
        return Path(configured)
    return Path(os.environ.get(CACHE_ENV) or Path(tempfile.gettempdir()) / "raybench-cache")


#: Bumped when the on-disk layout or the meaning of a :class:`Preprocess` field changes.
CACHE_FORMAT = 2


@dataclass
class CacheStats:
    """Counters of one :class:`VolumeCache` object (for tests and benchmarks)."""

    hits: int = 0
    misses: int = 0


@dataclass
class VolumeCache:
    """Preprocessed arrays of one dataset × preprocessing, on disk under ``cache_dir``."""

    cache_dir: Path
    cohort: Cohort
    preprocess: Preprocess
    stats: CacheStats = field(default_factory=CacheStats)

    def __post_init__(self) -> None:
        self.cache_dir = Path(self.cache_dir)
        description = {
            "format": CACHE_FORMAT,
            "monai": monai.__version__,
            "dataset_fingerprint": self.cohort.fingerprint,
            "preprocess": self.preprocess.describe(),
        }
        blob = json.dumps(description, sort_keys=True).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:24]
        self.root = self.cache_dir / f"{_safe(self.cohort.name)}-{self.key}"
        self.root.mkdir(parents=True, exist_ok=True)
        info = self.root / "cache.json"
        if not info.exists():
            _atomic_write_bytes(info, json.dumps(description, indent=2, sort_keys=True).encode())
        self._transform: Any = None

    def _paths(self, sample_id: str) -> dict[str, Path]:
        stem = hashlib.sha256(sample_id.encode()).hexdigest()[:32]
        keys = ["image", "mask"] if self.preprocess.with_mask else ["image"]
        return {k: self.root / f"{stem}.{k}.npy" for k in keys}

    def load(self, row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Arrays of one cohort row (``image`` (C, X, Y, Z) float32 [, ``mask`` uint8]).

        Reads the cached arrays, or decodes and preprocesses the files and caches the result.
        """
        paths = self._paths(str(row["sample_id"]))
        if all(p.exists() for p in paths.values()):
            try:
                arrays = {k: np.load(p, allow_pickle=False) for k, p in paths.items()}
            except (ValueError, OSError, EOFError):
                arrays = None  # a torn file after a machine crash: recompute it
            if arrays is not None:
                self.stats.hits += 1
                return arrays
        self.stats.misses += 1
        arrays = self._compute(row)
        for key, path in paths.items():
            _atomic_save(path, arrays[key])
        return arrays

    def _compute(self, row: Mapping[str, Any]) -> dict[str, np.ndarray]:
        if self._transform is None:
            self._transform = self.preprocess.transforms()
        item = {"image": row["image"]}
        if self.preprocess.with_mask:
            item["mask"] = row["mask"]
        try:
            out = self._transform(item)
        except Exception as exc:
            raise DataError(
                f"dataset {self.cohort.name!r}, sample_id={row['sample_id']!r}: cannot load or "
                f"preprocess {item} ({exc}); check the files are readable 3-D NIfTI volumes"
            ) from exc
        arrays = {"image": np.ascontiguousarray(out["image"], dtype=np.float32)}
        if self.preprocess.with_mask:
            arrays["mask"] = np.ascontiguousarray(out["mask"] > 0.5, dtype=np.uint8)
        return arrays

    def warm(self, rows: Sequence[Mapping[str, Any]]) -> CacheStats:
        """Make sure every row is cached; returns this cache's counters."""
        for row in rows:
            self.load(row)
        return self.stats


class CachedVolumes(Dataset):
    """A torch Dataset over cohort rows, reading preprocessed volumes from a :class:`VolumeCache`.

    Item ``i`` is ``{"image": FloatTensor (C, X, Y, Z), "target": tensor, "index": i}`` with
    ``target`` from ``targets[i]`` (class index, standardised value) or the cached mask (long,
    (1, X, Y, Z)) when ``targets`` is None. ``perturb(image, i)``, when given, is applied to the
    preprocessed image (evaluation under perturbations); ``augment(arrays, sample_id, epoch)`` to
    the image and mask of a training sample (:class:`raybench.training.augment.Augmenter`), with
    the epoch set by :meth:`set_epoch` (as ``DistributedSampler.set_epoch`` in PyTorch).
    """

    def __init__(
        self,
        cache: VolumeCache,
        rows: Sequence[Mapping[str, Any]],
        targets: Sequence[float] | None,
        perturb: Callable[[torch.Tensor, int], torch.Tensor] | None = None,
        augment: Callable[[dict[str, torch.Tensor], str, int], dict[str, torch.Tensor]]
        | None = None,
    ) -> None:
        self.cache = cache
        self.rows = list(rows)
        self.targets = None if targets is None else list(targets)
        self.perturb = perturb
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch the next iteration belongs to (it seeds the augmentation draws)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        arrays = self.cache.load(self.rows[i])
        image = torch.from_numpy(arrays["image"])
        mask = torch.from_numpy(arrays["mask"]) if "mask" in arrays else None
        if self.augment is not None:
            moved = {"image": image} if mask is None else {"image": image, "mask": mask}
            moved = self.augment(moved, str(self.rows[i]["sample_id"]), self.epoch)
            image, mask = moved["image"], moved.get("mask", mask)
        if self.perturb is not None:
            image = self.perturb(image, i)
        if self.targets is not None:
            target = torch.tensor(self.targets[i])
        elif mask is not None:
            target = mask.long()
        else:
            raise DataError(
                f"dataset {self.cache.cohort.name!r}: no targets and no cached mask for "
                f"sample_id={self.rows[i]['sample_id']!r} (segmentation caches masks)"
            )
        return {"image": image, "target": target, "index": i}


def rows_of(cohort: Cohort, ids: Sequence[str]) -> list[dict[str, Any]]:
    """Cohort rows for ``ids`` in the given order; an unknown id is a :class:`DataError`."""
    table = cohort.table
    wanted = pl.DataFrame({"sample_id": list(ids), "_order": list(range(len(ids)))})
    found = wanted.join(table, on="sample_id", how="left", coalesce=True)
    if "image" not in found.columns:
        raise DataError(f"dataset {cohort.name!r}: the cohort table has no 'image' column")
    missing = found.filter(pl.col("image").is_null())["sample_id"].to_list()
    if missing:
        raise DataError(
            f"dataset {cohort.name!r}: sample ids {missing[:5]} of the trial are not in the cohort "
            "table; the plan was compiled against another version of the dataset: re-run "
            "`raybench plan`"
        )
    return found.sort("_order").drop("_order").to_dicts()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:64]


def _atomic_save(path: Path, array: np.ndarray) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
