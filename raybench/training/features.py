"""Penultimate-layer features of a trained network, for distances between image sets.

The distance between the real test images and another set (generated samples, an external cohort)
is measured on what the trained network sees: the input of its last linear layer, the
representation its decision is a linear function of (as the Fréchet Inception Distance uses a
network's pool features; Heusel et al. 2017). The arrays go to
:func:`raybench_analysis.feature_distance`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["last_linear", "penultimate_features"]


def last_linear(net: nn.Module) -> nn.Linear:
    """The last ``nn.Linear`` module of ``net`` in registration order (its classification head).

    MONAI's DenseNet, ResNet and Classifier all end in one; a network without any raises
    ``ValueError`` naming its class.
    """
    found = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not found:
        raise ValueError(
            f"{type(net).__name__} has no nn.Linear layer; penultimate features need a network "
            "with a linear head"
        )
    return found[-1]


def penultimate_features(net: nn.Module, images: torch.Tensor, batch_size: int = 16) -> np.ndarray:
    """The input of ``net``'s last linear layer for each image of ``images`` (N, C, X, Y, Z).

    Runs in eval mode without gradients (batch by batch) and returns a float64 array ``(N, d)``.
    """
    head = last_linear(net)
    captured: list[torch.Tensor] = []
    hook = head.register_forward_hook(
        lambda _m, inputs, _out: captured.append(inputs[0].detach().flatten(1).cpu())
    )
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for batch in images.split(batch_size):
                net(batch)
    finally:
        hook.remove()
        net.train(was_training)
    return torch.cat(captured).double().numpy()
