"""The typed schema of a raybench suite (pydantic v2).

A suite is a YAML file; :func:`raybench.suite.load_suite` parses it safely and validates it against
:class:`Suite`. Every model forbids unknown keys, so a misspelt key is an error with a "did you
mean" suggestion rather than a silently ignored setting.

*Search spaces.* A key typed ``Searchable[T]`` accepts either a scalar ``T`` or a non-empty list of
``T``: a list is a grid of values that the compiler expands into search points. The searchable keys
are: ``models[].params.<any>``, ``training.lr``, ``training.optimizer``, ``training.weight_decay``,
``training.batch_size`` and ``training.epochs``. Everywhere else a list is a list (e.g. ``seeds``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

T = TypeVar("T")

#: A scalar, or a list of scalars that forms a grid search dimension.
Searchable = Union[T, list[T]]


class Strict(BaseModel):
    """Base of every suite model: unknown keys are errors, values are not coerced silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- datasets


class SyntheticParams(Strict):
    """Parameters of the built-in synthetic cohort generator (see docs/synthetic.md)."""

    sites: int = Field(4, ge=1, description="number of acquisition sites")
    scanners_per_site: int = Field(1, ge=1, description="scanners per site")
    subjects: int = Field(40, ge=2, description="total number of subjects")
    sessions: int = Field(1, ge=1, description="sessions (images) per subject")
    shape: tuple[int, int, int] = Field((32, 32, 32), description="volume shape in voxels")
    effect: float = Field(0.8, ge=0.0, description="disease effect size (0 = no signal at all)")
    site_shift: float = Field(0.3, ge=0.0, description="site/scanner intensity shift (SD)")
    noise: float = Field(0.05, ge=0.0, description="Rician-like noise SD relative to white matter")
    prevalence: float = Field(0.5, gt=0.0, lt=1.0, description="fraction of diseased subjects")
    seed: int = Field(0, description="generator seed (the same seed gives byte-identical files)")


class ColumnMap(Strict):
    """Names of the columns of a manifest (or of participants.tsv for BIDS)."""

    image: str = "image"
    label: str = "label"
    subject_id: str = "subject_id"
    session_id: str = "session_id"
    scanner: str = "scanner"
    site: str = "site"
    mask: str = "mask"


class SyntheticDataset(Strict):
    name: str
    source: Literal["synthetic"]
    params: SyntheticParams = SyntheticParams()
    cache_dir: str | None = Field(
        None, description="where to write the cohort (default: <results>/../.raybench-data/<hash>)"
    )


class ManifestDataset(Strict):
    name: str
    source: Literal["manifest"]
    path: str = Field(description="TSV or CSV file; image paths are relative to it")
    columns: ColumnMap = ColumnMap()


class BidsDataset(Strict):
    name: str
    source: Literal["bids"]
    path: str = Field(description="root of the BIDS/CAPS tree holding participants.tsv")
    pattern: str = Field(
        "sub-{subject}/ses-{session}/anat/sub-{subject}_ses-{session}*_T1w.nii.gz",
        description="glob (with {subject}, {session} placeholders) of the images",
    )
    columns: ColumnMap = ColumnMap(subject_id="participant_id")


Dataset = Annotated[
    Union[SyntheticDataset, ManifestDataset, BidsDataset], Field(discriminator="source")
]

# --------------------------------------------------------------------------- task and models


class Task(Strict):
    type: Literal["classification", "regression", "segmentation"]
    label: str = Field(
        "label",
        description="column holding the target (class, value, or mask path for segmentation)",
    )
    positive: str | None = Field(None, description="positive class (binary classification)")
    classes: list[str] | None = Field(None, description="allowed classes, in index order")


class Model(Strict):
    name: str
    arch: str = Field(description="MONAI network name (see docs/models.md) or a plugin name")
    params: dict[str, Searchable[Any]] = Field(
        default_factory=dict, description="network arguments; lists are searched"
    )


# --------------------------------------------------------------------------- training


class EarlyStopping(Strict):
    patience: int = Field(5, ge=1)
    min_delta: float = Field(0.0, ge=0.0)


class Training(Strict):
    epochs: Searchable[Annotated[int, Field(ge=1)]] = 10
    batch_size: Searchable[Annotated[int, Field(ge=1)]] = 8
    optimizer: Searchable[Literal["adam", "adamw", "sgd"]] = "adam"
    lr: Searchable[Annotated[float, Field(gt=0)]] = 1.0e-3
    weight_decay: Searchable[Annotated[float, Field(ge=0)]] = 0.0
    scheduler: Literal["none", "cosine", "step"] = "none"
    early_stopping: EarlyStopping | None = None
    amp: bool = Field(True, description="mixed precision on GPU (ignored on CPU)")
    num_workers: int = Field(0, ge=0, description="DataLoader workers per trial")


