"""Weights & Biases: one run per trial, offline by default, never a secret in its config.

The suite's ``tracking.wandb`` chooses the mode (``offline`` by default: no account or key needed,
``wandb sync <dir>`` uploads later; ``online``; ``disabled``); no ``tracking.wandb`` means no W&B.
Runs are grouped by suite and stage (``group="<suite>/<stage>"``), named by trial id, and written
under the results directory's ``wandb/`` folder. Their config is the trial's resolved config and
identity — built from the plan, never from the environment, so no API key can reach it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raybench.plan.spec import TrialSpec

#: Keys never copied into a W&B config, at any depth (defence in depth: configs come from suites).
_SECRET_MARKERS = ("key", "token", "secret", "password", "credential")


def wandb_settings(spec: TrialSpec) -> dict[str, Any] | None:
    """The trial's W&B settings (``project``, ``mode``, ``entity``) or None when W&B is off."""
    settings = spec.wandb
    if settings is None or settings.mode == "disabled":
        return None
    return dataclasses.asdict(settings)


def safe_config(spec: TrialSpec) -> dict[str, Any]:
    """The config logged to W&B: trial identity and resolved config, minus secret-like keys."""
    config = {k: v for k, v in spec.config.items() if k != "wandb"}
    identity = {
        "trial_id": spec.trial_id,
        "stage": spec.stage,
        "dataset": spec.dataset,
        "model": spec.model,
        "protocol": spec.protocol,
        "outer_fold": spec.outer_fold,
        "inner_fold": spec.inner_fold,
        "seed": spec.seed,
        "params": spec.params,
    }
    return _scrub({**identity, **config})


def _scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _scrub(v)
            for k, v in value.items()
            if not any(m in str(k).lower() for m in _SECRET_MARKERS)
        }
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    return value


@contextmanager
def trial_run(
    spec: TrialSpec, wandb_dir: Path | None
) -> Iterator[Callable[[dict[str, Any]], None] | None]:
    """Open the trial's W&B run; yield an ``on_epoch(row)`` logger, or None when W&B is off.

    The run is finished (and its offline files flushed) when the block ends, with exit code 1 if
    the trial raised.
    """
    settings = wandb_settings(spec)
    if settings is None or wandb_dir is None:
        yield None
        return
    import wandb

    wandb_dir = Path(wandb_dir)
    wandb_dir.mkdir(parents=True, exist_ok=True)
    mode = settings["mode"]
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(
        project=settings["project"],
        entity=settings["entity"],
        group=f"{spec.settings.suite}/{spec.stage}",
        job_type=spec.stage,
        name=spec.trial_id,
        id=None,
        dir=str(wandb_dir),
        mode=mode,
        config=safe_config(spec),
        reinit="create_new",
        settings=wandb.Settings(
            console="off",
            x_disable_stats=True,
            x_disable_machine_info=True,
            disable_git=True,
            save_code=False,
            silent=True,
        ),
    )

    def on_epoch(row: dict[str, Any]) -> None:
        data = {
            k: float(v)
            for k, v in row.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and k != "epoch"
        }
        epoch = row.get("epoch")
        run.log(data, step=int(epoch) if isinstance(epoch, int) else None)

    exit_code = 0
    try:
        yield on_epoch
    except BaseException:
        exit_code = 1
        raise
    finally:
        run.finish(exit_code=exit_code)
