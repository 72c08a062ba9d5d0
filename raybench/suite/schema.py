"""The typed schema of a raybench suite (pydantic v2).

A suite is a YAML file; :func:`raybench.suite.load_suite` parses it safely and validates it against
:class:`Suite`. Every model forbids unknown keys, so a misspelt key is an error with a "did you
mean" suggestion rather than a silently ignored setting, and values are validated strictly (``true``
is not a number, ``"8"`` is not an integer).

*Search spaces.* A key typed ``Searchable[T]`` accepts either a scalar ``T`` or a non-empty list of
``T``: a list is a grid of values that the compiler expands into search points. The searchable keys
are :data:`SEARCHABLE_KEYS`: ``models[].params.<any>``, ``training.lr``,
``training.optimizer``, ``training.weight_decay``, ``training.batch_size``, ``training.epochs``
and ``training.augment`` (a list of pipelines, each a list of transforms: ``[[], [{type: flip}]]``).
Everywhere else a list is a list (e.g. ``seeds``). A perturbation parameter given as a list is a
set of severities, not a search.

The checks that involve more than one key (an ``arch`` that must be a known architecture or a
plugin, metrics that must fit the task, ...) live in :mod:`raybench.suite.checks`; they run when a
:class:`Suite` is constructed and, with file locations, in the loader.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from raybench_analysis.vocabulary import (
    CALIBRATION_METHODS,
    CLASS_BALANCING,
    DEFAULT_ALPHA,
    DEFAULT_HIERARCHY,
    DEFAULT_N_BOOT,
    GENERATORS,
    HIERARCHY_LEVELS,
    INPUT_NOISE_TYPES,
    METRICS_BY_TASK,
    OPTIMIZERS,
    ORIENTATION_CODES,
    PERTURBATION_PARAMS,
    SAMPLE_UNIT,
    SAVE_MODEL_MODES,
    SCHEDULERS,
    SEARCH_ALGORITHMS,
    SEARCH_SCHEDULERS,
    SEARCHABLE_TRAINING_KEYS,
    SPLIT_STRATEGIES,
    STRATIFY_COLUMNS,
    TASK_TYPES,
    TRAIN_RESAMPLING_SCHEMES,
    WANDB_MODES,
)

from raybench.suite.checks import check_suite_data
from raybench.suite.external_checks import external_datasets  # noqa: F401 (registers)
from raybench.suite.search import TRAINING_TYPES  # importing it registers the search checks

T = TypeVar("T")

#: A scalar, or a list of scalars that forms a grid search dimension.
Searchable = Union[T, list[T]]

#: Names of suites, datasets and models: they end up in paths, tables and W&B run names.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"

#: Every metric of any task (which ones fit a suite's task is a cross-key check).
ALL_METRICS: tuple[str, ...] = tuple(
    dict.fromkeys(m for ms in METRICS_BY_TASK.values() for m in ms)
)

TaskType = Literal.__getitem__(TASK_TYPES)
Metric = Literal.__getitem__(ALL_METRICS)

#: Dotted paths of the keys whose value may be a list of candidates (a search space).
SEARCHABLE_KEYS: tuple[str, ...] = (
    "models[].params.<any>",
    "training.lr",
    "training.optimizer",
    "training.weight_decay",
    "training.batch_size",
    "training.epochs",
    "training.augment",
)

# Documented maxima of numeric keys: far above any real benchmark, low enough that a typo (an extra
# zero or three) is an error at validation instead of a run that fills the memory or never ends.
#: Seeds are 32-bit (NumPy, torch and Python generators all accept them).
MAX_SEED = 2**32 - 1
#: Subjects of a synthetic cohort (each is at least one NIfTI file written to disk).
MAX_SUBJECTS = 100_000
#: Sites, scanners per site and sessions per subject of a synthetic cohort.
MAX_SITES = 1_000
MAX_SCANNERS_PER_SITE = 100
MAX_SESSIONS = 100
#: Voxels along each axis of a synthetic volume.
MAX_SHAPE = 512
#: Training epochs, samples per batch, DataLoader workers, early-stopping patience.
MAX_EPOCHS = 10_000
MAX_BATCH_SIZE = 4_096
MAX_WORKERS = 256
#: Learning rate and weight decay (larger values only diverge).
MAX_LR = 10.0
MAX_WEIGHT_DECAY = 10.0
#: Folds and repetitions of a k-fold protocol.
MAX_FOLDS = 1_000
MAX_REPEATS = 1_000
#: Bootstrap draws of the analysis.
MAX_BOOT = 1_000_000
#: Perturbation strength (relative scales, factors and exponents), and rotation degrees.
MAX_SEVERITY = 100.0
MAX_DEGREES = 180.0
#: Ray resources per trial and retries of a failed trial.
MAX_CPU = 1_024.0
MAX_GPU = 64.0
MAX_RETRIES = 100
#: Monte Carlo draws (forward passes per sample) of the uncertainty evaluation.
MAX_DRAWS = 10_000
#: Any other real number of a suite (effect sizes, shifts, noise, min_delta, custom resources).
MAX_REAL = 1.0e6


class Strict(BaseModel):
    """Base of every suite model: unknown keys are errors, values are not coerced silently.

    Numbers are finite (``.inf``, ``.nan`` and overflowing literals such as ``1.0e400`` are errors)
    and every numeric key has a documented range (the ``MAX_*`` constants of this module).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


# --------------------------------------------------------------------------- preprocessing

