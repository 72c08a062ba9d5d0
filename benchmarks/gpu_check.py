"""GPU check: packing trials with ``resources.gpu: 0.25``, and determinism on the GPU.

On a machine with a CUDA GPU, runs a small suite of 8 real trials (a synthetic cohort of 32³
volumes, a small CNN, 4 outer folds × 2 seeds) three times through ``run_plan``:

1. with ``gpu: 0.25`` (four trials share the GPU), sampling the GPU's utilisation with
   ``nvidia-smi`` while it runs;
2. with ``gpu: 1`` (one trial at a time), for the ratio of trials per minute;
3. with ``gpu: 0.25`` again, to compare every prediction with run 1: raybench's GPU mode is
   cuDNN-deterministic with autotuning off (``raybench.training.determinism``), so the two runs
   should agree bit for bit (``predictions_identical``), AMP included.

Prints one JSON object. Where no GPU is visible (torch sees no CUDA device) it prints a skip
message (``"skipped"``) and exits 0; it is not part of CI and ``python -m benchmarks`` runs it
only when named: ``python -m benchmarks.gpu_check [--epochs N]`` or ``python -m benchmarks
gpu_check``. See docs/running.md ("GPUs").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

N_TRIALS = 8


def _skip(reason: str) -> None:
    print(json.dumps({"benchmark": "gpu_check", "skipped": reason}))


def _suite(epochs: int) -> Any:
    from raybench.suite.schema import Suite

    return Suite.model_validate(
        {
            "name": "gpu-check",
            "datasets": [
                {
                    "name": "synth",
                    "source": "synthetic",
                    "params": {"sites": 2, "subjects": 48, "shape": [32, 32, 32], "seed": 5},
                }
            ],
            "task": {"type": "classification", "label": "diagnosis", "positive": "AD"},
            "models": [{"name": "cnn", "arch": "classifier"}],
            "training": {"epochs": epochs, "batch_size": 8, "amp": True},
            "validation": {"outer": {"strategy": "group_kfold", "k": 4}},
            "seeds": [0, 1],
            "resources": {"cpu": 1, "gpu": 0.25},
        }
    )


class _Utilisation(threading.Thread):
    """Samples ``nvidia-smi``'s GPU utilisation (percent of GPU 0) every half second."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[float] = []
        self.stop = threading.Event()

    def run(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"]
        while not self.stop.is_set():
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.splitlines()[0]))
            except (OSError, ValueError, IndexError, subprocess.SubprocessError):
                pass
            self.stop.wait(0.5)


def _run(plan: Any, cohorts: Any, gpus: float, sample: bool) -> tuple[float, Any, list[float]]:
    from raybench.runner import RunOptions, run_plan
    from raybench.store import ResultStore

    store = ResultStore(tempfile.mkdtemp(prefix="raybench-gpu-"))
    util = _Utilisation()
    if sample:
        util.start()
    start = time.perf_counter()
    summary = run_plan(plan, cohorts, store, RunOptions(gpus=gpus, include_dashboard=False))
    wall = time.perf_counter() - start
    util.stop.set()
    if not summary.ok:
        raise RuntimeError(f"gpu_check: trials failed: {summary.failed}")
    preds = store.scan("predictions").collect().drop("trial_id")
    return wall, preds.sort(preds.columns), util.samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3, help="training epochs per trial")
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        _skip("torch is not installed")
        return
    if not torch.cuda.is_available():
        _skip("no CUDA GPU visible to torch; run this script on a machine with a GPU")
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    from raybench.data import load_cohort
    from raybench.plan import compile_suite

    suite = _suite(args.epochs)
    data = Path(tempfile.mkdtemp(prefix="raybench-gpu-data-"))
    cohorts = {d.name: load_cohort(d, data, data) for d in suite.datasets}
    plan = compile_suite(suite, cohorts)
    assert len(plan.trials) == N_TRIALS
    packed_s, first, util = _run(plan, cohorts, 0.25, sample=True)
    whole_s, _, _ = _run(plan, cohorts, 1.0, sample=False)
    _, again, _ = _run(plan, cohorts, 0.25, sample=False)
    print(
        json.dumps(
            {
                "benchmark": "gpu_check",
                "gpu": torch.cuda.get_device_name(0),
                "trials": N_TRIALS,
                "epochs": args.epochs,
                "gpu_0.25_wall_s": round(packed_s, 2),
                "gpu_1_wall_s": round(whole_s, 2),
                "trials_per_minute_gpu_0.25": round(60 * N_TRIALS / packed_s, 2),
                "trials_per_minute_gpu_1": round(60 * N_TRIALS / whole_s, 2),
                "speedup_packed": round(whole_s / packed_s, 3),
                "gpu_utilisation_mean_pct": round(sum(util) / len(util), 1) if util else None,
                "gpu_utilisation_max_pct": max(util) if util else None,
                "predictions_identical": first.equals(again),
            }
        )
    )


if __name__ == "__main__":
    main()
