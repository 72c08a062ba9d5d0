"""Class imbalance: loss weights and a balanced sampler, from the training fold's labels only.

``training.class_weights: balanced`` weights the cross-entropy of class ``c`` by
``w_c = n / (k * n_c)`` (``n`` training samples, ``k`` classes, ``n_c`` of class ``c``): the
"balanced" heuristic of King & Zeng (2001, "Logistic regression in rare events data", Political
Analysis 9(2)) as scikit-learn's ``compute_class_weight`` implements it, so that every class
contributes the same total weight to the loss. ``training.sampler: balanced`` instead draws the
training samples of each epoch with replacement, each with probability proportional to
``1 / n_c``, so that every class is drawn equally often on average (random over-sampling).

Both read the labels of the trial's training samples only: validation and test labels never
influence training.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import WeightedRandomSampler

from raybench.training.determinism import derive_seed, make_generator

__all__ = ["balanced_sampler", "class_counts", "class_weights"]


def class_counts(targets: Sequence[float], n_classes: int) -> np.ndarray:
    """Training samples per class index (``targets`` are class indices)."""
    return np.bincount(np.asarray(targets, dtype=np.int64), minlength=n_classes)[:n_classes]


def class_weights(targets: Sequence[float], n_classes: int) -> torch.Tensor:
    """``n / (k * n_c)`` per class; a class absent from the training fold gets weight 0.

    >>> class_weights([0, 0, 0, 1], 2).tolist()
    [0.6666666666666666, 2.0]
    """
    counts = class_counts(targets, n_classes).astype(np.float64)
    n = counts.sum()
    with np.errstate(divide="ignore"):
        weights = np.where(counts > 0, n / (n_classes * counts), 0.0)
    return torch.as_tensor(weights, dtype=torch.float64)


def balanced_sampler(targets: Sequence[float], n_classes: int, seed: int) -> WeightedRandomSampler:
    """A sampler drawing ``len(targets)`` samples per epoch, classes equally likely, seeded.

    The generator is derived from the trial seed, so the draws are the same in every run.
    """
    counts = class_counts(targets, n_classes)
    per_sample = [1.0 / counts[int(t)] for t in targets]
    return WeightedRandomSampler(
        per_sample,
        num_samples=len(per_sample),
        replacement=True,
        generator=make_generator(derive_seed(seed, "balanced_sampler")),
    )