#: Target voxel size of ``preprocess.spacing``, in mm (above it a brain is a few voxels).
MAX_SPACING_MM = 50.0
#: Voxels along each axis of ``preprocess.spatial_size``.
MAX_SPATIAL_SIZE = 1_024

Spacing = Annotated[float, Field(gt=0, le=MAX_SPACING_MM)]
Size = Annotated[int, Field(ge=1, le=MAX_SPATIAL_SIZE)]


class ZScore(Strict):
    """Z-score: ``(x - mean) / sd`` (MONAI ``NormalizeIntensity``)."""

    type: Literal["zscore"] = Field(description="intensity normalisation")
    nonzero: bool = Field(
        True, description="mean and SD of the non-zero voxels only (brain MRI: the background)"
    )


class Percentile(Strict):
    """Percentiles ``lower``/``upper`` mapped to ``range`` (``ScaleIntensityRangePercentiles``)."""

    type: Literal["percentile"] = Field(description="intensity normalisation")
    lower: float = Field(0.5, ge=0, le=100, description="lower percentile, mapped to range[0]")
    upper: float = Field(99.5, ge=0, le=100, description="upper percentile, mapped to range[1]")
    range: tuple[float, float] = Field(
        (0.0, 1.0), strict=False, description="[b_min, b_max]: the output range"
    )
    clip: bool = Field(True, description="clip values outside the range")

    @model_validator(mode="after")
    def _ordered(self) -> Percentile:
        if self.lower >= self.upper:
            raise ValueError(
                f"lower={self.lower:g} must be below upper={self.upper:g} (percentiles in order)"
            )
        if self.range[0] >= self.range[1]:
            raise ValueError(f"range={list(self.range)} must go from low to high")
        return self


class NoIntensity(Strict):
    """No intensity normalisation (images used as stored)."""

    type: Literal["none"] = Field(description="intensity normalisation")


Intensity = Annotated[Union[ZScore, Percentile, NoIntensity], Field(discriminator="type")]


class Preprocessing(Strict):
    """Deterministic preprocessing of a dataset's volumes (docs/real-data.md), cached once.

    At the top level of a suite it applies to every dataset; in a dataset entry its keys override
    the top-level ones. Steps, in order: orientation, ``spacing``, ``crop_foreground``, one common
    grid (``spatial_size``, else the first image's shape), intensity.
    """

    spacing: (
        Union[Spacing, Annotated[tuple[Spacing, Spacing, Spacing], Field(strict=False)]] | None
    ) = Field(
        None,
        description="target voxel size in mm (one number or [x, y, z]); null: keep the images'",
    )
    spatial_size: Annotated[tuple[Size, Size, Size], Field(strict=False)] | None = Field(
        None,
        description="input shape [x, y, z] in voxels (with spacing: padded or cropped to it, "
        "else resized); null: the first image's",
    )
    crop_foreground: bool = Field(
        False, description="crop to the bounding box of the voxels > 0 (the head or the brain)"
    )
    orientation: Literal.__getitem__(ORIENTATION_CODES) = Field(  # type: ignore[valid-type]
        "RAS", description="axis codes the volumes are reoriented to (RAS, LPS, ...)"
    )
    intensity: Intensity = Field(
        ZScore(type="zscore"),
        description="{type: zscore, nonzero: true}, {type: percentile, lower, upper, range} or "
        "{type: none}",
    )


# --------------------------------------------------------------------------- datasets


class Shortcut(Strict):
    """A label-correlated marker outside the head (docs/synthetic.md, docs/explanations.md)."""

    sites: list[str] = Field(
        default_factory=list,
        description="sites whose images may carry the marker, e.g. [site01] ([] = every site)",
    )
    ad_rate: float = Field(0.9, ge=0.0, le=1.0, description="share of AD images with the marker")
    cn_rate: float = Field(0.1, ge=0.0, le=1.0, description="share of CN images with the marker")
    strength: float = Field(
        2.0, gt=0.0, le=MAX_REAL, description="marker intensity, in white-matter units"
    )
    size: float = Field(
        0.12,
        gt=0.0,
        le=0.15,
        description="edge of the marker cube as a fraction of the volume's (it stays outside "
        "the head up to 0.15)",
    )


class SyntheticParams(Strict):
    """Parameters of the built-in synthetic cohort generator (see docs/synthetic.md)."""

    sites: int = Field(4, ge=1, le=MAX_SITES, description="number of acquisition sites")
    scanners_per_site: int = Field(
        1, ge=1, le=MAX_SCANNERS_PER_SITE, description="scanners per site"
    )
    subjects: int = Field(40, ge=2, le=MAX_SUBJECTS, description="total number of subjects")
    sessions: int = Field(1, ge=1, le=MAX_SESSIONS, description="sessions (images) per subject")
    shape: tuple[
        Annotated[int, Field(ge=8, le=MAX_SHAPE)],
        Annotated[int, Field(ge=8, le=MAX_SHAPE)],
        Annotated[int, Field(ge=8, le=MAX_SHAPE)],
    ] = Field((32, 32, 32), strict=False, description="volume shape in voxels, [x, y, z]")
    effect: float = Field(
        0.8, ge=0.0, le=MAX_REAL, description="disease effect size (0 = no signal at all)"
    )
    site_shift: float = Field(
        0.3, ge=0.0, le=MAX_REAL, description="site/scanner intensity shift (SD)"
    )
    noise: float = Field(
        0.05, ge=0.0, le=MAX_REAL, description="Rician-like noise SD relative to white matter"
    )
    prevalence: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of diseased subjects")
    site_weights: list[Annotated[float, Field(gt=0.0, le=MAX_REAL)]] | None = Field(
        None,
        description="relative share of subjects per site, one weight per site (the site mix; "
        "null: equal shares)",
    )
    lesion_scale: float = Field(
        1.0,
        gt=0.0,
        le=4.0,
        description="factor on every lesion radius (the lesion-size distribution; 1: U(6, 10) mm)",
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="generator seed (the same seed gives byte-identical files)",
    )
    subject_prefix: str = Field(
        "",
        pattern=r"^[A-Za-z0-9]*$",
        description="letters put before the subject numbers ('ext' gives sub-ext001): another "
        "cohort's subjects under other ids (external validation, docs/validation.md)",
    )
    shortcut: Shortcut | None = Field(
        None, description="a label-correlated marker outside the head (null: none)"
    )


