"""A fake trial for search tests: several epochs whose validation AUC is a function of ``lr``.

The AUC of epoch ``e`` is ``0.9 - |log10(lr) + 2| / 4 + 0.01 e``: the best points are near
``lr = 1e-2``, so a scheduler prunes the far ones and TPE has something to learn. It reports each
epoch through ``ctx.on_epoch`` as the training does and returns the fake tables of
:func:`fakes.fake_trial` with that score.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import fakes

from raybench.data.cohort import Cohort
from raybench.plan.spec import TrialSpec
from raybench.store import table_from_rows

EPOCHS = 4


def auc(lr: float, epoch: int) -> float:
    return 0.9 - abs(math.log10(lr) + 2) / 4 + 0.01 * epoch


def lr_trial(spec: TrialSpec, cohort: Cohort, ctx: Any) -> dict[str, Any]:
    lr = float((spec.params or {}).get("lr") or spec.config["training"]["lr"])
    for epoch in range(EPOCHS):
        if ctx.on_epoch is not None:
            ctx.on_epoch({"epoch": epoch, "val_auc": auc(lr, epoch)})
    score = auc(lr, EPOCHS - 1)
    fake = {"mode": "ok", "sleep": 0, "score": score, "state_dir": None, "pid_dir": None}
    silent = dataclasses.replace(ctx, on_epoch=None)
    plain = dataclasses.replace(spec, params={}, config={**spec.config, "fake": fake})
    tables = fakes.fake_trial(plain, cohort, silent)  # its score ignores lr without params
    row = tables["trials"].to_pylist()[0]
    row.update(params=json.dumps(spec.params, sort_keys=True), val_score=score)
    return {**tables, "trials": table_from_rows("trials", [row])}


def gpu_trial(spec: TrialSpec, cohort: Cohort, ctx: Any) -> dict[str, Any]:
    """:func:`fakes.fake_trial`, first recording the GPUs Ray gave the trial in its pid_dir."""
    import os
    from pathlib import Path

    import ray

    fake = spec.config["fake"]
    record = {"gpu_ids": [str(g) for g in ray.get_gpu_ids()], "device": ctx.device}
    record["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    Path(fake["state_dir"], f"{spec.trial_id}.json").write_text(json.dumps(record))
    return fakes.fake_trial(spec, cohort, ctx)
