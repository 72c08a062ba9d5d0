"""Results directories built without training, and a headless Chromium driven over DevTools.

The results come from :func:`raybench_analysis.simulate_predictions` (two datasets, three models,
one perturbation at two severities) plus the tables a real run adds: ``epochs``, a failed trial,
``suite.yaml`` and ``plan.json``. The browser is the system's Chromium (Debian package
``chromium``; ``.ci/run`` installs it), spoken to over ``--remote-debugging-pipe`` with the
standard library only: no client package, no port opened.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from raybench_analysis.simulate import simulate_predictions, write_results_dir

SUITE_YAML = """name: simulated
datasets:
  - {name: synth, source: synthetic}
  - {name: other, source: synthetic}
task: {type: classification, label: diagnosis, positive: AD}
analysis: {hierarchy: [site, subject_id], alpha: 0.05}
"""

BROWSER = "/usr/bin/chromium"


def _epochs(trials: pl.DataFrame, n_epochs: int = 5) -> pl.DataFrame:
    rows = []
    for i, tid in enumerate(trials["trial_id"].to_list()):
        for epoch in range(n_epochs):
            base = 0.7 / (1 + epoch) + 0.01 * (i % 5)
            rows.append(
                {
                    "trial_id": tid,
                    "epoch": epoch,
                    "split": "train",
                    "loss": base,
                    "metric": None,
                    "value": None,
                    "lr": 1e-3,
                    "seconds": 0.1,
                }
            )
            rows.append(
                {
                    "trial_id": tid,
                    "epoch": epoch,
                    "split": "val",
                    "loss": base + 0.1,
                    "metric": "auc",
                    "value": 0.6 + 0.05 * epoch,
                    "lr": 1e-3,
                    "seconds": 0.1,
                }
            )
    return pl.DataFrame(rows)


def _failed_trial(trials: pl.DataFrame, model: str) -> pl.DataFrame:
    row = trials.row(0, named=True) | {
        "trial_id": "f" * 16,
        "model": model,
        "status": "failed",
        "error": "RuntimeError: CUDA out of memory\nTraceback ...",
        "outer_fold": 99,
    }
    return pl.DataFrame([row], schema=trials.schema)


def make_results(
    root: Path,
    *,
    models: dict[str, float] | None = None,
    datasets: tuple[str, ...] = ("synth", "other"),
    perturbations: dict[str, list[float]] | None = None,
    epochs: bool = True,
    failed: bool = True,
    provenance: bool = True,
    seed: int = 0,
) -> Path:
    """A results directory (docs/results.md) of simulated trials; returns ``root``."""
    plan_trials: list[dict[str, Any]] = []
    for d, dataset in enumerate(datasets):
        run = simulate_predictions(
            models=models or {"cnn": 1.2, "resnet": 1.6, "vit": 1.0},
            n_sites=4,
            subjects_per_site=8,
            n_seeds=2,
            n_folds=2,
            dataset=dataset,
            perturbations=perturbations,
            seed=seed + d,
        )
        trials = run.trials.with_columns(
            raybench_version=pl.lit("0.1.0"),
            torch_version=pl.lit("2.13.0"),
            git_commit=pl.lit("abc1234"),
            config_hash=pl.col("trial_id").str.slice(0, 8),
            data_fingerprint=pl.lit(f"{dataset}-fp"),
        )
        write_results_dir(run.__class__(**{**run.__dict__, "trials": trials}), root)
        if epochs:
            (root / "epochs").mkdir(exist_ok=True)
            for (tid,), part in _epochs(trials).group_by("trial_id"):
                part.write_parquet(root / "epochs" / f"{tid}.parquet")
        if failed and d == 0:
            bad = _failed_trial(trials, next(iter(models or {"cnn": 0})))
            bad.write_parquet(root / "trials" / f"{bad['trial_id'][0]}.parquet")
            plan_trials.append({"trial_id": bad["trial_id"][0]})
        plan_trials += [{"trial_id": t} for t in trials["trial_id"].to_list()]
    if provenance:
        plan_trials.append({"trial_id": "0" * 16})  # planned, never run
        (root / "suite.yaml").write_text(SUITE_YAML)
        plan = {"suite": "simulated", "stages": [{"stage": "refit", "trials": plan_trials}]}
        (root / "plan.json").write_text(json.dumps(plan))
    return root


@pytest.fixture(scope="session")
def results_factory() -> Any:
    """:func:`make_results`, for tests that need another shape of run."""
    return make_results


@pytest.fixture(scope="session")
def full_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two datasets, three models, gaussian noise at two severities, epochs, a failed trial."""
    return make_results(
        tmp_path_factory.mktemp("full"), perturbations={"gaussian_noise": [0.1, 0.2]}
    )