class ColumnMap(Strict):
    """Names of the columns of a manifest (or of participants.tsv for BIDS)."""

    image: str = Field("image", description="image path, relative to the manifest")
    label: str = Field("label", description="target column (task.label names the column to use)")
    subject_id: str = Field("subject_id", description="subject identifier")
    session_id: str = Field("session_id", description="session identifier")
    scanner: str = Field("scanner", description="scanner identifier")
    site: str = Field("site", description="acquisition site")
    mask: str = Field("mask", description="segmentation mask path, relative to the manifest")


class SyntheticDataset(Strict):
    """A cohort written by the built-in generator: real NIfTI files with a known effect."""

    name: str = Field(pattern=NAME_PATTERN, description="unique dataset name")
    source: Literal["synthetic"] = Field(description="data source")
    params: SyntheticParams = Field(SyntheticParams(), description="generator parameters")
    cache_dir: str | None = Field(
        None,
        description="where the cohort is generated, relative to the suite (default: the "
        "--data-root of the command, ./.raybench-data); files go in <dir>/<name>-<hash>",
    )
    preprocess: Preprocessing | None = Field(
        None, description="this dataset's preprocessing (overrides the suite's, key by key)"
    )


class ManifestDataset(Strict):
    """A TSV/CSV table with one row per image (see docs/data.md)."""

    name: str = Field(pattern=NAME_PATTERN, description="unique dataset name")
    source: Literal["manifest"] = Field(description="data source")
    path: str = Field(
        description="TSV or CSV file, relative to the suite; image paths are relative to it"
    )
    columns: ColumnMap = Field(ColumnMap(), description="names of the manifest's columns")
    preprocess: Preprocessing | None = Field(
        None, description="this dataset's preprocessing (overrides the suite's, key by key)"
    )


class BidsDataset(Strict):
    """A BIDS or CAPS-like tree with ``participants.tsv``; images are found by pattern."""

    name: str = Field(pattern=NAME_PATTERN, description="unique dataset name")
    source: Literal["bids"] = Field(description="data source")
    path: str = Field(description="root of the BIDS/CAPS tree holding participants.tsv")
    pattern: str = Field(
        "sub-{subject}/ses-{session}/anat/sub-{subject}_ses-{session}*_T1w.nii.gz",
        description="glob (with {subject}, {session} placeholders) of the images",
    )
    columns: ColumnMap = Field(
        ColumnMap(subject_id="participant_id"), description="names of participants.tsv's columns"
    )
    preprocess: Preprocessing | None = Field(
        None, description="this dataset's preprocessing (overrides the suite's, key by key)"
    )


