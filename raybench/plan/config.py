"""The typed trial config: what one trial trains and evaluates, as frozen dataclasses.

The compiler builds one :class:`TrialConfig` per model and dataset (:meth:`TrialConfig.from_suite`)
and stores its :meth:`~TrialConfig.to_dict` in :attr:`raybench.plan.spec.TrialSpec.config`: that
plain dict is what ``plan.json`` holds, what W&B logs and what the trial id hashes, so its keys and
values are exactly those of earlier versions (trial ids do not change). Training and the runner read
the typed view, :attr:`TrialSpec.settings <raybench.plan.spec.TrialSpec.settings>`
(:meth:`TrialConfig.from_dict`), by attribute.

Defaults are taken once, from the field defaults of the suite schema (:mod:`raybench.suite.schema`):
a key missing from a config dict (a hand-written config, a test's fake) gets the default a suite
would have given it. Keys a config does not know raise :class:`~raybench.errors.SuiteError`, except
top-level ones, which are kept in :attr:`TrialConfig.extra` for custom trial functions.

>>> cfg = TrialConfig.from_dict(
...     {"task": {"type": "regression"}, "model": {"arch": "regressor"}, "suite": "demo"}
... )
>>> cfg.training.lr, cfg.resources.cpu, cfg.selection
(0.001, 1.0, Selection(metric='loss', higher_is_better=False))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import BaseModel
from raybench_analysis.vocabulary import (
    SEARCHABLE_TRAINING_KEYS,
    SELECTION_METRICS,
    TASK_TYPES,
    default_metric,
    higher_is_better,
)

from raybench.data.preprocess import PreprocessConfig
from raybench.errors import SuiteError
from raybench.suite import schema

__all__ = [
    "AugmentationConfig",
    "EarlyStoppingConfig",
    "EvaluationConfig",
    "ExplainConfig",
    "ExplanationMethodConfig",
    "InputNoiseConfig",
    "McDropoutConfig",
    "ModelConfig",
    "PerturbationLevel",
    "ResourcesConfig",
    "Selection",
    "TaskConfig",
    "TrainingConfig",
    "TrialConfig",
    "UncertaintyConfig",
    "WandbConfig",
    "selection_of",
]


def _default(model: type[BaseModel], name: str) -> Any:
    """The suite schema's default of ``model.name`` (lists become tuples: configs are frozen)."""
    value = model.model_fields[name].get_default(call_default_factory=True)
    return tuple(value) if isinstance(value, list) else value


def _factory(model: type[BaseModel], name: str) -> Callable[[], Any]:
    """A default factory giving the suite schema's default (for mutable defaults: mappings)."""
    return lambda: _default(model, name)


def _build(cls: type, data: Any, where: str, **nested: Any) -> Any:
    """``cls(**data)`` with ``nested`` sub-objects already built; unknown keys are a SuiteError."""
    if not isinstance(data, Mapping):
        raise SuiteError(f"trial config {where}: expected a mapping, found {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise SuiteError(
            f"trial config {where}: unknown key(s) {unknown}; allowed: {sorted(known)}"
        )
    return cls(**{**data, **nested})


#: Field metadata of an opt-in section added after trial ids were pinned: left out of the plain dict
#: while it is None, so that the configs (and ids) of suites without it do not change.
_OPT_IN = {"omit_if_none": True}


def _plain(value: Any) -> Any:
    """JSON-able plain data: dataclasses become dicts, tuples lists (as ``plan.json`` has them)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: _plain(getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not (f.metadata.get("omit_if_none") and getattr(value, f.name) is None)
        }
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class TaskConfig:
    """The task: its type, label column and (classification) classes in index order."""

    type: str
    label: str = field(default=_default(schema.Task, "label"))
    positive: str | None = field(default=_default(schema.Task, "positive"))
    classes: tuple[str, ...] | None = field(default=_default(schema.Task, "classes"))

    def __post_init__(self) -> None:
        if self.type not in TASK_TYPES:
            raise SuiteError(f"task.type={self.type!r}; allowed: {', '.join(TASK_TYPES)}")
        if self.classes is not None:
            object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))


@dataclass(frozen=True)
class ModelConfig:
    """The network: an architecture (or plugin) name and its scalar arguments."""

    arch: str
    params: dict[str, Any] = field(default_factory=_factory(schema.Model, "params"))


@dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when the selection metric has not improved by ``min_delta`` for ``patience`` epochs."""

    patience: int = field(default=_default(schema.EarlyStopping, "patience"))
    min_delta: float = field(default=_default(schema.EarlyStopping, "min_delta"))


