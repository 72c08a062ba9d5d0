"""Saved models: what ``training.save_model: best`` keeps, and their predictions on other data.

A refit trial of a suite with ``training.save_model: best`` (or ``validation.external``) keeps its
selected weights as one file, ``models/<trial_id>.pt`` under the results directory, written through
the store like the other files (whole or not at all). The file is a ``torch.save`` of plain data and
tensors, readable with ``torch.load(..., weights_only=True)`` (no code is unpickled):

``format``
    :data:`MODEL_FORMAT`.
``trial``
    ``trial_id, dataset, model, protocol, outer_fold, seed`` of the refit trial.
``config``
    the trial's resolved config (``TrialSpec.config``, search point applied).
``network``
    ``arch, params, task_type, n_out, spatial_size, plugins``: what
    :func:`~raybench.training.models.build_network` needs to rebuild the network.
``targets``
    ``task_type, label, classes, mean, sd``: how labels were encoded (classes in index order; the
    training mean and SD of a regression target), so predictions decode as in the trial.
``preprocess``
    :meth:`Preprocess.describe() <raybench.data.preprocess.Preprocess.describe>`: new data is
    preprocessed to the network's input grid exactly as the training data was.
``state_dict``
    the weights of the selected epoch.

Its sha256 is recorded in the trial's ``trials`` row (``model_sha256``) and checked before every
use (:func:`load_saved_model`); :func:`raybench.training.predict.predict_saved` evaluates it.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from raybench.errors import ResultsError
from raybench.plan.config import TrialConfig
from raybench.training.cache import Preprocess
from raybench.training.models import build_network

__all__ = [
    "MODEL_FORMAT",
    "SavedModel",
    "load_saved_model",
    "model_bytes",
    "model_path",
    "sha256_hex",
]

#: Version of the saved-model layout (bumped when a key changes meaning).
MODEL_FORMAT = 1


def model_path(trial_id: str) -> str:
    """Where a refit trial's saved model lives, relative to the results directory."""
    return f"models/{trial_id}.pt"


def sha256_hex(data: bytes) -> str:
    """The sha256 hex digest of ``data`` (what ``trials.model_sha256`` records)."""
    return hashlib.sha256(data).hexdigest()


def model_bytes(
    spec: Any,
    config: TrialConfig,
    targets: Any,
    preprocess: Preprocess,
    state: Mapping[str, torch.Tensor],
) -> bytes:
    """The saved-model file of a refit trial (see the module docstring for its keys).

    ``spec`` is the :class:`~raybench.plan.spec.TrialSpec`, ``targets`` the trial's label encoding
    (``task_type, label, classes, mean, sd``), ``state`` the selected weights (CPU tensors).
    """
    doc = {
        "format": MODEL_FORMAT,
        "trial": {
            "trial_id": spec.trial_id,
            "dataset": spec.dataset,
            "model": spec.model,
            "protocol": spec.protocol,
            "outer_fold": int(spec.outer_fold),
            "seed": int(spec.seed),
            # the model's draw of training subjects (validation.train_resampling), if any
            "train_fraction": spec.train_fraction,
            "train_resample": spec.train_resample,
            "n_train_subjects": spec.n_train_subjects,
        },
        "config": spec.config,
        "network": {
            "arch": config.model.arch,
            "params": dict(config.model.params),
            "task_type": targets.task_type,
            "n_out": int(targets.n_out),
            "spatial_size": [int(s) for s in preprocess.spatial_size],
            "plugins": dict(config.plugins),
        },
        "targets": {
            "task_type": targets.task_type,
            "label": targets.label,
            "classes": list(targets.classes),
            "mean": float(targets.mean),
            "sd": float(targets.sd),
        },
        "preprocess": preprocess.describe(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in state.items()},
    }
    buffer = io.BytesIO()
    torch.save(doc, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class SavedModel:
    """A saved model read back: trial, config, network, label encoding, preprocessing, weights."""

    trial: dict[str, Any]
    config: dict[str, Any]
    network: dict[str, Any]
    targets: dict[str, Any]
    preprocess: Preprocess
    state_dict: dict[str, torch.Tensor]

    def build(self, device: torch.device) -> torch.nn.Module:
        """The network with the saved weights, on ``device``, in eval mode."""
        net = self.network
        model = build_network(
            net["arch"],
            net["params"],
            net["task_type"],
            int(net["n_out"]),
            spatial_size=net["spatial_size"],
            plugins=net["plugins"],
        )
        model.load_state_dict(self.state_dict)
        return model.to(device).eval()


def load_saved_model(data: bytes, expected_sha256: str | None, where: str) -> SavedModel:
    """Read a saved-model file after checking its sha256 against the recorded one.

    ``where`` names the file in messages. A digest other than ``expected_sha256`` (the file was
    replaced, truncated or corrupted after the trial recorded it) is a
    :class:`~raybench.errors.ResultsError`, as is a file that is not a saved model.
    """
    digest = sha256_hex(data)
    if expected_sha256 is not None and digest != expected_sha256:
        raise ResultsError(
            f"{where}: sha256 {digest[:16]}… differs from the {expected_sha256[:16]}… recorded "
            "in the trials table: the file changed after its trial saved it; restore it from a "
            "copy of the results, or rerun the trial (delete its trials row) to save it again"
        )
    try:
        doc = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a file that is not a checkpoint
        raise ResultsError(f"{where}: not a raybench saved model ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ResultsError(
            f"{where}: saved-model format {found!r}; this raybench reads format {MODEL_FORMAT}"
        )
    return SavedModel(
        trial=dict(doc["trial"]),
        config=dict(doc["config"]),
        network=dict(doc["network"]),
        targets=dict(doc["targets"]),
        preprocess=Preprocess.from_description(doc["preprocess"]),
        state_dict=dict(doc["state_dict"]),
    )
