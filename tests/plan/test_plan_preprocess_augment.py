"""preprocess: and training.augment / class balancing in the compiled plan and the suite checks."""

from __future__ import annotations

import pytest
from plan_fixtures import cohort, make_suite

from raybench.plan import compile_suite
from raybench.suite import parse_suite
from raybench.suite.problems import SuiteValidationError

FLIP = {"type": "flip", "prob": 0.5, "axes": [0, 1]}


def _plan(**overrides: object):
    suite = make_suite(**overrides)
    return compile_suite(suite, {"synth": cohort()})


def test_suites_without_the_new_keys_keep_their_configs() -> None:
    plan = _plan()
    for t in plan.trials:
        assert "preprocess" not in t.config
        assert not {"augment", "class_weights", "sampler"} & set(t.config["training"])
        assert "augment" not in (t.params or {})


def test_augment_on_off_is_a_search_axis() -> None:
    base = _plan(training={"epochs": 1, "batch_size": 4, "lr": 1.0e-3})
    plan = _plan(training={"epochs": 1, "batch_size": 4, "lr": 1.0e-3, "augment": [[], [FLIP]]})
    small = [t for t in plan.trials if t.model == "small"]
    search = [t for t in small if t.stage == "search"]
    # "small" had one point: the augment axis alone makes it searched, two points per inner fold
    assert not [t for t in base.trials if t.model == "small" and t.stage == "search"]
    assert {len(t.config["training"]["augment"]) for t in search} == {0, 1}
    assert {tuple(a["type"] for a in t.params["augment"]) for t in search} == {(), ("flip",)}
    refit = next(t for t in small if t.stage == "refit")
    assert refit.params is None and len(refit.candidates) == 2
    # "res" searches dropout too: the axes multiply
    res_refit = next(t for t in plan.trials if t.model == "res" and t.stage == "refit")
    assert len(res_refit.candidates) == 4


def test_one_pipeline_is_a_setting_not_a_search() -> None:
    plan = _plan(
        models=[{"name": "small", "arch": "classifier"}],
        training={"epochs": 1, "batch_size": 4, "lr": 1.0e-3, "augment": [FLIP]},
        seeds=[0],
    )
    assert [t.stage for t in plan.trials] == ["refit"] * len(plan.trials)
    augment = plan.trials[0].config["training"]["augment"]
    assert augment == [{"type": "flip", "params": {"prob": 0.5, "axes": [0, 1]}}]
    assert plan.trials[0].settings.training.augment[0].type == "flip"


def test_dataset_preprocess_overrides_the_suite_key_by_key() -> None:
    datasets = [
        {
            "name": "synth",
            "source": "synthetic",
            "params": {"subjects": 24},
            "preprocess": {"crop_foreground": True, "orientation": "LPS"},
        }
    ]
    plan = _plan(datasets=datasets, preprocess={"spacing": 2.0, "spatial_size": [48, 56, 48]})
    pre = plan.trials[0].config["preprocess"]
    assert pre["spacing"] == [2.0, 2.0, 2.0] and pre["spatial_size"] == [48, 56, 48]
    assert pre["crop_foreground"] is True and pre["orientation"] == "LPS"
    assert pre["intensity"] == {"type": "zscore", "params": {"nonzero": True}}
    typed = plan.trials[0].settings.preprocess
    assert typed is not None and typed.spacing == (2.0, 2.0, 2.0)
    # the preprocessing is part of what a trial computes: another spacing, other ids
    other = _plan(datasets=datasets, preprocess={"spacing": 3.0, "spatial_size": [48, 56, 48]})
    assert {t.trial_id for t in plan.trials}.isdisjoint(t.trial_id for t in other.trials)


BASE = """\
name: s
datasets:
  - name: d
    source: synthetic
task: {type: TASK, label: LABEL}
models: [{name: m, arch: resnet10}]
"""


def _problems(text: str, task: str = "classification", label: str = "diagnosis") -> list[str]:
    source = BASE.replace("TASK", task).replace("LABEL", label) + text
    with pytest.raises(SuiteValidationError) as info:
        parse_suite(source, "suite.yaml")
    return [str(p) for p in info.value.problems]


def test_impossible_preprocessing_is_a_located_error() -> None:
    problems = _problems(
        "preprocess:\n"
        "  spacing: [1.0, -2.0, 1.0]\n"
        "  spatial_size: [96, 0, 96]\n"
        "  orientation: RAR\n"
        "  intensity: {type: percentile, lower: 99.5, upper: 0.5}\n"
    )
    text = "\n".join(problems)
    assert "suite.yaml:8:" in text and "preprocess.spacing" in text and "found -2.0" in text
    assert "suite.yaml:9:" in text and "preprocess.spatial_size[1]" in text
    assert "suite.yaml:10:" in text and "'RAR'" in text and "did you mean" in text
    assert "suite.yaml:11:" in text and "lower=99.5 must be below upper=0.5" in text


def test_bad_augmentation_and_balancing_are_located() -> None:
    problems = _problems(
        "training:\n"
        "  augment: [[], [{type: gamma, gamma: [2.0, 0.5]}], [{type: flip, axes: [3]}]]\n"
        "  class_weights: balanced\n",
        task="regression",
        label="age",
    )
    text = "\n".join(problems)
    assert "training.augment[1][0].gamma: gamma=[2.0, 0.5] must go from low to high" in text
    assert "training.augment[2][0].axes[0]: out of range" in text
    assert "training.class_weights: class_weights balances classes" in text
    problems = _problems("training:\n  sampler: balanced\n", task="regression", label="age")
    assert problems == [
        "suite.yaml:8:3: training.sampler: sampler balances classes, and task.type is "
        "regression; remove it"
    ]


def test_an_augment_search_needs_an_inner_protocol() -> None:
    problems = _problems("training:\n  augment: [[], [{type: flip}]]\nvalidation: {inner: null}\n")
    assert any("validation.inner" in p and "2 points" in p for p in problems)