class GeneratedParams(Strict):
    """A generative model fitted to another dataset's training subjects (docs/generated.md)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(
        alias="from",
        pattern=NAME_PATTERN,
        description="the dataset whose training subjects (outer fold 0's training side) the "
        "generator is fitted to; another dataset of the suite, not a generated one",
    )
    generator: Literal.__getitem__(GENERATORS) = Field(  # type: ignore[valid-type]
        GENERATORS[0], description="generative model"
    )
    latent: int = Field(32, ge=1, le=4096, description="latent dimensions")
    epochs: int = Field(50, ge=1, le=MAX_EPOCHS, description="training epochs of the generator")
    samples: int = Field(200, ge=2, le=1_000_000, description="labelled samples drawn")
    lr: float = Field(1.0e-3, gt=0.0, le=MAX_LR, description="Adam learning rate")
    batch_size: int = Field(16, ge=1, le=4096, description="generator minibatch size")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="seed of fitting and sampling")


class GeneratedDataset(Strict):
    """Labelled samples drawn from a generative model of another dataset, as NIfTI + manifest."""

    name: str = Field(pattern=NAME_PATTERN, description="unique dataset name")
    source: Literal["generated"] = Field(description="data source")
    params: GeneratedParams = Field(description="generator and its training")
    cache_dir: str | None = Field(
        None,
        description="where the samples are written, relative to the suite (default: the "
        "--data-root of the command); files go in <dir>/<name>-<hash>",
    )


Dataset = Annotated[
    Union[SyntheticDataset, ManifestDataset, BidsDataset, GeneratedDataset],
    Field(discriminator="source"),
]

# --------------------------------------------------------------------------- task and models


class Task(Strict):
    """What is predicted: the task type and the column that holds the target."""

    type: TaskType = Field(description="task type")
    label: str = Field(
        "label",
        description="column holding the target (class, value, or mask path for segmentation)",
    )
    positive: str | None = Field(None, description="positive class (binary classification)")
    classes: list[str] | None = Field(
        None, min_length=2, description="allowed classes, in index order (classification)"
    )


class Model(Strict):
    """One network to benchmark: a known architecture or a plugin, with its arguments."""

    name: str = Field(pattern=NAME_PATTERN, description="unique model name")
    arch: str = Field(
        description="architecture (one of ARCHITECTURES, see docs/models.md) or a plugin name"
    )
    params: dict[str, Searchable[Any]] = Field(
        default_factory=dict,
        description="network arguments; a list is searched (a list-valued argument is [[...]])",
    )


# --------------------------------------------------------------------------- training


class EarlyStopping(Strict):
    """Stop training when the validation score has not improved for ``patience`` epochs."""

    patience: int = Field(
        5, ge=1, le=MAX_EPOCHS, description="epochs without improvement before stopping"
    )
    min_delta: float = Field(
        0.0, ge=0.0, le=MAX_REAL, description="smallest change that counts as improvement"
    )


# --------------------------------------------------------------------------- augmentation

Probability = Annotated[float, Field(ge=0, le=1, description="chance it applies to a sample")]


def _ordered_pair(name: str, pair: tuple[float, float]) -> None:
    if pair[0] > pair[1]:
        raise ValueError(f"{name}={list(pair)} must go from low to high")


class Flip(Strict):
    """Mirror along each of ``axes`` independently (MONAI ``RandFlip``)."""

    type: Literal["flip"] = Field(description="random transform")
    prob: Probability = Field(0.5, description="chance of a flip, per axis")
    axes: list[Annotated[int, Field(ge=0, le=2)]] = Field(
        [0], min_length=1, description="spatial axes (0 = x: left-right after RAS)"
    )


class Affine(Strict):
    """Random rotation and scaling about the centre (MONAI ``RandAffine``)."""

    type: Literal["affine"] = Field(description="random transform")
    prob: Probability = Field(0.5, description="chance it applies to a sample")
    rotate: float = Field(10.0, ge=0, le=MAX_DEGREES, description="rotation up to ± degrees")
    scale: float = Field(0.1, ge=0, lt=1, description="scaling up to ± this fraction")


class Elastic(Strict):
    """Random elastic deformation (MONAI ``Rand3DElastic``; Simard et al. 2003)."""

    type: Literal["elastic"] = Field(description="random transform")
    prob: Probability = Field(0.2, description="chance it applies to a sample")
    sigma: tuple[
        Annotated[float, Field(gt=0, le=MAX_SHAPE)], Annotated[float, Field(gt=0, le=MAX_SHAPE)]
    ] = Field((5.0, 8.0), strict=False, description="smoothing SD range of the field, voxels")
    magnitude: tuple[
        Annotated[float, Field(ge=0, le=MAX_REAL)], Annotated[float, Field(ge=0, le=MAX_REAL)]
    ] = Field((20.0, 60.0), strict=False, description="displacement magnitude range")

    @model_validator(mode="after")
    def _ranges(self) -> Elastic:
        _ordered_pair("sigma", self.sigma)
        _ordered_pair("magnitude", self.magnitude)
        return self


class IntensityShift(Strict):
    """Add an offset drawn in ``[-offset, offset]`` (MONAI ``RandShiftIntensity``)."""

    type: Literal["intensity_shift"] = Field(description="random transform")
    prob: Probability = Field(0.5, description="chance it applies to a sample")
    offset: float = Field(0.1, ge=0, le=MAX_SEVERITY, description="largest offset (image units)")


class IntensityScale(Strict):
    """Multiply by ``1 + f``, ``f`` drawn in ``[-factor, factor]`` (``RandScaleIntensity``)."""

    type: Literal["intensity_scale"] = Field(description="random transform")
    prob: Probability = Field(0.5, description="chance it applies to a sample")
    factor: float = Field(0.1, ge=0, le=MAX_SEVERITY, description="largest relative change")


class GammaAugment(Strict):
    """Contrast change with a gamma drawn in ``gamma`` (MONAI ``RandAdjustContrast``)."""

    type: Literal["gamma"] = Field(description="random transform")
    prob: Probability = Field(0.5, description="chance it applies to a sample")
    gamma: tuple[
        Annotated[float, Field(gt=0, le=MAX_SEVERITY)],
        Annotated[float, Field(gt=0, le=MAX_SEVERITY)],
    ] = Field((0.7, 1.5), strict=False, description="[low, high] of the gamma exponent")

    @model_validator(mode="after")
    def _range(self) -> GammaAugment:
        _ordered_pair("gamma", self.gamma)
        return self


class NoiseAugment(Strict):
    """Additive Gaussian noise of SD drawn in ``[0, std]`` (MONAI ``RandGaussianNoise``)."""

    type: Literal["gaussian_noise"] = Field(description="random transform")
    prob: Probability = Field(0.5, description="chance it applies to a sample")
    std: float = Field(0.05, ge=0, le=MAX_SEVERITY, description="largest noise SD (image units)")


class BiasFieldAugment(Strict):
    """Smooth multiplicative field, coefficients in ``[-coeff, coeff]`` (``RandBiasField``)."""

    type: Literal["bias_field"] = Field(description="random transform")
    prob: Probability = Field(0.5, description="chance it applies to a sample")
    coeff: float = Field(0.3, ge=0, le=MAX_SEVERITY, description="largest polynomial coefficient")
    degree: int = Field(3, ge=1, le=6, description="polynomial degree of the field")


Augmentation = Annotated[
    Union[
        Flip,
        Affine,
        Elastic,
        IntensityShift,
        IntensityScale,
        GammaAugment,
        NoiseAugment,
        BiasFieldAugment,
    ],
    Field(discriminator="type"),
]


def _augment_branch(value: Any) -> str:
    """``search`` for a list of pipelines (lists), else ``pipeline``: one branch is validated."""
    if isinstance(value, list) and any(isinstance(v, list) for v in value):
        return "search"
    return "pipeline"


#: ``training.augment``: one pipeline (a list of transforms), or a search over pipelines.
AugmentSpace = Annotated[
    Union[
        Annotated[list[Augmentation], Tag("pipeline")],
        Annotated[list[list[Augmentation]], Tag("search")],
    ],
    Discriminator(_augment_branch),
]


class Training(Strict):
    """Optimisation settings shared by every model (searchable keys accept lists)."""

    epochs: Searchable[Annotated[int, Field(ge=1, le=MAX_EPOCHS)]] = Field(
        10, description="training epochs"
    )
    batch_size: Searchable[Annotated[int, Field(ge=1, le=MAX_BATCH_SIZE)]] = Field(
        8, description="samples per batch"
    )
    optimizer: Searchable[Literal.__getitem__(OPTIMIZERS)] = Field(  # type: ignore[valid-type]
        "adam", description="optimizer"
    )
    lr: Searchable[Annotated[float, Field(gt=0, le=MAX_LR)]] = Field(
        1.0e-3, description="learning rate"
    )
    weight_decay: Searchable[Annotated[float, Field(ge=0, le=MAX_WEIGHT_DECAY)]] = Field(
        0.0, description="weight decay (L2 penalty)"
    )
    scheduler: Literal.__getitem__(SCHEDULERS) = Field(  # type: ignore[valid-type]
        "none", description="learning-rate schedule"
    )
    early_stopping: EarlyStopping | None = Field(
        None, description="early stopping on the inner validation split (needs validation.inner)"
    )
    amp: bool = Field(True, description="mixed precision on GPU (ignored on CPU)")
    num_workers: int = Field(0, ge=0, le=MAX_WORKERS, description="DataLoader workers per trial")
    save_model: Literal.__getitem__(SAVE_MODEL_MODES) = Field(  # type: ignore[valid-type]
        "off",
        description="best: keep each refit trial's selected weights under models/ "
        "(raybench predict; docs/predict.md)",
    )
    augment: AugmentSpace | None = Field(
        None,
        description="random transforms of the training samples, in order (docs/training.md); a "
        "list of lists is searched, e.g. [[], [{type: flip}]] for off vs on; null: none",
    )
    class_weights: Literal.__getitem__(CLASS_BALANCING) | None = Field(  # type: ignore[valid-type]
        None, description="balanced: loss weights n / (k n_c) from the training fold; null: none"
    )
    sampler: Literal.__getitem__(CLASS_BALANCING) | None = Field(  # type: ignore[valid-type]
        None, description="balanced: draw training samples with equal chance per class"
    )


#: The search checks validate each distribution's ends against these types (Searchable[T]: T).
TRAINING_TYPES.update(
    {k: Training.model_fields[k].annotation.__args__[0] for k in SEARCHABLE_TRAINING_KEYS}
)

# --------------------------------------------------------------------------- validation


class Protocol(Strict):
    """One split protocol. ``group`` is always the subject: images of one subject stay together."""

    strategy: Literal.__getitem__(SPLIT_STRATEGIES) = Field(  # type: ignore[valid-type]
        description="how samples are split (always grouped by subject)"
    )
    k: int = Field(5, ge=2, le=MAX_FOLDS, description="folds (group_kfold only)")
    repeats: int = Field(
        1, ge=1, le=MAX_REPEATS, description="repetitions of group_kfold with new shuffles"
    )
    fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="held-out fraction (group_holdout only)"
    )
    group: Literal[SAMPLE_UNIT] = Field(SAMPLE_UNIT, description="grouping column")
    stratify: Annotated[
        list[Literal.__getitem__(STRATIFY_COLUMNS)],  # type: ignore[valid-type]
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "array", "items": {"enum": list(STRATIFY_COLUMNS)}},
                    {"enum": list(STRATIFY_COLUMNS)},
                    {"type": "null"},
                ]
            }
        ),
    ] = Field(
        default_factory=lambda: ["label"],
        description="columns to stratify on: [], [label], [label, site] (a single name is a list)",
    )

    @field_validator("stratify", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str) else v


class TrainResampling(Strict):
    """Draws of training subjects inside each outer training fold (docs/training-distribution.md).

    Each fraction below 1 is drawn ``repeats`` times (``bootstrap``: every fraction, 1 included),
    stratified like the protocol, the test fold untouched; each draw is searched and refitted like
    the whole fold, which is always trained too.
    """

    scheme: Literal.__getitem__(TRAIN_RESAMPLING_SCHEMES) = Field(  # type: ignore[valid-type]
        "subsample",
        description="`subsample`: subjects without replacement; `bootstrap`: with replacement, "
        "copies kept",
    )
    fractions: list[Annotated[float, Field(gt=0.0, le=1.0)]] = Field(
        default_factory=lambda: [1.0],
        min_length=1,
        description="sizes of the draws, as fractions in (0, 1] of the outer training fold's "
        "subjects",
    )
    repeats: int = Field(
        1, ge=1, le=MAX_REPEATS, description="draws per fraction (new subjects each time)"
    )

    @field_validator("fractions")
    @classmethod
    def _distinct(cls, v: list[float]) -> list[float]:
        dupes = sorted({x for x in v if v.count(x) > 1})
        if dupes:
            raise ValueError(f"fractions {dupes} listed twice; list each fraction once")
        return v


class Validation(Strict):
    """Split protocols: ``outer`` estimates performance, ``inner`` selects models inside it."""

    outer: Protocol = Field(
        Protocol(strategy="group_kfold"), description="the protocol that gives the test folds"
    )
    inner: Protocol | None = Field(
        Protocol(strategy="group_holdout"),
        description="model selection / early stopping inside each outer training fold (null: none)",
    )
    extra: list[Protocol] = Field(
        default_factory=list, description="further outer protocols (e.g. leave_one_site_out)"
    )
    seed: int = Field(
        0,
        ge=0,
        le=MAX_SEED,
        description="split seed, independent of `seeds`: every model seed sees the same folds",
    )
    train_resampling: TrainResampling | None = Field(
        None,
        description="draws of training subjects inside each outer training fold (learning "
        "curves, sampling variance); null: the whole fold only",
    )
    external: list[Annotated[str, Field(pattern=NAME_PATTERN)]] = Field(
        default_factory=list,
        description="datasets never used for training or selection: every refit model is also "
        "evaluated on each (split = external; docs/validation.md)",
    )
    final: bool = Field(
        False,
        description="also refit on the whole development dataset (selection by "
        "validation.inner), evaluated on the external datasets only",
    )


# --------------------------------------------------------------------------- evaluation


class Perturbation(Strict):
    """A corruption applied to the test images; it carries exactly the parameter of its type."""

    type: Literal.__getitem__(tuple(PERTURBATION_PARAMS)) = Field(  # type: ignore[valid-type]
        description="perturbation type"
    )
    std: Searchable[Annotated[float, Field(ge=0, le=MAX_SEVERITY)]] | None = Field(
        None, description="gaussian_noise, rician_noise: noise SD relative to the image SD"
    )
    coeff: Searchable[Annotated[float, Field(ge=0, le=MAX_SEVERITY)]] | None = Field(
        None, description="bias_field: polynomial coefficient magnitude"
    )
    factor: Searchable[Annotated[float, Field(gt=0, le=MAX_SEVERITY)]] | None = Field(
        None, description="intensity_scale: multiplicative factor"
    )
    gamma: Searchable[Annotated[float, Field(gt=0, le=MAX_SEVERITY)]] | None = Field(
        None, description="gamma: contrast exponent"
    )
    degrees: Searchable[Annotated[float, Field(ge=0, le=MAX_DEGREES)]] | None = Field(
        None, description="motion: rotation magnitude in degrees"
    )
    sigma: Searchable[Annotated[float, Field(ge=0, le=MAX_SEVERITY)]] | None = Field(
        None, description="blur: Gaussian kernel SD in voxels"
    )
    spacing: Searchable[Annotated[float, Field(ge=1, le=MAX_SEVERITY)]] | None = Field(
        None, description="resolution: voxel size multiplier (downsampled, then upsampled back)"
    )
    alpha: Searchable[Annotated[float, Field(ge=0, le=1)]] | None = Field(
        None, description="gibbs: fraction of k-space truncated (Gibbs ringing)"
    )
    intensity: Searchable[Annotated[float, Field(ge=0, le=1)]] | None = Field(
        None, description="ghosting: attenuation of every n-th k-space plane"
    )
    shift: Searchable[Annotated[float, Field(ge=0, le=MAX_SEVERITY)]] | None = Field(
        None, description="scanner_shift: RMS intensity change of a smooth transfer curve (in SDs)"
    )


#: Samples scored per trial, maps kept per trial, and attribution-method budgets.
MAX_EXPLAIN_SAMPLES = 10_000
MAX_STEPS = 10_000


class GradCam(Strict):
    """Grad-CAM (Selvaraju et al. 2017) with MONAI's ``GradCAM``, upsampled to the image grid."""

    method: Literal["gradcam"] = Field(description="attribution method")
    layer: str = Field(
        "auto", description="module name of the target layer; auto: the last 3-D convolution"
    )