# --------------------------------------------------------------------------- validation


class Protocol(Strict):
    """One split protocol. ``group`` is always the subject: images of one subject stay together."""

    strategy: Literal["group_kfold", "group_holdout", "leave_one_site_out"]
    k: int = Field(5, ge=2, description="folds (group_kfold)")
    repeats: int = Field(1, ge=1, description="repetitions of group_kfold with new shuffles")
    fraction: float = Field(0.2, gt=0.0, lt=1.0, description="held-out fraction (group_holdout)")
    group: Literal["subject_id"] = "subject_id"
    stratify: list[str] = Field(
        default_factory=lambda: ["label"],
        description="columns to stratify on: [], [label], [label, site]",
    )

    @field_validator("stratify", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        if v is None:
            return []
        return [v] if isinstance(v, str) else v


class Validation(Strict):
    outer: Protocol = Protocol(strategy="group_kfold")
    inner: Protocol | None = Field(
        Protocol(strategy="group_holdout"),
        description="model selection / early stopping inside each outer training fold",
    )
    extra: list[Protocol] = Field(default_factory=list)


# --------------------------------------------------------------------------- evaluation


class Perturbation(Strict):
    type: Literal["gaussian_noise", "bias_field", "intensity_scale", "gamma", "motion"]
    std: Searchable[float] | None = None
    coeff: Searchable[float] | None = None
    factor: Searchable[float] | None = None
    gamma: Searchable[float] | None = None
    degrees: Searchable[float] | None = None


ClassificationMetric = Literal[
    "auc",
    "accuracy",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "f1",
    "mcc",
    "brier",
    "log_loss",
    "ece",
]
RegressionMetric = Literal["mae", "rmse", "r2"]
SegmentationMetric = Literal["dice"]


class Evaluation(Strict):
    metrics: list[Union[ClassificationMetric, RegressionMetric, SegmentationMetric]] = Field(
        default_factory=list, description="default: auc/mae/dice by task"
    )
    perturbations: list[Perturbation] = Field(default_factory=list)
    selection_metric: str | None = Field(
        None, description="validation metric for early stopping and selection (default: loss)"
    )


# --------------------------------------------------------------------------- the rest


class Resources(Strict):
    cpu: float = Field(1.0, gt=0)
    gpu: float = Field(0.0, ge=0)
    memory: str | None = Field(None, description="e.g. '4GB' (a Ray scheduling hint)")
    custom: dict[str, float] = Field(default_factory=dict, description="Ray custom resources")
    max_retries: int = Field(1, ge=0, description="retries of a failed trial before it is failed")


class Analysis(Strict):
    hierarchy: list[str] = Field(default_factory=lambda: ["site", "subject_id"])
    alpha: float = Field(0.05, gt=0, lt=1)
    metric: str | None = Field(None, description="primary metric (default: first of evaluation)")
    n_boot: int = Field(2000, ge=100)


class WandB(Strict):
    project: str = "raybench"
    mode: Literal["offline", "online", "disabled"] = "offline"
    entity: str | None = None


class Tracking(Strict):
    wandb: WandB | None = None


class Storage(Strict):
    results: str | None = Field(None, description="results directory or URI (default results/<name>)")


class Suite(Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
    description: str = ""
    plugins: dict[str, str] = Field(
        default_factory=dict,
        description="user networks: name -> 'module:callable' (imported only when named here)",
    )
    datasets: Annotated[list[Dataset], Field(min_length=1)]
    task: Task
    models: Annotated[list[Model], Field(min_length=1)]
    training: Training = Training()
    validation: Validation = Validation()
    seeds: Annotated[list[int], Field(min_length=1)] = [0]
    evaluation: Evaluation = Evaluation()
    resources: Resources = Resources()
    analysis: Analysis = Analysis()
    tracking: Tracking = Tracking()
    storage: Storage = Storage()

    @model_validator(mode="after")
    def _unique_names(self) -> Suite:
        for what, names in (
            ("datasets", [d.name for d in self.datasets]),
            ("models", [m.name for m in self.models]),
        ):
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{what}: duplicate name(s) {dupes}; names must be unique")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds: duplicates in {self.seeds}")
        return self
