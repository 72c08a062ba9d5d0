"""Time to fit the ``cvae`` generator of a ``source: generated`` dataset and draw samples; JSON.

:class:`raybench.data.generated.ConditionalVAE` (MONAI ``VarAutoEncoder``, latent 32, batch 16)
is fitted for ``--epochs`` epochs on ``--images`` smooth random volumes of ``--shape``³ voxels in
two classes (the class adds a bright blob), then draws ``--samples`` labelled samples. The issue's
setting is the default: 50 epochs, 200 samples of 32³ on CPU. Run:
``.venv/bin/python -m benchmarks.generated_cost [--images 40] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch
from torch.nn import functional as F

from raybench.data.generated import ConditionalVAE
from raybench.suite.schema import GeneratedParams


def _volumes(n: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(n, 1, size // 4, size // 4, size // 4, generator=gen)
    images = F.interpolate(noise, size=(size,) * 3, mode="trilinear")
    labels = torch.arange(n) % 2
    centre = slice(size // 3, 2 * size // 3)
    images[labels == 1, :, centre, centre, centre] += 2.0
    return (images - images.mean()) / images.std(), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, default=32)
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    images, labels = _volumes(args.images, args.shape)
    params = GeneratedParams.model_validate(
        {"from": "real", "latent": args.latent, "epochs": args.epochs, "samples": args.samples}
    )
    vae = ConditionalVAE(params)
    t0 = time.perf_counter()
    losses = vae.fit(images, labels, 2, seed=0)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    samples = vae.sample(torch.arange(args.samples) % 2, seed=0)
    draw = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "benchmark": "generated_cost",
                "device": "cpu",
                "cpu": platform.processor() or platform.machine(),
                "threads": args.threads,
                "shape": args.shape,
                "images": args.images,
                "epochs": args.epochs,
                "samples": args.samples,
                "latent": args.latent,
                "parameters": sum(p.numel() for p in vae.net.parameters()) if vae.net else 0,
                "seconds": {"fit": round(fit, 3), "sample": round(draw, 3)},
                "seconds_per_epoch": round(fit / args.epochs, 4),
                "loss_first_last": [round(losses[0], 2), round(losses[-1], 2)],
                "sample_shape": list(samples.shape),
            }
        )
    )


if __name__ == "__main__":
    main()
