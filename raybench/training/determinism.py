"""Everything random in a trial derives from its seed.

A trial seeds Python, NumPy and torch from ``spec.seed`` before it builds its network, gives its
DataLoader a ``torch.Generator`` seeded from the same value (the shuffling order and each worker's
base seed come from it) and a ``worker_init_fn`` that seeds Python and NumPy inside each worker.
On CPU, ``torch.use_deterministic_algorithms(True)`` makes any non-deterministic kernel an error
instead of a silent source of drift; on GPU cuDNN is put in deterministic mode with autotuning off.
With the same thread count, two runs of a trial on CPU give bit-identical predictions.
"""

from __future__ import annotations

import random
import zlib

import numpy as np
import torch

__all__ = [
    "backend_settings",
    "configure_torch",
    "derive_seed",
    "make_generator",
    "seed_everything",
    "seed_worker",
]


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed from a base seed and labels (e.g. a perturbation id and a sample id).

    Uses CRC32 of the text, not Python's ``hash``, which changes between processes.
    """
    text = "\x1f".join([str(int(seed)), *(str(p) for p in parts)])
    return zlib.crc32(text.encode("utf-8")) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_torch(device: str, threads: int) -> None:
    """Set thread count and determinism switches for ``device`` (``"cpu"`` or ``"cuda"``).

    This is process-wide state: it is set again at the start of every trial, so a worker process
    that runs several trials (Ray actor reuse) starts each one in the same state.
    """
    torch.set_num_threads(max(1, int(threads)))
    if device.startswith("cuda"):
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(True)


def backend_settings(amp: bool) -> dict[str, bool]:
    """The numerics a trial ran with, for its ``trials`` row (columns of docs/results.md).

    ``amp``: float16 autocast was used (``training.amp`` on a GPU); the cuDNN switches and
    whether torch's deterministic algorithms were enforced, as :func:`configure_torch` left them.
    """
    return {
        "amp": bool(amp),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
    }


def make_generator(seed: int) -> torch.Generator:
    """A CPU ``torch.Generator`` for a DataLoader (shuffling and worker base seeds)."""
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed Python and NumPy from the worker's torch seed.

    torch gives worker ``i`` the seed ``base_seed + i`` where ``base_seed`` is drawn from the
    DataLoader's generator, so this is deterministic given the trial seed.
    """
    worker_seed = torch.initial_seed() % 2**32
    np.random.seed(worker_seed)
    random.seed(worker_seed)
