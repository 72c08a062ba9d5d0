"""The compiler: suite + cohorts -> a plan of stages of content-addressed trials.

One entry, :func:`compile_suite`; the runner also uses :func:`apply_point` to apply the search
point chosen for a refit. See docs/plan.md.
"""

from raybench.plan.compiler import (
    apply_point,
    base_config,
    compile_suite,
    expand_perturbations,
    expand_search_space,
    split_seed,
)
from raybench.plan.config import Selection, TrialConfig, selection_of
from raybench.plan.ids import config_digest, content_hash, trial_id
from raybench.plan.spec import Plan, Stage, TrialSpec

__all__ = [
    "Plan",
    "Selection",
    "Stage",
    "TrialConfig",
    "TrialSpec",
    "apply_point",
    "base_config",
    "compile_suite",
    "config_digest",
    "content_hash",
    "expand_perturbations",
    "expand_search_space",
    "selection_of",
    "split_seed",
    "trial_id",
]
