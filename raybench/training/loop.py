"""The deterministic train / validate / evaluate loop of one trial.

A :class:`TaskHead` holds what differs between tasks: the loss, and how network outputs become
per-sample predictions. :func:`train_epoch` runs one pass over the training loader (stopping the
trial on a non-finite loss); :func:`predict` runs the network without gradients and returns one
entry per sample (used for validation every epoch and for the final evaluation).

Losses: cross-entropy (classification); mean squared error on the target standardised with the
training mean and SD (regression; predictions are returned in the original units); Dice + cross-
entropy (segmentation, MONAI ``DiceCELoss``; Milletari et al. 2016), with a per-sample foreground
Dice from MONAI's ``compute_dice``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from monai.metrics import compute_dice
from torch import nn
from torch.utils.data import DataLoader

from raybench.errors import TrialError

__all__ = ["Predictions", "TaskHead", "make_head", "predict", "train_epoch"]


@dataclass
class Predictions:
    """Per-sample outputs of :func:`predict`, aligned with the loader's dataset order."""

    index: np.ndarray  # dataset positions
    loss: np.ndarray  # per-sample loss
    y_true: np.ndarray | None = None  # class index or value in original units
    y_pred: np.ndarray | None = None
    probs: np.ndarray | None = None  # (n, n_classes)
    dice: np.ndarray | None = None


class TaskHead:
    """Loss and output decoding of one task type."""

    task_type: str = ""

    def batch_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean loss of a batch (what the optimiser minimises)."""
        return self.sample_loss(logits, target).mean()

    def sample_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of each sample of a batch, shape (B,)."""
        raise NotImplementedError

    def decode(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        """Per-sample predictions of a batch as NumPy arrays (keys of :class:`Predictions`)."""
        raise NotImplementedError


class ClassificationHead(TaskHead):
    """Cross-entropy; ``class_weights`` (``training.class_weights``) weight the training loss.

    With weights, a batch's loss is ``sum_i w[y_i] ce_i / sum_i w[y_i]`` (PyTorch's weighted mean);
    per-sample losses (validation, predictions) stay unweighted, comparable across suites.
    """

    task_type = "classification"

    def __init__(self, class_weights: torch.Tensor | None = None) -> None:
        self.class_weights = class_weights

    def batch_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.class_weights is None:
            return super().batch_loss(logits, target)
        weights = self.class_weights.to(logits.device, logits.dtype)
        return F.cross_entropy(logits, target.long(), weight=weights)

    def sample_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target.long(), reduction="none")

    def decode(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        probs = torch.softmax(logits.double(), dim=1).cpu().numpy()
        return {
            "y_true": target.cpu().numpy().astype(float),
            "y_pred": probs.argmax(axis=1).astype(float),
            "probs": probs,
        }


class RegressionHead(TaskHead):
    """MSE on the standardised target; ``mean`` and ``sd`` come from the training samples only."""

    task_type = "regression"

    def __init__(self, mean: float, sd: float) -> None:
        self.mean = mean
        self.sd = sd

    def sample_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (logits.reshape(-1) - target.reshape(-1).to(logits.dtype)) ** 2

    def decode(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        z = logits.reshape(-1).double().cpu().numpy()
        t = target.reshape(-1).double().cpu().numpy()
        return {"y_true": t * self.sd + self.mean, "y_pred": z * self.sd + self.mean}


class SegmentationHead(TaskHead):
    """Dice + cross-entropy on voxel logits; the target is a (B, 1, ...) label map."""

    task_type = "segmentation"

    def __init__(self) -> None:
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def batch_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, target)

    def sample_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack(
            [self.loss(logits[i : i + 1], target[i : i + 1]) for i in range(logits.shape[0])]
        )

    def decode(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, np.ndarray]:
        n = logits.shape[1]
        pred = logits.argmax(dim=1, keepdim=True)
        onehot_pred = F.one_hot(pred[:, 0], n).movedim(-1, 1)
        onehot_true = F.one_hot(target[:, 0].long(), n).movedim(-1, 1)
        # ignore_empty=False: an empty ground truth scores 1 when nothing is predicted, else 0
        dice = compute_dice(onehot_pred, onehot_true, include_background=False, ignore_empty=False)
        return {"dice": dice.double().mean(dim=1).cpu().numpy()}


def make_head(
    task_type: str,
    *,
    mean: float = 0.0,
    sd: float = 1.0,
    class_weights: torch.Tensor | None = None,
) -> TaskHead:
    """The :class:`TaskHead` of ``task_type`` (``class_weights``: classification only)."""
    if task_type == "classification":
        return ClassificationHead(class_weights)
    if task_type == "regression":
        return RegressionHead(mean, sd)
    return SegmentationHead()


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager[Any]:
    if amp and device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def _batches(loader: DataLoader, device: torch.device) -> Iterator[tuple[int, dict[str, Any]]]:
    for b, batch in enumerate(loader):
        yield (
            b,
            {
                "image": batch["image"].to(device, non_blocking=True),
                "target": batch["target"].to(device, non_blocking=True),
                "index": batch["index"],
            },
        )


def train_epoch(
    model: nn.Module,
    loader: DataLoader,
    head: TaskHead,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epoch: int,
    *,
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One pass over ``loader``; returns the sample-weighted mean training loss.

    Raises :class:`TrialError` ``"non-finite loss at epoch E, batch B"`` as soon as a batch loss is
    NaN or infinite (a diverged trial is a failed trial, never a silently bad one).
    """
    model.train()
    total, count = 0.0, 0
    for b, batch in _batches(loader, device):
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device, amp):
            logits = model(batch["image"])
        loss = head.batch_loss(logits.float(), batch["target"])
        if not torch.isfinite(loss).item():
            raise TrialError(
                f"non-finite loss at epoch {epoch}, batch {b} (loss={loss.item()}); lower the "
                "learning rate or check the inputs"
            )
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        n = batch["image"].shape[0]
        total += float(loss.detach()) * n
        count += n
    return total / max(count, 1)


@torch.no_grad()
def predict(
    model: nn.Module,
    loader: DataLoader,
    head: TaskHead,
    device: torch.device,
    *,
    amp: bool = False,
) -> Predictions:
    """Per-sample losses and predictions of ``model`` over ``loader`` (eval mode, no gradients)."""
    model.eval()
    parts: dict[str, list[np.ndarray]] = {}
    for _, batch in _batches(loader, device):
        with _autocast(device, amp):
            logits = model(batch["image"])
        logits = logits.float()
        decoded = head.decode(logits, batch["target"])
        decoded["loss"] = head.sample_loss(logits, batch["target"]).double().cpu().numpy()
        decoded["index"] = batch["index"].numpy()
        for key, value in decoded.items():
            parts.setdefault(key, []).append(value)
    if not parts:
        return Predictions(index=np.zeros(0, dtype=int), loss=np.zeros(0))
    merged = {k: np.concatenate(v) for k, v in parts.items()}
    return Predictions(**merged)
