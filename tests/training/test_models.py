"""build_network: every known architecture, task fit, clear errors, plugins only when used."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from raybench_analysis.vocabulary import ARCHITECTURE_KINDS, ARCHITECTURES

from raybench.errors import SuiteError
from raybench.suite.networks import NETWORK_PARAMS, SET_BY_RAYBENCH
from raybench.training.models import (
    _ARCHS,
    accepted_params,
    build_network,
    check_forward,
    set_by_raybench,
)

SEGMENTATION_ARCHITECTURES = tuple(a for a, k in ARCHITECTURE_KINDS.items() if k == "dense")

SMALL = {
    "resnet10": {"widen_factor": 0.125},
    "resnet18": {"widen_factor": 0.125},
    "resnet34": {"widen_factor": 0.125},
    "resnet50": {"widen_factor": 0.125},
    "classifier": {"channels": [4, 8], "strides": [2, 2]},
    "regressor": {"channels": [4, 8], "strides": [2, 2]},
    "unet": {"channels": [4, 8, 16], "strides": [2, 2]},
    "basicunet": {"features": [4, 4, 8, 8, 16, 4]},
    "segresnet": {"init_filters": 4, "num_groups": 2, "norm": ["group", {"num_groups": 2}]},
    # the deep ones with one block per stage: the test checks the wiring, not the depth
    "densenet121": {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]},
    "densenet169": {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]},
    "densenet201": {"init_features": 8, "growth_rate": 4, "block_config": [1, 1, 1, 1]},
    "seresnet50": {"inplanes": 8, "reduction": 4, "layers": [1, 1, 1, 1]},
}


def test_registry_matches_the_vocabulary() -> None:
    assert tuple(_ARCHS) == ARCHITECTURES


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_validation_table_of_network_arguments_matches_the_monai_signatures(arch: str) -> None:
    """raybench.suite.networks (read by `validate`, no MONAI import) agrees with the live code."""
    assert NETWORK_PARAMS[arch] == accepted_params(arch)
    assert SET_BY_RAYBENCH[arch] == set_by_raybench(arch)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_every_architecture_builds_and_has_the_task_output(arch: str) -> None:
    seg = arch in SEGMENTATION_ARCHITECTURES
    task = "segmentation" if seg else "classification"
    size = 32 if arch.startswith(("densenet", "seresnet", "basicunet")) else 16
    shape = (size,) * 3
    model = build_network(arch, SMALL[arch], task, 3, spatial_size=shape)
    check_forward(model, arch, (1, *shape), 3)  # raises unless dim 1 of the output is 3
    if seg:
        model.eval()
        with torch.no_grad():
            out = model(torch.zeros(1, 1, *shape))
        assert tuple(out.shape) == (1, 3, *shape)


def test_regression_has_one_output_and_dropout_is_portable() -> None:
    model = build_network("resnet10", {"widen_factor": 0.125, "dropout": 0.3}, "regression", 0)
    assert isinstance(model.fc, torch.nn.Sequential)
    assert isinstance(model.fc[0], torch.nn.Dropout) and model.fc[0].p == 0.3
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 16, 16, 16)).shape == (1, 1)


@pytest.mark.parametrize(
    ("arch", "params", "task", "fragment"),
    [
        ("resnet10", {"widen": 2}, "classification", "has no argument params.widen"),
        ("unet", {}, "classification", "does not fit task.type='classification'"),
        ("resnet10", {}, "segmentation", "does not fit task.type='segmentation'"),
        ("densenet121", {"pretrained": True}, "classification", "params.pretrained"),
        (
            "classifier",
            {"in_shape": [1, 2]},
            "classification",
            "params.in_shape is set by raybench",
        ),
        ("classifier", {"channels": "x"}, "classification", "cannot be built"),
        ("vgg16", {}, "classification", "arch='vgg16' is unknown"),
    ],
)
def test_bad_input_names_the_arch_and_the_argument(
    arch: str, params: dict, task: str, fragment: str
) -> None:
    with pytest.raises(SuiteError, match=r"arch=|plugin") as info:
        build_network(arch, params, task, 2, spatial_size=(16, 16, 16))
    assert fragment in str(info.value)


def test_too_small_input_is_a_clear_error() -> None:
    model = build_network("basicunet", {}, "segmentation", 2)
    with pytest.raises(SuiteError, match="cannot process inputs of shape"):
        check_forward(model, "basicunet", (1, 16, 16, 16), 2)


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "rb_plugin_used.py").write_text(
        textwrap.dedent(
            """
            import torch
            def make(in_channels, out_channels, spatial_size, width=4):
                n = in_channels
                for s in spatial_size:
                    n *= s
                return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(n, out_channels))
            """
        )
    )
    (tmp_path / "rb_plugin_unused.py").write_text("raise RuntimeError('must not be imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("rb_plugin_used", "rb_plugin_unused"):
        sys.modules.pop(name, None)
    return tmp_path


def test_plugin_is_imported_only_when_named(plugin_dir: Path) -> None:
    plugins = {"mine": "rb_plugin_used:make", "other": "rb_plugin_unused:make"}
    model = build_network(
        "classifier",
        SMALL["classifier"],
        "classification",
        2,
        spatial_size=(16, 16, 16),
        plugins=plugins,
    )
    assert "rb_plugin_used" not in sys.modules and "rb_plugin_unused" not in sys.modules
    model = build_network(
        "mine", {"width": 8}, "classification", 2, spatial_size=(16, 16, 16), plugins=plugins
    )
    assert "rb_plugin_used" in sys.modules and "rb_plugin_unused" not in sys.modules
    assert model(torch.zeros(2, 1, 16, 16, 16)).shape == (2, 2)
    with pytest.raises(SuiteError, match=r"plugin 'mine'.*params.depth"):
        build_network(
            "mine", {"depth": 8}, "classification", 2, spatial_size=(16, 16, 16), plugins=plugins
        )


def test_broken_plugin_targets(plugin_dir: Path) -> None:
    with pytest.raises(SuiteError, match="not of the form"):
        build_network("p", {}, "classification", 2, plugins={"p": "no_colon"})
    with pytest.raises(SuiteError, match="cannot import module 'rb_missing_mod'"):
        build_network("p", {}, "classification", 2, plugins={"p": "rb_missing_mod:f"})
    with pytest.raises(SuiteError, match="has no attribute 'nope'"):
        build_network("p", {}, "classification", 2, plugins={"p": "rb_plugin_used:nope"})
