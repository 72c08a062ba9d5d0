"""Deterministic preprocessing of a dataset's volumes: orientation, spacing, crop, intensity.

A suite declares ``preprocess:`` at the top level (every dataset) or in a dataset entry (that
dataset; its keys override the top-level ones, key by key). :func:`preprocess_config` resolves the
two into one :class:`PreprocessConfig`, which the compiler puts in every trial config of the
dataset (so it is part of the trial id) and the volume cache hashes into its key
(:mod:`raybench.training.cache`), next to the dataset fingerprint.

The chain, each step a MONAI transform, in this order:

1. ``LoadImaged`` + ``EnsureChannelFirstd``: the NIfTI file as a (C, X, Y, Z) tensor and its affine;
2. ``Orientationd(axcodes=orientation)``: axes permuted and flipped to ``orientation`` (``RAS``);
3. ``Spacingd(pixdim=spacing)`` when ``spacing`` is set: resampled to that voxel size in mm
   (trilinear; a mask nearest neighbour);
4. ``CropForegroundd`` when ``crop_foreground``: cropped to the bounding box of the voxels > 0
   (the head or, for a skull-stripped image, the brain);
5. one common grid for every volume of the dataset (a network needs one input shape): with
   ``spacing`` the volume is padded or cropped around its centre to the target shape
   (``ResizeWithPadOrCropd``, the spacing is kept); without it, it is resized to it (``Resized``).
   The target is ``spatial_size`` when given, else the shape the first image (by ``sample_id``)
   has after steps 1-4;
6. intensity: ``NormalizeIntensityd`` (z-score, over the non-zero voxels by default: the usual
   choice for brain MRI) or ``ScaleIntensityRangePercentilesd`` (percentiles ``lower``/``upper``
   mapped to ``range``, clipped), or nothing.

Shapes are computed from the NIfTI header alone when possible (:func:`header_shape`: steps 2-3
applied lazily by MONAI to an empty tensor, so they are exactly those of the real transforms); only
``crop_foreground`` without ``spatial_size`` needs the voxels of the first image.
:func:`input_geometry` is what ``raybench plan`` prints: the input shape, voxel size and memory per
sample. MONAI is imported only when a transform is built or a shape computed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from raybench.errors import DataError

if TYPE_CHECKING:
    from monai.transforms import Compose

    from raybench.data.cohort import Cohort

__all__ = [
    "InputGeometry",
    "IntensityConfig",
    "Preprocess",
    "PreprocessConfig",
    "dataset_geometry",
    "header_shape",
    "input_geometry",
    "preprocess_config",
    "preprocess_for",
]


@dataclass(frozen=True)
class IntensityConfig:
    """Intensity normalisation: ``type`` (``zscore``, ``percentile``, ``none``) and its settings.

    ``zscore``: ``{"nonzero": bool}``; ``percentile``: ``{"lower", "upper"}`` (percent),
    ``{"range": [b_min, b_max], "clip": bool}``; ``none``: ``{}``.
    """

    type: str = "zscore"
    params: dict[str, Any] = field(default_factory=lambda: {"nonzero": True})


@dataclass(frozen=True)
class PreprocessConfig:
    """The preprocessing a suite declares for one dataset (see the module docstring).

    ``spacing`` (mm, per axis) and ``spatial_size`` (voxels) are None when not declared;
    ``orientation`` is an axis code such as ``"RAS"``.
    """

    spacing: tuple[float, float, float] | None = None
    spatial_size: tuple[int, int, int] | None = None
    crop_foreground: bool = False
    orientation: str = "RAS"
    intensity: IntensityConfig = field(default_factory=IntensityConfig)

    def __post_init__(self) -> None:
        for name in ("spacing", "spatial_size"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.intensity, Mapping):  # from a plain config dict
            object.__setattr__(self, "intensity", IntensityConfig(**self.intensity))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PreprocessConfig:
        """The typed view of the plain dict a trial config holds (``dataclasses.asdict``)."""
        known = {"spacing", "spatial_size", "crop_foreground", "orientation", "intensity"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DataError(f"preprocess: unknown key(s) {unknown}; allowed: {sorted(known)}")
        return cls(**data)


def preprocess_config(global_: Any, dataset: Any) -> PreprocessConfig | None:
    """The preprocessing of one dataset: the suite's ``preprocess`` overridden by the dataset's.

    Both are :class:`raybench.suite.schema.Preprocessing` objects or None; a key the dataset sets
    replaces the suite's, the others are kept. None when neither declares anything, so the trial
    configs (and ids) of suites without ``preprocess`` stay those of earlier versions.

    >>> from raybench.suite.schema import Preprocessing
    >>> cfg = preprocess_config(Preprocessing(spacing=2.0), Preprocessing(crop_foreground=True))
    >>> cfg.spacing, cfg.crop_foreground, cfg.orientation
    ((2.0, 2.0, 2.0), True, 'RAS')
    """
    if global_ is None and dataset is None:
        return None
    merged: dict[str, Any] = {}
    for part in (global_, dataset):
        if part is not None:
            merged.update({k: getattr(part, k) for k in part.model_fields_set})
    spacing = merged.get("spacing")
    if isinstance(spacing, int | float):
        spacing = (float(spacing),) * 3
    intensity = merged.get("intensity")
    return PreprocessConfig(
        spacing=None if spacing is None else tuple(float(s) for s in spacing),
        spatial_size=merged.get("spatial_size"),
        crop_foreground=bool(merged.get("crop_foreground", False)),
        orientation=str(merged.get("orientation", "RAS")),
        intensity=IntensityConfig()
        if intensity is None
        else IntensityConfig(intensity.type, intensity.model_dump(exclude={"type"}, mode="json")),
    )


# --------------------------------------------------------------------------- resolved chain


@dataclass(frozen=True)
class Preprocess:
    """The resolved preprocessing of one dataset: the config plus the common grid it ends on.

    ``spatial_size``: the shape every volume has at the end (see step 5 of the module docstring);
    ``with_mask``: also load and transform the ``mask`` column (nearest neighbour, binarised) for
    segmentation. Its :meth:`describe` is hashed into the volume cache key.
    """

    spatial_size: tuple[int, ...]
    config: PreprocessConfig = field(default_factory=PreprocessConfig)
    with_mask: bool = False

    @property
    def orientation(self) -> str:
        return self.config.orientation

    def describe(self) -> dict[str, Any]:
        """JSON-able description, hashed into the cache key (and kept with saved models)."""
        return {
            "grid": list(self.spatial_size),
            "with_mask": self.with_mask,
            "config": _plain(asdict(self.config)),
        }

    @classmethod
    def from_description(cls, description: Mapping[str, Any]) -> Preprocess:
        """The inverse of :meth:`describe` (a saved model rebuilds its preprocessing with it)."""
        return cls(
            spatial_size=tuple(int(s) for s in description["grid"]),
            config=PreprocessConfig.from_dict(description["config"]),
            with_mask=bool(description["with_mask"]),
        )

    def transforms(self, *, common_grid: bool = True) -> Compose:
        """The MONAI chain mapping a row ``{"image": path[, "mask": path]}`` to arrays.

        ``common_grid=False`` stops before step 5 and the intensity step (the shape the first image
        has before it is brought to the common grid).
        """
        from monai.transforms import (
            Compose,
            CropForegroundd,
            EnsureChannelFirstd,
            EnsureTyped,
            LoadImaged,
            Orientationd,
            Resized,
            ResizeWithPadOrCropd,
            Spacingd,
        )

        cfg = self.config
        keys = ["image", "mask"] if self.with_mask else ["image"]
        linear = ["trilinear", "nearest"] if self.with_mask else ["trilinear"]
        chain: list[Any] = [
            LoadImaged(keys=keys, image_only=True),
            EnsureChannelFirstd(keys=keys),
            Orientationd(keys=keys, axcodes=cfg.orientation, labels=None),
        ]
        if cfg.spacing is not None:
            modes = ["bilinear", "nearest"] if self.with_mask else ["bilinear"]
            chain.append(Spacingd(keys=keys, pixdim=cfg.spacing, mode=modes))
        if cfg.crop_foreground:
            chain.append(CropForegroundd(keys=keys, source_key="image", allow_smaller=True))
        if not common_grid:
            return Compose(chain)
        if cfg.spacing is not None:
            chain.append(ResizeWithPadOrCropd(keys=keys, spatial_size=self.spatial_size))
        else:
            chain.append(Resized(keys=keys, spatial_size=self.spatial_size, mode=linear))
        chain += _intensity(cfg.intensity)
        chain.append(EnsureTyped(keys=keys, data_type="numpy", dtype=np.float32, track_meta=False))
        return Compose(chain)


def _intensity(intensity: IntensityConfig) -> list[Any]:
    from monai.transforms import NormalizeIntensityd, ScaleIntensityRangePercentilesd

    p = intensity.params
    if intensity.type == "zscore":
        nonzero = bool(p.get("nonzero", True))
        return [NormalizeIntensityd(keys="image", nonzero=nonzero, channel_wise=True)]
    if intensity.type == "percentile":
        b_min, b_max = p.get("range", (0.0, 1.0))
        return [
            ScaleIntensityRangePercentilesd(
                keys="image",
                lower=float(p.get("lower", 0.5)),
                upper=float(p.get("upper", 99.5)),
                b_min=float(b_min),
                b_max=float(b_max),
                clip=bool(p.get("clip", True)),
            )
        ]
    if intensity.type == "none":
        return []
    raise DataError(
        f"preprocess.intensity.type={intensity.type!r} is unknown; use zscore, percentile or none"
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- geometry


def header_shape(
    shape: Sequence[int], affine: np.ndarray, config: PreprocessConfig
) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """Shape and voxel size (mm) of a volume after orientation and spacing, from its header.

    MONAI's own ``Orientation`` and ``Spacing`` run lazily on an empty tensor of ``shape`` with
    ``affine``: no voxel is read or allocated, and the result is exactly the transforms' (the
    rounding of a resampled extent included).
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation, Spacing

    empty = torch.zeros(1).expand(1, *(int(s) for s in shape))
    image = MetaTensor(empty, affine=torch.as_tensor(np.asarray(affine, dtype=np.float64)))
    image = Orientation(axcodes=config.orientation, labels=None, lazy=True)(image)
    if config.spacing is not None:
        image = Spacing(pixdim=config.spacing, lazy=True)(image)
    out_affine = np.asarray(image.peek_pending_affine(), dtype=np.float64)
    spacing = tuple(float(s) for s in np.sqrt((out_affine[:3, :3] ** 2).sum(axis=0)))
    return tuple(int(s) for s in image.peek_pending_shape()), spacing


