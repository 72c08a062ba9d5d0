"""Multi-node checks on ``ray.cluster_utils.Cluster`` (run as a subprocess; prints JSON).

Two worker nodes with custom resources standing in for GPUs: ``gpu_a`` on node A, ``gpu_b`` on
node B. Part 1: trials asking for ``gpu_a`` or ``gpu_b`` must run on that node. Part 2: node B is
removed while trials run on it; they must be rerun on node A and the tables end complete. Each
node has its own ``RAYBENCH_CACHE_DIR`` (as a node-local disk would be): the trials of part 1 must
each resolve the volume cache of the node they run on.
Usage: python multinode_script.py RESULTS_DIR
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import fakes
import ray
import ray.cloudpickle
from ray.cluster_utils import Cluster

from raybench.runner import RunOptions, run_plan
from raybench.store import ResultStore
from raybench.training.cache import CACHE_ENV


def _node_ids(store: ResultStore) -> dict[str, tuple[str, int]]:
    frame = store.scan("trials").collect()
    return {r["trial_id"]: (r["node"].split("/")[-1], r["attempts"]) for r in frame.to_dicts()}


def main() -> None:
    out = Path(sys.argv[1])
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.cloudpickle.register_pickle_by_value(fakes)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    caches = {name: out / f"cache_{name}" for name in ("a", "b")}
    node_a = cluster.add_node(
        num_cpus=2,
        resources={"gpu_a": 2, "slot": 2},
        env_vars={CACHE_ENV: str(caches["a"])},
    )
    node_b = cluster.add_node(
        num_cpus=2,
        resources={"gpu_b": 2, "slot": 2},
        env_vars={CACHE_ENV: str(caches["b"])},
    )
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    report: dict = {"node_a": node_a.node_id, "node_b": node_b.node_id}

    # 1. placement by resources
    store = ResultStore(str(out / "placement"))
    specs = [
        fakes.spec(f"{n}{i}", resources={"custom": {f"gpu_{n}": 1}}, mark_cache=True)
        for n in ("a", "b")
        for i in range(3)
    ]
    summary = run_plan(
        fakes.plan(("refit", specs)),
        {"toy": fakes.cohort()},
        store,
        RunOptions(trial_fn=fakes.fake_trial),
    )
    report["placement_ok"] = summary.ok
    report["placement"] = {t: n for t, (n, _) in _node_ids(store).items()}
    report["caches"] = {
        n: sorted(p.name for p in c.iterdir()) if c.is_dir() else [] for n, c in caches.items()
    }

    # 2. node B removed mid-run: its trials are rerun on node A
    store = ResultStore(str(out / "node_loss"))
    specs = [
        fakes.spec(f"n{i}", sleep=4.0, resources={"custom": {"slot": 1}, "max_retries": 2})
        for i in range(6)
    ]
    started: list[str] = []

    def on_event(event: dict) -> None:
        if event.get("type") == "trial_start":
            started.append(event["trial_id"])

    result: dict = {}

    def drive() -> None:
        result["summary"] = run_plan(
            fakes.plan(("refit", specs)),
            {"toy": fakes.cohort()},
            store,
            RunOptions(trial_fn=fakes.fake_trial, on_event=on_event),
        )

    thread = threading.Thread(target=drive)
    thread.start()
    deadline = time.time() + 180
    while len(started) < 4 and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the four first trials are sleeping on both nodes
    cluster.remove_node(node_b, allow_graceful=False)
    report["removed_after_starts"] = len(started)
    thread.join(timeout=400)
    summary = result["summary"]
    report["node_loss_ok"] = summary.ok
    report["node_loss_completed"] = sorted(summary.completed)
    report["node_loss_rows"] = {t: list(v) for t, v in _node_ids(store).items()}
    report["predictions_per_trial"] = (
        store.scan("predictions").collect().group_by("trial_id").len().sort("trial_id").to_dicts()
    )
    print("REPORT " + json.dumps(report), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    main()
