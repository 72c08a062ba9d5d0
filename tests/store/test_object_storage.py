"""The store on ``s3://`` against a real S3 server (moto's, on 127.0.0.1): no Ray.

Commit, inventory, integrity check, status and the run lock through the object store: the
conditional put (``If-None-Match`` / ``If-Match``) that makes the lock atomic, the takeover of a
dead run's lock, and a second run refused (docs/object-storage.md).
"""

from __future__ import annotations

import json
import socket
import threading

import boto3
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from raybench.errors import ResultsError
from raybench.store import ResultStore
from raybench.store.objectlock import ConditionalPut, WriteThenVerify
from raybench.store.reader import RunLock


def _objects(uri: str) -> dict[str, bytes]:
    bucket = uri.removeprefix("s3://").split("/", 1)[0]
    client = boto3.client("s3")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {k: client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in keys}


def test_commit_status_and_integrity_on_s3(s3_uri, s3_env, make_tables):
    store = ResultStore(s3_uri)
    assert not store.local
    for trial_id in ("t1", "t2"):
        store.commit(trial_id, make_tables(trial_id))
    store.write_file("plan.json", json.dumps({"stages": [{"stage": "refit", "trials": [
        {"trial_id": "t1"}, {"trial_id": "t2"}, {"trial_id": "t3"}]}]}).encode())  # fmt: skip
    assert store.committed_ids() == ["t1", "t2"]
    assert store.scan("predictions").collect().height == 2
    st = store.status()
    assert (st["planned"], st["completed"], st["pending"], st["running"]) == (
        2 + 1,
        2,
        ["t3"],
        None,
    )

    objects = _objects(s3_uri)
    assert "run/trials/t1.parquet" in objects and not any("/.tmp/" in k for k in objects)
    secret = s3_env["AWS_SECRET_ACCESS_KEY"].encode()
    assert all(secret not in data for data in objects.values())

    # t2's predictions replaced by a file with a row more: the count recorded at commit catches it
    fs, path = store.fs, store.path("predictions", "t2")
    doubled = pa.concat_tables([pq.read_table(path, filesystem=fs)] * 2)
    pq.write_table(doubled, path, filesystem=fs)
    st = store.status()
    assert st["completed"] == 1 and "t2" in st["damaged"] and "t2" in st["pending"]
    store.commit("t2", make_tables("t2"))  # the rerun's commit repairs it
    assert store.committed_ids() == ["t1", "t2"]

    # a commit killed between its puts: data objects without a trials object are not a trial
    tables = make_tables("t3")
    pq.write_table(tables["predictions"], store.path("predictions", "t3"), filesystem=fs)
    assert store.committed_ids() == ["t1", "t2"] and store.inventory().orphans["predictions"]
    store.commit("t3", tables)  # the rerun commits it once
    assert store.committed_ids() == ["t1", "t2", "t3"]
    assert store.scan("predictions").collect()["trial_id"].to_list().count("t3") == 1


def test_credentials_in_the_uri_are_refused(moto_endpoint):
    for uri in ("s3://KEY:SECRET@bkt/run", "s3://bkt/run?secret_key=x&access_key=y"):
        with pytest.raises(ResultsError, match="carries credentials"):
            ResultStore(uri)


def test_s3_lock_is_a_conditional_put_and_refuses_a_second_run(s3_uri):
    store = ResultStore(s3_uri)
    with store.lock():
        holder = json.loads(_objects(s3_uri)["run/.lock"])
        assert holder["hostname"] == socket.gethostname()
        with pytest.raises(ResultsError, match="in use by another run"), store.lock():
            pass
        assert store.status([])["running"]["pid"] == holder["pid"]
    assert "run/.lock" not in _objects(s3_uri)

    prim = ConditionalPut(store.fs, s3_uri)
    path = f"{store.root}/.lock"
    assert prim.create(path, b"{}") and not prim.create(path, b"{}")  # If-None-Match: *


def test_a_dead_runs_lock_is_taken_over_once(s3_uri):
    store = ResultStore(s3_uri)
    dead = {"pid": 2**22 + 12345, "hostname": socket.gethostname(), "token": "old"}
    path = f"{store.root}/.lock"
    prim = ConditionalPut(store.fs, s3_uri)
    assert prim.create(path, json.dumps(dead).encode())
    # two runs found the same stale lock: the first takeover wins, the second sees it changed
    assert prim.take_over(path, b'{"token": "a"}', "old")
    assert not prim.take_over(path, b'{"token": "b"}', "old")
    prim.client.delete_object(Bucket=path.split("/")[0], Key=path.split("/", 1)[1])

    assert prim.create(path, json.dumps(dead).encode())
    with store.lock() as held:  # a run killed with SIGKILL on this host: taken over
        assert json.loads(_objects(s3_uri)["run/.lock"])["token"] == held.token
    other_host = {**dead, "hostname": "elsewhere", "started_at": "2026-01-01T00:00:00+00:00"}
    assert prim.create(path, json.dumps(other_host).encode())
    with pytest.raises(ResultsError, match=r"pid .* on host elsewhere"), store.lock():
        pass


def test_write_then_verify_lets_exactly_one_of_two_runs_in(tmp_path):
    fs = pafs.LocalFileSystem()
    path = str(tmp_path / ".lock")
    barrier = threading.Barrier(2)
    won: list[bool] = []

    def take(data: bytes) -> None:
        barrier.wait()
        won.append(WriteThenVerify(fs, settle_s=0.3).create(path, data))

    threads = [threading.Thread(target=take, args=(d,)) for d in (b"a", b"b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == [False, True]
    lock = RunLock(fs, str(tmp_path), local=True)
    assert lock.holder() == {}  # not a raybench lock: reported as unreadable


SAVED_SUITE = "name: sim\nanalysis: {n_boot: 100, alpha: 0.1}\n"


def test_status_analyze_and_report_read_and_write_through_the_uri(s3_uri, s3_env, tmp_path):
    from raybench_analysis import simulate_predictions, write_results_dir
    from typer.testing import CliRunner

    from raybench.cli.main import app

    run = simulate_predictions(n_sites=2, subjects_per_site=6, n_seeds=1, n_folds=2, seed=1)
    local = write_results_dir(run, tmp_path / "sim")
    (local / "suite.yaml").write_text(SAVED_SUITE)
    store = ResultStore(s3_uri)
    pafs.copy_files(str(local), store.root, destination_filesystem=store.fs)

    status = CliRunner().invoke(app, ["status", s3_uri, "--json"])
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["completed"] == len(store.committed_ids()) > 0
    analyzed = CliRunner().invoke(app, ["analyze", s3_uri, "--json"])
    assert analyzed.exit_code == 0, analyzed.output
    summary = json.loads(analyzed.stdout)
    assert summary["settings"]["alpha"] == 0.1  # read from the saved suite.yaml on s3
    saved = json.loads(_objects(s3_uri)["run/analysis/summary.json"])
    assert saved["tables"]["models"] == summary["tables"]["models"]
    html = tmp_path / "report.html"
    report = CliRunner().invoke(app, ["report", s3_uri, "--out", str(html)])
    assert report.exit_code == 0 and html.is_file(), report.output
    no_out = CliRunner().invoke(app, ["report", s3_uri])
    assert no_out.exit_code == 2 and "--out" in no_out.output
    secret = s3_env["AWS_SECRET_ACCESS_KEY"]
    assert not any(secret in r.output for r in (status, analyzed, report))
    assert secret not in html.read_text()
