"""Cost of K input-noise and K MC-dropout passes relative to one evaluation pass; prints JSON.

A MONAI ``Classifier`` with dropout (the small CNN of the synthetic suites) scores ``--samples``
random volumes of ``--shape``³ voxels in batches of ``--batch``:

- *evaluation*: one pass in evaluation mode (what every trial does on its test fold);
- *input_noise* and *mc_dropout*: :func:`raybench.training.uncertainty.stochastic_outputs` with
  K = ``--draws`` (the B × K inputs of a batch go through the network ``max(batch, K)`` rows at
  a time, as in a trial);
- *loop*: the same K input-noise passes as a Python loop over draws × samples (one image per
  forward pass), the way batching avoids.

Each figure is the median of ``--repeats`` runs; ``*_ratio`` divides by the evaluation pass (K
would be the cost of K plain passes). Run:
``.venv/bin/python -m benchmarks.uncertainty_cost [--device cuda] [--shape 32] [--draws 20]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
from monai.networks.nets import Classifier

from raybench.training.uncertainty import stochastic_outputs


def _timed(func: Callable[[], object], device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        func()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--shape", type=int, default=32)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--draws", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = (1, args.shape, args.shape, args.shape)
    model = Classifier(shape, classes=2, channels=(8, 16, 32), strides=(2, 2, 2), dropout=0.2)
    model = model.to(device).eval()
    volumes = torch.randn(args.samples, *shape, device=device)
    batches = list(volumes.split(args.batch))
    k, chunk = args.draws, max(args.batch, args.draws)

    @torch.no_grad()
    def evaluation() -> None:
        model.eval()
        for b in batches:
            model(b)

    def input_noise() -> None:
        for i, b in enumerate(batches):
            seeds = [i * args.batch + j for j in range(b.shape[0])]
            stochastic_outputs(model, b, draws=k, noise_std=0.05, noise_seeds=seeds, chunk=chunk)

    def mc_dropout() -> None:
        for b in batches:
            stochastic_outputs(model, b, draws=k, mc_dropout=True, chunk=chunk)

    @torch.no_grad()
    def loop() -> None:
        model.eval()
        for b in batches:
            for image in b:
                for _ in range(k):
                    model((image + 0.05 * torch.randn_like(image)).unsqueeze(0))

    evaluation()  # warm-up (allocator, kernels)
    seconds = {
        name: _timed(func, device, args.repeats)
        for name, func in (
            ("evaluation", evaluation),
            ("input_noise", input_noise),
            ("mc_dropout", mc_dropout),
            ("loop", loop),
        )
    }
    base = seconds["evaluation"]
    print(
        json.dumps(
            {
                "benchmark": "uncertainty_cost",
                "device": str(device)
                if device.type == "cpu"
                else torch.cuda.get_device_name(device),
                "cpu": platform.processor() or platform.machine(),
                "threads": args.threads,
                "shape": args.shape,
                "samples": args.samples,
                "batch": args.batch,
                "draws": k,
                "seconds": {n: round(s, 4) for n, s in seconds.items()},
                "input_noise_ratio": round(seconds["input_noise"] / base, 2),
                "mc_dropout_ratio": round(seconds["mc_dropout"] / base, 2),
                "loop_ratio": round(seconds["loop"] / base, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
