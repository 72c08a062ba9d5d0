"""training.augment, class_weights and sampler: seeded, training samples only, and effective."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from raybench_analysis.vocabulary import AUGMENTATIONS

from raybench.data.cohort import Cohort
from raybench.errors import SuiteError
from raybench.plan.config import AugmentationConfig, augment_pipelines
from raybench.suite.schema import Training
from raybench.training.augment import SPATIAL, Augmenter
from raybench.training.balance import balanced_sampler, class_weights
from raybench.training.loop import make_head
from raybench.training.trial import TrialContext, run_trial

ALL = list(AUGMENTATIONS)


def _pipeline(*entries: dict[str, Any]) -> list[AugmentationConfig]:
    plain = augment_pipelines(Training(augment=list(entries)).augment)
    assert plain is not None
    return [AugmentationConfig(**p) for p in plain[0]]


def _arrays(seed: int = 0) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    image = torch.as_tensor(rng.standard_normal((1, 12, 12, 12)), dtype=torch.float32)
    mask = torch.zeros((1, 12, 12, 12), dtype=torch.uint8)
    mask[0, 2:5, 3:9, 4:6] = 1
    return {"image": image, "mask": mask}


@pytest.mark.parametrize("kind", ALL)
def test_each_transform_is_seeded_by_trial_epoch_and_sample(kind: str) -> None:
    pipe = _pipeline({"type": kind, "prob": 1.0})
    arrays = _arrays()
    aug = Augmenter(pipe, trial_seed=3, with_mask=True)
    a = aug(arrays, "sub-01", epoch=0)
    assert torch.equal(a["image"], Augmenter(pipe, 3, with_mask=True)(arrays, "sub-01", 0)["image"])
    assert a["image"].dtype == torch.float32 and type(a["image"]) is torch.Tensor
    assert not torch.equal(a["image"], arrays["image"])
    others = [
        Augmenter(pipe, 4, with_mask=True)(arrays, "sub-01", 0),  # another trial seed
        aug(arrays, "sub-01", 1),  # another epoch
        aug(arrays, "sub-02", 0),  # another sample
    ]
    if kind != "flip":  # a flip has one outcome per axis: seeds agree by chance
        assert all(not torch.equal(a["image"], o["image"]) for o in others)
    if kind in SPATIAL:
        assert set(a["mask"].unique().tolist()) <= {0, 1} and a["mask"].dtype == torch.uint8
    else:
        assert torch.equal(a["mask"], arrays["mask"])


def test_a_flip_moves_the_mask_with_the_image() -> None:
    arrays = _arrays()
    out = Augmenter(_pipeline({"type": "flip", "prob": 1.0, "axes": [1]}), 0, with_mask=True)(
        arrays, "s", 0
    )
    assert torch.equal(out["image"], arrays["image"].flip(2))
    assert torch.equal(out["mask"], arrays["mask"].flip(2))


def test_an_unknown_transform_is_a_suite_error() -> None:
    with pytest.raises(SuiteError, match="type='warp' is unknown"):
        Augmenter([AugmentationConfig("warp", {})], 0, with_mask=False)


def test_balanced_class_weights_and_loss() -> None:
    # sklearn.utils.class_weight.compute_class_weight("balanced", classes=[0, 1, 2], y=y)
    y = [0, 0, 0, 0, 0, 0, 1, 1, 1, 2]
    weights = class_weights(y, 3)
    assert weights.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3])
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    target = torch.tensor(y)
    head = make_head("classification", class_weights=weights)
    ce = torch.nn.functional.cross_entropy(logits, target, reduction="none")
    w = weights.float()[target]
    assert float(head.batch_loss(logits, target)) == pytest.approx(float((w * ce).sum() / w.sum()))
    # per-sample losses (validation, predictions) stay unweighted
    assert torch.allclose(head.sample_loss(logits, target), ce)


def test_balanced_sampler_draws_classes_equally_and_is_seeded() -> None:
    y = [0] * 18 + [1] * 2
    sampler = balanced_sampler(y, 2, seed=1)
    draws = [i for _ in range(100) for i in sampler]  # 100 epochs of one trial
    minority = np.mean([y[i] for i in draws])
    assert 0.45 < minority < 0.55  # 10% of the samples, drawn half of the time (SD 0.011)
    assert list(balanced_sampler(y, 2, seed=1)) == list(balanced_sampler(y, 2, seed=1))


# --------------------------------------------------------------------------- in a trial

STRONG = [
    {"type": "flip", "params": {"prob": 0.5, "axes": [0]}},
    {"type": "gaussian_noise", "params": {"prob": 1.0, "std": 0.5}},
]


def test_augmented_trials_are_bit_identical_and_differ_from_plain_ones(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    ctx = TrialContext(tmp_path)
    spec = spec_of(cohort, seed=2, training={"augment": STRONG})
    a = run_trial(spec, cohort, ctx)
    b = run_trial(spec, cohort, ctx)
    assert a.predictions.equals(b.predictions)
    plain = run_trial(spec_of(cohort, seed=2), cohort, ctx)
    assert not a.predictions.column("probs").equals(plain.predictions.column("probs"))


@pytest.mark.parametrize("stage", ["refit", "search"])
def test_only_training_samples_are_ever_augmented(
    cohort: Cohort, spec_of: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stage: str
) -> None:
    seen: list[tuple[str, int]] = []
    real_call = Augmenter.__call__

    def recording(self: Augmenter, arrays: Any, sample_id: str, epoch: int) -> Any:
        seen.append((sample_id, epoch))
        return real_call(self, arrays, sample_id, epoch)

    monkeypatch.setattr(Augmenter, "__call__", recording)
    spec = spec_of(
        cohort,
        stage=stage,
        training={"augment": STRONG, "epochs": 2},
        evaluation={
            "perturbations": [
                {"id": "gamma(gamma=1.5)", "type": "gamma", "severity": 1.5, "params": {}}
            ]
        },
    )
    out = run_trial(spec, cohort, TrialContext(tmp_path))
    # every training sample once per epoch, and nothing else: validation and test (clean and
    # perturbed) samples are evaluated without augmentation
    assert sorted(seen) == sorted((s, e) for s in spec.train_ids for e in range(2))
    evaluated = set(out.predictions.column("sample_id").to_pylist())
    assert evaluated and evaluated.isdisjoint(spec.train_ids)


def test_class_balancing_changes_training_and_stays_deterministic(
    cohort: Cohort, spec_of: Any, tmp_path: Path
) -> None:
    ctx = TrialContext(tmp_path)
    task = {"type": "classification", "label": "grade"}  # 3 classes, unequal in the train fold
    balanced = {"class_weights": "balanced", "sampler": "balanced"}
    a = run_trial(spec_of(cohort, task=task, seed=1, training=balanced), cohort, ctx)
    b = run_trial(spec_of(cohort, task=task, seed=1, training=balanced), cohort, ctx)
    plain = run_trial(spec_of(cohort, task=task, seed=1), cohort, ctx)
    assert a.predictions.equals(b.predictions)
    assert not a.predictions.column("probs").equals(plain.predictions.column("probs"))
