"""``raybench status`` on search stages: pruned trials are finished, ``tpe`` templates are not
trials but stand for the points the runner asks for (issue 13)."""

from __future__ import annotations

import json

from raybench.store import ResultStore, table_from_rows

SLOT = {"dataset": "d", "model": "m", "protocol": "outer", "outer_fold": 0, "seed": 0}


def _trial(trial_id: str, status: str, inner_fold: int | None, stage: str = "search") -> dict:
    return {"trial_id": trial_id, "status": status, "stage": stage, **SLOT,
            "inner_fold": inner_fold}  # fmt: skip


def test_pruned_trials_are_finished_and_tpe_templates_count_their_points(tmp_path):
    store = ResultStore(str(tmp_path / "r"))
    plan = {
        "suite": "s",
        "meta": {"search_points": {"d/m": 3}},
        "stages": [
            {"stage": "search", "trials": [
                {**SLOT, "trial_id": "grid-a", "stage": "search", "inner_fold": 0,
                 "params": {"lr": 0.1}},
                {**SLOT, "trial_id": "tpl-0", "stage": "search", "inner_fold": 0, "params": None},
                {**SLOT, "trial_id": "tpl-1", "stage": "search", "inner_fold": 1, "params": None},
            ]},
            {"stage": "refit", "trials": [
                {**SLOT, "trial_id": "refit", "stage": "refit", "inner_fold": None,
                 "params": None},
            ]},
        ],
    }  # fmt: skip
    store.write_file("plan.json", json.dumps(plan).encode())
    committed = [
        _trial("grid-a", "pruned", 0),
        _trial("p1-f0", "completed", 0),  # tpe point 1 on both inner folds
        _trial("p1-f1", "completed", 1),
        _trial("p2-f0", "pruned", 0),  # point 2: one fold pruned, the other not run yet
        _trial("other", "completed", 0, stage="refit"),  # not in the plan, not a point
    ]
    for row in committed:
        store.commit(row["trial_id"], {"trials": table_from_rows("trials", [row])})

    st = store.status()
    assert st["pruned"] == 2 and st["completed"] == 3
    assert st["pending"] == ["refit"]  # neither the pruned grid trial nor the templates
    assert (st["search_templates"], st["search_pending"]) == (2, 3)  # 3 points × 2 folds − 3 run
    assert st["planned"] == 2 + 3 + 3  # grid-a and refit, the points run, the points to run
    assert st["unplanned"] == ["other"]