def _header(path: str) -> tuple[tuple[int, ...], np.ndarray]:
    import nibabel as nib

    header = nib.load(path)
    shape = tuple(int(s) for s in header.shape[:3])
    return shape, np.asarray(header.affine, dtype=np.float64)


def _first(cohort: Cohort) -> dict[str, Any]:
    if cohort.table.height == 0:
        raise DataError(f"dataset {cohort.name!r} has no image to preprocess")
    return cohort.table.sort("sample_id").row(0, named=True)


def preprocess_for(
    cohort: Cohort,
    *,
    with_mask: bool,
    spatial_size: Sequence[int] | None = None,
    config: PreprocessConfig | None = None,
) -> Preprocess:
    """The :class:`Preprocess` of a cohort: ``config`` (default: RAS, z-score) and its common grid.

    The grid is ``spatial_size`` when given (it overrides ``config.spatial_size``, e.g. to put masks
    on an image's grid), else ``config.spatial_size``, else the shape of the first image (by
    ``sample_id``) after orientation, spacing and cropping: from its header, or from its voxels
    when ``crop_foreground`` is on. So every volume of a dataset shares one grid, the same in every
    trial.
    """
    config = config or PreprocessConfig()
    size = spatial_size if spatial_size is not None else config.spatial_size
    if size is None:
        row = _first(cohort)
        try:
            if config.crop_foreground:
                probe = Preprocess((1, 1, 1), config).transforms(common_grid=False)
                size = tuple(probe({"image": row["image"]})["image"].shape[1:])
            else:
                size = header_shape(*_header(row["image"]), config)[0]
        except Exception as exc:
            raise DataError(
                f"dataset {cohort.name!r}, sample_id={row['sample_id']!r}: cannot read image "
                f"{row['image']!r} ({exc}); check the file exists and is a 3-D NIfTI"
            ) from exc
    return Preprocess(spatial_size=tuple(int(s) for s in size), config=config, with_mask=with_mask)


