"""`source: generated` datasets: fitted subjects, cache, atomic failure, and a known-truth check."""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import nibabel as nib
import numpy as np
import polars as pl
import pytest
import torch
from raybench_analysis import auc, feature_distance
from torch import nn

import raybench.data.generated as generated
from raybench.data import load_cohort
from raybench.errors import DataError
from raybench.suite import load_suite
from raybench.training.features import penultimate_features

SUITE = """
name: gen
datasets:
  - name: synth
    source: synthetic
    params: {{sites: 2, subjects: {subjects}, shape: [16, 16, 16], effect: {effect}, seed: 0}}
  - name: synth-generated
    source: generated
    params: {{from: synth, latent: 16, epochs: {epochs}, samples: {samples}, seed: {seed}}}
task: {{type: classification, label: diagnosis, positive: AD}}
models:
  - {{name: cnn, arch: classifier}}
validation:
  outer: {{strategy: group_kfold, k: 3, stratify: [label]}}
"""


def _load(tmp_path: Path, materialize: bool = True, **kw: object):
    values = {"subjects": 12, "effect": 1.0, "epochs": 2, "samples": 10, "seed": 0} | kw
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(**values))
    suite = load_suite(path)
    data = tmp_path / "data"
    synth = load_cohort(suite.datasets[0], tmp_path, data)
    cohort = load_cohort(
        suite.datasets[1], tmp_path, data, materialize=materialize, suite=suite,
        cohorts={"synth": synth},
    )  # fmt: skip
    return suite, synth, cohort


class _Recording:
    """A plug-in generator (the Generator protocol) that records what it was given."""

    calls: ClassVar[list[tuple[int, list[int]]]] = []

    def __init__(self, params: object) -> None:
        self.mean = 0.0

    def fit(self, images: torch.Tensor, labels: torch.Tensor, n_classes: int, seed: int):
        _Recording.calls.append((images.shape[0], labels.tolist()))
        assert images.shape[1:] == (1, 16, 16, 16) and n_classes == 2
        assert abs(float(images.mean())) < 1e-4 and abs(float(images.std()) - 1) < 1e-3
        return [1.0, 0.5]

    def sample(self, labels: torch.Tensor, seed: int) -> torch.Tensor:
        return labels.float()[:, None, None, None, None].expand(-1, 1, 16, 16, 16).clone()


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[_Recording]:
    _Recording.calls = []
    monkeypatch.setitem(generated.GENERATORS, "cvae", _Recording)
    return _Recording


def test_fits_fold_0_training_subjects_only_and_caches(tmp_path: Path, recording) -> None:
    suite, synth, cohort = _load(tmp_path)
    fit_ids = generated.fit_sample_ids(synth, suite)
    ((n_fit, labels),) = recording.calls
    assert n_fit == len(fit_ids) < synth.table.height  # the test side of fold 0 is never seen
    fitted = synth.table.filter(pl.col("sample_id").is_in(list(fit_ids)))
    assert sorted(labels) == sorted(int(d == "AD") for d in fitted["diagnosis"])
    # an ordinary cohort: a manifest and one NIfTI per sample, labels in the fitted proportions
    table = cohort.table
    assert table.height == 10 and set(table["diagnosis"]) == {"AD", "CN"}
    assert Path(cohort.source).name == "manifest.tsv" and Path(cohort.source).is_file()
    for row in table.iter_rows(named=True):
        volume = np.asarray(nib.load(row["image"]).dataobj)
        assert volume.shape == (16, 16, 16)
        assert float(volume.mean()) != 0 or row["diagnosis"] == "CN"
    # cached: the same inputs are not fitted again; planning gives the same fingerprint
    _, _, again = _load(tmp_path)
    _, _, planned = _load(tmp_path, materialize=False)
    assert len(recording.calls) == 1
    assert again.fingerprint == planned.fingerprint == cohort.fingerprint
    # another seed is another dataset, in another directory
    _, _, other = _load(tmp_path, seed=1)
    assert other.fingerprint != cohort.fingerprint
    assert Path(other.source).parent != Path(cohort.source).parent


def test_nan_loss_is_a_located_error_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Diverging(_Recording):
        def fit(self, images, labels, n_classes, seed):
            return [3.0, math.nan]

    monkeypatch.setitem(generated.GENERATORS, "cvae", Diverging)
    with pytest.raises(DataError, match=r"'synth-generated'.*did not converge.*epoch 2"):
        _load(tmp_path)
    leftovers = [p.name for p in (tmp_path / "data").iterdir() if "generated" in p.name]
    assert leftovers == []


def test_generated_needs_its_source_loaded(tmp_path: Path) -> None:
    path = tmp_path / "suite.yaml"
    path.write_text(SUITE.format(subjects=12, effect=1.0, epochs=2, samples=10, seed=0))
    suite = load_suite(path)
    with pytest.raises(DataError, match="from='synth' is not a loaded dataset"):
        load_cohort(suite.datasets[1], tmp_path, tmp_path / "data", suite=suite, cohorts={})


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv3d(1, 4, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv3d(4, 8, 3, stride=2, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool3d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(8, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _images(table: pl.DataFrame) -> torch.Tensor:
    """Per-image z-scored volumes (as raybench's preprocessing normalises them)."""
    vols = [np.asarray(nib.load(p).dataobj, dtype=np.float32) for p in table["image"]]
    return torch.stack([torch.as_tensor((v - v.mean()) / v.std())[None] for v in vols])


@pytest.mark.slow
def test_known_truth_auc_band_and_shift(tmp_path: Path) -> None:
    """With a large disease effect, a CNN trained on fold 0's real training images scores its
    real test fold and the VAE's samples within 0.15 AUC of each other, and the MMD between two
    halves of the real test fold is smaller than between one half and as many generated samples.
    """
    suite, synth, cohort = _load(tmp_path, subjects=48, effect=3.0, epochs=30, samples=48)
    fit_ids = set(generated.fit_sample_ids(synth, suite))
    train = synth.table.filter(pl.col("sample_id").is_in(list(fit_ids)))
    test = synth.table.filter(~pl.col("sample_id").is_in(list(fit_ids)))
    torch.manual_seed(0)
    net = _Net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x, y = _images(train), torch.as_tensor((train["diagnosis"] == "AD").cast(int).to_numpy())
    for _ in range(60):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()

    def score(table: pl.DataFrame) -> float:
        with torch.no_grad():
            p = torch.softmax(net(_images(table)), 1)[:, 1].numpy()
        return auc((table["diagnosis"] == "AD").cast(int).to_numpy(), p)

    real_auc, gen_auc = score(test), score(cohort.table)
    assert real_auc > 0.8, real_auc
    assert abs(gen_auc - real_auc) <= 0.15, (real_auc, gen_auc)
    real = penultimate_features(net, _images(test))
    fake = penultimate_features(net, _images(cohort.table))
    half = len(real) // 2
    halves = feature_distance(real[:half], real[half:], ["mmd"], n_perm=0)["estimate"][0]
    shift = feature_distance(real[:half], fake[: len(real) - half], ["mmd"], n_perm=0)
    assert halves < shift["estimate"][0], (halves, shift["estimate"][0])
