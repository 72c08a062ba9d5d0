"""The ``models[].params`` each built-in network accepts, known without importing MONAI.

``raybench validate`` checks a model's ``params`` against these names so that a typo
(``widen: 2``) is a located error at validation time instead of a failure of every trial at run
time. The names are those of the MONAI constructor's signature that
:func:`raybench.training.models.build_network` passes through, plus the portable ``dropout``;
``tests/training/test_models.py`` derives them from the installed MONAI and compares, so this table
cannot drift from the code that builds the networks. Plugins are not checked here (their module is
imported only when a trial runs).
"""

from __future__ import annotations

from typing import Final

__all__ = ["DROPOUT_PARAMS", "NETWORK_PARAMS", "REFUSED_PARAMS", "SET_BY_RAYBENCH"]

_DENSENET = frozenset({"block_config", "dropout", "growth_rate", "init_features"})
_RESNET = frozenset(
    {
        "act",
        "bias_downsample",
        "conv1_t_size",
        "conv1_t_stride",
        "dropout",
        "no_max_pool",
        "norm",
        "shortcut_type",
        "widen_factor",
    }
)

#: Architecture -> the ``params`` keys its network accepts.
NETWORK_PARAMS: Final[dict[str, frozenset[str]]] = {
    "densenet121": _DENSENET,
    "densenet169": _DENSENET,
    "densenet201": _DENSENET,
    "resnet10": _RESNET,
    "resnet18": _RESNET,
    "resnet34": _RESNET,
    "resnet50": _RESNET,
    "seresnet50": frozenset(
        {
            "downsample_kernel_size",
            "dropout",
            "dropout_dim",
            "dropout_prob",
            "groups",
            "inplanes",
            "input_3x3",
            "layers",
            "reduction",
        }
    ),
    "classifier": frozenset(
        {
            "act",
            "bias",
            "channels",
            "dropout",
            "kernel_size",
            "last_act",
            "norm",
            "num_res_units",
            "strides",
        }
    ),
    "regressor": frozenset(
        {"act", "bias", "channels", "dropout", "kernel_size", "norm", "num_res_units", "strides"}
    ),
    "unet": frozenset(
        {
            "act",
            "adn_ordering",
            "bias",
            "channels",
            "dropout",
            "kernel_size",
            "norm",
            "num_res_units",
            "strides",
            "up_kernel_size",
        }
    ),
    "basicunet": frozenset({"act", "bias", "dropout", "features", "norm", "upsample"}),
    "segresnet": frozenset(
        {
            "act",
            "blocks_down",
            "blocks_up",
            "dropout",
            "dropout_prob",
            "init_filters",
            "norm",
            "norm_name",
            "num_groups",
            "upsample_mode",
            "use_conv_final",
        }
    ),
}

_DENSE_IO = frozenset({"spatial_dims", "in_channels", "out_channels"})
_RESNET_IO = frozenset({"spatial_dims", "n_input_channels", "num_classes"})

#: Architecture -> constructor arguments raybench derives from the task and the data.
SET_BY_RAYBENCH: Final[dict[str, frozenset[str]]] = {
    **dict.fromkeys(("densenet121", "densenet169", "densenet201"), _DENSE_IO),
    **dict.fromkeys(("resnet10", "resnet18", "resnet34", "resnet50"), _RESNET_IO),
    "seresnet50": frozenset({"spatial_dims", "in_channels", "num_classes"}),
    "classifier": frozenset({"in_shape", "classes"}),
    "regressor": frozenset({"in_shape", "out_shape"}),
    **dict.fromkeys(("unet", "basicunet", "segresnet"), _DENSE_IO),
}

#: Arguments raybench refuses, with the reason: pretrained weights are downloaded at run time (not
#: reproducible, and cluster nodes are often offline).
REFUSED_PARAMS: Final[dict[str, str]] = {
    "pretrained": "pretrained weights are downloaded at run time and break reproducibility"
}

#: ``params`` keys that give a built-in network a dropout layer when their value is above 0 (the
#: portable ``dropout``, or the constructor's own ``dropout_prob``). No built-in network has one by
#: default, so MC dropout (``evaluation.uncertainty.mc_dropout``) needs one of them.
DROPOUT_PARAMS: Final[tuple[str, ...]] = ("dropout", "dropout_prob")
