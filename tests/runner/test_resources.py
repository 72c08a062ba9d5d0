"""What the cluster cannot give: the check before starting, ``--gpus``, waiting trials; a resume
with nothing to do starts no Ray; Tune's scratch lives under the results directory."""

from __future__ import annotations

import io
import time
from pathlib import Path
from types import SimpleNamespace

import fakes
import pytest
import ray
from rich.console import Console
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.runner import ClusterError, RunOptions, driver, run_plan, trial_resources
from raybench.runner.progress import RichProgress
from raybench.runner.records import failed_row
from raybench.runner.resources import check_schedulable, override_column, override_gpus

SEGMENTATION = Path(__file__).parents[2] / "suites" / "segmentation.yaml"
ALIVE = [{"CPU": 2.0, "memory": 8e9, "node:10.0.0.1": 1.0, "object_store_memory": 1e9}]


def test_a_trial_that_fits_no_node_is_refused_with_what_was_asked_and_what_exists():
    gpu = {"cpu": 1.0, "gpu": 0.5}
    with pytest.raises(ClusterError) as caught:
        check_schedulable({"a": gpu, "b": gpu, "c": {"cpu": 1.0, "gpu": 0.0}}, ALIVE)
    message = str(caught.value)
    assert "2 trial(s) can never start: each asks for 1 CPU, 0.5 GPU on one node" in message
    assert "--gpus 0" in message and "node 1: 2 CPU, 8.0 GB memory" in message
    assert "node:" not in message and "object_store" not in message
    check_schedulable({"a": gpu}, ALIVE, [{"CPU": 8.0, "GPU": 1.0}])  # the autoscaler can add it
    with pytest.raises(ClusterError, match="1 a100"):
        check_schedulable({"d": {"cpu": 1.0, "gpu": 0.0, "a100": 1.0}}, ALIVE)
    with pytest.raises(ClusterError, match="--num-cpus"):
        check_schedulable({"e": {"cpu": 4.0, "gpu": 0.0}}, ALIVE)
    check_schedulable({"f": {"cpu": 2.0, "gpu": 0.0, "memory": 4e9}}, ALIVE)


def test_the_gpu_override_keeps_trial_ids_and_is_recorded():
    plan = fakes.plan(("refit", [fakes.spec("a", resources={"gpu": 0.5})]))
    assert override_gpus(plan, None) is plan
    (spec,) = override_gpus(plan, 0).trials
    assert spec.trial_id == "a" and trial_resources(spec)["gpu"] == 0.0
    assert override_column(spec) == '{"gpu": [0.5, 0.0]}'
    assert override_column(plan.trials[0]) is None
    row = failed_row(spec, "boom", "", 1)
    assert row.column("resources_override").to_pylist() == ['{"gpu": [0.5, 0.0]}']


def test_the_progress_display_says_when_trials_wait_for_resources():
    out = io.StringIO()
    progress = RichProgress(Console(file=out, width=200, force_terminal=False))
    with progress:
        progress({"type": "stage_start", "stage": "refit", "total": 4, "skipped": 0})
        progress({"type": "trials_waiting", "stage": "refit", "waiting": 3})
    assert "3 waiting for resources" in out.getvalue()


def test_a_resume_with_nothing_to_do_starts_no_ray(store, monkeypatch):
    specs = [fakes.spec(f"t{i}") for i in range(3)]
    ctx = SimpleNamespace(attempt=1, node="n", node_id="x", device="cpu", on_epoch=None)
    for spec in specs:
        store.commit(spec.trial_id, fakes.fake_trial(spec, fakes.cohort(), ctx))

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a run with nothing to do")

    monkeypatch.setattr(driver, "init_ray", no_ray)
    was_initialized = ray.is_initialized()
    events: list[dict] = []
    options = RunOptions(trial_fn=fakes.fake_trial, on_event=events.append)
    summary = run_plan(fakes.plan(("refit", specs)), {"toy": fakes.cohort()}, store, options)
    assert sorted(summary.skipped) == ["t0", "t1", "t2"] and not summary.completed
    assert [e["type"] for e in events] == ["stage_start", "stage_end", "run_end"]
    assert events[0]["skipped"] == events[0]["total"] == 3
    assert ray.is_initialized() is was_initialized


@pytest.mark.slow
def test_gpu_trials_on_a_cpu_only_ray_are_refused_then_run_with_the_override(ray_session, store):
    if ray.cluster_resources().get("GPU"):
        pytest.skip("this Ray has GPUs")
    plan = fakes.plan(("refit", [fakes.spec(f"g{i}", resources={"gpu": 0.5}) for i in range(2)]))
    cohorts = {"toy": fakes.cohort()}
    start = time.monotonic()
    with pytest.raises(ClusterError, match=r"2 trial\(s\) can never start.*0\.5 GPU"):
        run_plan(plan, cohorts, store, RunOptions(trial_fn=fakes.fake_trial))
    assert time.monotonic() - start < 30 and store.committed_ids() == []

    scratch = Path(store.root) / ".scratch"
    (scratch / "refit-killed-run").mkdir(parents=True)  # what a killed run leaves behind
    during: list[list[str]] = []

    def on_event(event: dict) -> None:
        if event["type"] == "trial_start":
            during.append(sorted(p.name for p in scratch.iterdir()))

    # the Tune executor (the default pool of Ray actors writes no scratch folder)
    options = RunOptions(trial_fn=fakes.fake_trial, gpus=0, on_event=on_event, executor="tune")
    summary = run_plan(plan, cohorts, store, options)
    assert summary.ok and sorted(summary.completed) == ["g0", "g1"]
    trials = store.scan("trials").collect()
    assert trials["resources_override"].to_list() == ['{"gpu": [0.5, 0.0]}'] * 2
    assert set(trials["device"]) == {"cpu"}
    assert during and all(len(names) == 1 and names[0].startswith("refit-") for names in during)
    assert not scratch.exists()  # removed at the end


@pytest.mark.slow
def test_the_shipped_gpu_suite_on_a_cpu_only_ray_exits_2_quickly(ray_session, tmp_path):
    if ray.cluster_resources().get("GPU"):
        pytest.skip("this Ray has GPUs")
    start = time.monotonic()
    args = ["run", str(SEGMENTATION), "--results", str(tmp_path / "r")]
    res = CliRunner().invoke(app, [*args, "--data-root", str(tmp_path / "data")])
    output = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "can never start" in output and "0.5 GPU" in output and "--gpus 0" in output
    assert time.monotonic() - start < 120