class GradCamPP(Strict):
    """Grad-CAM++ (Chattopadhay et al. 2018) with MONAI's ``GradCAMpp``."""

    method: Literal["gradcampp"] = Field(description="attribution method")
    layer: str = Field(
        "auto", description="module name of the target layer; auto: the last 3-D convolution"
    )


class Occlusion(Strict):
    """Occlusion sensitivity (Zeiler & Fergus 2014) with MONAI's ``OcclusionSensitivity``."""

    method: Literal["occlusion"] = Field(description="attribution method")
    window: int = Field(8, ge=1, le=MAX_SHAPE, description="occluding cube edge, in voxels")
    stride: int = Field(4, ge=1, le=MAX_SHAPE, description="step between cubes (<= window)")


class Gradient(Strict):
    """Vanilla gradient saliency (Simonyan et al. 2014), Captum ``Saliency`` (absolute value)."""

    method: Literal["gradient"] = Field(description="attribution method")


class SmoothGrad(Strict):
    """SmoothGrad (Smilkov et al. 2017): gradients averaged over noisy copies (Captum)."""

    method: Literal["smoothgrad"] = Field(description="attribution method")
    samples: int = Field(16, ge=1, le=MAX_STEPS, description="noisy copies per sample")
    sigma: float = Field(
        0.15, gt=0, le=MAX_SEVERITY, description="noise SD relative to the image's value range"
    )


