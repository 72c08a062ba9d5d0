"""Training of one trial, with no Ray in it: the runner calls :func:`run_trial` inside a worker.

``run_trial(spec, cohort, ctx) -> TrialOutcome`` trains the trial's network on its training ids,
selects the best epoch on its validation ids, and evaluates the best weights on the test ids (refit)
or on the validation ids (search), clean and under each perturbation. See docs/training.md.
"""

from raybench.training.models import build_network
from raybench.training.trial import TrialContext, TrialOutcome, run_trial

__all__ = ["TrialContext", "TrialOutcome", "build_network", "run_trial"]
