"""Explanations as a benchmark axis: attribution maps of a trained network, scored (issue 8).

After the final evaluation of a refit trial, :func:`explain_samples` explains a stratified, seeded
subset of the test samples with each method of ``evaluation.explanations`` and scores every map:

- *localisation* against the ground-truth mask of the cohort (column ``mask``): AUROC of voxel
  attributions against mask voxels, relevance mass and relevance rank accuracy (Arras, Osman &
  Samek 2022), pointing game (Zhang et al. 2018) and its energy-based variant (Wang et al. 2020)
  with the mask's bounding box;
- *faithfulness*: areas under the deletion and insertion curves (Petsiuk, Das & Saenko 2018): the
  most relevant voxels first set to the baseline 0 (the brain mean of a z-scored image, and its
  background), or restored into an all-baseline image, the target's probability after each step;
- *complexity*: sparseness, the Gini index of the absolute map (Chalasani et al. 2020);
- *cost*: seconds per sample;
- *weakly supervised segmentation* (Dice, HD95 at a threshold chosen on validation samples), the
  *model-parameter randomisation check* (Adebayo et al. 2018) and *stability* under the suite's
  perturbations: :mod:`raybench.training.explain_checks`.

Methods: Grad-CAM, Grad-CAM++ and occlusion sensitivity from ``monai.visualize``; vanilla
gradient, SmoothGrad, Integrated Gradients, KernelSHAP and LIME from Captum (docs/explanations.md
says why). Every method works on 3-D volumes and is deterministic on CPU: its random draws come
from torch's generator reseeded with a seed derived from the trial seed, the method and the sample.
No Ray here; the trial (:mod:`raybench.training.trial`) calls this module.
"""

from __future__ import annotations

import difflib
import functools
import gzip
import io
import math
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from raybench_analysis.vocabulary import EXPLANATION_METHODS
from scipy.stats import rankdata

from raybench.errors import SuiteError
from raybench.plan.config import ExplainConfig, ExplanationMethodConfig
from raybench.training.determinism import derive_seed
from raybench.training.explain_checks import (
    choose_threshold,
    max_sensitivity,
    randomised_copy,
    rank_correlation,
    segmentation_scores,
    slices_npz,
)

__all__ = [
    "DELETION_STEPS",
    "ExplainResult",
    "attribute",
    "deletion_insertion",
    "explain_samples",
    "localisation",
    "map_path",
    "resolve_layer",
    "select_samples",
    "slices_path",
    "sparseness",
]

#: Steps of the deletion and insertion curves (fractions 0, 1/n, ..., 1 of the voxels).
DELETION_STEPS = 16
#: Value given to deleted (or not yet inserted) voxels: the brain mean of a z-scored image.
BASELINE = 0.0
#: Forward passes batched together by the perturbation methods and the curves.
BATCH = 8

