"""Epoch time with raybench's volume cache against decoding ``.nii.gz`` every epoch; prints JSON.

Both sides run the same MONAI preprocessing (:class:`raybench.training.cache.Preprocess`: load,
channel first, RAS orientation, resize, z-score on non-zero voxels) over the same brain-like NIfTI
volumes (noisy, so gzip does not shrink them unrealistically) and iterate a DataLoader with the
same batch size and workers:

- *baseline*: ``monai.data.Dataset`` with the transform chain, i.e. every epoch decodes and
  preprocesses every ``.nii.gz`` (what a trial does without a cache);
- *cached*: :class:`raybench.training.cache.CachedVolumes` over a warm
  :class:`~raybench.training.cache.VolumeCache` (the state of every trial after the first on a
  node; the one-off fill time is reported separately).

Two epoch kinds are timed: a data-only epoch (the input pipeline alone, the part the cache
replaces) and a training epoch of a small MONAI ``Classifier`` (forward, backward, step), which
shows how much of a real epoch the decoding was. Each figure is the median of ``--epochs`` epochs.

Run: ``.venv/bin/python benchmarks/data_cache.py [--subjects 32] [--shape 64] [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import polars as pl
import torch
from monai.data import Dataset
from monai.networks.nets import Classifier
from torch.utils.data import DataLoader

from raybench.data.cohort import Cohort
from raybench.training.cache import CachedVolumes, VolumeCache, preprocess_for


def write_volumes(root: Path, n: int, size: int, seed: int = 0) -> Cohort:
    """``n`` noisy ellipsoid 'brains' of ``size``^3 voxels as .nii.gz, with a cohort table."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, size),) * 3, indexing="ij"))
    brain = (grid[0] ** 2 / 0.8 + grid[1] ** 2 / 0.6 + grid[2] ** 2 / 0.7) < 0.9
    rows, digest = [], hashlib.sha256()
    for i in range(n):
        img = brain * (100 + 20 * grid[2] + 5 * rng.standard_normal(brain.shape))
        path = root / f"sub-{i:03d}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(img.astype(np.float32), np.eye(4)), path)
        digest.update(path.read_bytes())
        rows.append(
            {
                "sample_id": f"sub-{i:03d}",
                "subject_id": f"sub-{i:03d}",
                "session_id": "1",
                "scanner": "s",
                "site": "s",
                "image": str(path),
                "diagnosis": "AD" if i % 2 else "CN",
            }
        )
    return Cohort("bench", pl.DataFrame(rows), digest.hexdigest())


def _epoch_times(
    make_loader: Callable[[], DataLoader], epochs: int, step: Callable | None
) -> float:
    times = []
    for _ in range(epochs):
        loader = make_loader()
        t0 = time.perf_counter()
        for batch in loader:
            if step is not None:
                step(batch)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=32)
    parser.add_argument("--shape", type=int, default=64, help="edge of the cubic volumes")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory(prefix="rb-bench-cache-") as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        cohort = write_volumes(root / "data", args.subjects, args.shape)
        rows = cohort.table.to_dicts()
        pre = preprocess_for(cohort, with_mask=False)
        targets = [float(r["diagnosis"] == "AD") for r in rows]

        t0 = time.perf_counter()
        cache = VolumeCache(root / "cache", cohort, pre)
        cache.warm(rows)
        fill_seconds = time.perf_counter() - t0
        per_volume_file = sorted((root / "data").iterdir())[0].stat().st_size

        def baseline_loader() -> DataLoader:
            items = [{"image": r["image"], "target": t} for r, t in zip(rows, targets, strict=True)]
            data = Dataset(items, transform=pre.transforms())
            return DataLoader(data, batch_size=args.batch_size, num_workers=args.workers)

        def cached_loader() -> DataLoader:
            data = CachedVolumes(VolumeCache(root / "cache", cohort, pre), rows, targets)
            return DataLoader(data, batch_size=args.batch_size, num_workers=args.workers)

        model = Classifier(
            in_shape=(1, *pre.spatial_size), classes=2, channels=(4, 8, 16), strides=(2, 2, 2)
        )
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_step(batch: dict[str, Any]) -> None:
            optimizer.zero_grad()
            image = torch.as_tensor(batch["image"]).float()
            loss = torch.nn.functional.cross_entropy(model(image), batch["target"].long())
            loss.backward()
            optimizer.step()

        data_base = _epoch_times(baseline_loader, args.epochs, None)
        data_cached = _epoch_times(cached_loader, args.epochs, None)
        train_base = _epoch_times(baseline_loader, args.epochs, train_step)
        train_cached = _epoch_times(cached_loader, args.epochs, train_step)

    result = {
        "benchmark": "data_cache",
        "subjects": args.subjects,
        "shape": [args.shape] * 3,
        "nii_gz_bytes_per_volume": per_volume_file,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "epochs_timed": args.epochs,
        "cache_fill_seconds": round(fill_seconds, 4),
        "data_epoch_seconds": {"decode_every_epoch": data_base, "cached": data_cached},
        "data_epoch_speedup": data_base / data_cached,
        "per_volume_ms": {
            "decode_every_epoch": 1000 * data_base / args.subjects,
            "cached": 1000 * data_cached / args.subjects,
        },
        "train_epoch_seconds": {"decode_every_epoch": train_base, "cached": train_cached},
        "train_epoch_speedup": train_base / train_cached,
        "target_data_epoch_speedup": 5.0,
        "meets_target": data_base / data_cached >= 5.0,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
