"""``raybench compact DIR``: merge a results directory's per-trial files into batch files.

See :mod:`raybench.store.compact` (the protocol) and docs/scale.md (when it pays).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from raybench_analysis.contract import BATCH_TRIALS

from raybench.cli.common import JsonFlag, say


def compact(
    results: Annotated[str, typer.Argument(help="Results directory (or URI) of a run.")],
    batch_trials: Annotated[
        int, typer.Option("--batch-trials", min=1, help="Trials per batch file (bounds memory).")
    ] = BATCH_TRIALS,
    json_: JsonFlag = False,
) -> None:
    """Merge the completed trials' per-trial Parquet files into a few batch files, atomically.

    Readers (status, analyze, report, resume) then open a few files instead of four per trial.
    Takes the directory's run lock (refused while a run is writing there); failed and damaged
    trials keep their files, and a run started later adds per-trial files as usual.
    """
    from raybench.store import ResultStore
    from raybench.store.compact import compact as run_compact

    done = run_compact(ResultStore(results), batch_trials=batch_trials)
    if json_:
        print(json.dumps(done.as_dict()))
    else:
        say(
            f"compacted {done.trials} trial(s) into {done.batches} batch(es); "
            f"{done.files_removed} per-trial file(s) removed in {done.seconds:.1f} s"
        )


def register(app: typer.Typer) -> None:
    """Add the ``compact`` command to the root ``app``."""
    app.command("compact")(compact)
