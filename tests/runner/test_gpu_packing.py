"""Fractional GPUs reach Ray Tune: four ``gpu: 0.25`` trials share one (fake) GPU at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import fakes
import pytest
from ray.tune.execution.placement_groups import PlacementGroupFactory

from raybench.runner.driver import trial_resources
from raybench.runner.trainable import make_trainable

SCRIPT = Path(__file__).parent / "gpu_packing_script.py"


def test_a_fractional_gpu_is_what_the_trainable_asks_tune_for():
    spec = fakes.spec("t", resources={"gpu": 0.25, "cpu": 2})
    assert trial_resources(spec) == {"cpu": 2.0, "gpu": 0.25}
    trainable = make_trainable(None, trial_resources(spec))  # type: ignore[arg-type]
    factory = trainable._resources
    assert isinstance(factory, PlacementGroupFactory)
    assert factory.bundles == [{"CPU": 2.0, "GPU": 0.25}]


@pytest.mark.slow
def test_four_quarter_gpu_trials_run_together_on_one_gpu(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_raylet_start_wait_time_s": "120"}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "results"), str(state)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["ok"]
    # every trial was given GPU 0 (a quarter of it each), and all four overlapped in time
    assert [g["gpu_ids"] for g in out["gpus"]] == [["0"]] * 4
    assert max(out["started"]) < min(out["finished"])