@pytest.fixture()
def artifacts(tmp_path: Path) -> Path:
    """Where screenshots go: ``$RAYBENCH_ARTIFACTS`` (CI keeps it) or the test's tmp_path."""
    folder = Path(os.environ.get("RAYBENCH_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Chromium:
    """A headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4)."""

    def __init__(self, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()

        def remap() -> None:  # runs in the child: DevTools reads fd 3, writes fd 4
            # copy both above 4 first, so that placing one never overwrites the other
            read_end = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
            write_end = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
            os.dup2(read_end, 3)
            os.dup2(write_end, 4)

        self.proc = subprocess.Popen(
            [
                BROWSER,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--disable-extensions",
                "--host-resolver-rules=MAP * ~NOTFOUND",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            preexec_fn=remap,
            pass_fds=(3, 4),  # kept open by number after remap() (it runs before fds close)
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._next_id = 0
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 30,
    ) -> dict[str, Any]:
        """Send one command and wait for its reply; events met meanwhile are kept."""
        self._next_id += 1
        msg: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """The first event named ``method`` (already received or coming)."""
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + timeout
        while True:
            event = self._read(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_child], [], [], max(left, 0))
            if not ready:
                raise TimeoutError("no answer from Chromium")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def render(self, html_file: Path, screenshot: Path) -> dict[str, Any]:
        """Load ``html_file`` offline; return console errors, requests, figure sizes; save a PNG."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Network.emulateNetworkConditions",
            {"offline": True, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1},
            session=session,
        )
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        started = datetime.now(UTC)
        self.send("Page.navigate", {"url": html_file.resolve().as_uri()}, session=session)
        self.wait_event("Page.loadEventFired", timeout=60)
        probe = """JSON.stringify({
          figures: [...document.querySelectorAll('figure img')].map(img => ({
            name: img.closest('figure').dataset.figure, complete: img.complete,
            natural: [img.naturalWidth, img.naturalHeight],
            box: [img.getBoundingClientRect().width, img.getBoundingClientRect().height]})),
          height: document.documentElement.scrollHeight,
          sections: [...document.querySelectorAll('section')].map(s => s.id)})"""
        state = json.loads(
            self.send(
                "Runtime.evaluate", {"expression": probe, "returnByValue": True}, session=session
            )["result"]["value"]
        )
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": 1280,
                "height": min(int(state["height"]), 16000),
                "deviceScaleFactor": 1,
                "mobile": False,
            },
            session=session,
        )
        shot = self.send("Page.captureScreenshot", {"format": "png"}, session=session, timeout=60)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        errors = [
            e
            for e in self.events
            if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
            or e.get("method") == "Runtime.exceptionThrown"
            or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
        ]
        requests = [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]
        return {
            **state,
            "errors": errors,
            "requests": requests,
            "seconds": (datetime.now(UTC) - started).total_seconds(),
        }

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_child)
        os.close(self._from_child)


@pytest.fixture()
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    """A running headless Chromium; skipped, with the reason, when the system has none."""
    if not (Path(BROWSER).is_file() or shutil.which("chromium")):
        pytest.skip(
            f"no Chromium at {BROWSER}: install the Debian package `chromium` (apt-get install "
            "-y chromium; .ci/run does) to render the report in a real browser"
        )
    browser = Chromium(tmp_path / "profile")
    try:
        yield browser
    finally:
        browser.close()
