"""Small trial functions and a plan builder for the runner's tests (no training, real tables).

A fake trial's behaviour comes from its config's ``fake`` entry: ``{"mode": "ok" | "raise" |
"nan" | "die" | "flaky", "sleep": seconds, "score": float, "pid_dir": folder, "mark_cache": bool}``
(with ``pid_dir``, the trial first drops a ``<ns>.<pid>.<trial_id>`` file there, so that a test can
kill its worker; with ``mark_cache``, a file named after the trial in the volume cache folder it
resolved, so that a test sees which node's cache a trial used). It returns real pyarrow tables
with the columns of docs/results.md, and logs its epochs through ``ctx.on_epoch`` like the
training.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa

from raybench.data.cohort import Cohort
from raybench.plan.spec import Plan, TrialSpec
from raybench.runner.records import failed_row
from raybench.store import table_from_rows

#: A fake W&B key in the environment of the session's Ray workers: it must never reach any file.
FAKE_WANDB_KEY = "0123456789abcdef0123456789abcdef01234567"


def cohort(n_subjects: int = 6) -> Cohort:
    rows = [
        {
            "sample_id": f"s{i}",
            "subject_id": f"sub{i}",
            "session_id": "ses1",
            "scanner": "sc0",
            "site": f"site{i % 2}",
            "image": f"/nonexistent/s{i}.nii.gz",
        }
        for i in range(n_subjects)
    ]
    return Cohort(name="toy", table=pl.DataFrame(rows), fingerprint="f" * 64)


def spec(
    trial_id: str,
    *,
    stage: str = "refit",
    mode: str = "ok",
    sleep: float = 0.0,
    score: float = 0.5,
    params: dict[str, Any] | None = None,
    candidates: tuple[dict[str, Any], ...] = (),
    depends_on: tuple[str, ...] = (),
    resources: dict[str, Any] | None = None,
    wandb: dict[str, Any] | None = None,
    state_dir: str | None = None,
    pid_dir: str | None = None,
    mark_cache: bool = False,
) -> TrialSpec:
    config = {
        "suite": "toy",
        "task": {"type": "classification"},
        "model": {"arch": "classifier", "params": {}},
        "training": {"lr": 1e-3},
        "evaluation": {"selection_metric": "auc"},
        "resources": {"cpu": 1, "gpu": 0, "max_retries": 1, "custom": {}, **(resources or {})},
        "wandb": wandb,
        "fake": {
            "mode": mode,
            "sleep": sleep,
            "score": score,
            "state_dir": state_dir,
            "pid_dir": pid_dir,
            "mark_cache": mark_cache,
        },
    }
    return TrialSpec(
        trial_id=trial_id,
        stage=stage,  # type: ignore[arg-type]
        dataset="toy",
        model="m",
        protocol="outer",
        outer_fold=0,
        inner_fold=0 if stage == "search" else None,
        seed=0,
        params={} if params is None and not depends_on else params,
        candidates=candidates,
        config=config,
        train_ids=("s0", "s1", "s2"),
        val_ids=("s3",),
        test_ids=("s4", "s5"),
        depends_on=depends_on,
        config_hash="c" * 16,
        data_fingerprint="f" * 64,
    )


def plan(*stages: tuple[str, list[TrialSpec]]) -> Plan:
    return Plan(suite_name="toy", stages=tuple((name, tuple(ts)) for name, ts in stages))


def fake_trial(spec: TrialSpec, cohort: Cohort, ctx: Any) -> dict[str, pa.Table]:
    """Behave as ``spec.config["fake"]`` says, then return the trial's four tables."""
    fake = spec.config["fake"]
    started = datetime.now(UTC)
    if fake.get("pid_dir"):  # tell a chaos test which worker process runs this trial
        Path(fake["pid_dir"], f"{time.time_ns()}.{os.getpid()}.{spec.trial_id}").touch()
    if fake.get("mark_cache"):
        # imported here: the training package loads torch, seconds a worker of a fake trial
        # need not spend (a node-loss test relies on trials starting at once)
        from raybench.training.cache import node_cache_dir

        cache = node_cache_dir(ctx.cache_dir)
        cache.mkdir(parents=True, exist_ok=True)
        (cache / spec.trial_id).touch()
    if fake.get("sleep"):
        time.sleep(fake["sleep"])
    mode = fake["mode"]
    if mode == "raise":
        raise RuntimeError(f"fake failure of {spec.trial_id}\nsecond line of the message")
    if mode == "die":
        os._exit(3)
    if mode == "flaky":  # fails on the first attempt only
        marker = Path(fake["state_dir"]) / f"{spec.trial_id}.attempted"
        if not marker.exists():
            marker.touch()
            raise RuntimeError("flaky first attempt")
    score = float("nan") if mode == "nan" else float(fake["score"])
    if spec.params and "lr" in spec.params:
        score = float(fake["score"]) - abs(spec.params["lr"] - 0.01)
    epochs = []
    for epoch in range(2):
        for split in ("train", "val"):
            epochs.append(
                {
                    "trial_id": spec.trial_id,
                    "epoch": epoch,
                    "split": split,
                    "loss": 1.0 / (1 + epoch),
                    "metric": "auc" if split == "val" else None,
                    "value": score if split == "val" else None,
                    "lr": 1e-3,
                    "seconds": 0.01,
                }
            )
        if ctx.on_epoch is not None:
            ctx.on_epoch({"epoch": epoch, "train_loss": 1.0 / (1 + epoch), "val_auc": score})
    row = failed_row(spec, "", "", ctx.attempt, started_at=started).to_pylist()[0]
    row.update(
        status="completed",
        error=None,
        traceback=None,
        val_score=score,
        node=f"{ctx.node}/{ctx.node_id}",
        device=ctx.device,
        best_epoch=1,
    )
    preds = [
        {
            "trial_id": spec.trial_id,
            "sample_id": s,
            "subject_id": "sub" + s[1:],
            "split": "test",
            "perturbation": "none",
            "y_true": 1.0,
            "y_pred": 1.0,
            "score": 0.5,
            "loss": 0.1,
        }
        for s in spec.test_ids
    ]
    roles = (("train", spec.train_ids), ("val", spec.val_ids), ("test", spec.test_ids))
    splits = [
        {"trial_id": spec.trial_id, "sample_id": s, "subject_id": "sub" + s[1:], "role": role}
        for role, ids in roles
        for s in ids
    ]
    return {
        "trials": table_from_rows("trials", [row]),
        "predictions": table_from_rows("predictions", preds),
        "epochs": table_from_rows("epochs", epochs),
        "splits": table_from_rows("splits", splits),
    }