@dataclass(frozen=True)
class AugmentationConfig:
    """One random transform of ``training.augment``: its ``type`` and settings (``prob``, ...)."""

    type: str
    params: dict[str, Any] = field(default_factory=dict)


def augment_pipelines(augment: Any) -> list[list[dict[str, Any]]] | None:
    """The pipelines of a suite's ``training.augment`` as plain config data (None when unset).

    One pipeline (a list of transforms) gives one candidate; a list of pipelines is a search
    dimension. Each transform is ``{"type", "params"}`` with every setting filled in.

    >>> from raybench.suite.schema import Training
    >>> augment_pipelines(Training(augment=[[], [{"type": "flip"}]]).augment)
    [[], [{'type': 'flip', 'params': {'prob': 0.5, 'axes': [0]}}]]
    """
    if augment is None:
        return None
    searched = any(isinstance(v, list) for v in augment)
    pipelines = augment if searched else [augment]
    return [
        [{"type": t.type, "params": t.model_dump(exclude={"type"}, mode="json")} for t in p]
        for p in pipelines
    ]


@dataclass(frozen=True)
class TrainingConfig:
    """Optimisation settings; a searched key is ``None`` until a search point is applied."""

    epochs: int | None = field(default=_default(schema.Training, "epochs"))
    batch_size: int | None = field(default=_default(schema.Training, "batch_size"))
    optimizer: str | None = field(default=_default(schema.Training, "optimizer"))
    lr: float | None = field(default=_default(schema.Training, "lr"))
    weight_decay: float | None = field(default=_default(schema.Training, "weight_decay"))
    scheduler: str = field(default=_default(schema.Training, "scheduler"))
    early_stopping: EarlyStoppingConfig | None = field(
        default=_default(schema.Training, "early_stopping")
    )
    amp: bool = field(default=_default(schema.Training, "amp"))
    num_workers: int = field(default=_default(schema.Training, "num_workers"))
    #: ``"best"``: a refit trial keeps its selected weights (``training.save_model``, or implied
    #: by ``validation.external``); None (``off``) is left out of the config dict (ids unchanged).
    save_model: str | None = field(default=None, metadata=_OPT_IN)
    augment: tuple[AugmentationConfig, ...] | None = field(default=None, metadata=_OPT_IN)
    class_weights: str | None = field(default=None, metadata=_OPT_IN)
    sampler: str | None = field(default=None, metadata=_OPT_IN)

    def __post_init__(self) -> None:
        if self.augment is not None:
            augment = tuple(
                a if isinstance(a, AugmentationConfig) else _build(AugmentationConfig, a, "augment")
                for a in self.augment
            )
            object.__setattr__(self, "augment", augment)

    def unresolved(self) -> list[str]:
        """Searchable keys still ``None`` (a searched refit whose point is not applied yet)."""
        return [k for k in SEARCHABLE_TRAINING_KEYS if getattr(self, k) is None]


@dataclass(frozen=True)
class PerturbationLevel:
    """One test-time perturbation at one severity, e.g. ``gaussian_noise(std=0.1)``."""

    id: str
    type: str
    severity: float | None
    params: dict[str, Any]


class Selection(NamedTuple):
    """The validation metric that picks the best epoch and search point, and its direction."""

    metric: str
    higher_is_better: bool