@dataclass(frozen=True)
class InputGeometry:
    """What the network of a dataset receives: shape, voxel size, orientation, bytes per sample.

    ``how`` says where the shape comes from: ``"spatial_size"`` (declared), ``"header"`` (the
    first image's header), ``"image"`` (its voxels, for ``crop_foreground``) or ``"unknown"``
    (no image to read: ``shape`` and ``spacing`` are None). ``spacing`` is that of the common grid
    (after a resize it is the first image's field of view over the target shape; None when it
    differs between images: a crop resized to ``spatial_size``).
    """

    shape: tuple[int, ...] | None
    spacing: tuple[float, ...] | None
    orientation: str
    bytes_per_sample: int | None
    how: str


def input_geometry(
    cohort: Cohort,
    config: PreprocessConfig | None,
    *,
    with_mask: bool = False,
    header: tuple[Sequence[int], np.ndarray] | None = None,
) -> InputGeometry:
    """The input geometry of ``cohort`` under ``config`` (what ``raybench plan`` prints).

    ``header``: the (shape, affine) of the first image when its file need not exist (a synthetic
    cohort not generated yet); otherwise the first image's header is read. Memory is that of the
    cached float32 image (plus a uint8 mask for segmentation), per sample.
    """
    config = config or PreprocessConfig()
    row = _first(cohort)
    exists = Path(str(row["image"])).exists()
    if header is None and exists:
        header = _header(row["image"])
    if config.spatial_size is not None:
        shape, how = config.spatial_size, "spatial_size"
    elif header is None or (config.crop_foreground and not exists):
        return InputGeometry(None, None, config.orientation, None, "unknown")
    elif config.crop_foreground:
        shape, how = preprocess_for(cohort, with_mask=False, config=config).spatial_size, "image"
    else:
        shape, how = header_shape(header[0], header[1], config)[0], "header"
    spacing = config.spacing
    if spacing is None and header is not None:
        oriented, voxel = header_shape(header[0], header[1], config)
        if how == "image":  # the first image keeps its voxel size: its crop is the grid
            spacing = voxel
        elif not config.crop_foreground:  # a resize of the whole field of view
            spacing = tuple(v * o / s for v, o, s in zip(voxel, oriented, shape, strict=True))
    voxels = int(np.prod(shape))
    return InputGeometry(
        tuple(int(s) for s in shape),
        spacing,
        config.orientation,
        voxels * 4 + (voxels if with_mask else 0),
        how,
    )


def dataset_geometry(suite: Any, dataset: Any, cohort: Cohort) -> InputGeometry:
    """:func:`input_geometry` of one suite dataset (its resolved ``preprocess``, the suite's task).

    A synthetic dataset that is not generated yet is described from its generator's grid (shape
    and affine are known from its parameters), so ``raybench plan`` writes nothing.
    """
    from raybench.data.phantom import Grid

    config = preprocess_config(
        getattr(suite, "preprocess", None), getattr(dataset, "preprocess", None)
    )
    header = None
    if getattr(dataset, "source", None) == "synthetic":
        grid = Grid(tuple(dataset.params.shape))
        header = (grid.shape, grid.affine)
    return input_geometry(
        cohort, config, with_mask=suite.task.type == "segmentation", header=header
    )
