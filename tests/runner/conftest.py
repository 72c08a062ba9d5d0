"""One local Ray for the whole test session (2 CPUs, no dashboard) and the fake trials' module."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))

import fakes  # noqa: E402


@pytest.fixture(scope="session")
def ray_session():
    import ray
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(fakes)
    try:
        import _tmpstore

        ray.cloudpickle.register_pickle_by_value(_tmpstore)
    except ImportError:
        pass
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture()
def store(tmp_path):
    try:
        from raybench.store import ResultStore
    except ImportError:
        from _tmpstore import DirStore as ResultStore

    return ResultStore(str(tmp_path / "results"))