def selection_of(metric: str | None, task_type: str) -> Selection:
    """The selection metric (``None``: the validation ``loss``) and its direction.

    The one place both are decided: training uses it to keep the best epoch, the runner's refit
    selection to pick the best search point.

    >>> selection_of("auc", "classification")
    Selection(metric='auc', higher_is_better=True)
    """
    name = metric or SELECTION_METRICS[task_type][0]
    allowed = SELECTION_METRICS[task_type]
    if name not in allowed:
        raise SuiteError(
            f"evaluation.selection_metric={name!r} is not available for task.type={task_type!r}; "
            f"allowed: {list(allowed)}"
        )
    return Selection(name, higher_is_better(name))


@dataclass(frozen=True)
class ExplanationMethodConfig:
    """One attribution method (a name of ``EXPLANATION_METHODS``) and its settings."""

    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ExplainConfig:
    """The attribution methods of a refit trial, samples explained and maps kept (issue 8)."""

    methods: tuple[ExplanationMethodConfig, ...]
    samples: int = field(default=_default(schema.Explain, "samples"))
    save_maps: int = field(default=_default(schema.Explain, "save_maps"))
    threshold_samples: int = field(default=_default(schema.Explain, "threshold_samples"))
    randomisation: bool = field(default=_default(schema.Explain, "randomisation"))
    stability: bool = field(default=_default(schema.Explain, "stability"))
    #: Max-sensitivity (Yeh et al. 2019): ``{"samples": n, "radius": r}``, None when not asked.
    max_sensitivity: dict[str, Any] | None = field(default=None, metadata=_OPT_IN)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ExplainConfig | None:
        """The typed ``evaluation.explain`` section, or None when nothing is explained."""
        if data is None:
            return None
        data = dict(data)
        methods = tuple(
            _build(ExplanationMethodConfig, m, "evaluation.explain.methods[]")
            for m in data.pop("methods", ())
        )
        return _build(cls, data, "evaluation.explain", methods=methods)


@dataclass(frozen=True)
class InputNoiseConfig:
    """Monte Carlo input noise: ``draws`` passes under noise of SD ``std`` (normalised units)."""

    type: str = field(default=_default(schema.InputNoise, "type"))
    std: float = field(default=_default(schema.InputNoise, "std"))
    draws: int = field(default=_default(schema.InputNoise, "draws"))


@dataclass(frozen=True)
class McDropoutConfig:
    """MC dropout: ``draws`` passes with the dropout layers in training mode."""

    draws: int = field(default=_default(schema.McDropout, "draws"))