class IntegratedGradients(Strict):
    """Integrated Gradients (Sundararajan et al. 2017), Captum, from an all-zero baseline."""

    method: Literal["integrated_gradients"] = Field(description="attribution method")
    steps: int = Field(32, ge=2, le=MAX_STEPS, description="Riemann steps of the path integral")


class KernelShap(Strict):
    """KernelSHAP (Lundberg & Lee 2017), Captum, over cubic super-voxels (model-agnostic)."""

    method: Literal["kernel_shap"] = Field(description="attribution method")
    window: int = Field(4, ge=1, le=MAX_SHAPE, description="super-voxel cube edge, in voxels")
    samples: int = Field(128, ge=2, le=MAX_STEPS, description="coalitions evaluated per sample")


class Lime(Strict):
    """LIME (Ribeiro et al. 2016), Captum, over cubic super-voxels (model-agnostic)."""

    method: Literal["lime"] = Field(description="attribution method")
    window: int = Field(4, ge=1, le=MAX_SHAPE, description="super-voxel cube edge, in voxels")
    samples: int = Field(128, ge=2, le=MAX_STEPS, description="perturbed copies per sample")


ExplanationMethod = Annotated[
    Union[
        GradCam, GradCamPP, Occlusion, Gradient, SmoothGrad, IntegratedGradients, KernelShap, Lime
    ],
    Field(discriminator="method"),
]


