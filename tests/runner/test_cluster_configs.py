"""The cluster/ configurations are valid: launcher YAML against Ray's schema, RayJob, sbatch."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import ray
import yaml

CLUSTER = Path(__file__).parents[2] / "cluster"


@pytest.mark.parametrize("name", ["aws-gpu.yaml", "gcp-gpu.yaml"])
def test_launcher_configs_follow_rays_schema(name):
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((CLUSTER / name).read_text())
    jsonschema.validate(config, schema)
    assert config["available_node_types"][config["head_node_type"]]["resources"] == {"CPU": 0}
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head


def test_rayjob_runs_raybench_on_a_shared_volume():
    job = yaml.safe_load((CLUSTER / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["entrypoint"].startswith("raybench run ")
    assert "--address auto" in job["spec"]["entrypoint"]
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]] + [
        g["template"] for g in cluster["workerGroupSpecs"]
    ]
    for pod in pods:  # every pod mounts the results volume at the same path
        mounts = pod["spec"]["containers"][0]["volumeMounts"]
        assert {"name": "results", "mountPath": "/results"} in mounts
    pvc = yaml.safe_load((CLUSTER / "results-pvc.yaml").read_text())
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_slurm_script_is_valid_bash_and_runs_raybench():
    script = CLUSTER / "slurm.sbatch"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    assert "ray start --head" in text and 'ray start --address "$ADDRESS"' in text
    assert 'run "$SUITE" --address "$ADDRESS"' in text
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", "-S", "error", str(script)], check=True)
