"""Data augmentation of training samples (``training.augment``), MONAI random transforms, seeded.

A suite lists the transforms in the order they apply; each has a ``prob`` (chance it applies to a
sample) and its strength. They act on the *preprocessed* image (after intensity normalisation, so
``intensity_shift`` and ``gaussian_noise`` are in units of the normalised image), and for
segmentation the spatial ones (``flip``, ``affine``, ``elastic``) move the mask with the image
(nearest neighbour), the intensity ones leave it alone.

Types and their MONAI transforms:

- ``flip(prob, axes)``: ``RandFlipd`` along each axis independently;
- ``affine(prob, rotate, scale)``: ``RandAffined``, rotation up to ``rotate`` degrees about each
  axis and scaling by ``1 + U(-scale, scale)``, zeros outside;
- ``elastic(prob, sigma, magnitude)``: ``Rand3DElasticd`` (Simard, Steinkraus & Platt 2003,
  "Best practices for convolutional neural networks applied to visual document analysis", ICDAR);
- ``intensity_shift(prob, offset)``: ``RandShiftIntensityd``, ``x + U(-offset, offset)``;
- ``intensity_scale(prob, factor)``: ``RandScaleIntensityd``, ``x * (1 + U(-factor, factor))``;
- ``gamma(prob, gamma)``: ``RandAdjustContrastd``, a gamma drawn in ``[low, high]``;
- ``gaussian_noise(prob, std)``: ``RandGaussianNoised``, SD drawn in ``[0, std]``;
- ``bias_field(prob, coeff, degree)``: ``RandBiasFieldd``, a smooth multiplicative field
  (Sudre et al. 2017, "Longitudinal segmentation of age-related white matter hyperintensities",
  MedIA), coefficients in ``[-coeff, coeff]``.

*Seeding.* Each sample's draw is seeded by ``derive_seed(trial seed, "augment", epoch,
sample_id)``: it depends neither on the order of the batches nor on the DataLoader worker that
loads the sample, so a CPU run is bit-identical run after run, each epoch sees new draws, and two
trials with the same seed augment their common samples alike. Only the training loader of a trial
has an :class:`Augmenter`; validation and test samples are never augmented
(:func:`raybench.training.trial.run_trial`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    Rand3DElasticd,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from raybench_analysis.vocabulary import AUGMENTATIONS

from raybench.errors import SuiteError
from raybench.plan.config import AugmentationConfig
from raybench.training.determinism import derive_seed

__all__ = ["Augmenter", "build_transforms"]

#: Transforms that move voxels: they apply to the segmentation mask too.
SPATIAL = ("flip", "affine", "elastic")


def build_transforms(pipeline: Sequence[AugmentationConfig], *, with_mask: bool) -> list[Any]:
    """The MONAI dictionary transforms of ``pipeline`` (keys ``image`` and, with a mask, ``mask``).

    Raises :class:`SuiteError` for an unknown type (a config written by hand).
    """
    keys = ["image", "mask"] if with_mask else ["image"]
    interp = ["bilinear", "nearest"] if with_mask else ["bilinear"]
    out: list[Any] = []
    for step in pipeline:
        p = dict(step.params)
        prob = float(p.pop("prob", 0.5))
        kind = step.type
        if kind == "flip":
            out += [RandFlipd(keys, prob=prob, spatial_axis=int(a)) for a in p.get("axes", [0])]
        elif kind == "affine":
            angle = math.radians(float(p.get("rotate", 10.0)))
            scale = float(p.get("scale", 0.1))
            out.append(
                RandAffined(
                    keys,
                    prob=prob,
                    rotate_range=(angle,) * 3,
                    scale_range=(scale,) * 3,
                    mode=interp,
                    padding_mode="zeros",
                )
            )
        elif kind == "elastic":
            out.append(
                Rand3DElasticd(
                    keys,
                    sigma_range=tuple(p.get("sigma", (5.0, 8.0))),
                    magnitude_range=tuple(p.get("magnitude", (20.0, 60.0))),
                    prob=prob,
                    mode=interp,
                    padding_mode="zeros",
                )
            )
        elif kind == "intensity_shift":
            out.append(RandShiftIntensityd("image", offsets=float(p.get("offset", 0.1)), prob=prob))
        elif kind == "intensity_scale":
            out.append(RandScaleIntensityd("image", factors=float(p.get("factor", 0.1)), prob=prob))
        elif kind == "gamma":
            out.append(
                RandAdjustContrastd("image", gamma=tuple(p.get("gamma", (0.7, 1.5))), prob=prob)
            )
        elif kind == "gaussian_noise":
            out.append(RandGaussianNoised("image", std=float(p.get("std", 0.05)), prob=prob))
        elif kind == "bias_field":
            coeff = float(p.get("coeff", 0.3))
            out.append(
                RandBiasFieldd(
                    "image", degree=int(p.get("degree", 3)), coeff_range=(-coeff, coeff), prob=prob
                )
            )
        else:
            raise SuiteError(
                f"training.augment: type={kind!r} is unknown; allowed: {', '.join(AUGMENTATIONS)}"
            )
    return out


class Augmenter:
    """The random transforms of one trial's training samples (see the module docstring).

    ``augmenter(arrays, sample_id, epoch)`` returns new arrays: ``image`` (C, X, Y, Z) float32 and,
    for segmentation, ``mask`` (1, X, Y, Z), transformed together.
    """

    def __init__(
        self, pipeline: Sequence[AugmentationConfig], trial_seed: int, *, with_mask: bool
    ) -> None:
        self.pipeline = tuple(pipeline)
        self.trial_seed = int(trial_seed)
        self.with_mask = with_mask
        self._compose = Compose(build_transforms(self.pipeline, with_mask=with_mask))

    def seed(self, sample_id: str, epoch: int) -> int:
        """The seed of one sample's draw in one epoch."""
        return derive_seed(self.trial_seed, "augment", epoch, sample_id)

    def __call__(
        self, arrays: dict[str, torch.Tensor], sample_id: str, epoch: int
    ) -> dict[str, torch.Tensor]:
        self._compose.set_random_state(seed=self.seed(sample_id, epoch))
        item = {"image": arrays["image"].float()}
        if self.with_mask:
            item["mask"] = arrays["mask"].float()
        out = self._compose(item)
        result = {"image": _plain(out["image"]).float().contiguous()}
        if self.with_mask:
            result["mask"] = torch.round(_plain(out["mask"])).to(arrays["mask"].dtype)
        return result


def _plain(value: Any) -> torch.Tensor:
    """A plain tensor (MONAI may return a MetaTensor, which batches with its metadata)."""
    if isinstance(value, MetaTensor):
        return value.as_tensor()
    return torch.as_tensor(value)