class MaxSensitivity(Strict):
    """Max-sensitivity (Yeh et al. 2019) of each map: the worst relative change of the map over
    ``samples`` copies of the image with uniform noise of half-width ``radius`` (Captum)."""

    samples: int = Field(8, ge=1, le=MAX_STEPS, description="perturbed copies per map")
    radius: float = Field(
        0.02,
        gt=0,
        le=MAX_SEVERITY,
        description="half-width of the uniform noise, relative to the image's value range",
    )


class Explain(Strict):
    """Which test samples of each refit trial are explained, and how many maps are kept."""

    samples: int = Field(
        16, ge=1, le=MAX_EXPLAIN_SAMPLES, description="test samples scored per trial (stratified)"
    )
    save_maps: int = Field(
        4, ge=0, le=MAX_EXPLAIN_SAMPLES, description="samples per trial whose maps are kept (NIfTI)"
    )
    threshold_samples: int = Field(
        16,
        ge=0,
        le=MAX_EXPLAIN_SAMPLES,
        description="validation samples whose maps choose the weakly supervised segmentation "
        "threshold (0: no segmentation scores)",
    )
    randomisation: bool = Field(
        True, description="compare each map with a weight-randomised network's (Adebayo 2018)"
    )
    stability: bool = Field(
        True, description="explain the test images under each of evaluation.perturbations too"
    )
    max_sensitivity: MaxSensitivity | None = Field(
        None,
        description="max-sensitivity of each test map, Yeh et al. 2019 (opt-in; null: none)",
    )


class InputNoise(Strict):
    """Monte Carlo propagation of input noise: ``draws`` noisy copies of each image."""

    type: Literal.__getitem__(INPUT_NOISE_TYPES) = Field(  # type: ignore[valid-type]
        INPUT_NOISE_TYPES[0], description="noise model"
    )
    std: float = Field(
        0.05,
        gt=0,
        le=MAX_SEVERITY,
        description="noise SD, in units of the normalised image (as gaussian_noise perturbs)",
    )
    draws: int = Field(
        20, ge=2, le=MAX_DRAWS, description="noisy forward passes per sample (K; 2 for an SD)"
    )


class McDropout(Strict):
    """Monte Carlo dropout: ``draws`` passes with the dropout layers left on (Gal & Ghahramani)."""

    draws: int = Field(
        20, ge=2, le=MAX_DRAWS, description="stochastic forward passes per sample (K)"
    )


class Uncertainty(Strict):
    """Per-prediction uncertainty computed by each refit trial (see docs/uncertainty.md)."""

    input_noise: InputNoise | None = Field(
        None, description="input-noise propagation (classification, regression); null: off"
    )
    mc_dropout: McDropout | None = Field(
        None, description="MC dropout (classification; networks with a dropout layer); null: off"
    )
    calibration: list[Literal.__getitem__(CALIBRATION_METHODS)] = Field(  # type: ignore[valid-type]
        default_factory=list,
        description="post-hoc calibration fitted on each trial's validation predictions only",
    )


class Evaluation(Strict):
    """How trained models are scored on the test folds."""

    metrics: list[Metric] = Field(  # type: ignore[valid-type]
        default_factory=list, description="metrics fitting the task (default: auc/mae/dice by task)"
    )
    perturbations: list[Perturbation] = Field(
        default_factory=list,
        description="test-time perturbations; a list of values gives severities",
    )
    selection_metric: str | None = Field(
        None, description="validation metric for early stopping and selection (default: loss)"
    )
    explanations: list[ExplanationMethod] = Field(
        default_factory=list,
        description="attribution methods scored on refit trials (docs/explanations.md; [] = none)",
    )
    explain: Explain = Field(Explain(), description="samples explained and maps kept per trial")
    uncertainty: Uncertainty | None = Field(
        None, description="per-prediction uncertainty of refit trials (opt-in; null: none)"
    )


# --------------------------------------------------------------------------- the rest


class Resources(Strict):
    """Ray resources requested by each trial (fractions of a GPU allowed)."""

    cpu: float = Field(1.0, gt=0, le=MAX_CPU, description="CPUs per trial")
    gpu: float = Field(
        0.0, ge=0, le=MAX_GPU, description="GPUs per trial (0.25 packs four trials per GPU)"
    )
    memory: str | None = Field(
        None,
        pattern=r"^[0-9]+(\.[0-9]+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="e.g. '4GB' (a Ray scheduling hint)",
    )
    custom: dict[str, Annotated[float, Field(ge=0, le=MAX_REAL)]] = Field(
        default_factory=dict, description="Ray custom resources"
    )
    max_retries: int = Field(
        1, ge=0, le=MAX_RETRIES, description="retries of a failed trial before it is failed"
    )


