"""Shared builders of the store's tests: one trial's four tables, as a real run writes them."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from types import SimpleNamespace

import pyarrow as pa
import pytest

from raybench.plan.spec import TrialSpec
from raybench.store import collect_provenance, table_from_rows, trial_row


def _spec(trial_id: str) -> TrialSpec:
    return TrialSpec(
        trial_id=trial_id,
        stage="refit",
        dataset="synth",
        model="cnn",
        protocol="outer",
        outer_fold=1,
        inner_fold=None,
        seed=7,
        params={"lr": 0.001},
        candidates=(),
        config={"task": {"type": "classification"}, "suite": "s1"},
        train_ids=("a",),
        val_ids=("b",),
        test_ids=("c",),
        config_hash="h" * 64,
        data_fingerprint="f" * 64,
    )


def _outcome() -> SimpleNamespace:
    now = datetime.now(UTC)
    return SimpleNamespace(
        best_epoch=1,
        val_score=0.75,
        train_seconds=1.5,
        eval_seconds=0.25,
        device="cpu",
        n_train=1,
        n_val=1,
        n_test=1,
        started_at=now,
        finished_at=now,
    )


def _tables(trial_id: str) -> dict[str, pa.Table]:
    spec = _spec(trial_id)
    pred = {
        "trial_id": trial_id,
        "dataset": "synth",
        "model": "cnn",
        "protocol": "outer",
        "outer_fold": 1,
        "seed": 7,
        "sample_id": "c",
        "subject_id": "sc",
        "session_id": "1",
        "scanner": "x",
        "site": "s",
        "split": "test",
        "perturbation": "none",
        "perturbation_type": "none",
        "y_true": 1.0,
        "y_pred": 1.0,
        "score": 0.8,
        "probs": [0.2, 0.8],
        "loss": 0.22,
    }
    return {
        "predictions": table_from_rows("predictions", [pred]),
        "epochs": table_from_rows(
            "epochs",
            [
                {
                    "trial_id": trial_id,
                    "epoch": 0,
                    "split": "train",
                    "loss": 0.5,
                    "lr": 1e-3,
                    "seconds": 0.1,
                }
            ],
        ),
        "splits": table_from_rows(
            "splits",
            [
                {
                    "trial_id": trial_id,
                    "sample_id": s,
                    "subject_id": f"s{s}",
                    "session_id": "1",
                    "site": "s",
                    "role": r,
                }
                for s, r in (("a", "train"), ("b", "val"), ("c", "test"))
            ],
        ),
        "explanations": table_from_rows(
            "explanations",
            [
                {
                    **{k: pred[k] for k in list(pred)[:11]},
                    "method": "gradcam",
                    "target": "AD",
                    "metric": "auroc",
                    "value": 0.9,
                    "map_path": f"maps/{trial_id}/c_gradcam.nii.gz",
                }
            ],
        ),
        "features": table_from_rows(
            "features",
            [
                {
                    "trial_id": trial_id,
                    "origin": "test",
                    "sample_id": "c",
                    "label": "AD",
                    "features": [0.5, 1.5],
                }
            ],
        ),
        "trials": trial_row(spec, _outcome(), collect_provenance()),
    }


@pytest.fixture()
def make_tables() -> Callable[[str], dict[str, pa.Table]]:
    """``make_tables(trial_id)``: the tables of one completed trial, ready to commit."""
    return _tables


# --------------------------------------------------------------------------- S3 (moto)

#: The dummy credentials of the moto server: a test checks they reach no log and no results file.
FAKE_KEY_ID = "AKIARAYBENCHTESTKEY1"
FAKE_SECRET = "raybench-fake-secret-Zq8vN3kP0wXt"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 (a free port), for the whole session: ``http://host:port``."""
    server_module = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def s3_env(moto_endpoint: str) -> dict[str, str]:
    """The environment that points boto3 and pyarrow's S3FileSystem at the moto server."""
    return {
        "AWS_ENDPOINT_URL": moto_endpoint,
        "AWS_ACCESS_KEY_ID": FAKE_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture()
def s3_uri(s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, request) -> str:
    """``s3://<new bucket>/run`` on the moto server, credentials in this process's environment."""
    boto3 = pytest.importorskip("boto3")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_env.items():
        monkeypatch.setenv(name, value)
    bucket = "rb-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-")
    boto3.client("s3").create_bucket(Bucket=bucket)
    return f"s3://{bucket}/run"
