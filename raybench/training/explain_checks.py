"""What an attribution map is checked for beyond localisation: segmentation, sanity, stability.

:func:`raybench.training.explain.explain_samples` calls these for every explained sample:

- *weakly supervised segmentation*: the map thresholded into a lesion mask, the threshold a
  fraction of the map's maximum chosen on the trial's validation samples only
  (:func:`choose_threshold`; the test fold never influences it), then Dice and the 95th
  percentile Hausdorff distance against the ground-truth mask (:func:`segmentation_scores`,
  MONAI's ``compute_dice`` and ``compute_hausdorff_distance``);
- *model-parameter randomisation* (Adebayo et al. 2018): the map of the same image and class
  from a copy of the network whose weights are all re-initialised (:func:`randomised_copy`); a
  map that stays rank-correlated (:func:`rank_correlation`) with the trained network's map
  explains the image, not the network;
- *stability under perturbation*: the rank correlation of the map of a perturbed image (the
  suite's ``evaluation.perturbations``, the exact images the predictions saw) with the clean map.
- *max-sensitivity* (Yeh et al. 2019, Captum's ``sensitivity_max``): the worst relative change
  of the map over small random perturbations of the image (:func:`max_sensitivity`).

It also keeps, for the HTML report's gallery, three orthogonal slices of each kept sample's
image, mask and maps as a small NPZ file (:func:`slices_npz`), readable with numpy alone.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import spearmanr

__all__ = [
    "THRESHOLDS",
    "choose_threshold",
    "max_sensitivity",
    "randomised_copy",
    "rank_correlation",
    "segment",
    "segmentation_scores",
    "slices_npz",
]

#: Candidate thresholds of the weakly supervised segmentation, as fractions of the map's maximum.
THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))


def segment(attr: np.ndarray, fraction: float) -> np.ndarray:
    """The voxels whose attribution is at least ``fraction`` of the map's (positive) maximum.

    Empty when the map has no positive value (nothing is evidence for the class).
    """
    a = np.asarray(attr, dtype=np.float64)
    top = a.max() if a.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.zeros(a.shape, dtype=bool)
    return a >= fraction * top


def _dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of each predicted mask of ``pred`` (K, X, Y, Z) against ``truth`` (X, Y, Z)."""
    from monai.metrics import compute_dice

    y_pred = torch.as_tensor(pred, dtype=torch.float32)[:, None]
    y = torch.as_tensor(truth, dtype=torch.float32)[None, None].expand_as(y_pred)
    return compute_dice(y_pred, y, include_background=True, ignore_empty=False)[:, 0].numpy()


def choose_threshold(
    maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]
) -> tuple[float, float] | None:
    """The fraction of :data:`THRESHOLDS` with the highest mean Dice over validation samples.

    Only samples with a non-empty mask and a finite map count; ties go to the smallest fraction.
    Returns ``(fraction, mean Dice)``, or None when no validation sample qualifies. The caller
    passes validation samples only: this function never sees the test fold.
    """
    scores = []
    for attr, mask in zip(maps, masks, strict=True):
        truth = np.asarray(mask) > 0
        if not truth.any() or not np.isfinite(attr).all():
            continue
        scores.append(_dice(np.stack([segment(attr, t) for t in THRESHOLDS]), truth))
    if not scores:
        return None
    mean = np.mean(scores, axis=0)
    best = int(np.argmax(mean))  # the first maximum: the smallest fraction among ties
    return THRESHOLDS[best], float(mean[best])


def segmentation_scores(
    attr: np.ndarray, mask: np.ndarray, fraction: float, spacing: Sequence[float]
) -> dict[str, float]:
    """Dice and HD95 (mm, on the map's grid of voxel size ``spacing``) of the thresholded map.

    ``hd95`` is NaN when the thresholded map is empty (a distance to nothing is undefined).
    """
    from monai.metrics import compute_hausdorff_distance

    pred = segment(attr, fraction)
    truth = np.asarray(mask) > 0
    dice = float(_dice(pred[None], truth)[0])
    if not pred.any():
        return {"dice": dice, "hd95": math.nan}
    with warnings.catch_warnings():  # MONAI 1.6 warns of its own deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        hd = compute_hausdorff_distance(
            torch.as_tensor(pred[None, None], dtype=torch.float32),
            torch.as_tensor(truth[None, None], dtype=torch.float32),
            include_background=True,
            percentile=95,
            spacing=[float(s) for s in spacing],
        )
    return {"dice": dice, "hd95": float(hd[0, 0])}


