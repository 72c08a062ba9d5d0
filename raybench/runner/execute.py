"""The default trial function: train with :func:`raybench.training.run_trial`, build the tables.

Runs inside a Ray worker; imports torch and MONAI only there.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from raybench.data.cohort import Cohort
from raybench.plan.spec import TrialSpec


def execute_trial(spec: TrialSpec, cohort: Cohort, ctx: Any) -> dict[str, pa.Table]:
    """Run one trial and return its four tables, ``trials`` row included (with provenance).

    ``ctx`` is the runner's :class:`~raybench.runner.trainable.WorkerContext`.
    """
    from raybench.store import collect_provenance, trial_row
    from raybench.training import TrialContext, run_trial

    outcome = run_trial(
        spec,
        cohort,
        TrialContext(
            cache_dir=ctx.cache_dir,
            device=ctx.device,
            cpu_threads=ctx.num_threads,
            on_epoch=ctx.on_epoch,
        ),
    )
    provenance = {**collect_provenance(), "node": ctx.node}
    store = getattr(ctx, "store", None)
    if store is not None:
        for path, data in outcome.maps.items():  # before the commit: a committed trial has them
            store.write_file(path, data)
    tables = {
        "trials": trial_row(spec, outcome, provenance, attempts=ctx.attempt),
        "predictions": outcome.predictions,
        "epochs": outcome.epochs,
        "splits": outcome.splits,
    }
    if outcome.explanations is not None:
        tables["explanations"] = outcome.explanations
    return tables
