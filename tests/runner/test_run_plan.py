"""run_plan on the session's local Ray with fake trials: outcomes, failures, resume, selection."""

from __future__ import annotations

import json
from pathlib import Path

import fakes
import polars as pl
import pytest

from raybench.errors import ResultsError
from raybench.runner import RunOptions, run_plan

pytestmark = pytest.mark.slow


def _trials(store) -> pl.DataFrame:
    return store.scan("trials").collect().sort("trial_id")


def test_failures_are_rows_and_the_run_goes_on(ray_session, store, tmp_path):
    specs = [
        fakes.spec("ok1"),
        fakes.spec("ok2"),
        fakes.spec("raises", mode="raise"),
        fakes.spec("nan", mode="nan"),
        fakes.spec("dies", mode="die"),
        fakes.spec("flaky", mode="flaky", state_dir=str(tmp_path)),
    ]
    summary = run_plan(
        fakes.plan(("refit", specs)),
        {"toy": fakes.cohort()},
        store,
        RunOptions(trial_fn=fakes.fake_trial),
    )
    assert sorted(summary.completed) == ["flaky", "ok1", "ok2"]
    assert sorted(summary.failed) == ["dies", "nan", "raises"]
    assert not summary.ok
    rows = {r["trial_id"]: r for r in _trials(store).to_dicts()}
    assert set(rows) == {s.trial_id for s in specs}
    raised = rows["raises"]
    assert raised["status"] == "failed"
    assert raised["error"] == "RuntimeError: fake failure of raises"
    assert "second line of the message" in raised["traceback"]
    assert "fake_trial" in raised["traceback"]
    # max_retries=1 in the suite: two attempts, then failed
    assert raised["attempts"] == 2
    assert rows["nan"]["error"].startswith("TrialError: trial nan: non-finite val_score")
    assert "died" in rows["dies"]["error"]
    assert rows["dies"]["attempts"] == 2
    assert rows["flaky"]["status"] == "completed" and rows["flaky"]["attempts"] == 2
    assert rows["ok1"]["attempts"] == 1
    # only completed trials have predictions
    preds = store.scan("predictions").collect()
    assert set(preds["trial_id"].unique()) == {"ok1", "ok2", "flaky"}


def test_resume_runs_only_missing_and_failed(ray_session, store):
    cohorts = {"toy": fakes.cohort()}
    opts = RunOptions(trial_fn=fakes.fake_trial)
    first = run_plan(
        fakes.plan(("refit", [fakes.spec("a"), fakes.spec("b", mode="raise")])),
        cohorts,
        store,
        opts,
    )
    assert first.completed == ("a",) and list(first.failed) == ["b"]
    before = (Path(store.uri) / "trials" / "a.parquet").stat().st_mtime_ns
    # the suite changed: b is fixed, c is new; a is committed and must not run again
    second = run_plan(
        fakes.plan(("refit", [fakes.spec("a"), fakes.spec("b"), fakes.spec("c")])),
        cohorts,
        store,
        opts,
    )
    assert second.skipped == ("a",)
    assert sorted(second.completed) == ["b", "c"] and second.ok
    assert (Path(store.uri) / "trials" / "a.parquet").stat().st_mtime_ns == before
    trials = _trials(store)
    assert trials["trial_id"].to_list() == ["a", "b", "c"]  # no duplicated row for b
    assert trials["status"].to_list() == ["completed"] * 3


def test_refit_takes_the_best_mean_validation_point(ray_session, store):
    lrs = (0.1, 0.01, 0.001)
    cands = tuple({"lr": lr} for lr in lrs)
    search = [
        fakes.spec(f"s{i}{fold}", stage="search", params={"lr": lr}, score=0.9)
        for i, lr in enumerate(lrs)
        for fold in range(2)
    ]
    # one search trial of the best point fails: the choice uses the other fold's score
    search[2] = fakes.spec("s10", stage="search", params={"lr": 0.01}, mode="raise")
    refit = fakes.spec("r", candidates=cands, depends_on=tuple(s.trial_id for s in search))
    orphan = fakes.spec("orphan", candidates=cands, depends_on=("s10",))
    summary = run_plan(
        fakes.plan(("search", search), ("refit", [refit, orphan])),
        {"toy": fakes.cohort()},
        store,
        RunOptions(trial_fn=fakes.fake_trial, max_retries=0),
    )
    assert "r" in summary.completed
    rows = {r["trial_id"]: r for r in _trials(store).to_dicts()}
    assert json.loads(rows["r"]["params"]) == {"lr": 0.01}
    assert rows["orphan"]["status"] == "failed"
    assert "no search point can be chosen" in rows["orphan"]["error"]


def test_second_run_on_a_locked_directory_is_refused(ray_session, store):
    with store.lock(), pytest.raises(ResultsError):
        run_plan(
            fakes.plan(("refit", [fakes.spec("x")])),
            {"toy": fakes.cohort()},
            store,
            RunOptions(trial_fn=fakes.fake_trial),
        )
    assert not store.committed_ids()


def test_a_run_past_compact_after_ends_compacted_and_resumes_from_the_batches(ray_session, store):
    cohorts = {"toy": fakes.cohort()}
    specs = [fakes.spec(f"t{i}") for i in range(4)] + [fakes.spec("bad", mode="raise")]
    events: list[dict] = []
    opts = RunOptions(trial_fn=fakes.fake_trial, compact_after=3, on_event=events.append)
    first = run_plan(fakes.plan(("refit", specs)), cohorts, store, opts)
    assert len(first.completed) == 4 and list(first.failed) == ["bad"]
    [done] = [e["result"] for e in events if e["type"] == "compacted"]
    assert (done.trials, done.batches) == (4, 1)
    names = sorted(p.name for p in (Path(store.uri) / "trials").glob("*.parquet"))
    # the completed trials live in one batch; the failed one keeps its file, so a resume redoes it
    assert len(names) == 2 and names[0].startswith("_batch-") and names[1] == "bad.parquet"
    preds = store.scan("predictions").collect()
    assert sorted(preds["trial_id"].unique()) == [f"t{i}" for i in range(4)]
    # a resume below the threshold runs only the failed trial and leaves the batch alone
    again = run_plan(
        fakes.plan(("refit", [*specs[:4], fakes.spec("bad")])),
        cohorts,
        store,
        RunOptions(trial_fn=fakes.fake_trial, compact_after=3),
    )
    assert again.completed == ("bad",) and len(again.skipped) == 4
    assert _trials(store)["status"].to_list() == ["completed"] * 5
