"""Multi-node scheduling on a 3-node ``ray.cluster_utils.Cluster`` (in a subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_placement_by_resources_and_node_loss(tmp_path):
    script = Path(__file__).parent / "multinode_script.py"
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    report = json.loads(lines[-1][len("REPORT ") :])
    a, b = report["node_a"], report["node_b"]

    assert report["placement_ok"]
    for trial_id, node in report["placement"].items():
        assert node == (a if trial_id.startswith("a") else b), (trial_id, node)
    # each trial used the volume cache of its own node, none another node's
    assert report["caches"] == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}

    assert report["node_loss_ok"]
    ids = [f"n{i}" for i in range(6)]
    assert report["node_loss_completed"] == ids
    rows = report["node_loss_rows"]
    assert sorted(rows) == ids
    # trials that were on node B when it was removed ran again, on node A
    rerun = [t for t, (node, attempts) in rows.items() if attempts > 1]
    assert rerun, rows
    assert all(rows[t][0] == a for t in rerun)
    assert [r["len"] for r in report["predictions_per_trial"]] == [2] * 6
