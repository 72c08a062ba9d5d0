"""Perturbations: seeded, deterministic, each one changes the image, bad entries refused."""

from __future__ import annotations

import pytest
import torch
from raybench_analysis.vocabulary import PERTURBATION_PARAMS

from raybench.errors import SuiteError
from raybench.training.determinism import derive_seed
from raybench.training.perturb import build_perturbation


@pytest.mark.parametrize("kind", sorted(PERTURBATION_PARAMS))
def test_seeded_and_effective(kind: str) -> None:
    image = torch.randn(1, 16, 16, 16, generator=torch.Generator().manual_seed(0))
    p = build_perturbation({"type": kind})
    a, b = p(image, 7), p(image, 7)
    assert torch.equal(a, b)
    assert a.shape == image.shape and a.dtype == torch.float32
    assert float((a - image).abs().mean()) > 1e-3
    if kind in ("gaussian_noise", "bias_field", "motion"):  # random ones depend on the seed
        assert not torch.equal(a, p(image, 8))


def test_severity_and_id_come_from_the_compiled_entry() -> None:
    p = build_perturbation(
        {
            "id": "gaussian_noise(std=0.5)",
            "type": "gaussian_noise",
            "severity": 0.5,
            "params": {"std": 0.5},
        }
    )
    assert (p.id, p.type, p.severity) == ("gaussian_noise(std=0.5)", "gaussian_noise", 0.5)
    noise = p(torch.zeros(1, 32, 32, 32), 1)
    assert abs(float(noise.std()) - 0.5) < 0.02
    assert build_perturbation({"type": "gamma", "params": {"gamma": 2.0}}).severity == 2.0


@pytest.mark.parametrize(
    "entry",
    [
        {"type": "blur"},
        {"type": "gamma", "severity": 0},
        {"type": "gaussian_noise", "severity": "x"},
    ],
)
def test_bad_entries(entry: dict) -> None:
    with pytest.raises(SuiteError, match=r"evaluation\.perturbations"):
        build_perturbation(entry)


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert derive_seed(0, "noise", "s1") == derive_seed(0, "noise", "s1")
    assert len({derive_seed(s, "noise", f"s{i}") for s in range(3) for i in range(50)}) == 150
