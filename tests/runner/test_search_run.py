"""Search stages on the session's Ray: TPE (OptunaSearch), ASHA pruning, resume (fake trials)."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import search_fakes
from plan_fixtures import cohort, make_suite

from raybench.plan import compile_suite
from raybench.plan.spec import plan_json
from raybench.runner import RunOptions, run_plan


def _suite(**search):
    return make_suite(
        models=[{"name": "small", "arch": "classifier"}],
        training={"epochs": search_fakes.EPOCHS, "batch_size": 4, "lr": 1.0e-3},
        validation={
            "outer": {"strategy": "group_kfold", "k": 2},
            "inner": {"strategy": "group_holdout", "fraction": 0.25},
        },
        evaluation={"selection_metric": "auc"},
        seeds=[0],
        search=search,
    )


def _points(store):
    files = sorted(Path(store.root, "search").glob("*.json"))
    return {f.name: json.loads(f.read_text())["points"] for f in files}


def test_tpe_with_asha_prunes_selects_among_the_rest_and_resumes_the_same_search(
    ray_session, store
):
    ray_session.cloudpickle.register_pickle_by_value(search_fakes)
    suite = _suite(
        algorithm="tpe",
        num_samples=4,
        space={"lr": {"loguniform": [1.0e-4, 1.0e-1]}},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    cohorts = {"synth": cohort()}
    plan = compile_suite(suite, cohorts)
    opts = RunOptions(trial_fn=search_fakes.lr_trial)
    first = run_plan(plan, cohorts, store, opts)
    assert not first.failed
    trials = store.scan("trials").collect()
    search = trials.filter(pl.col("stage") == "search")
    # 2 outer folds x 4 points x 1 inner fold, each point recorded with its trial
    assert search.height == 8
    assert set(search["status"]) <= {"completed", "pruned"}
    pruned = search.filter(pl.col("status") == "pruned")
    assert pruned.height >= 1
    assert pruned["error"].str.starts_with("pruned by asha").all()
    points = _points(store)
    assert len(points) == 2 and all(len(p) == 4 for p in points.values())
    # each refit took the best completed point of its own outer fold, never a pruned one
    for refit in trials.filter(pl.col("stage") == "refit").iter_rows(named=True):
        own = search.filter(pl.col("outer_fold") == refit["outer_fold"])
        best = own.filter(pl.col("status") == "completed").sort("val_score")[-1]
        assert json.loads(refit["params"])["lr"] == json.loads(best["params"][0])["lr"]

    # status: pruned trials are finished; each template stands for its 4 points' trials
    store.write_file("plan.json", plan_json(plan))
    st = store.status()
    assert (st["pending"], st["search_pending"], st["unplanned"]) == ([], 0, [])
    assert (st["pruned"], st["planned"], st["search_templates"]) == (pruned.height, 2 + 8, 2)

    # a kill after the 3rd point of each search: its 4th point, trials and refits are gone
    root = Path(store.root)
    for name in points:
        doc = json.loads((root / "search" / name).read_text())
        last = doc["points"].pop()
        (root / "search" / name).write_text(json.dumps(doc))
        lost = search.filter(pl.col("params").str.contains(json.dumps(last["point"]["lr"])))
        for trial_id in [*lost["trial_id"], *trials.filter(pl.col("stage") == "refit")["trial_id"]]:
            (root / "trials" / f"{trial_id}.parquet").unlink(missing_ok=True)
    second = run_plan(plan, cohorts, store, opts)
    assert not second.failed
    # the same search, continued: the 4th points are asked again and are the same points
    assert _points(store) == points
    assert len(second.skipped) == 0 or all(t in set(search["trial_id"]) for t in second.skipped)
    again = store.scan("trials").collect().filter(pl.col("stage") == "search")
    assert set(again["trial_id"]) == set(search["trial_id"])
    # issue 13: a resume with every search finished starts no Ray, as a finished grid does
    events = []
    third = run_plan(
        plan, cohorts, store, RunOptions(trial_fn=opts.trial_fn, on_event=events.append)
    )
    assert not third.completed and not third.failed
    assert "run_start" not in {e["type"] for e in events}


def test_random_points_with_asha_record_pruned_trials_and_refit_an_unpruned_point(
    ray_session, store
):
    ray_session.cloudpickle.register_pickle_by_value(search_fakes)
    suite = _suite(
        algorithm="random",
        num_samples=4,
        space={"lr": {"loguniform": [1.0e-4, 1.0e-1]}},
        scheduler={"type": "asha", "grace_period": 1, "reduction_factor": 2},
    )
    cohorts = {"synth": cohort()}
    plan = compile_suite(suite, cohorts)
    summary = run_plan(
        plan, cohorts, store, RunOptions(trial_fn=search_fakes.lr_trial, max_concurrent=1)
    )
    assert summary.ok
    trials = store.scan("trials").collect()
    search = trials.filter(pl.col("stage") == "search")
    assert sorted(search["trial_id"]) == sorted(t.trial_id for t in plan.stages[0][1])
    pruned = search.filter(pl.col("status") == "pruned")
    assert pruned.height >= 1 and (search["status"] != "failed").all()
    for refit in trials.filter(pl.col("stage") == "refit").iter_rows(named=True):
        own = pruned.filter(pl.col("outer_fold") == refit["outer_fold"])
        assert json.loads(refit["params"])["lr"] not in {json.loads(p)["lr"] for p in own["params"]}
