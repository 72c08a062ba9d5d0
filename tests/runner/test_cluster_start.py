"""Starting and joining Ray: a private loopback-only local Ray, fast failing joins, Ctrl+C, tokens.

Each test runs ``cluster_script.py`` in its own process (a Ray already initialised in the test
process would be reused, not started), with ``RAY_TMPDIR`` in a short temporary folder so that
Ray's ``ray_current_cluster`` file and session folders are the test's own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raybench.runner.cluster import ClusterError, gcs_endpoint

SCRIPT = Path(__file__).parent / "cluster_script.py"
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


@pytest.fixture()
def ray_tmp() -> Iterator[Path]:
    """A short temporary folder (Ray's socket paths must stay short), removed at the end."""
    path = Path(tempfile.mkdtemp(prefix="rb", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _stale_cluster_file(ray_tmp: Path) -> int:
    """Write a ``ray_current_cluster`` naming a port where nothing listens; return the port."""
    (port,) = _free_ports(1)
    (ray_tmp / "ray").mkdir(exist_ok=True)
    (ray_tmp / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}")
    return port


#: What the scripts inherit from the test process: nothing that earlier tests may have set (Ray,
#: Tune and W&B variables, thread limits), so each start is as a user's shell would make it.
INHERITED = ("PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "TZ")


def _env(ray_tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in INHERITED if k in os.environ}
    env.update({"RAY_TMPDIR": str(ray_tmp), "RAY_AUTH_MODE": "disabled", "HOME": str(ray_tmp)})
    env.update(extra)
    return env


def _script(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _finish(proc: subprocess.Popen, timeout: float) -> tuple[int, dict, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"no answer in {timeout} s: {err[-2000:]}") from None
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, json.loads(lines[-1]) if lines else {}, err


def _leftovers(ray_tmp: Path) -> list[str]:
    import ray  # noqa: F401  (puts Ray's bundled psutil on sys.path)

    psutil = pytest.importorskip("psutil")
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(ray_tmp) in cmdline:
            found.append(cmdline[:120])
    return found


def test_addresses_are_parsed_and_auto_reads_the_cluster_file(ray_tmp, monkeypatch):
    assert gcs_endpoint("[::1]:6379")[:2] == ("::1", 6379)
    for bad in ("nonsense", "host:", "ray://host"):
        with pytest.raises(ClusterError, match="is not a Ray address"):
            gcs_endpoint(bad)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_TMPDIR", str(ray_tmp))
    with pytest.raises(ClusterError, match="no Ray cluster is running on this machine"):
        gcs_endpoint("auto")
    port = _stale_cluster_file(ray_tmp)
    assert gcs_endpoint("auto") == ("127.0.0.1", port, "Ray's ray_current_cluster file")


def test_a_join_to_a_dead_address_fails_fast_with_exit_2(ray_tmp):
    port = _stale_cluster_file(ray_tmp)
    for address, words in (("auto", "ray stop"), (f"127.0.0.1:{port}", "nothing answers")):
        start = time.monotonic()
        code, report, err = _finish(_script(_env(ray_tmp), "join", address), timeout=60)
        assert code == 2, err
        assert words in report["error"] and f"127.0.0.1:{port}" in report["error"]
        assert time.monotonic() - start < 45  # Ray's own retries would take minutes


@pytest.mark.slow
def test_local_ray_ignores_a_stale_cluster_file_and_listens_on_loopback_only(ray_tmp):
    _stale_cluster_file(ray_tmp)
    env = _env(ray_tmp, RAY_ADDRESS="127.0.0.1:1")  # not used either: no --address means local
    code, report, err = _finish(_script(env, "local", "--dashboard"), timeout=240)
    assert code == 0, err
    assert report["started_here"] is True and report["worker_ip"] == "127.0.0.1"
    names = {name for name, _, _ in report["listeners"]}
    assert {"gcs_server", "raylet"} <= names, report["listeners"]
    exposed = [entry for entry in report["listeners"] if entry[1] not in LOOPBACK]
    assert exposed == []
    if report["dashboard_url"]:  # ray[default] installed
        assert report["dashboard_url"].startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_ctrl_c_while_ray_starts_stops_cleanly(ray_tmp):
    proc = _script(_env(ray_tmp), "local")
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == "starting"
    deadline = time.monotonic() + 60
    while not _leftovers(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.05)  # until Ray's first process runs: inside ray.init, which takes seconds
    os.kill(proc.pid, signal.SIGINT)
    code, report, err = _finish(proc, timeout=60)
    assert code == 130, err
    assert "interrupted while Ray was starting" in report["error"]
    deadline = time.monotonic() + 20
    while _leftovers(ray_tmp) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _leftovers(ray_tmp) == []


@pytest.fixture()
def token_head(ray_tmp) -> Iterator[tuple[str, str]]:
    """A ``ray start --head`` with token authentication: ``(address, token)``; killed at the end."""
    token = secrets.token_hex(16)
    gcs, client, dash, agent, metrics = _free_ports(5)
    env = _env(ray_tmp, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
    ray_bin = Path(sys.executable).with_name("ray")
    head = subprocess.Popen(
        [str(ray_bin), "start", "--head", "--block", f"--port={gcs}", "--num-cpus=1",
         f"--temp-dir={ray_tmp / 'head'}", "--include-dashboard=false",
         "--disable-usage-stats", f"--ray-client-server-port={client}",
         f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
         f"--metrics-export-port={metrics}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            with socket.socket() as s:
                s.settimeout(1.0)
                if s.connect_ex(("127.0.0.1", gcs)) == 0:
                    break
            assert head.poll() is None and time.monotonic() < deadline, "ray start failed"
            time.sleep(1.0)
        time.sleep(3.0)  # the raylet registers after the GCS listens
        yield f"127.0.0.1:{gcs}", token
    finally:
        os.killpg(head.pid, signal.SIGKILL)
        head.wait(timeout=30)


@pytest.mark.slow
def test_joining_a_token_protected_head(token_head, ray_tmp):
    address, token = token_head
    token_file = ray_tmp / "token"
    token_file.write_text(token)
    outputs = []

    def join(**env: str) -> tuple[int, dict]:
        base = _env(ray_tmp)
        base.pop("RAY_AUTH_MODE")  # unset, as for a user who never heard of it
        code, report, err = _finish(_script({**base, **env}, "join", address), timeout=120)
        outputs.append(json.dumps(report) + err)
        return code, report

    code, report = join(RAY_AUTH_TOKEN_PATH=str(token_file))
    assert code == 0, outputs[-1]
    assert report["cpus"] == 1.0

    code, report = join()  # no token anywhere
    assert code == 2, outputs[-1]
    assert "authentication failed" in report["error"] and "no token was found" in report["error"]

    code, report = join(RAY_AUTH_TOKEN="0" * 32)  # a wrong token
    assert code == 2, outputs[-1]
    assert "authentication failed" in report["error"] and "refused" in report["error"]
    assert all(token not in text for text in outputs)  # the token is never printed
