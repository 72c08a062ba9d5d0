"""``raybench run --results s3://...`` end to end on moto's S3 server: kill, resume, status,
analyze, report; a second run refused while the first holds the lock; no credential anywhere."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import polars as pl
import pytest
from typer.testing import CliRunner

from raybench.cli.main import app
from raybench.store import ResultStore

pytestmark = pytest.mark.slow

SUITE = """
name: tiny-s3
datasets:
  - name: synth
    source: synthetic
    params: {sites: 2, subjects: 12, shape: [16, 16, 16], effect: 1.0, seed: 0}
task: {type: classification, label: diagnosis, positive: AD}
models:
  - {name: cnn, arch: classifier, params: {channels: [[4, 8]], strides: [[2, 2]]}}
training: {epochs: 1, batch_size: 4, lr: [1.0e-3, 1.0e-2]}
validation:
  outer: {strategy: group_kfold, k: 2, stratify: [label]}
  inner: {strategy: group_holdout, fraction: 0.25}
seeds: [0]
evaluation: {metrics: [auc], selection_metric: auc}
analysis: {n_boot: 200}
"""
N = 6  # 4 search trials + 2 refits
INHERITED = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ")


def _driver(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    code = "from raybench.cli.main import app; app()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: Ray's processes die with it
    )


@pytest.fixture()
def ray_tmp() -> Iterator[Path]:
    """The RAY_TMPDIR of the drivers' private Ray; afterwards, its processes that outlived a
    killed driver are ended (found by this folder in their command line)."""
    import ray  # noqa: F401  (puts Ray's bundled psutil on sys.path)

    psutil = pytest.importorskip("psutil")
    folder = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))  # Ray's socket paths must be short
    yield folder
    for proc in psutil.process_iter(["cmdline"]):
        if str(folder) in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()
    shutil.rmtree(folder, ignore_errors=True)


def test_run_kill_resume_status_analyze_report_on_s3(s3_uri, s3_env, ray_tmp, tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text(SUITE)
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env |= s3_env | {"RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "disabled", "HOME": str(tmp_path)}
    args = ["run", str(suite), "--results", s3_uri, "--data-root", str(tmp_path / "data"),
            "--num-cpus", "2", "--max-concurrent", "1", "--json"]  # fmt: skip
    store = ResultStore(s3_uri)
    outputs: list[str] = []

    first = _driver(args, env)
    try:
        deadline = time.time() + 240
        while not store.committed_ids():
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "no trial committed in time"
            time.sleep(0.2)
        second = CliRunner().invoke(app, args)  # the lock is held: refused before Ray starts
        outputs.append(second.output)
        assert second.exit_code == 2, second.output
        assert "is in use by another run" in second.output
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(first.pid, signal.SIGKILL)
        outputs.extend(first.communicate(timeout=30))
    killed_with = set(store.committed_ids())
    assert 1 <= len(killed_with) < N
    assert store.status()["running"] is not None  # a killed driver cannot release its lock

    bucket, prefix = s3_uri.removeprefix("s3://").split("/", 1)
    client = boto3.client("s3")

    def etags() -> dict[str, str]:
        return {t: client.head_object(Bucket=bucket, Key=f"{prefix}/trials/{t}.parquet")["ETag"]
                for t in killed_with}  # fmt: skip

    before = etags()
    start = time.perf_counter()
    rerun = _driver(args, env)
    out, err = rerun.communicate(timeout=420)
    outputs += [out, err]
    assert rerun.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["skipped"] >= len(killed_with)  # resumed: the committed trials are not rerun
    assert summary["completed"] + summary["skipped"] == N and summary["failed"] == 0
    assert etags() == before  # the trials committed before the kill were not committed again
    print(f"resume on s3: {time.perf_counter() - start:.1f} s")

    trials = store.scan("trials").collect()
    assert trials.height == N and trials["trial_id"].n_unique() == N
    assert set(trials["status"]) == {"completed"}
    preds = store.scan("predictions").collect()
    assert preds.height > 0
    assert preds.select("trial_id", "sample_id", "perturbation").is_duplicated().sum() == 0

    status = CliRunner().invoke(app, ["status", s3_uri, "--json"])
    st = json.loads(status.stdout)
    assert (st["planned"], st["completed"], st["pending"], st["running"]) == (N, N, [], None)

    analyzed = CliRunner().invoke(app, ["analyze", s3_uri, "--json"])
    assert analyzed.exit_code == 0, analyzed.output
    assert json.loads(analyzed.stdout)["tables"]["models"]
    report = CliRunner().invoke(app, ["report", s3_uri, "--out", str(tmp_path / "r.html")])
    assert report.exit_code == 0, report.output
    outputs += [status.output, analyzed.output, report.output]

    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"{prefix}/analysis/summary.json" in keys and f"{prefix}/.lock" not in keys
    assert not any("/.tmp/" in k for k in keys)
    secret = s3_env["AWS_SECRET_ACCESS_KEY"]
    for key in keys:
        assert secret.encode() not in client.get_object(Bucket=bucket, Key=key)["Body"].read()
    assert secret not in (tmp_path / "r.html").read_text()
    assert not any(secret in text for text in outputs)
    assert pl.read_parquet(client.get_object(Bucket=bucket, Key=f"{prefix}/analysis/models.parquet")
                           ["Body"].read()).height > 0  # fmt: skip
