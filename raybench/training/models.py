"""Networks by name: MONAI architectures and the suite's explicit plugins.

:func:`build_network` turns a model entry of a trial config (``arch`` + ``params``) into a
``torch.nn.Module`` whose output fits the task: ``n_classes`` logits for classification, one value
for regression, ``n_classes`` channels of voxel logits for segmentation. MONAI's networks are used
as they are; raybench only fills the arguments that depend on the task and the data (spatial
dimensions, input channels, output size, input shape) and checks the user's ``params`` against the
constructor's signature so that a typo is an error naming the architecture and the argument.

A *plugin* is a user network named in the suite's ``plugins:`` mapping
(``name: "module:callable"``). Its module is imported only when a trial's model uses it, never at
start-up.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from monai.networks import nets
from raybench_analysis.vocabulary import ARCHITECTURE_KINDS, ARCHITECTURES, TASK_TYPES
from torch import nn

from raybench.errors import SuiteError
from raybench.suite.networks import REFUSED_PARAMS

__all__ = ["accepted_params", "build_network", "load_plugin", "set_by_raybench"]


@dataclass(frozen=True)
class _Arch:
    """How to call one MONAI constructor.

    ``fixed`` maps the constructor's own argument names to values raybench derives from the task
    and the data (the kind of output, global or dense, is ``ARCHITECTURE_KINDS`` of the
    vocabulary); ``defaults`` are raybench's defaults for arguments MONAI requires but does not
    default (overridable by ``params``); ``dropout`` is the constructor's name for dropout, so that
    the portable ``params: {dropout: p}`` works for every architecture.
    """

    factory: Callable[..., nn.Module]
    fixed: Callable[[int, int, int, tuple[int, ...] | None], dict[str, Any]]
    defaults: Mapping[str, Any] = ()  # type: ignore[assignment]
    dropout: str | None = None
    signature_of: tuple[Callable[..., Any], ...] = ()
    internal: frozenset[str] = frozenset({"progress"})


def _dense(sd: int, cin: int, cout: int, shape: tuple[int, ...] | None) -> dict[str, Any]:
    return {"spatial_dims": sd, "in_channels": cin, "out_channels": cout}


def _resnet(sd: int, cin: int, cout: int, shape: tuple[int, ...] | None) -> dict[str, Any]:
    return {"spatial_dims": sd, "n_input_channels": cin, "num_classes": cout}


def _senet(sd: int, cin: int, cout: int, shape: tuple[int, ...] | None) -> dict[str, Any]:
    return {"spatial_dims": sd, "in_channels": cin, "num_classes": cout}


def _need_shape(shape: tuple[int, ...] | None, arch: str) -> tuple[int, ...]:
    if shape is None:
        raise SuiteError(
            f"model arch={arch!r} needs the input shape: "
            "pass spatial_size=(X, Y, Z) to build_network"
        )
    return shape


def _classifier(sd: int, cin: int, cout: int, shape: tuple[int, ...] | None) -> dict[str, Any]:
    return {"in_shape": (cin, *_need_shape(shape, "classifier")), "classes": cout}


def _regressor(sd: int, cin: int, cout: int, shape: tuple[int, ...] | None) -> dict[str, Any]:
    return {"in_shape": (cin, *_need_shape(shape, "regressor")), "out_shape": (cout,)}


_SMALL_CNN = {"channels": (8, 16, 32), "strides": (2, 2, 2)}

#: Arguments of MONAI's ResNet that the depth name fixes (``resnet18`` *is* its block and layers).
_RESNET_INTERNAL = frozenset({"progress", "block", "layers", "block_inplanes", "feed_forward"})

_ARCHS: dict[str, _Arch] = {
    "densenet121": _Arch(nets.DenseNet121, _dense, dropout="dropout_prob"),
    "densenet169": _Arch(nets.DenseNet169, _dense, dropout="dropout_prob"),
    "densenet201": _Arch(nets.DenseNet201, _dense, dropout="dropout_prob"),
    "resnet10": _Arch(
        nets.resnet10, _resnet, signature_of=(nets.ResNet,), internal=_RESNET_INTERNAL
    ),
    "resnet18": _Arch(
        nets.resnet18, _resnet, signature_of=(nets.ResNet,), internal=_RESNET_INTERNAL
    ),
    "resnet34": _Arch(
        nets.resnet34, _resnet, signature_of=(nets.ResNet,), internal=_RESNET_INTERNAL
    ),
    "resnet50": _Arch(
        nets.resnet50, _resnet, signature_of=(nets.ResNet,), internal=_RESNET_INTERNAL
    ),
    "seresnet50": _Arch(
        nets.SEResNet50,
        _senet,
        dropout="dropout_prob",
        signature_of=(nets.SEResNet50, nets.SENet),
        internal=frozenset({"progress", "block"}),
    ),
    "classifier": _Arch(nets.Classifier, _classifier, _SMALL_CNN, dropout="dropout"),
    "regressor": _Arch(nets.Regressor, _regressor, _SMALL_CNN, dropout="dropout"),
    "unet": _Arch(
        nets.UNet,
        _dense,
        {"channels": (16, 32, 64, 128), "strides": (2, 2, 2), "num_res_units": 1},
        dropout="dropout",
    ),
    "basicunet": _Arch(nets.BasicUNet, _dense, dropout="dropout"),
    "segresnet": _Arch(nets.SegResNet, _dense, dropout="dropout_prob"),
}


def _out_size(task_type: str, n_classes: int) -> int:
    if task_type not in TASK_TYPES:
        raise SuiteError(f"task.type={task_type!r} is not one of {list(TASK_TYPES)}")
    if task_type == "regression":
        return 1
    if n_classes < 2:
        raise SuiteError(
            f"task.type={task_type!r} needs at least 2 classes, found n_classes={n_classes}; "
            "check task.classes and the label column of the dataset"
        )
    return n_classes


def _accepted(func: Callable[..., Any]) -> tuple[set[str], bool]:
    sig = inspect.signature(func)
    names = {p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL,)}
    has_var_kw = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    return {n for n in names if n not in ("kwargs", "self")}, has_var_kw


def _construct(arch: str, factory: Callable[..., nn.Module], kwargs: dict[str, Any]) -> nn.Module:
    try:
        model = factory(**kwargs)
    except (TypeError, ValueError, AssertionError, RuntimeError, IndexError, KeyError) as exc:
        shown = {k: v for k, v in kwargs.items()}
        raise SuiteError(
            f"model arch={arch!r}: the network cannot be built with arguments {shown}: {exc}. "
            "Fix models[].params in the suite (see docs/models.md)."
        ) from exc
    if not isinstance(model, nn.Module):
        raise SuiteError(
            f"model arch={arch!r}: the factory returned {type(model).__name__}, "
            "not a torch.nn.Module"
        )
    return model


def _add_dropout_before_fc(model: nn.Module, p: float, arch: str) -> nn.Module:
    fc = getattr(model, "fc", None)
    if not isinstance(fc, nn.Module):
        raise SuiteError(f"model arch={arch!r} does not support params.dropout")
    model.fc = nn.Sequential(nn.Dropout(p), fc)
    return model


def build_network(
    arch: str,
    params: Mapping[str, Any] | None,
    task_type: str,
    n_classes: int,
    in_channels: int = 1,
    spatial_dims: int = 3,
    *,
    spatial_size: Sequence[int] | None = None,
    plugins: Mapping[str, str] | None = None,
) -> nn.Module:
    """Build the network of one trial.

    Parameters
    ----------
    arch:
        A name of the vocabulary's ``ARCHITECTURES`` or a key of ``plugins``.
    params:
        The model's ``params`` from the suite (scalars; the search point already applied). They are
        passed to the MONAI constructor as keyword arguments; ``dropout`` is portable across all
        architectures (mapped to the constructor's own name).
    task_type:
        ``classification``, ``regression`` or ``segmentation``: decides the output size.
    n_classes:
        Number of classes (classification) or of label values including background
        (segmentation, 2 for a binary mask). Ignored for regression.
    spatial_size:
        Shape of one input volume without channels; required by ``classifier`` and ``regressor``
        (MONAI's ``in_shape``) and passed to plugins that accept it.
    plugins:
        The trial's ``config["plugins"]`` mapping ``name -> "module:callable"``.

    Raises
    ------
    SuiteError
        Unknown architecture, an architecture that does not fit the task, an unknown or invalid
        argument (the message names the architecture and the argument), or a broken plugin.
    """
    params = dict(params or {})
    out = _out_size(task_type, n_classes)
    shape = tuple(int(s) for s in spatial_size) if spatial_size is not None else None
    plugins = plugins or {}
    if arch in plugins:
        return _build_plugin(
            arch, plugins[arch], params, task_type, out, in_channels, spatial_dims, shape
        )
    _check_arch(arch, task_type, plugins)
    spec = _ARCHS[arch]
    fixed = spec.fixed(spatial_dims, in_channels, out, shape)
    _check_params(arch, params, fixed)
    portable_dropout = params.pop("dropout", None) if spec.dropout != "dropout" else None
    kwargs = {**dict(spec.defaults), **params, **fixed}
    if portable_dropout is not None and spec.dropout is not None:
        kwargs[spec.dropout] = portable_dropout
    model = _construct(arch, spec.factory, kwargs)
    if portable_dropout is not None and spec.dropout is None:
        model = _add_dropout_before_fc(model, float(portable_dropout), arch)
    return model


def _check_arch(arch: str, task_type: str, plugins: Mapping[str, str]) -> None:
    """``arch`` is a built-in architecture whose kind of output fits the task."""
    if arch not in _ARCHS:
        hint = f"; plugins of this trial: {sorted(plugins)}" if plugins else ""
        raise SuiteError(
            f"model arch={arch!r} is unknown. Allowed: {', '.join(ARCHITECTURES)}, or a name "
            f"declared under 'plugins:' in the suite{hint}"
        )
    kind = "dense" if task_type == "segmentation" else "global"
    if ARCHITECTURE_KINDS[arch] != kind:
        allowed = [a for a, k in ARCHITECTURE_KINDS.items() if k == kind]
        raise SuiteError(
            f"model arch={arch!r} does not fit task.type={task_type!r}: use one of {allowed} "
            "or a plugin"
        )


def _check_params(arch: str, params: Mapping[str, Any], fixed: Mapping[str, Any]) -> None:
    """Every key of ``params`` is an argument the user may set (see :func:`accepted_params`)."""
    for key, why in REFUSED_PARAMS.items():
        if params.get(key):
            raise SuiteError(f"model arch={arch!r}: params.{key} is not supported ({why})")
    accepted = accepted_params(arch)
    for key in params:
        if key in fixed:
            raise SuiteError(
                f"model arch={arch!r}: params.{key} is set by raybench from the task and data "
                f"(value {fixed[key]!r}); remove it from models[].params"
            )
        if key not in accepted:
            raise SuiteError(
                f"model arch={arch!r} has no argument params.{key}. Allowed: "
                f"{sorted(accepted)}. See docs/models.md."
            )


def set_by_raybench(arch: str) -> frozenset[str]:
    """Constructor arguments of ``arch`` that raybench derives from the task and the data."""
    return frozenset(_ARCHS[arch].fixed(3, 1, 2, (8, 8, 8)))  # the names do not depend on sizes


def accepted_params(arch: str) -> frozenset[str]:
    """The ``params`` keys a suite may give built-in ``arch``, read from the MONAI signature.

    The constructor's arguments, less those raybench sets (:func:`set_by_raybench`), fixes by the
    architecture's name (a ResNet's depth) or refuses (``pretrained``), plus the portable
    ``dropout``. :data:`raybench.suite.networks.NETWORK_PARAMS` holds the same names for
    validation without importing MONAI (a test compares them).
    """
    spec = _ARCHS[arch]
    accepted: set[str] = set()
    for func in spec.signature_of or (spec.factory,):
        accepted |= _accepted(func)[0]
    accepted -= spec.internal | set_by_raybench(arch) | set(REFUSED_PARAMS)
    return frozenset(accepted | {"dropout"})


def load_plugin(name: str, target: str) -> Callable[..., nn.Module]:
    """Import the callable ``module:callable`` of plugin ``name`` (called only when it is used)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise SuiteError(f"plugins.{name}={target!r} is not of the form 'package.module:callable'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SuiteError(
            f"plugins.{name}: cannot import module {module_name!r} ({exc}). Make it importable on "
            "every node (install it, or put its folder on PYTHONPATH)."
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise SuiteError(f"plugins.{name}: module {module_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise SuiteError(f"plugins.{name}: {target!r} is not callable")
    return obj


def _build_plugin(
    name: str,
    target: str,
    params: dict[str, Any],
    task_type: str,
    out: int,
    in_channels: int,
    spatial_dims: int,
    shape: tuple[int, ...] | None,
) -> nn.Module:
    """Call a plugin with ``params`` plus the task arguments its signature accepts.

    Offered arguments: ``spatial_dims``, ``in_channels``, ``out_channels`` (the output size raybench
    expects), ``task_type`` and ``spatial_size``.
    """
    factory = load_plugin(name, target)
    accepted, var_kw = _accepted(factory)
    offered = {
        "spatial_dims": spatial_dims,
        "in_channels": in_channels,
        "out_channels": out,
        "task_type": task_type,
        "spatial_size": shape,
    }
    kwargs = {k: v for k, v in offered.items() if var_kw or k in accepted}
    for key in params:
        if key in offered:
            raise SuiteError(f"plugin {name!r}: params.{key} is set by raybench; remove it")
        if not var_kw and key not in accepted:
            raise SuiteError(
                f"plugin {name!r} ({target}) has no argument params.{key}. "
                f"Allowed: {sorted(accepted - set(offered))}"
            )
    return _construct(name, factory, {**kwargs, **params})


def check_forward(model: nn.Module, arch: str, input_shape: Sequence[int], out: int) -> None:
    """Run one forward pass on zeros so that a too-small input fails early with a clear message.

    ``input_shape`` is ``(channels, *spatial)``; ``out`` the expected size of dimension 1 of the
    output. Called once per trial before training, outside any autograd graph.
    """
    import torch

    was_training = model.training
    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()  # train mode: norm layers check their input sizes only when training
    try:
        with torch.no_grad():
            x = torch.zeros((2, *input_shape), device=next(model.parameters()).device)
            y = model(x)
    except (RuntimeError, ValueError) as exc:
        raise SuiteError(
            f"model arch={arch!r} cannot process inputs of shape {tuple(input_shape)} "
            f"(channels, *spatial): {exc}. Use larger volumes, fewer down-sampling stages "
            "(params.strides/channels) or another architecture."
        ) from exc
    finally:
        model.load_state_dict(saved)  # undo running-statistics updates of norm layers
        model.train(was_training)
    if y.ndim < 2 or y.shape[1] != out:
        raise SuiteError(
            f"model arch={arch!r} returned an output of shape {tuple(y.shape)}; raybench expects "
            f"{out} values in dimension 1 (batch, {out}, ...). Fix the plugin or its params."
        )
