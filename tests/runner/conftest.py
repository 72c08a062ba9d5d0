"""One local Ray for the whole test session (2 CPUs, no dashboard) and the fake trials' module."""

from __future__ import annotations

import os

import fakes
import pytest
from fakes import FAKE_WANDB_KEY


@pytest.fixture(scope="session")
def ray_session():
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(fakes)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ["WANDB_API_KEY"] = FAKE_WANDB_KEY
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def store(tmp_path):
    from raybench.store import ResultStore

    return ResultStore(str(tmp_path / "results"))
