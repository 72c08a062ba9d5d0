"""Input perturbations for robustness evaluation, built from MONAI transforms and seeded per sample.

Each entry of ``config["evaluation"]["perturbations"]`` (``{"id", "type", "severity", "params"}``,
filled by the plan compiler) becomes a :class:`Perturbation`. It is applied at test time to the
*preprocessed* image (after intensity normalisation), so that an intensity change is seen by the
network rather than undone by normalisation. Each call takes a seed; the trial derives it from the
trial seed, the perturbation id and the sample id, so a perturbed test set is the same in every run
and the same for every model of a suite (paired comparisons stay paired).

Types and their strength parameter:

- ``gaussian_noise(std)``: additive Gaussian noise of SD ``std`` (MONAI ``RandGaussianNoise`` with a
  fixed SD) — in units of the normalised image, i.e. of the brain's intensity SD.
- ``bias_field(coeff)``: smooth multiplicative field of degree 3 with coefficients drawn in
  ``[-coeff, coeff]`` (MONAI ``RandBiasField``), the classic MRI inhomogeneity model.
- ``intensity_scale(factor)``: intensities multiplied by ``1 + factor`` (MONAI ``ScaleIntensity``).
- ``gamma(gamma)``: contrast change ``x -> min + range * ((x - min) / range) ** gamma`` (MONAI
  ``AdjustContrast``).
- ``motion(degrees)``: a rigid-motion artefact — the k-space lines acquired after a random time
  point come from the volume rotated by ``degrees`` about a random axis (MONAI ``Rotate`` and a
  Fourier mix), which yields ghosting and blurring as in real patient motion (Shaw et al., 2019,
  "MRI k-Space Motion Artefact Augmentation", MIDL).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    AdjustContrast,
    RandBiasField,
    RandGaussianNoise,
    Rotate,
    ScaleIntensity,
)
from raybench_analysis.vocabulary import PERTURBATION_PARAMS

from raybench.errors import SuiteError

__all__ = ["DEFAULT_SEVERITY", "Perturbation", "build_perturbation"]

#: Strength of each perturbation type when an entry gives none (a suite always gives one; the
#: parameter's name is :data:`raybench_analysis.vocabulary.PERTURBATION_PARAMS`).
DEFAULT_SEVERITY: dict[str, float] = {
    "gaussian_noise": 0.1,
    "bias_field": 0.3,
    "intensity_scale": 0.2,
    "gamma": 1.5,
    "motion": 5.0,
}


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: ``perturbation(image, seed)`` returns a new image (C, X, Y, Z)."""

    id: str
    type: str
    severity: float
    params: Mapping[str, Any] = field(default_factory=dict)

    def __call__(self, image: torch.Tensor, seed: int) -> torch.Tensor:
        value = self.severity
        if self.type == "gaussian_noise":
            noise = RandGaussianNoise(prob=1.0, mean=0.0, std=value, sample_std=False)
            noise.set_random_state(seed=seed)
            out = noise(image)
        elif self.type == "bias_field":
            bias = RandBiasField(degree=3, coeff_range=(-value, value), prob=1.0)
            bias.set_random_state(seed=seed)
            out = bias(image)
        elif self.type == "intensity_scale":
            out = ScaleIntensity(minv=None, maxv=None, factor=value)(image)
        elif self.type == "gamma":
            out = AdjustContrast(gamma=value)(image)
        elif self.type == "motion":
            out = _motion(image, value, seed)
        else:  # pragma: no cover - build_perturbation refuses unknown types
            raise SuiteError(f"perturbation type={self.type!r} is unknown")
        return torch.as_tensor(out, dtype=torch.float32).contiguous()


def build_perturbation(entry: Mapping[str, Any]) -> Perturbation:
    """A :class:`Perturbation` from one entry of ``config["evaluation"]["perturbations"]``."""
    kind = entry.get("type")
    if kind not in PERTURBATION_PARAMS:
        raise SuiteError(
            f"evaluation.perturbations: type={kind!r} is unknown; "
            f"allowed: {sorted(PERTURBATION_PARAMS)}"
        )
    name, default = PERTURBATION_PARAMS[kind], DEFAULT_SEVERITY[kind]
    params = dict(entry.get("params") or {})
    severity = entry.get("severity")
    if severity is None:
        severity = params.get(name, default)
    try:
        severity = float(severity)
    except (TypeError, ValueError):
        raise SuiteError(
            f"evaluation.perturbations: {kind}.{name}={severity!r} is not a number"
        ) from None
    if not math.isfinite(severity) or (kind in ("gaussian_noise", "bias_field") and severity < 0):
        raise SuiteError(
            f"evaluation.perturbations: {kind}.{name}={severity} must be a finite number >= 0"
        )
    if kind == "gamma" and severity <= 0:
        raise SuiteError(f"evaluation.perturbations: gamma.gamma={severity} must be > 0")
    pid = entry.get("id") or f"{kind}({name}={severity:g})"
    return Perturbation(id=str(pid), type=str(kind), severity=severity, params=params)


def _motion(image: torch.Tensor, degrees: float, seed: int) -> torch.Tensor:
    """Mix the k-space of ``image`` with that of a rotated copy after a random line (see module)."""
    rng = np.random.default_rng(seed)
    spatial = image.ndim - 1
    axis = int(rng.integers(spatial)) if spatial == 3 else 0
    sign = 1.0 if rng.random() < 0.5 else -1.0
    angle = [0.0] * (3 if spatial == 3 else 1)
    angle[axis] = sign * math.radians(degrees)
    rotated = torch.as_tensor(Rotate(angle=angle if spatial == 3 else angle[0])(image))
    dims = tuple(range(1, image.ndim))
    # centred k-space: lines are acquired in order from -k_max to +k_max along the last axis
    k_clean = torch.fft.fftshift(torch.fft.fftn(image.float(), dim=dims), dim=dims)
    k_moved = torch.fft.fftshift(torch.fft.fftn(rotated.float(), dim=dims), dim=dims)
    n_lines = image.shape[-1]
    cut = int(rng.integers(n_lines // 4, 3 * n_lines // 4 + 1)) if n_lines >= 4 else 0
    mixed = k_clean.clone()
    mixed[..., cut:] = k_moved[..., cut:]
    return torch.fft.ifftn(torch.fft.ifftshift(mixed, dim=dims), dim=dims).real