class Analysis(Strict):
    """Settings of the statistical analysis of the results."""

    hierarchy: list[Literal.__getitem__(HIERARCHY_LEVELS)] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(DEFAULT_HIERARCHY),
        description="nesting levels for resampling and mixed models, outermost first",
    )
    alpha: float = Field(
        DEFAULT_ALPHA, gt=0, lt=1, description="significance level (1 - CI coverage)"
    )
    metric: str | None = Field(None, description="primary metric (default: first of evaluation)")
    n_boot: int = Field(DEFAULT_N_BOOT, ge=100, le=MAX_BOOT, description="bootstrap resamples")


class WandB(Strict):
    """Weights & Biases logging (offline unless asked otherwise)."""

    project: str = Field("raybench", description="W&B project")
    mode: Literal.__getitem__(WANDB_MODES) = Field(  # type: ignore[valid-type]
        WANDB_MODES[0], description="W&B mode"
    )
    entity: str | None = Field(None, description="W&B entity (team or user)")


class Tracking(Strict):
    """Experiment trackers."""

    wandb: WandB | None = Field(None, description="W&B settings (null: no W&B)")


class Storage(Strict):
    """Where results go."""

    results: str | None = Field(
        None, description="results directory or URI (default results/<name>)"
    )


#: Points of one search (``search.num_samples``): far above any real budget, low enough to catch a
#: typo.
MAX_SAMPLES = 100_000


class SearchScheduler(Strict):
    """Early stopping of search trials by asynchronous successive halving (docs/search.md)."""

    type: Literal.__getitem__(SEARCH_SCHEDULERS) = Field(  # type: ignore[valid-type]
        description="asha (one bracket) or hyperband (asynchronous, several brackets)"
    )
    metric: str | None = Field(
        None, description="validation metric reported each epoch (default: the selection metric)"
    )
    grace_period: int = Field(
        1, ge=1, le=MAX_EPOCHS, description="epochs every trial runs before it can be stopped"
    )
    reduction_factor: int = Field(
        3, ge=2, le=100, description="eta: 1/eta of the trials of a rung go on to the next"
    )
    max_t: int | None = Field(
        None,
        ge=1,
        le=MAX_EPOCHS,
        description="epochs of the last rung (default: the largest training.epochs)",
    )


class Search(Strict):
    """How each outer fold's inner search chooses its points (docs/search.md)."""

    algorithm: Literal.__getitem__(SEARCH_ALGORITHMS) = Field(  # type: ignore[valid-type]
        "grid", description="grid, random (drawn at compile time) or tpe (Optuna, adaptive)"
    )
    num_samples: int | None = Field(
        None,
        ge=1,
        le=MAX_SAMPLES,
        description="points per search (random, tpe); a grid has all its combinations",
    )
    space: dict[str, dict[str, list[Any]]] = Field(
        default_factory=dict,
        description="key -> {distribution: [arguments]}: loguniform [low, high], uniform "
        "[low, high], quniform [low, high, q], randint [low, high) or choice [values...]; "
        "keys: lr, batch_size, epochs, optimizer, weight_decay, model.<param>",
    )
    scheduler: SearchScheduler | None = Field(
        None, description="early stopping of search trials (asha, hyperband); null: none"
    )


class Suite(Strict):
    """A benchmark: datasets × models × validation protocols × seeds, evaluated and analysed."""

    name: str = Field(pattern=NAME_PATTERN, description="suite name (names the results directory)")
    description: str = Field("", description="free text")
    plugins: dict[str, str] = Field(
        default_factory=dict,
        description="user networks: name -> 'module:callable' (imported only when a trial runs)",
    )
    datasets: list[Dataset] = Field(min_length=1, description="datasets (unique names)")
    preprocess: Preprocessing | None = Field(
        None, description="preprocessing of every dataset (docs/real-data.md); null: the defaults"
    )
    task: Task = Field(description="the task every model is trained for")
    models: list[Model] = Field(min_length=1, description="models (unique names)")
    training: Training = Field(Training(), description="optimisation settings")
    validation: Validation = Field(Validation(), description="split protocols")
    seeds: list[Annotated[int, Field(ge=0, le=MAX_SEED)]] = Field(
        [0], min_length=1, description="training seeds (each outer fold is trained once per seed)"
    )
    evaluation: Evaluation = Field(Evaluation(), description="metrics and perturbations")
    resources: Resources = Field(Resources(), description="Ray resources per trial")
    analysis: Analysis = Field(Analysis(), description="statistical analysis")
    tracking: Tracking = Field(Tracking(), description="experiment tracking")
    storage: Storage = Field(Storage(), description="results location")
    search: Search | None = Field(
        None, description="sampled or adaptive search and early stopping (docs/search.md)"
    )

    @model_validator(mode="after")
    def _semantic_checks(self, info: ValidationInfo) -> Suite:
        """Run :func:`raybench.suite.checks.check_suite_data` (the loader runs it itself)."""
        if info.context and info.context.get("skip_semantic_checks"):
            return self
        problems = check_suite_data(self.model_dump(exclude_unset=True))
        if problems:
            raise ValueError("; ".join(p.describe() for p in problems))
        return self
