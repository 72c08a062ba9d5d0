"""raybench's vocabulary, in one place: the words of suites, trial configs, the CLI and analysis.

Task types, metrics by task (the default first) and their direction, hierarchy levels and the
default hierarchy, perturbation parameters, architectures, split strategies and the synthetic
cohort's labels are declared here once. The suite schema, its checks, the compiler, training, the
CLI and the analysis defaults all read them from this module, so that a word added here is known
everywhere at once. It lives in the analysis package (which imports nothing of raybench) because
both packages need it and the analysis package is the lighter one.

>>> METRICS_BY_TASK["classification"][0] == default_metric("classification")
True
>>> higher_is_better("auc"), higher_is_better("mae")
(True, False)
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ARCHITECTURES",
    "ARCHITECTURE_KINDS",
    "AUGMENTATIONS",
    "CALIBRATION_METHODS",
    "CLASS_BALANCING",
    "DEFAULT_ALPHA",
    "DEFAULT_HIERARCHY",
    "DEFAULT_N_BOOT",
    "DEFAULT_TOLERANCE",
    "EXPLANATION_METHODS",
    "EXPLANATION_METRICS",
    "GENERATORS",
    "HIERARCHY_LEVELS",
    "INPUT_NOISE_TYPES",
    "INTENSITY_NORMALIZATIONS",
    "LOWER_IS_BETTER",
    "METRICS_BY_TASK",
    "OPTIMIZERS",
    "ORIENTATION_CODES",
    "PERTURBATION_NEUTRAL",
    "PERTURBATION_PARAMS",
    "PREDICTION_VARIANTS",
    "SAMPLE_UNIT",
    "SCHEDULERS",
    "SEARCHABLE_TRAINING_KEYS",
    "SEARCH_ALGORITHMS",
    "SEARCH_DISTRIBUTIONS",
    "SEARCH_SCHEDULERS",
    "SELECTION_METRICS",
    "SPLIT_STRATEGIES",
    "STRATIFY_COLUMNS",
    "SYNTHETIC_CLASSES",
    "SYNTHETIC_LABELS",
    "TASK_TYPES",
    "TRAIN_RESAMPLING_SCHEMES",
    "TRIAL_STATUSES",
    "UNCERTAINTY_TASKS",
    "WANDB_MODES",
    "default_metric",
    "higher_is_better",
    "metrics_for",
]

#: The kinds of task a suite can declare.
TASK_TYPES: Final[tuple[str, ...]] = ("classification", "regression", "segmentation")

#: Evaluation metrics allowed for each task type; the first is the default.
METRICS_BY_TASK: Final[dict[str, tuple[str, ...]]] = {
    "classification": (
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
    ),
    "regression": ("mae", "rmse", "r2"),
    "segmentation": ("dice",),
}

#: Metrics (and the validation ``loss``) for which a smaller value is better.
LOWER_IS_BETTER: Final[frozenset[str]] = frozenset(
    {"loss", "log_loss", "brier", "mae", "rmse", "ece"}
)

#: Metrics that may select the best epoch and the best search point, by task (``loss`` first,
#: the default: the mean validation loss).
SELECTION_METRICS: Final[dict[str, tuple[str, ...]]] = {
    "classification": ("loss", "auc", "accuracy", "balanced_accuracy", "log_loss", "brier"),
    "regression": ("loss", "mae", "rmse", "r2"),
    "segmentation": ("loss", "dice"),
}

#: Levels of the data hierarchy, outermost first (a hierarchy keeps this order).
HIERARCHY_LEVELS: Final[tuple[str, ...]] = ("site", "scanner", "subject_id", "session_id")

#: The unit that every hierarchy must contain: subjects are the independent units of a sample.
SAMPLE_UNIT: Final[str] = "subject_id"

#: The hierarchy resampled when a suite does not name one.
DEFAULT_HIERARCHY: Final[tuple[str, ...]] = ("site", "subject_id")

#: Significance level (1 - interval coverage) and bootstrap replicates when a suite names none.
DEFAULT_ALPHA: Final[float] = 0.05
DEFAULT_N_BOOT: Final[int] = 2000

#: Largest acceptable metric degradation of an operating range when none is named (metric units:
#: 0.05 is five AUC or Dice points); used by default only for metrics bounded in [0, 1].
DEFAULT_TOLERANCE: Final[float] = 0.05

#: The one parameter (its strength, the severity) that each perturbation type carries.
PERTURBATION_PARAMS: Final[dict[str, str]] = {
    "gaussian_noise": "std",
    "bias_field": "coeff",
    "intensity_scale": "factor",
    "gamma": "gamma",
    "motion": "degrees",
    "rician_noise": "std",
    "blur": "sigma",
    "resolution": "spacing",
    "gibbs": "alpha",
    "ghosting": "intensity",
    "scanner_shift": "shift",
}

#: The severity at which each perturbation type leaves the image unchanged (0 unless named): the
#: operating range (docs/operating-ranges.md) is measured from it, in either direction.
PERTURBATION_NEUTRAL: Final[dict[str, float]] = {
    kind: {"gamma": 1.0, "resolution": 1.0}.get(kind, 0.0) for kind in PERTURBATION_PARAMS
}

#: Generative models of ``source: generated`` datasets (docs/generated.md): a class-conditional
#: variational autoencoder; a GAN, flow or diffusion model plugs in under a new name.
GENERATORS: Final[tuple[str, ...]] = ("cvae",)

#: Values of the predictions table's ``variant`` column (issue 9): the network's own outputs first
#: (the default), then temperature-scaled, Monte Carlo input-noise and MC-dropout predictions.
PREDICTION_VARIANTS: Final[tuple[str, ...]] = ("raw", "calibrated", "input_noise", "mc_dropout")

#: Noise models of ``evaluation.uncertainty.input_noise`` (Monte Carlo propagation).
INPUT_NOISE_TYPES: Final[tuple[str, ...]] = ("gaussian_noise",)

#: Post-hoc calibration methods of ``evaluation.uncertainty.calibration`` (fitted on validation).
CALIBRATION_METHODS: Final[tuple[str, ...]] = ("temperature",)

#: The task types each key of ``evaluation.uncertainty`` applies to.
UNCERTAINTY_TASKS: Final[dict[str, tuple[str, ...]]] = {
    "input_noise": ("classification", "regression"),
    "mc_dropout": ("classification",),
    "calibration": ("classification",),
}

#: Built-in network architectures and the kind of output they make: ``global`` (one vector per
#: image: classification, regression) or ``dense`` (one value per voxel: segmentation).
ARCHITECTURE_KINDS: Final[dict[str, str]] = {
    "densenet121": "global",
    "densenet169": "global",
    "densenet201": "global",
    "resnet10": "global",
    "resnet18": "global",
    "resnet34": "global",
    "resnet50": "global",
    "seresnet50": "global",
    "classifier": "global",
    "regressor": "global",
    "unet": "dense",
    "basicunet": "dense",
    "segresnet": "dense",
}

#: Names that ``models[].arch`` may use without a plugin (see docs/models.md).
ARCHITECTURES: Final[tuple[str, ...]] = tuple(ARCHITECTURE_KINDS)

#: Split strategies of a validation protocol.
SPLIT_STRATEGIES: Final[tuple[str, ...]] = ("group_kfold", "group_holdout", "leave_one_site_out")

#: Columns a split protocol may stratify on (``label`` is the task's label column).
STRATIFY_COLUMNS: Final[tuple[str, ...]] = ("label", "site", "scanner")

#: How ``validation.train_resampling`` draws training subjects inside an outer training fold:
#: ``subsample`` without replacement, ``bootstrap`` with replacement (copies kept);
#: docs/training-distribution.md.
TRAIN_RESAMPLING_SCHEMES: Final[tuple[str, ...]] = ("subsample", "bootstrap")

#: Optimizers and learning-rate schedules of the training loop.
OPTIMIZERS: Final[tuple[str, ...]] = ("adam", "adamw", "sgd")
SCHEDULERS: Final[tuple[str, ...]] = ("none", "cosine", "step")

#: Keys of a suite's ``training`` that may hold a search space (a list of candidates), in the order
#: a search grid is expanded (this order fixes the order of search points and of their trials).
SEARCHABLE_TRAINING_KEYS: Final[tuple[str, ...]] = (
    "epochs",
    "batch_size",
    "optimizer",
    "lr",
    "weight_decay",
)

#: W&B modes (``offline`` is the default: nothing leaves the machine unless asked).
WANDB_MODES: Final[tuple[str, ...]] = ("offline", "online", "disabled")

#: Columns the synthetic generator writes that can be a task's label, by task type.
SYNTHETIC_LABELS: Final[dict[str, tuple[str, ...]]] = {
    "classification": ("diagnosis",),
    "regression": ("age", "lesion_volume"),
    "segmentation": ("mask",),
}

#: The synthetic cohort's diagnosis classes (negative first).
SYNTHETIC_CLASSES: Final[tuple[str, ...]] = ("CN", "AD")

#: Attribution methods of ``evaluation.explanations`` (docs/explanations.md).
EXPLANATION_METHODS: Final[tuple[str, ...]] = (
    "gradcam",
    "gradcampp",
    "occlusion",
    "gradient",
    "smoothgrad",
    "integrated_gradients",
    "kernel_shap",
    "lime",
)

#: Metrics of the ``explanations`` table and whether a larger value is better. Localisation
#: against the ground-truth mask, faithfulness (deletion/insertion areas), complexity, cost,
#: weakly supervised segmentation (Dice, HD95), the model-randomisation check (a map should
#: change: lower is better), stability under the suite's perturbations and max-sensitivity
#: (Yeh et al. 2019: the worst relative change of the map under small noise, lower is better).
EXPLANATION_METRICS: Final[dict[str, bool]] = {
    "auroc": True,
    "mass_accuracy": True,
    "rank_accuracy": True,
    "pointing_game": True,
    "energy_pointing_game": True,
    "deletion_auc": False,
    "insertion_auc": True,
    "sparseness": True,
    "seconds": False,
    "dice": True,
    "hd95": False,
    "randomisation_spearman": False,
    "perturbation_spearman": True,
    "max_sensitivity": False,
}

#: Search algorithms of a suite's ``search:`` section (docs/search.md): ``grid`` (every combination
#: of finite choices), ``random`` (points drawn at compile time from the split seed) and ``tpe``
#: (Optuna's Tree-structured Parzen Estimator, Bergstra et al. 2011, adaptive at run time).
SEARCH_ALGORITHMS: Final[tuple[str, ...]] = ("grid", "random", "tpe")

#: Distributions of a search dimension and the number of arguments each takes in YAML:
#: ``loguniform: [low, high]``, ``uniform: [low, high]``, ``quniform: [low, high, q]``,
#: ``randint: [low, high]`` (``high`` excluded, as Ray Tune's), ``choice: [a, b, ...]``.
SEARCH_DISTRIBUTIONS: Final[dict[str, int | None]] = {
    "loguniform": 2,
    "uniform": 2,
    "quniform": 3,
    "randint": 2,
    "choice": None,
}

#: Early-stopping schedulers of search trials: ``asha`` (one bracket) and ``hyperband`` (several
#: brackets, asynchronous), Ray Tune's ``AsyncHyperBandScheduler`` (Li et al. 2020, MLSys).
SEARCH_SCHEDULERS: Final[tuple[str, ...]] = ("asha", "hyperband")

#: ``status`` of a row of the ``trials`` table: ``pruned`` is a search trial stopped early by the
#: suite's search scheduler (not a failure; never selected).
TRIAL_STATUSES: Final[tuple[str, ...]] = ("completed", "failed", "pruned")


#: ``training.save_model``: ``off`` keeps no weights; ``best`` keeps the selected (best-epoch)
#: weights of every refit trial under ``models/<trial_id>.pt`` (docs/predict.md).
SAVE_MODEL_MODES: Final[tuple[str, ...]] = ("off", "best")

#: ``predictions.split`` of a saved model's predictions on a dataset never used for training or
#: selection (``validation.external``, ``raybench predict``); ``trials.stage`` of those entries.
EXTERNAL_SPLIT: Final[str] = "external"
PREDICT_STAGE: Final[str] = "predict"

#: ``trials.protocol`` of the optional refit on the whole development dataset
#: (``validation.final``), which is evaluated on the external datasets only.
FINAL_PROTOCOL: Final[str] = "final"
#: Axis codes of ``preprocess.orientation``: one letter of each pair (L/R, A/P, I/S) per axis, in
#: any order (``RAS``: x to the right, y anterior, z superior; nibabel's and MONAI's convention).
ORIENTATION_CODES: Final[tuple[str, ...]] = tuple(
    a + b + c
    for a in "LRAPIS"
    for b in "LRAPIS"
    for c in "LRAPIS"
    if sorted("LRAPIS".index(x) // 2 for x in a + b + c) == [0, 1, 2]
)

#: Intensity normalisations of ``preprocess.intensity`` (the first is the default).
INTENSITY_NORMALIZATIONS: Final[tuple[str, ...]] = ("zscore", "percentile", "none")

#: Random transforms of ``training.augment`` (MONAI), applied to training samples only.
AUGMENTATIONS: Final[tuple[str, ...]] = (
    "flip",
    "affine",
    "elastic",
    "intensity_shift",
    "intensity_scale",
    "gamma",
    "gaussian_noise",
    "bias_field",
)

#: Values of ``training.class_weights`` and ``training.sampler`` (class imbalance).
CLASS_BALANCING: Final[tuple[str, ...]] = ("balanced",)


def metrics_for(task_type: str) -> tuple[str, ...]:
    """The metrics a task of ``task_type`` can be scored with (the default first)."""
    return METRICS_BY_TASK[task_type]


def default_metric(task_type: str) -> str:
    """The metric summarised when none is named: AUC, MAE or Dice."""
    return METRICS_BY_TASK[task_type][0]


def higher_is_better(metric: str) -> bool:
    """Direction of a metric or of the validation ``loss``: True when a larger value is better."""
    return metric not in LOWER_IS_BETTER
