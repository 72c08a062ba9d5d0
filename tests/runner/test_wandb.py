"""W&B: one offline run per trial under the results' wandb/ folder, and no secret in it."""

from __future__ import annotations

from pathlib import Path

import fakes
import pytest
from fakes import FAKE_WANDB_KEY

from raybench.runner import RunOptions, run_plan
from raybench.runner.tracking import safe_config

pytestmark = pytest.mark.slow


def test_safe_config_drops_secret_like_keys():
    spec = fakes.spec("x", wandb={"project": "p", "mode": "offline"})
    spec.config["plugins"] = {"net": "mod:fn", "api_key": "s3cr3t"}
    config = safe_config(spec)
    assert "wandb" not in config and config["trial_id"] == "x"
    assert config["plugins"] == {"net": "mod:fn"}


def test_offline_run_per_trial_without_the_key(ray_session, store, tmp_path):
    wandb = {"project": "raybench-test", "mode": "offline"}
    specs = [fakes.spec("w1", wandb=wandb), fakes.spec("w2", wandb=wandb), fakes.spec("off")]
    wandb_dir = tmp_path / "results" / "wandb"
    summary = run_plan(
        fakes.plan(("refit", specs)),
        {"toy": fakes.cohort()},
        store,
        RunOptions(trial_fn=fakes.fake_trial, wandb_dir=wandb_dir),
    )
    assert summary.ok
    runs = sorted(p for p in (wandb_dir / "wandb").glob("offline-run-*") if p.is_dir())
    assert len(runs) == 2  # one per trial with tracking; none for the trial without
    files = [p for p in wandb_dir.rglob("*") if p.is_file()]
    assert any(p.suffix == ".wandb" for p in files)
    for path in files:
        assert FAKE_WANDB_KEY.encode() not in Path(path).read_bytes(), path
