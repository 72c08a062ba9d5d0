"""Execution on Ray: :func:`run_plan` runs a compiled plan stage by stage on Ray actors (or Tune).

See docs/running.md (local runs, resume, failures, W&B), docs/cluster.md (clusters) and
docs/scale.md (large suites).
"""

from raybench.runner.cluster import ClusterError, ClusterInfo, init_ray
from raybench.runner.driver import run_plan, trial_resources
from raybench.runner.interrupt import RunInterrupted, request_stop
from raybench.runner.options import RunOptions, RunSummary, TrialFn
from raybench.runner.trainable import WorkerContext

__all__ = [
    "ClusterError",
    "ClusterInfo",
    "RunInterrupted",
    "RunOptions",
    "RunSummary",
    "TrialFn",
    "WorkerContext",
    "init_ray",
    "request_stop",
    "run_plan",
    "trial_resources",
]
