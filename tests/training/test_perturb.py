"""Perturbations: seeded, deterministic, each one changes the image, bad entries refused."""

from __future__ import annotations

import pytest
import torch
from raybench_analysis.vocabulary import PERTURBATION_NEUTRAL, PERTURBATION_PARAMS

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
    random = ("gaussian_noise", "bias_field", "motion", "rician_noise", "ghosting", "scanner_shift")
    if kind in random:  # random ones depend on the seed
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
        {"type": "warp"},
        {"type": "gibbs", "severity": 1.5},
        {"type": "resolution", "severity": 0.5},
        {"type": "blur", "severity": -1},
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


#: Three severities moving away from the neutral one, per type.
_SWEEPS = {
    "gaussian_noise": (0.05, 0.2, 0.5),
    "bias_field": (0.1, 0.3, 0.6),
    "intensity_scale": (0.1, 0.3, 0.6),
    "gamma": (1.2, 1.6, 2.5),
    "motion": (2.0, 5.0, 10.0),
    "rician_noise": (0.05, 0.2, 0.5),
    "blur": (0.5, 1.0, 2.0),
    "resolution": (1.5, 2.0, 4.0),
    "gibbs": (0.2, 0.5, 0.8),
    "ghosting": (0.2, 0.5, 0.9),
    "scanner_shift": (0.1, 0.3, 0.6),
}


def _brain() -> torch.Tensor:
    """A smooth blob with texture, normalised like a preprocessed image."""
    g = torch.linspace(-1, 1, 16)
    x, y, z = torch.meshgrid(g, g, g, indexing="ij")
    blob = torch.exp(-(x**2 + y**2 + z**2) * 3) + 0.2 * torch.sin(6 * x) * torch.cos(5 * y)
    blob = blob + 0.05 * torch.randn(16, 16, 16, generator=torch.Generator().manual_seed(1))
    return ((blob - blob.mean()) / blob.std())[None]


def test_every_type_has_a_sweep() -> None:
    assert set(_SWEEPS) == set(PERTURBATION_PARAMS)


@pytest.mark.parametrize("kind", sorted(PERTURBATION_PARAMS))
def test_neutral_severity_is_the_identity(kind: str) -> None:
    image = _brain()
    out = build_perturbation({"type": kind, "severity": PERTURBATION_NEUTRAL[kind]})(image, 3)
    assert float((out - image).abs().max()) < 1e-4


@pytest.mark.parametrize("kind", sorted(PERTURBATION_PARAMS))
def test_change_grows_with_severity(kind: str) -> None:
    """For one seed, the mean absolute change increases strictly along the sweep."""
    image = _brain()
    for seed in (0, 5):
        change = [
            float((build_perturbation({"type": kind, "severity": s})(image, seed) - image)
                  .abs().mean())
            for s in _SWEEPS[kind]
        ]  # fmt: skip
        assert change[0] > 1e-3, (kind, change)
        assert change[0] < change[1] < change[2], (kind, seed, change)
