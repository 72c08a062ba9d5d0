"""A driver process for the kill/interrupt tests: runs N sleeping fake trials into a store.

Usage: python driver_script.py RESULTS_DIR RAY_ADDRESS N_TRIALS SLEEP_S [PID_DIR MAX_RETRIES]
(with PID_DIR, each trial drops a file naming its worker process there: see fakes.py)
Exit code: 0 all completed, 1 some failed, 130 interrupted (message on stderr).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import fakes
import ray.cloudpickle

from raybench.errors import RaybenchError
from raybench.runner import RunOptions, run_plan
from raybench.store import ResultStore


def main() -> int:
    results, address, n, sleep = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    pid_dir = sys.argv[5] if len(sys.argv) > 5 else None
    retries = int(sys.argv[6]) if len(sys.argv) > 6 else None
    ray.cloudpickle.register_pickle_by_value(fakes)
    specs = [fakes.spec(f"t{i:02d}", sleep=sleep, pid_dir=pid_dir) for i in range(n)]
    options = RunOptions(
        address=address,
        trial_fn=fakes.fake_trial,
        max_concurrent=2,
        max_retries=retries,
        resume_command=f"python driver_script.py {results} {address} {n} {sleep}",
    )
    try:
        summary = run_plan(
            fakes.plan(("refit", specs)), {"toy": fakes.cohort()}, ResultStore(results), options
        )
    except RaybenchError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    print(f"completed={len(summary.completed)} skipped={len(summary.skipped)}", flush=True)
    return 0 if summary.ok else 1


if __name__ == "__main__":
    sys.exit(main())