def randomised_copy(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``model`` with every layer's parameters re-initialised, seeded.

    Adebayo et al.'s (2018) *full* model-parameter randomisation: each module with a
    ``reset_parameters`` (convolutions, linear layers, normalisation layers, whose running
    statistics go back to 0 and 1) draws fresh weights with its own initialiser; buffers a module
    does not reset stay. The network itself is left untouched.
    """
    clone = copy.deepcopy(model)
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in clone.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    return clone.eval()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of two maps' voxels; NaN when one is constant or not finite."""
    x, y = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or np.ptp(x) == 0 or np.ptp(y) == 0:
        return math.nan
    return float(spearmanr(x, y).statistic)


def max_sensitivity(
    explain: Callable[[torch.Tensor], np.ndarray],
    x: torch.Tensor,
    samples: int,
    radius: float,
    seed: int,
) -> float:
    """Max-sensitivity of the map of ``x`` (Yeh et al. 2019), by Captum's ``sensitivity_max``.

    The largest ``||map(x + d) - map(x)|| / ||map(x)||`` (Frobenius norms; a zero map divides by 1)
    over ``samples`` draws of ``d``, uniform in ``[-r, r]`` voxel by voxel with ``r = radius`` times
    the image's value range (SmoothGrad's scale). 0: the map does not move; lower is more stable.
    ``explain`` maps one image (1, C, X, Y, Z) to its (X, Y, Z) map; it runs ``samples + 1``
    times, with gradients enabled (Captum calls it under ``no_grad``). The noise comes from a
    generator seeded with ``seed``, not torch's global one (which the methods reseed), so the
    value is deterministic on CPU. NaN when a map is not finite.
    """
    from captum.metrics import sensitivity_max

    r = radius * float(x.max() - x.min())
    generator = torch.Generator(device=x.device).manual_seed(seed)

    def perturb(inputs: torch.Tensor) -> torch.Tensor:
        u = torch.rand(inputs.shape, generator=generator, device=inputs.device, dtype=inputs.dtype)
        return inputs + (2 * u - 1) * r

    def maps(inputs: torch.Tensor | tuple[torch.Tensor]) -> tuple[torch.Tensor]:
        batch = inputs[0] if isinstance(inputs, tuple) else inputs  # Captum passes both
        with torch.enable_grad():
            out = [torch.as_tensor(explain(one[None])) for one in batch.detach()]
        return (torch.stack(out).to(torch.float64),)  # a tuple: Captum iterates over it

    value = float(
        sensitivity_max(maps, x.detach(), perturb_func=perturb, n_perturb_samples=samples)
    )
    return value if math.isfinite(value) else math.nan


def _centre(mask: np.ndarray | None, shape: Sequence[int]) -> tuple[int, ...]:
    """The mask's centre of mass (voxel indices), or the volume's centre without a lesion."""
    if mask is not None and np.any(mask):
        where = np.nonzero(np.asarray(mask) > 0)
        return tuple(round(float(w.mean())) for w in where)
    return tuple(s // 2 for s in shape)


def slices_npz(image: np.ndarray, mask: np.ndarray | None, maps: Mapping[str, np.ndarray]) -> bytes:
    """Three orthogonal slices of an image, its mask and its maps, as NPZ bytes (deterministic).

    The slices cross at the centre of the mask (of the volume without a lesion). Arrays:
    ``centre`` (3,), ``image_<a>``, ``mask_<a>`` and ``map_<method>_<a>`` for each axis ``a`` of
    ``x``, ``y``, ``z`` (the slice normal to that axis), float32. Written with a fixed timestamp
    so the same maps give the same bytes.
    """
    image = np.asarray(image)
    centre = _centre(mask, image.shape)
    arrays: dict[str, np.ndarray] = {"centre": np.asarray(centre, dtype=np.int64)}
    volumes: dict[str, np.ndarray] = {"image": image}
    if mask is not None:
        volumes["mask"] = np.asarray(mask)
    volumes |= {f"map_{name}": attr for name, attr in maps.items()}
    for name, volume in volumes.items():
        for axis, letter in enumerate("xyz"):
            plane = np.take(volume, centre[axis], axis=axis)
            arrays[f"{name}_{letter}"] = np.ascontiguousarray(plane, dtype=np.float32)
    raw = io.BytesIO()
    with zipfile.ZipFile(raw, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, value in arrays.items():
            member = io.BytesIO()
            np.save(member, value, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return raw.getvalue()