Score = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ExplainResult:
    """Rows of the ``explanations`` table and the kept maps (path under the results -> bytes)."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    maps: dict[str, bytes] = field(default_factory=dict)


# --------------------------------------------------------------------------- samples and targets


def select_samples(
    rows: Sequence[Mapping[str, Any]], strata: Sequence[Any], n: int, seed: int
) -> list[int]:
    """Indices of ``n`` rows (all when fewer), stratified on ``strata``, seeded; sorted by id.

    Each stratum gets its share of ``n`` (largest remainders), at least one sample when ``n``
    allows; within a stratum samples are drawn by a permutation seeded with ``seed``, the rows
    first sorted by ``sample_id`` so the draw does not depend on the order of the fold.
    """
    order = sorted(range(len(rows)), key=lambda i: str(rows[i]["sample_id"]))
    if n >= len(rows):
        return order
    groups: dict[str, list[int]] = {}
    for i in order:
        groups.setdefault(str(strata[i]), []).append(i)
    keys = sorted(groups)
    exact = {k: n * len(groups[k]) / len(rows) for k in keys}
    share = {k: min(len(groups[k]), max(1 if n >= len(keys) else 0, int(exact[k]))) for k in keys}
    for k in sorted(keys, key=lambda k: (-(exact[k] - int(exact[k])), k)):
        if sum(share.values()) >= n:
            break
        if share[k] < len(groups[k]):
            share[k] += 1
    while sum(share.values()) > n:  # the minimum of one per stratum overshot: trim the largest
        largest = max(keys, key=lambda k: (share[k], k))
        share[largest] -= 1
    rng = np.random.default_rng(seed)
    chosen = [i for k in keys for i in rng.permutation(groups[k])[: share[k]].tolist()]
    return sorted(chosen, key=lambda i: str(rows[i]["sample_id"]))


def resolve_layer(model: torch.nn.Module, layer: str) -> str:
    """The module name Grad-CAM hooks: ``layer`` itself, or (``auto``) the last 3-D convolution.

    Raises :class:`SuiteError` naming the closest module names when the network has no such layer.
    """
    names = [name for name, _ in model.named_modules() if name]
    if layer == "auto":
        convs = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv3d)]
        if not convs:
            raise SuiteError(
                "evaluation.explanations: layer 'auto' needs a 3-D convolution in the network and "
                f"it has none; name a layer (modules: {names[:20]})"
            )
        return convs[-1]
    if layer not in names:
        close = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise SuiteError(
            f"evaluation.explanations: layer={layer!r} is not a module of the network{hint} "
            f"(modules include: {names[-20:]})"
        )
    return layer


# --------------------------------------------------------------------------- attribution


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def _blocks(shape: Sequence[int], window: int, device: torch.device) -> torch.Tensor:
    """Feature mask of cubic super-voxels of edge ``window`` (shape (1, 1, X, Y, Z), long)."""
    axes = [torch.arange(s, device=device) // window for s in shape]
    counts = [(s + window - 1) // window for s in shape]
    gx, gy, gz = torch.meshgrid(*axes, indexing="ij")
    return ((gx * counts[1] + gy) * counts[2] + gz)[None, None].long()


def attribute(
    model: torch.nn.Module,
    x: torch.Tensor,
    target: int,
    method: ExplanationMethodConfig,
    seed: int,
) -> np.ndarray:
    """The attribution map of ``x`` (shape (1, C, X, Y, Z)) for output ``target``, as (X, Y, Z).

    Positive values are evidence for the target. Channels are summed. The network is put in eval
    mode; ``seed`` seeds torch's generator for the methods that draw (SmoothGrad, KernelSHAP, LIME).
    """
    model.eval()
    p = method.params
    name = method.method
    _seeded(seed)
    x = x.detach().clone()
    if name in ("gradcam", "gradcampp"):
        from monai.visualize import GradCAM, GradCAMpp

        cls = GradCAM if name == "gradcam" else GradCAMpp
        layer = resolve_layer(model, str(p.get("layer", "auto")))
        module = dict(model.named_modules())[layer]
        hooks = (module._forward_hooks, module._backward_hooks)
        before = [set(h) for h in hooks]
        try:
            # MONAI's default post-processing rescales each map to (1, 0), flipping it: keep it raw
            cam = cls(nn_module=model, target_layers=layer, postprocessing=lambda m: m)
            return _spatial(cam(x, class_idx=target))
        finally:  # MONAI never removes the hooks it adds: leave the network as it was
            for h, old in zip(hooks, before, strict=True):
                for key in set(h) - old:
                    del h[key]
    if name == "occlusion":
        from monai.visualize import OcclusionSensitivity

        window, stride = int(p.get("window", 8)), int(p.get("stride", 4))
        occ = OcclusionSensitivity(
            nn_module=model,
            mask_size=window,
            n_batch=BATCH,
            verbose=False,
            mode=BASELINE,
            overlap=1.0 - stride / window,
            activate=False,
        )
        with torch.no_grad(), warnings.catch_warnings():
            # MONAI 1.6 indexes with lists, which torch 2.8 warns about on every window
            warnings.simplefilter("ignore", UserWarning)
            full = model(x)[0, target]
            occluded, _ = occ(x)  # (B, outputs, X, Y, Z): the output with each window occluded
        return _spatial(full - occluded[:, target : target + 1])
    from captum.attr import (
        IntegratedGradients,
        KernelShap,
        Lime,
        NoiseTunnel,
        Saliency,
    )

    forward = _logits(model)
    if name == "gradient":
        out = Saliency(forward).attribute(x.requires_grad_(), target=target, abs=True)
    elif name == "smoothgrad":
        spread = float(p.get("sigma", 0.15)) * float(x.max() - x.min())
        out = NoiseTunnel(Saliency(forward)).attribute(
            x.requires_grad_(),
            nt_type="smoothgrad",
            nt_samples=int(p.get("samples", 16)),
            nt_samples_batch_size=BATCH,
            stdevs=spread,
            target=target,
            abs=True,
        )
    elif name == "integrated_gradients":
        out = IntegratedGradients(forward).attribute(
            x.requires_grad_(),
            baselines=BASELINE,
            target=target,
            n_steps=int(p.get("steps", 32)),
            internal_batch_size=BATCH,
        )
    elif name in ("kernel_shap", "lime"):
        algo = KernelShap(forward) if name == "kernel_shap" else Lime(forward)
        with torch.no_grad():
            out = algo.attribute(
                x,
                baselines=BASELINE,
                target=target,
                feature_mask=_blocks(x.shape[2:], int(p.get("window", 4)), x.device),
                n_samples=int(p.get("samples", 128)),
                perturbations_per_eval=BATCH,
            )
    else:
        raise SuiteError(
            f"evaluation.explanations: method={name!r} is unknown; allowed: "
            f"{', '.join(EXPLANATION_METHODS)}"
        )
    return _spatial(out)


def _logits(model: torch.nn.Module) -> Score:
    def forward(x: torch.Tensor) -> torch.Tensor:
        out = model(x)
        return out if out.ndim == 2 else out.reshape(out.shape[0], -1)

    return forward


def _spatial(out: torch.Tensor) -> np.ndarray:
    """(B, C, X, Y, Z) -> (X, Y, Z) float64 (channels summed, first sample)."""
    arr = out.detach().float().cpu().numpy()
    arr = arr.reshape(arr.shape[0], -1, *arr.shape[-3:])
    return arr[0].sum(axis=0).astype(np.float64)


# --------------------------------------------------------------------------- metrics


def _auroc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Mann-Whitney AUROC of ``scores`` for ``truth`` (ties count one half); NaN if one class."""
    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = rankdata(scores)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def localisation(attr: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Localisation scores of a map against a binary mask of the same shape.

    ``auroc``: voxel attributions as scores of mask membership; ``mass_accuracy``: share of the
    positive relevance inside the mask; ``rank_accuracy``: share of the K most relevant voxels
    inside the mask (K = mask size); ``pointing_game``: 1 when the most relevant voxel is inside
    the mask (with ties, as in super-voxel maps: when one of the tied maxima is);
    ``energy_pointing_game``: share of the positive relevance inside the mask's bounding box.
    All NaN for an empty mask; the mass scores NaN for a map without positive relevance.
    """
    r = np.asarray(attr, dtype=np.float64).ravel()
    m = np.asarray(mask).ravel() > 0
    k = int(m.sum())
    if k == 0 or not np.isfinite(r).all():
        return dict.fromkeys(
            ("auroc", "mass_accuracy", "rank_accuracy", "pointing_game", "energy_pointing_game"),
            math.nan,
        )
    pos = np.clip(r, 0.0, None)
    total = pos.sum()
    top = np.argsort(-r, kind="stable")[:k]
    box = np.zeros(np.shape(mask), dtype=bool)
    where = np.nonzero(np.asarray(mask) > 0)
    box[tuple(slice(int(w.min()), int(w.max()) + 1) for w in where)] = True
    return {
        "auroc": _auroc(r, m),
        "mass_accuracy": float(pos[m].sum() / total) if total > 0 else math.nan,
        "rank_accuracy": float(m[top].mean()),
        "pointing_game": float(m[r == r.max()].any()),
        "energy_pointing_game": float(pos[box.ravel()].sum() / total) if total > 0 else math.nan,
    }


def sparseness(attr: np.ndarray) -> float:
    """Gini index of the absolute map (Chalasani et al. 2020): 0 flat, towards 1 concentrated."""
    a = np.sort(np.abs(np.asarray(attr, dtype=np.float64).ravel()))
    n, total = a.size, a.sum()
    if total <= 0 or not np.isfinite(total):
        return math.nan
    i = np.arange(1, n + 1)
    return float(((2 * i - n - 1) * a).sum() / (n * total))


def deletion_insertion(
    score: Score, x: torch.Tensor, attr: np.ndarray, steps: int = DELETION_STEPS
) -> tuple[float, float]:
    """Areas under the deletion and insertion curves (Petsiuk et al. 2018), fractions on [0, 1].

    Voxels are ranked by attribution (ties by position); step ``k`` deletes (sets to
    :data:`BASELINE`) the top ``k/steps`` of them, or inserts them into an all-baseline image;
    ``score`` maps a batch to the explained output (the target's probability). Lower deletion and
    higher insertion areas mean a more faithful map.
    """
    if not np.isfinite(attr).all():
        return math.nan, math.nan
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    order = torch.as_tensor(np.argsort(-attr.ravel(), kind="stable").copy(), device=x.device)
    n = order.numel()
    cuts = [round(n * k / steps) for k in range(steps + 1)]
    curves: dict[str, list[float]] = {"deletion": [], "insertion": []}
    for kind in curves:
        images = []
        for cut in cuts:
            keep = torch.zeros(n, dtype=torch.bool, device=x.device)
            keep[order[:cut]] = True
            if kind == "deletion":
                keep = ~keep
            img = torch.where(keep, flat, torch.full_like(flat, BASELINE))
            images.append(img.reshape(x.shape))
        with torch.no_grad():
            for start in range(0, len(images), BATCH):
                batch = torch.cat(images[start : start + BATCH])
                curves[kind] += score(batch).float().cpu().tolist()
    grid = np.linspace(0.0, 1.0, steps + 1)
    area = {k: float(np.trapezoid(v, grid)) for k, v in curves.items()}
    return area["deletion"], area["insertion"]


# --------------------------------------------------------------------------- the phase


def _safe(sample_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", sample_id)


def map_path(trial_id: str, sample_id: str, method: str) -> str:
    """Where a kept map goes, relative to the results directory (docs/explanations.md)."""
    return f"maps/{trial_id}/{_safe(sample_id)}_{method}.nii.gz"


def slices_path(trial_id: str, sample_id: str) -> str:
    """Where a kept sample's slices (image, mask, maps) go, relative to the results directory."""
    return f"maps/{trial_id}/{_safe(sample_id)}_slices.npz"


def _nifti(attr: np.ndarray, affine: np.ndarray) -> bytes:
    import nibabel as nib

    image = nib.Nifti1Image(attr.astype(np.float32), affine)
    raw = io.BytesIO()
    raw.write(image.to_bytes())
    return gzip.compress(raw.getvalue(), mtime=0)  # mtime fixed: identical bytes on every run


#: A perturbation of the explained images: its id and ``apply(image, sample_id)``.
Perturb = tuple[str, Callable[[torch.Tensor, str], torch.Tensor]]


def _thresholds(
    model: torch.nn.Module,
    val_samples: Sequence[Mapping[str, Any]],
    config: ExplainConfig,
    target_of: Callable[[torch.Tensor], tuple[int, str]],
    trial_seed: int,
) -> dict[str, tuple[float, float] | None]:
    """Per method, the segmentation threshold chosen on the validation samples' maps only."""
    usable = [s for s in val_samples if s["mask"] is not None and np.any(s["mask"])]
    chosen: dict[str, tuple[float, float] | None] = {}
    for method in config.methods:
        maps = []
        for sample in usable:
            sample_id = str(sample["row"]["sample_id"])
            seed = derive_seed(trial_seed, "explain", method.method, sample_id)
            target, _ = target_of(sample["image"])
            maps.append(attribute(model, sample["image"], target, method, seed))
        chosen[method.method] = choose_threshold(maps, [s["mask"] for s in usable])
    return chosen


def explain_samples(
    model: torch.nn.Module,
    samples: Sequence[Mapping[str, Any]],
    config: ExplainConfig,
    *,
    target_of: Callable[[torch.Tensor], tuple[int, str]],
    score_of: Callable[[int], Score],
    trial_seed: int,
    base_row: Mapping[str, Any],
    affine_of: Callable[[Mapping[str, Any]], np.ndarray],
    val_samples: Sequence[Mapping[str, Any]] = (),
    perturbations: Sequence[Perturb] = (),
) -> ExplainResult:
    """Explain and score ``samples``; return the ``explanations`` rows and the kept maps.

    Each sample is a mapping with ``row`` (the cohort row), ``image`` (tensor (1, C, X, Y, Z) on
    the model's device) and ``mask`` ((X, Y, Z) array, or None when the cohort has none).
    ``target_of(image)`` gives the explained output index and its name, ``score_of(target)`` the
    function the deletion/insertion curves follow; ``base_row`` holds the trial columns of every
    row; ``affine_of(row)`` the voxel-to-world matrix of a kept map (and the voxel size of HD95).
    The first ``config.save_maps`` samples keep their maps (NIfTI) and slices (NPZ).

    ``val_samples`` (same shape, validation samples only) choose each method's segmentation
    threshold (:func:`raybench.training.explain_checks.choose_threshold`); the ``dice`` and
    ``hd95`` rows of the test samples then use it. With ``config.randomisation`` each map is
    compared with the map of a randomised copy of the network (Adebayo et al. 2018), with
    ``config.stability`` with the maps of each of ``perturbations`` (the same image perturbed),
    with ``config.max_sensitivity`` each map gets its max-sensitivity (Yeh et al. 2019).
    """
    result = ExplainResult()
    val = val_samples[: config.threshold_samples]
    thresholds = _thresholds(model, val, config, target_of, trial_seed)
    randomised = (
        randomised_copy(model, derive_seed(trial_seed, "explain", "randomised"))
        if config.randomisation
        else None
    )
    trial = str(base_row["trial_id"])
    for k, sample in enumerate(samples):
        row, x, mask = sample["row"], sample["image"], sample["mask"]
        sample_id = str(row["sample_id"])
        target, target_name = target_of(x)
        keep = k < config.save_maps
        kept: dict[str, np.ndarray] = {}
        base = {
            **base_row,
            "sample_id": sample_id,
            "subject_id": str(row["subject_id"]),
            "session_id": str(row["session_id"]),
            "scanner": str(row["scanner"]),
            "site": str(row["site"]),
            "target": target_name,
            "slices_path": slices_path(trial, sample_id) if keep else None,
        }
        for method in config.methods:
            name = method.method
            path = map_path(trial, sample_id, name) if keep else None
            add = functools.partial(_add, result.rows, {**base, "map_path": path}, name)
            seed = derive_seed(trial_seed, "explain", name, sample_id)
            t0 = time.perf_counter()
            attr = attribute(model, x, target, method, seed)
            seconds = time.perf_counter() - t0
            map_note = None if np.isfinite(attr).all() else "non-finite attribution map"
            if mask is None:
                mask_note = "no ground-truth mask for this sample"
            elif not np.any(mask):
                mask_note = "empty ground-truth mask: localisation undefined"
            else:
                mask_note = None
            loc_note = map_note or mask_note
            loc = (
                dict.fromkeys(_LOCALISATION, math.nan) if mask is None else localisation(attr, mask)
            )
            deletion, insertion = deletion_insertion(score_of(target), x, attr)
            if path is not None:
                result.maps[path] = _nifti(attr, affine_of(row))
                kept[name] = attr
            for metric, value in loc.items():
                add(metric, value, loc_note)
            for metric, value in (
                ("deletion_auc", deletion),
                ("insertion_auc", insertion),
                ("sparseness", sparseness(attr)),
                ("seconds", seconds),
            ):
                add(metric, value, map_note or "all-zero attribution map")
            if config.threshold_samples > 0:
                _segmentation_rows(add, name, attr, mask, loc_note, thresholds, affine_of(row))
            if randomised is not None:
                random_attr = attribute(randomised, x, target, method, seed)
                add("randomisation_spearman", rank_correlation(attr, random_attr), _FLAT)
            if config.stability:
                for pid, apply in perturbations:
                    moved = attribute(model, apply(x, sample_id), target, method, seed)
                    add("perturbation_spearman", rank_correlation(attr, moved), _FLAT,
                        perturbation=pid)  # fmt: skip
            if config.max_sensitivity is not None:
                explain = functools.partial(
                    attribute, model, target=target, method=method, seed=seed
                )
                ms = config.max_sensitivity
                value = max_sensitivity(explain, x, ms["samples"], ms["radius"], seed)
                add("max_sensitivity", value, "non-finite attribution map")
        if keep:
            image = x[0].detach().float().cpu().numpy().sum(axis=0)
            result.maps[slices_path(trial, sample_id)] = slices_npz(image, mask, kept)
    return result


def _add(
    rows: list[dict[str, Any]],
    base: Mapping[str, Any],
    method: str,
    metric: str,
    value: float,
    note: str | None,
    **extra: Any,
) -> None:
    """Append one row: ``note`` is kept only when ``value`` is NaN (it says why)."""
    value = float(value)
    rows.append(
        {
            **base,
            "method": method,
            "perturbation": "none",
            "metric": metric,
            "value": value,
            "note": note if math.isnan(value) else None,
            "threshold": None,
            **extra,
        }
    )


#: Why a rank correlation of two maps is NaN.
_FLAT = "constant or non-finite map: rank correlation undefined"


def _segmentation_rows(
    add: Callable[..., None],
    method: str,
    attr: np.ndarray,
    mask: np.ndarray | None,
    loc_note: str | None,
    thresholds: Mapping[str, tuple[float, float] | None],
    affine: np.ndarray,
) -> None:
    """The ``dice`` and ``hd95`` rows of one map: thresholded at its method's validation choice.

    ``add(metric, value, note, **columns)`` appends a row.
    """
    chosen = thresholds.get(method)
    note = loc_note
    if note is None and chosen is None:
        note = "no validation sample with a lesion mask to choose the segmentation threshold"
    if note is not None or chosen is None or mask is None:
        for metric in ("dice", "hd95"):
            add(metric, math.nan, note)
        return
    spacing = np.linalg.norm(np.asarray(affine, dtype=np.float64)[:3, :3], axis=0)
    scores = segmentation_scores(attr, mask, chosen[0], spacing)
    add("dice", scores["dice"], note, threshold=chosen[0])
    add("hd95", scores["hd95"], "empty segmentation at the threshold", threshold=chosen[0])


_LOCALISATION = ("auroc", "mass_accuracy", "rank_accuracy", "pointing_game", "energy_pointing_game")
