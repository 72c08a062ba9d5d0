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
- ``rician_noise(std)``: the magnitude of complex Gaussian noise of SD ``std`` added to the image
  (MONAI ``RandRicianNoise``; the image is shifted to be non-negative first, as a magnitude image
  is, and shifted back), the noise model of magnitude MRI (Gudbjartsson & Patz 1995).
- ``blur(sigma)``: Gaussian smoothing of SD ``sigma`` voxels (MONAI ``GaussianSmooth``), a
  broader point-spread function.
- ``resolution(spacing)``: the volume resampled to voxels ``spacing`` times larger (MONAI ``Zoom``,
  area averaging) and back to its grid (trilinear ``Resize``): a low-resolution acquisition seen on
  the training grid; ``spacing=1`` is the identity.
- ``gibbs(alpha)``: Gibbs ringing from truncating the fraction ``alpha`` of k-space (MONAI
  ``GibbsNoise``; ``alpha=0`` is the identity, where MONAI's spherical mask would still cut the
  corners of a 3-D k-space).
- ``ghosting(intensity)``: every n-th plane of k-space along a phase-encoding axis attenuated by
  ``intensity`` (n in 2..5 and the axis drawn from the seed; the central plane kept), giving the
  periodic ghosts of motion or of an unstable gradient (the k-space model of TorchIO's
  ``RandomGhosting``, Pérez-García et al. 2021; MONAI has no ghosting transform).
- ``scanner_shift(shift)``: a smooth intensity transfer ``x -> x + shift * g(x)`` with
  ``g = a + b x + c tanh(x)`` scaled to unit RMS over the image and ``a, b, c`` drawn from the
  seed: the offset, contrast and saturation differences between scanners and vendors that
  intensity normalisation leaves behind (Shinohara et al. 2014); ``shift`` is the RMS change in
  units of the normalised image.

Every type has a neutral severity that leaves the image unchanged
(:data:`raybench_analysis.vocabulary.PERTURBATION_NEUTRAL`: 1 for ``gamma`` and ``resolution``, 0
otherwise), and for a fixed seed the image moves further from the clean one as the severity moves
away from it (tests/training/test_perturb.py checks both), which the operating ranges of
docs/operating-ranges.md rely on.
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
    GaussianSmooth,
    GibbsNoise,
    RandBiasField,
    RandGaussianNoise,
    RandRicianNoise,
    Resize,
    Rotate,
    ScaleIntensity,
    Zoom,
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
    "rician_noise": 0.1,
    "blur": 1.0,
    "resolution": 2.0,
    "gibbs": 0.3,
    "ghosting": 0.5,
    "scanner_shift": 0.3,
}

#: Allowed severities of each type: (lowest, highest, lowest excluded); others: any finite number.
_BOUNDS: dict[str, tuple[float, float, bool]] = {
    "gaussian_noise": (0.0, math.inf, False),
    "bias_field": (0.0, math.inf, False),
    "gamma": (0.0, math.inf, True),
    "motion": (0.0, math.inf, False),
    "rician_noise": (0.0, math.inf, False),
    "blur": (0.0, math.inf, False),
    "resolution": (1.0, math.inf, False),
    "gibbs": (0.0, 1.0, False),
    "ghosting": (0.0, 1.0, False),
    "scanner_shift": (0.0, math.inf, False),
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
        elif self.type == "rician_noise":
            out = _rician(image, value, seed)
        elif self.type == "blur":
            out = GaussianSmooth(sigma=value)(image) if value > 0 else image
        elif self.type == "resolution":
            out = _resolution(image, value)
        elif self.type == "gibbs":
            # MONAI's spherical mask cuts the corners of a 3-D k-space even at alpha=0
            out = GibbsNoise(alpha=value)(image) if value > 0 else image
        elif self.type == "ghosting":
            out = _ghosting(image, value, seed)
        elif self.type == "scanner_shift":
            out = _scanner_shift(image, value, seed)
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
    low, high, open_low = _BOUNDS.get(kind, (-math.inf, math.inf, False))
    below = severity <= low if open_low else severity < low
    if not math.isfinite(severity) or below or severity > high:
        allowed = f"{'>' if open_low else '>='} {low:g}" + (
            f" and <= {high:g}" if math.isfinite(high) else ""
        )
        raise SuiteError(
            f"evaluation.perturbations: {kind}.{name}={severity} must be a finite number {allowed}"
        )
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


def _rician(image: torch.Tensor, std: float, seed: int) -> torch.Tensor:
    """Rician noise on the image made non-negative (a magnitude image), then shifted back."""
    floor = image.min()
    noise = RandRicianNoise(prob=1.0, mean=0.0, std=std, sample_std=False, relative=False)
    noise.set_random_state(seed=seed)
    return torch.as_tensor(noise(image - floor)) + floor


def _resolution(image: torch.Tensor, spacing: float) -> torch.Tensor:
    """Area-average to voxels ``spacing`` times larger, then trilinear back to the image's grid."""
    if spacing == 1.0:
        return image
    small = Zoom(zoom=1.0 / spacing, mode="area", keep_size=False)(image)
    mode = "trilinear" if image.ndim == 4 else "bilinear"
    return torch.as_tensor(Resize(spatial_size=tuple(image.shape[1:]), mode=mode)(small))


def _ghosting(image: torch.Tensor, intensity: float, seed: int) -> torch.Tensor:
    """Attenuate every n-th k-space plane along a seeded axis (the centre plane kept)."""
    rng = np.random.default_rng(seed)
    spatial = image.ndim - 1
    axis = 1 + int(rng.integers(spatial))
    every = int(rng.integers(2, 6))
    dims = tuple(range(1, image.ndim))
    k = torch.fft.fftshift(torch.fft.fftn(image.float(), dim=dims), dim=dims)
    n = image.shape[axis]
    planes = [i for i in range(0, n, every) if i != n // 2]
    gain = torch.ones(n)
    gain[planes] = 1.0 - intensity
    shape = [1] * image.ndim
    shape[axis] = n
    k = torch.fft.ifftshift(k * gain.reshape(shape), dim=dims)
    return torch.fft.ifftn(k, dim=dims).real


def _scanner_shift(image: torch.Tensor, shift: float, seed: int) -> torch.Tensor:
    """``x + shift * g(x)``, ``g = a + b x + c tanh(x)`` of unit RMS over the image (see module)."""
    rng = np.random.default_rng(seed)
    a, b, c = rng.uniform(-1.0, 1.0), rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)
    x = image.float()
    g = a + b * x + c * torch.tanh(x)
    rms = torch.sqrt(torch.mean(g * g)).clamp_min(1e-12)
    return x + shift * g / rms
