"""Cost of the preprocessing choices on a real-geometry brain (MNI152, 1 mm); prints JSON.

For each setting of ``preprocess:`` (1 mm as stored, 1.5 mm, 2 mm, 2 mm with ``crop_foreground``,
3 mm) it measures, in a fresh process so that peak memory is that setting's alone:

- ``seconds_per_sample``: median wall time to load and preprocess one ``.nii.gz`` (the one-off cost
  of filling the volume cache; later epochs read ``.npy`` arrays);
- ``cached_mib_per_sample``: size of the cached float32 volume (what ``raybench plan`` prints);
- ``peak_rss_mib``: peak resident memory of the process while preprocessing, less the memory after
  imports (the working memory of the transforms);
- ``train_step_seconds`` and ``train_peak_rss_mib``: one forward and backward pass of a small
  MONAI ``Classifier`` (channels 8, 16, 32; strides 2) on one sample of that shape, in another
  fresh process: the part of training cost that grows with the voxel count.

The images are nilearn's MNI152 template (shipped in the package) with simulated grey-matter
atrophy, saved as int16 ``.nii.gz``: the geometry of a t1-linear CAPS image (197 × 233 × 189).
Needs the ``dev`` extra (nilearn).

Run: ``.venv/bin/python -m benchmarks.preprocess_cost [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

SETTINGS: dict[str, dict[str, Any]] = {
    "1mm": {},
    "1.5mm": {"spacing": (1.5, 1.5, 1.5)},
    "2mm": {"spacing": (2.0, 2.0, 2.0)},
    "2mm_crop": {"spacing": (2.0, 2.0, 2.0), "crop_foreground": True},
    "3mm": {"spacing": (3.0, 3.0, 3.0)},
}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _make_images(root: Path, n: int) -> list[str]:
    import nibabel as nib
    import numpy as np
    from nilearn import datasets

    template = datasets.load_mni152_template(resolution=1)
    t1 = 1000.0 * template.get_fdata(dtype=np.float32)
    gm = datasets.load_mni152_gm_template(resolution=1).get_fdata(dtype=np.float32)
    paths = []
    for i in range(n):
        image = (t1 * (1.0 - 0.1 * i * gm / max(float(gm.max()), 1.0))).astype(np.int16)
        path = root / f"sub-{i:02d}_T1w.nii.gz"
        nib.save(nib.Nifti1Image(image, template.affine), path)
        paths.append(str(path))
    return paths


def _measure_preprocess(name: str, paths: list[str], repeats: int, queue: Any) -> None:
    import numpy as np
    import torch

    from raybench.data.preprocess import Preprocess, PreprocessConfig

    torch.set_num_threads(1)
    config = PreprocessConfig(**SETTINGS[name])
    base = _rss_mib()  # after the imports: what the transforms add
    probe = Preprocess((1, 1, 1), config).transforms(common_grid=False)
    shape = tuple(probe({"image": paths[0]})["image"].shape[1:])
    chain = Preprocess(shape, config).transforms()
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        chain({"image": paths[i % len(paths)]})
        times.append(time.perf_counter() - t0)
    queue.put(
        {
            "setting": name,
            "preprocess": {
                k: list(v) if isinstance(v, tuple) else v for k, v in SETTINGS[name].items()
            },
            "shape": list(shape),
            "seconds_per_sample": statistics.median(times),
            "cached_mib_per_sample": float(np.prod(shape)) * 4 / 2**20,
            "peak_rss_mib": _rss_mib() - base,
        }
    )


def _measure_train_step(shape: tuple[int, ...], queue: Any) -> None:
    import torch
    from monai.networks.nets import Classifier

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = Classifier(in_shape=(1, *shape), classes=2, channels=(8, 16, 32), strides=(2, 2, 2))
    x = torch.randn(1, 1, *shape)
    base = _rss_mib()
    t0 = time.perf_counter()
    net(x).sum().backward()
    queue.put(
        {"train_step_seconds": time.perf_counter() - t0, "train_peak_rss_mib": _rss_mib() - base}
    )


def _in_process(ctx: Any, target: Any, *args: Any) -> dict[str, Any]:
    """Run ``target(*args, queue)`` in a fresh process (its own peak memory) and return its dict."""
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="samples timed per setting")
    parser.add_argument("--settings", nargs="*", default=list(SETTINGS), choices=list(SETTINGS))
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        paths = _make_images(Path(tmp), max(args.repeats, 1))
        for name in args.settings:
            result = _in_process(ctx, _measure_preprocess, name, paths, args.repeats)
            result.update(_in_process(ctx, _measure_train_step, tuple(result["shape"])))
            result.update(
                {"benchmark": "preprocess_cost", "machine": platform.machine(), "threads": 1}
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
