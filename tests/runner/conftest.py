"""One local Ray for the whole test session (2 CPUs, no dashboard) and the fake trials' module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import fakes  # noqa: E402

#: A fake W&B key in the environment of the session's Ray workers: it must never reach any file.
FAKE_WANDB_KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="session")
def ray_session():
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(fakes)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["WANDB_API_KEY"] = FAKE_WANDB_KEY
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def store(tmp_path):
    from raybench.store import ResultStore

    return ResultStore(str(tmp_path / "results"))
