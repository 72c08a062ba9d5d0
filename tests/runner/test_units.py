"""Pure pieces of the runner (no Ray cluster): resources, selection, errors, token hint."""

from __future__ import annotations

import fakes
import pytest

from raybench.errors import RaybenchError
from raybench.runner.cluster import token_hint
from raybench.runner.driver import parse_memory, trial_resources
from raybench.runner.failures import TrialFailure, describe_error, wrap
from raybench.runner.progress import RichProgress
from raybench.runner.selection import SelectionError, choose_point, resolve_refits


def test_memory_sizes():
    assert parse_memory("4GB") == 4e9
    assert parse_memory("512MiB") == 512 * 1024**2
    assert parse_memory("2g") == 2e9
    assert parse_memory("1000") == 1000
    with pytest.raises(RaybenchError, match=r"resources.memory='lots'.*'4GB'"):
        parse_memory("lots")


def test_trial_resources_from_the_suite():
    spec = fakes.spec("x", resources={"cpu": 2, "gpu": 0.25, "memory": "1GB", "custom": {"a": 1}})
    assert trial_resources(spec) == {"cpu": 2.0, "gpu": 0.25, "memory": 1e9, "a": 1.0}


def _search(lr: float, trial_id: str):
    return fakes.spec(trial_id, stage="search", params={"lr": lr})


def test_choice_uses_the_mean_over_folds_and_the_metric_direction():
    s = {t.trial_id: t for t in (_search(0.1, "a0"), _search(0.1, "a1"), _search(0.01, "b0"))}
    cands = ({"lr": 0.1}, {"lr": 0.01})
    refit = fakes.spec("r", candidates=cands, depends_on=tuple(s))
    # auc (higher is better): mean(0.9, 0.5) = 0.7 < 0.8
    assert choose_point(refit, s, {"a0": 0.9, "a1": 0.5, "b0": 0.8}) == {"lr": 0.01}
    # loss (lower is better): same scores, the other point wins
    refit.config["evaluation"]["selection_metric"] = None
    assert choose_point(refit, s, {"a0": 0.9, "a1": 0.5, "b0": 0.8}) == {"lr": 0.1}
    # ties keep the first candidate; NaN and missing scores are ignored
    assert choose_point(refit, s, {"a0": 0.8, "a1": float("nan"), "b0": 0.8}) == {"lr": 0.1}
    with pytest.raises(SelectionError, match="none of its 3 search trials"):
        choose_point(refit, s, {})


def test_resolve_refits_applies_the_point_and_rehashes():
    s = {t.trial_id: t for t in (_search(0.1, "a0"), _search(0.01, "b0"))}
    refit = fakes.spec("r", candidates=({"lr": 0.1}, {"lr": 0.01}), depends_on=tuple(s))
    plain = fakes.spec("p")
    ready, errors = resolve_refits([refit, plain], s, {"a0": 0.6, "b0": 0.7})
    assert not errors
    chosen = ready[0]
    assert chosen.params == {"lr": 0.01} and chosen.config["training"]["lr"] == 0.01
    assert chosen.trial_id == "r" and chosen.config_hash != refit.config_hash
    assert ready[1] is plain


def test_errors_keep_first_line_and_traceback_through_wrappers():
    try:
        raise ValueError("bad value\nmore detail")
    except ValueError as exc:
        failure = wrap(exc)
    assert failure.first_line == "ValueError: bad value"
    assert "more detail" in failure.traceback and "Traceback" in failure.traceback

    class RayTaskError(Exception):  # the shape of Ray's wrapper: the original in .cause
        def __init__(self, cause):
            super().__init__("\x1b[36mray::ImplicitFunc.train()\x1b[39m ...")
            self.cause = cause

    assert describe_error(RayTaskError(failure)) == (failure.first_line, failure.traceback)

    class ActorDiedError(Exception):
        pass

    head, text = describe_error(ActorDiedError("\x1b[31mThe actor died unexpectedly\x1b[0m"))
    assert head == "ActorDiedError: the trial's worker process or node died"
    assert "\x1b" not in text and "died unexpectedly" in text
    assert isinstance(TrialFailure("a", "b").__reduce__()[1], tuple)


def test_token_hint_names_the_source_not_the_token(monkeypatch):
    monkeypatch.setattr("raybench.runner.cluster._token_auth_enabled", lambda: True)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "super-secret-token")
    hint = token_hint()
    assert "RAY_AUTH_TOKEN environment variable" in hint and "super-secret-token" not in hint
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    assert "~/.ray/auth_token" in token_hint() and "ray get-auth-token" in token_hint()
    monkeypatch.setattr("raybench.runner.cluster._token_auth_enabled", lambda: False)
    assert token_hint() is None


def test_progress_counts_done_running_failed():
    progress = RichProgress()
    progress({"type": "stage_start", "stage": "refit", "total": 4, "skipped": 1})
    progress({"type": "trial_start", "stage": "refit", "trial_id": "a"})
    progress({"type": "trial_start", "stage": "refit", "trial_id": "b"})
    progress({"type": "trial_done", "stage": "refit", "trial_id": "a"})
    progress({"type": "trial_error", "stage": "refit", "trial_id": "b"})
    progress({"type": "trial_failed", "stage": "refit", "trial_id": "b"})
    task = progress.progress.tasks[0]
    assert task.completed == 3 and task.total == 4
    assert task.fields["running"] == 0 and task.fields["failed"] == 1


def test_per_trial_resources_give_placement_groups():
    from raybench.runner.trainable import PerTrialResources

    pgf = PerTrialResources({"a": {"cpu": 1.0, "gpu": 0.0, "gpu_a": 1.0}})({"trial_id": "a"})
    assert pgf.required_resources == {"CPU": 1.0, "gpu_a": 1.0}


def test_the_pool_sizes_itself_by_what_each_node_holds():
    from raybench.runner.pool import capacity, shape_of

    nodes = [{"CPU": 2.0, "GPU": 1.0, "memory": 8e9}, {"CPU": 3.0, "memory": 8e9}]
    assert capacity(shape_of({"cpu": 1.0, "gpu": 0.0}), nodes) == 5  # 2 + 3 CPUs
    assert capacity(shape_of({"cpu": 1.0, "gpu": 0.25}), nodes) == 2  # GPU node: 2 CPUs
    assert capacity(shape_of({"cpu": 0.5, "gpu": 0.25}), nodes) == 4  # 4 quarters of one GPU
    assert capacity(shape_of({"cpu": 1.0, "memory": 5e9}), nodes) == 2  # one per node
    assert capacity(shape_of({"cpu": 1.0, "a100": 1.0}), nodes) == 0  # none: waits, autoscaler
    assert shape_of({"gpu": 0, "cpu": 1}) == shape_of({"cpu": 1.0, "gpu": 0.0})
