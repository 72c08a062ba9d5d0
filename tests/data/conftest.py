"""Shared small synthetic cohorts for the data tests (generated once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from raybench.data import generate_cohort
from raybench.suite.schema import SyntheticParams

SMALL = SyntheticParams(
    sites=3, scanners_per_site=2, subjects=12, sessions=2, shape=(16, 20, 12), seed=3
)
TINY = SyntheticParams(sites=2, subjects=4, sessions=2, shape=(16, 16, 16), seed=5)


@pytest.fixture(scope="session")
def small_params() -> SyntheticParams:
    return SMALL


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 12-subject, 3-site, 2-scanner-per-site, 2-session cohort on an anisotropic grid."""
    return generate_cohort(tmp_path_factory.mktemp("small") / "cohort", SMALL)


@pytest.fixture(scope="session")
def tiny_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine 4-subject cohort; tests copy it before changing anything."""
    return generate_cohort(tmp_path_factory.mktemp("tiny") / "cohort", TINY)