@dataclass(frozen=True)
class UncertaintyConfig:
    """What a refit trial computes beyond its raw predictions (docs/uncertainty.md)."""

    input_noise: InputNoiseConfig | None = field(
        default=_default(schema.Uncertainty, "input_noise")
    )
    mc_dropout: McDropoutConfig | None = field(default=_default(schema.Uncertainty, "mc_dropout"))
    calibration: tuple[str, ...] = field(default=_default(schema.Uncertainty, "calibration"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> UncertaintyConfig | None:
        """The typed ``evaluation.uncertainty`` section, or None when it is off."""
        if data is None:
            return None
        where = "evaluation.uncertainty"
        if not isinstance(data, Mapping):
            raise SuiteError(f"trial config {where}: expected a mapping, found {data!r}")
        noise, dropout = data.get("input_noise"), data.get("mc_dropout")
        return _build(
            cls,
            data,
            where,
            input_noise=None if noise is None else _build(InputNoiseConfig, noise, where),
            mc_dropout=None if dropout is None else _build(McDropoutConfig, dropout, where),
            calibration=tuple(data.get("calibration") or ()),
        )


@dataclass(frozen=True)
class EvaluationConfig:
    """Reported metrics, the selection metric, the expanded perturbation levels and explanations.

    ``explain`` is None unless the suite asks for explanations; it is then left out of the config
    dict, so trials of suites without explanations keep their ids; ``uncertainty`` likewise.
    """

    metrics: tuple[str, ...] = field(default=_default(schema.Evaluation, "metrics"))
    selection_metric: str | None = field(default=_default(schema.Evaluation, "selection_metric"))
    perturbations: tuple[PerturbationLevel, ...] = field(
        default=_default(schema.Evaluation, "perturbations")
    )
    explain: ExplainConfig | None = None
    uncertainty: UncertaintyConfig | None = field(
        default=_default(schema.Evaluation, "uncertainty"), metadata=_OPT_IN
    )


@dataclass(frozen=True)
class ResourcesConfig:
    """Ray resources of one trial and its retries."""

    cpu: float = field(default=_default(schema.Resources, "cpu"))
    gpu: float = field(default=_default(schema.Resources, "gpu"))
    memory: str | None = field(default=_default(schema.Resources, "memory"))
    custom: dict[str, float] = field(default_factory=_factory(schema.Resources, "custom"))
    max_retries: int = field(default=_default(schema.Resources, "max_retries"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResourcesConfig:
        """The typed ``resources`` section (missing keys: the suite schema's defaults)."""
        return _build(cls, data, "resources")


@dataclass(frozen=True)
class WandbConfig:
    """Weights & Biases settings of the trial's run."""

    project: str = field(default=_default(schema.WandB, "project"))
    mode: str = field(default=_default(schema.WandB, "mode"))
    entity: str | None = field(default=_default(schema.WandB, "entity"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> WandbConfig | None:
        """The typed ``wandb`` section, or None when the trial logs nothing to W&B."""
        return None if data is None else _build(cls, data, "wandb")


@dataclass(frozen=True)
class TrialConfig:
    """Everything a trial trains and evaluates with (see the module docstring).

    ``plugins`` holds only the model's own plugin (``name -> "module:callable"``); ``suite`` names
    the suite; ``wandb`` is the tracking section (``None``: no W&B); ``extra`` keeps top-level
    keys raybench does not know, for custom trial functions; ``search`` is what a search trial's
    result depends on beyond its point (scheduler, adaptive space: docs/search.md), or ``None``.
    """

    task: TaskConfig
    model: ModelConfig
    suite: str
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    plugins: dict[str, str] = field(default_factory=_factory(schema.Suite, "plugins"))
    wandb: WandbConfig | None = field(default=_default(schema.Tracking, "wandb"))
    preprocess: PreprocessConfig | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    search: dict[str, Any] | None = field(default=None, metadata=_OPT_IN)

    @property
    def selection(self) -> Selection:
        """The selection metric of this trial and its direction (:func:`selection_of`)."""
        return selection_of(self.evaluation.selection_metric, self.task.type)

    def to_dict(self) -> dict[str, Any]:
        """The canonical plain dict (``TrialSpec.config``): what ids hash and plan.json holds."""
        out = _plain({f.name: getattr(self, f.name) for f in dataclasses.fields(self)})
        if out["evaluation"]["explain"] is None:
            del out["evaluation"]["explain"]  # no explanations: the id is that of earlier versions
        if out["preprocess"] is None:
            del out["preprocess"]  # no preprocess: in the suite: the id of earlier versions
        if out["search"] is None:
            del out["search"]  # no scheduler, no adaptive search: the ids of earlier versions
        out.update(out.pop("extra"))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrialConfig:
        """The typed view of a config dict (missing keys get the suite schema's defaults)."""
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        extra = {k: v for k, v in data.items() if k not in known}
        sections = {k: v for k, v in data.items() if k in known}
        missing = [k for k in ("task", "model", "suite") if k not in data]
        if missing:
            raise SuiteError(f"trial config: missing required key(s) {missing}")
        training = dict(data.get("training") or {})
        stopping = training.get("early_stopping")
        evaluation = dict(data.get("evaluation") or {})
        levels = evaluation.get("perturbations") or ()
        return cls(
            **{
                **sections,
                "task": _build(TaskConfig, data["task"], "task"),
                "model": _build(ModelConfig, data["model"], "model"),
                "training": _build(
                    TrainingConfig,
                    training,
                    "training",
                    early_stopping=None
                    if stopping is None
                    else _build(EarlyStoppingConfig, stopping, "training.early_stopping"),
                ),
                "evaluation": _build(
                    EvaluationConfig,
                    evaluation,
                    "evaluation",
                    metrics=tuple(evaluation.get("metrics") or ()),
                    explain=ExplainConfig.from_dict(evaluation.get("explain")),
                    perturbations=tuple(
                        _build(PerturbationLevel, p, "evaluation.perturbations[]") for p in levels
                    ),
                    uncertainty=UncertaintyConfig.from_dict(evaluation.get("uncertainty")),
                ),
                "resources": ResourcesConfig.from_dict(data.get("resources") or {}),
                "plugins": dict(data.get("plugins") or {}),
                "wandb": WandbConfig.from_dict(data.get("wandb")),
                "preprocess": None
                if data.get("preprocess") is None
                else PreprocessConfig.from_dict(data["preprocess"]),
            },
            extra=extra,
        )

    @classmethod
    def from_suite(
        cls,
        suite: schema.Suite,
        model: schema.Model,
        classes: Sequence[str] | None,
        params: Mapping[str, Any],
        searchable: Mapping[str, Any],
        perturbations: Sequence[PerturbationLevel],
        preprocess: PreprocessConfig | None = None,
    ) -> TrialConfig:
        """The config of ``model`` in ``suite``.

        ``params`` are the network arguments and ``searchable`` the searchable training keys, each
        a single value or ``None`` when searched (``augment`` too, as plain pipelines);
        ``classes`` the cohort's classes (classification), ``perturbations`` the expanded levels
        and ``preprocess`` the dataset's preprocessing. Everything else is read from the suite.
        """
        t, ev, wandb = suite.training, suite.evaluation, suite.tracking.wandb
        return cls(
            task=TaskConfig(
                type=suite.task.type,
                label=suite.task.label,
                positive=suite.task.positive,
                classes=None if classes is None else tuple(classes),
            ),
            model=ModelConfig(arch=model.arch, params=dict(params)),
            training=TrainingConfig(
                **searchable,
                scheduler=t.scheduler,
                early_stopping=None
                if t.early_stopping is None
                else EarlyStoppingConfig(**t.early_stopping.model_dump()),
                amp=t.amp,
                num_workers=t.num_workers,
                save_model=_save_model_of(suite),
                class_weights=t.class_weights,
                sampler=t.sampler,
            ),
            evaluation=EvaluationConfig(
                metrics=tuple(ev.metrics) or (default_metric(suite.task.type),),
                selection_metric=ev.selection_metric,
                perturbations=tuple(perturbations),
                explain=_explain_of(ev),
                uncertainty=None
                if ev.uncertainty is None
                else UncertaintyConfig.from_dict(ev.uncertainty.model_dump()),
            ),
            resources=ResourcesConfig(**suite.resources.model_dump()),
            plugins={model.arch: suite.plugins[model.arch]} if model.arch in suite.plugins else {},
            suite=suite.name,
            wandb=None if wandb is None else WandbConfig(**wandb.model_dump()),
            preprocess=preprocess,
        )


def _save_model_of(suite: schema.Suite) -> str | None:
    """``"best"`` when the suite keeps models or evaluates them on external datasets (which reads
    the kept models), else None."""
    return "best" if suite.training.save_model == "best" or suite.validation.external else None


def _explain_of(evaluation: schema.Evaluation) -> ExplainConfig | None:
    """The trial's explanations from the suite's ``evaluation`` (None when it names no method)."""
    if not evaluation.explanations:
        return None
    methods = tuple(
        ExplanationMethodConfig(m.method, m.model_dump(exclude={"method"}))
        for m in evaluation.explanations
    )
    e = evaluation.explain
    return ExplainConfig(
        methods,
        e.samples,
        e.save_maps,
        e.threshold_samples,
        e.randomisation,
        e.stability,
        None if e.max_sensitivity is None else e.max_sensitivity.model_dump(),
    )
