"""Cost of each attribution method on the quick-start network and a 64³ volume; prints JSON.

The quick-start CNN (MONAI ``Classifier``, ``arch: classifier`` with default settings, built by
:func:`raybench.training.models.build_network` as a trial builds it) explains ``--samples``
random 64³ volumes with every method of ``evaluation.explanations`` at the settings of
``suites/explanations.yaml`` (:func:`raybench.training.explain.attribute`, as a trial calls it).

For each method: ``seconds`` per image (median over the images), ``forward_passes``: that time
divided by one forward pass of one image timed in the same process just before and after the
method (``forward_seconds``: so that a shared machine's changing load cancels out of the ratio;
what the method costs in forward passes),
``images_forwarded``: the images the network actually saw per map (a forward hook counts the batch
rows; batched passes cost less per image than one, and backward passes are not counted), and memory:
on CPU the growth of the process's peak resident set while the method runs (``extra_mb``; each
method runs in a fresh process after a warm-up forward and gradient pass), on a GPU the peak
allocated by torch (``peak_mb``). A trial with ``randomisation`` and ``stability`` explains each
image once more, and once per perturbation; ``threshold_samples`` validation images add their
own maps.

``--param occlusion.stride=8`` changes one setting (repeatable): occlusion at ``window: 8,
stride: 4`` on 64³ forwards 3,376 images per map, so on a slow CPU measure it at ``stride=8``
(513) and scale by the ratio of ``images_forwarded`` (docs/explanations.md does).

Run: ``.venv/bin/python -m benchmarks.explain_cost [--device cuda] [--shape 64] [--methods ...]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import resource
import statistics
import time
from typing import Any

import torch

METHODS: dict[str, dict[str, Any]] = {
    "gradcam": {"layer": "auto"},
    "gradcampp": {"layer": "auto"},
    "occlusion": {"window": 8, "stride": 4},
    "gradient": {},
    "smoothgrad": {"samples": 16, "sigma": 0.15},
    "integrated_gradients": {"steps": 32},
    "kernel_shap": {"window": 8, "samples": 128},
    "lime": {"window": 8, "samples": 128},
}


def _network(shape: int, device: torch.device) -> torch.nn.Module:
    from raybench.training.models import build_network

    torch.manual_seed(0)
    model = build_network("classifier", {}, "classification", 2, spatial_size=(shape,) * 3)
    return model.to(device).eval()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _measure(
    method: str, params: dict[str, Any], shape: int, samples: int, device_name: str, threads: int
) -> dict:
    """One method in this (fresh) process: seconds per image, images forwarded per image and
    memory above a forward pass."""
    from raybench.plan.config import ExplanationMethodConfig
    from raybench.training.explain import attribute

    torch.set_num_threads(threads)
    device = torch.device(device_name)
    model = _network(shape, device)
    images = torch.randn(samples, 1, 1, shape, shape, shape, device=device)
    with torch.no_grad():
        model(images[0])  # warm-up: allocator, kernels
    forward = [_forward_once(model, images[0], device) for _ in range(3)]
    # and the libraries: Captum's import and a first backward pass are not the method's cost
    attribute(model, images[0], 1, ExplanationMethodConfig("gradient"), seed=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    config = ExplanationMethodConfig(method, params)
    seen = [0]
    hook = model.register_forward_hook(
        lambda _m, args, _out: seen.__setitem__(0, seen[0] + len(args[0]))
    )
    times = []
    for i, x in enumerate(images):
        _sync(device)
        t0 = time.perf_counter()
        attribute(model, x, 1, config, seed=i)
        _sync(device)
        times.append(time.perf_counter() - t0)
    hook.remove()
    forward += [_forward_once(model, images[0], device) for _ in range(3)]
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    out = {
        "params": params,
        "seconds": round(statistics.median(times), 4),
        "images_forwarded": seen[0] / samples,
        "forward_seconds": round(statistics.median(forward), 5),
        "forward_passes": round(statistics.median(times) / statistics.median(forward), 1),
    }
    if device.type == "cuda":
        out["peak_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    else:
        out["extra_mb"] = round((after - before) / 1024, 1)  # ru_maxrss is in KiB on Linux
    return out


def _forward_once(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> float:
    """Seconds of one forward pass of one image."""
    with torch.no_grad():
        _sync(device)
        t0 = time.perf_counter()
        model(x)
        _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="METHOD.KEY=VALUE",
        help="override one setting, e.g. occlusion.stride=8 or smoothgrad.sigma=0.1",
    )
    args = parser.parse_args()
    settings = {m: dict(p) for m, p in METHODS.items()}
    for item in args.param:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        if method not in settings or not name or not value:
            parser.error(
                f"--param {item!r}: expected METHOD.KEY=VALUE with METHOD in {list(METHODS)}"
            )
        settings[method][name] = float(value) if "." in value else int(value)
    context = multiprocessing.get_context("spawn")  # a fresh process: a clean peak memory
    results = {}
    for method in args.methods:
        with context.Pool(1, maxtasksperchild=1) as pool:
            cost = pool.apply(
                _measure,
                (method, settings[method], args.shape, args.samples, args.device, args.threads),
            )
        results[method] = cost
    device = torch.device(args.device)
    print(
        json.dumps(
            {
                "benchmark": "explain_cost",
                "device": args.device
                if device.type == "cpu"
                else torch.cuda.get_device_name(device),
                "cpu": platform.processor() or platform.machine(),
                "threads": args.threads,
                "shape": args.shape,
                "samples": args.samples,
                "network": "classifier (quick start)",
                "methods": results,
            }
        )
    )


if __name__ == "__main__":
    main()
