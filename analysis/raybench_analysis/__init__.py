"""raybench_analysis: hierarchical inferential statistics over raybench results."""

# A1: shared errors, io, metrics, bootstrap, DeLong, corrected t-test, compare
from raybench_analysis._frames import AnalysisError
from raybench_analysis.anova import anova
from raybench_analysis.bayes import bayes_hierarchical, bayes_ttest
from raybench_analysis.bootstrap import bootstrap, bootstrap_replicates, unpaired_difference
from raybench_analysis.calibration import (
    apply_temperature,
    calibration,
    calibration_slope,
    fit_temperature,
    reliability_diagram,
    variants_as_models,
)
from raybench_analysis.combine import Combined, combine, compare_across
from raybench_analysis.compare import compare
from raybench_analysis.conformal import conformal, conformal_quantile, conformal_sets
from raybench_analysis.delong import delong, delong_auc

# A3: Friedman/Nemenyi, ranking stability, robustness, simulation, summary
from raybench_analysis.explanations import (
    compare_methods,
    compare_models,
    explanations,
    map_stability,
    randomisation_check,
    weak_segmentation,
)
from raybench_analysis.external import (
    compare_external,
    external_performance,
    external_summary,
    generalisation_gap,
)
from raybench_analysis.formula import FormulaError, parse_formula
from raybench_analysis.friedman import FriedmanResult, friedman
from raybench_analysis.glmm import GlmmResult, glmm
from raybench_analysis.io import Results, check_leakage, load
from raybench_analysis.learning_curve import (
    LearningCurveFit,
    fit_learning_curve,
    fit_power_law,
    learning_curve,
    power_law,
)
from raybench_analysis.metrics import (
    METRICS,
    Metric,
    accuracy,
    auc,
    balanced_accuracy,
    brier,
    calibration_bins,
    dice,
    ece,
    f1,
    get_metric,
    log_loss,
    mae,
    mcc,
    metric_by,
    r2,
    rmse,
    sensitivity,
    specificity,
)
from raybench_analysis.mixed import MixedResult, mixed
from raybench_analysis.obuchowski import obuchowski, obuchowski_auc
from raybench_analysis.operating_range import OperatingRange, operating_range
from raybench_analysis.ranking import ranking_stability
from raybench_analysis.repeatability import (
    repeatability,
    repeatability_samples,
    seed_ensemble,
)
from raybench_analysis.robustness import robustness
from raybench_analysis.sampling import sampling_variance
from raybench_analysis.selective import risk_coverage, selective, selective_risk
from raybench_analysis.settings import AnalysisSettings, read_saved_suite, resolve_settings
from raybench_analysis.shift import feature_distance, feature_shift, frechet_distance, mmd2
from raybench_analysis.simulate import (
    SimulatedRun,
    simulate_predictions,
    simulate_uncertainty,
    write_results_dir,
)
from raybench_analysis.simulate_training import simulate_learning_curve
from raybench_analysis.summarize import Summary, read_results, summarize
from raybench_analysis.ttest import corrected_ttest
from raybench_analysis.varcomp import confint_varcomp
from raybench_analysis.variance import sample_size, variance_components

__all__ = [
    "METRICS",
    "AnalysisError",
    "AnalysisSettings",
    "Combined",
    "FormulaError",
    "FriedmanResult",
    "GlmmResult",
    "LearningCurveFit",
    "Metric",
    "MixedResult",
    "OperatingRange",
    "Results",
    "SimulatedRun",
    "Summary",
    "accuracy",
    "anova",
    "apply_temperature",
    "auc",
    "balanced_accuracy",
    "bayes_ttest",
    "bootstrap",
    "bootstrap_replicates",
    "brier",
    "calibration",
    "calibration_bins",
    "calibration_slope",
    "check_leakage",
    "combine",
    "compare",
    "compare_across",
    "compare_external",
    "compare_methods",
    "compare_models",
    "conformal",
    "conformal_quantile",
    "conformal_sets",
    "corrected_ttest",
    "delong",
    "delong_auc",
    "dice",
    "ece",
    "explanations",
    "external_performance",
    "external_summary",
    "f1",
    "feature_distance",
    "feature_shift",
    "fit_learning_curve",
    "fit_power_law",
    "fit_temperature",
    "frechet_distance",
    "friedman",
    "generalisation_gap",
    "get_metric",
    "glmm",
    "learning_curve",
    "load",
    "log_loss",
    "mae",
    "map_stability",
    "mcc",
    "metric_by",
    "mixed",
    "mmd2",
    "obuchowski",
    "obuchowski_auc",
    "operating_range",
    "parse_formula",
    "power_law",
    "r2",
    "randomisation_check",
    "ranking_stability",
    "read_results",
    "read_saved_suite",
    "reliability_diagram",
    "repeatability",
    "repeatability_samples",
    "resolve_settings",
    "risk_coverage",
    "rmse",
    "robustness",
    "sample_size",
    "sampling_variance",
    "seed_ensemble",
    "selective",
    "selective_risk",
    "sensitivity",
    "simulate_learning_curve",
    "simulate_predictions",
    "simulate_uncertainty",
    "specificity",
    "summarize",
    "unpaired_difference",
    "variance_components",
    "variants_as_models",
    "weak_segmentation",
    "write_results_dir",
]
__all__ += ["bayes_hierarchical", "confint_varcomp"]
