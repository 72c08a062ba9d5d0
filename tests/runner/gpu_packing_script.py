"""Four trials with ``resources.gpu: 0.25`` on a Ray that has one (fake) GPU: do they share it?

Usage: python gpu_packing_script.py RESULTS_DIR STATE_DIR. ``run_plan`` starts its own Ray with
4 CPUs and ``num_gpus=1`` (``RunOptions``; Ray does not check that the GPU exists), runs 4
sleeping fake trials and the script prints one JSON object: each trial's GPU ids and its start
and end times.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import fakes
import ray.cloudpickle
import search_fakes

from raybench.runner import RunOptions, run_plan
from raybench.store import ResultStore


def main() -> None:
    results, state = sys.argv[1], sys.argv[2]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.cloudpickle.register_pickle_by_value(fakes)
    ray.cloudpickle.register_pickle_by_value(search_fakes)
    specs = [
        fakes.spec(f"g{i}", sleep=4.0, resources={"gpu": 0.25}, state_dir=state) for i in range(4)
    ]
    store = ResultStore(results)
    summary = run_plan(
        fakes.plan(("refit", specs)),
        {"toy": fakes.cohort()},
        store,
        RunOptions(
            trial_fn=search_fakes.gpu_trial, num_cpus=4, num_gpus=1, include_dashboard=False
        ),
    )
    trials = store.scan("trials").collect().sort("trial_id")
    print(
        json.dumps(
            {
                "ok": summary.ok,
                "started": [t.timestamp() for t in trials["started_at"]],
                "finished": [t.timestamp() for t in trials["finished_at"]],
                "gpus": [json.loads(Path(state, f"{s.trial_id}.json").read_text()) for s in specs],
            }
        )
    )


if __name__ == "__main__":
    main()
