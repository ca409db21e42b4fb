"""The paper's network and ``alexnet-small``, with every variant option, as descriptions.

The same options as :class:`alexnet_cuda.AlexNet` (and the ``train`` flags): each variant is an edit of the paper's
description, and :class:`alexnet_cuda.AlexNet` builds the C++ network from it (``tests/network/test_summary.py``
checks that every parameter the network creates has the shape the layer table gives).
"""

from __future__ import annotations

from typing import Any

from .description import Layer, NetDescription

CONV = ["conv1", "conv2", "conv3", "conv4", "conv5"]
POOL_AFTER = (True, True, False, False, True)   # Section 3.4: after conv1, conv2 and conv5
LRN_AFTER = (True, True, False, False, False)   # Section 3.3: after conv1 and conv2
SEES_ALL = (False, False, True, False, False)   # conv3 reads both towers' maps (Figure 2)
BIAS_ONE = (False, True, False, True, True)     # Section 5: conv2, conv4, conv5 and the hidden fc layers start at 1
# Parameter names follow torchvision's AlexNet (features.<i> / classifier.<i> at the positions of its conv and linear
# modules; the tower is added: "features.0.tower1.weight" is conv1's weight on tower 1). A conv's BatchNorm takes the
# position of the ReLU after the conv (features.1 after features.0, ...), so the names are the same in every variant.
CONV_MODULES = ("features.0", "features.3", "features.6", "features.8", "features.10")
BN_MODULES = ("features.1", "features.4", "features.7", "features.9", "features.11")


def fc_module(k: int, hidden: int) -> str:
    """torchvision's module of fc layer k (Dropout, Linear, ReLU per hidden layer, then the output Linear)."""
    return f"classifier.{3 * k + 1 if k < hidden else 3 * hidden}"

GEOMETRY = {  # kernels, strides, paddings, channels, hidden fc widths
    "alexnet": ([11, 5, 3, 3, 3], [4, 1, 1, 1, 1], [0, 2, 1, 1, 1], [96, 256, 384, 384, 256], [4096, 4096]),
    # 32x32 (CIFAR-10) or 64x64 (Tiny ImageNet, conv1 stride 2): both reach 32x32 maps; narrower fc layers
    "alexnet-small": ([5, 5, 3, 3, 3], [1, 1, 1, 1, 1], [2, 2, 1, 1, 1], [96, 256, 384, 384, 256], [1024, 1024]),
}


def alexnet(arch: str = "alexnet", input_size: int | None = None, num_classes: int = 1000, *, towers: int = 2,
            norm: str = "lrn", bn_position: str = "before_pool", overlapping_pool: bool = True,
            activation: str = "relu", dropout: float = 0.5, conv_channels: list[int] | None = None,
            head: Any = None, weight_std: float = 0.01, bias_init: float = 1.0) -> NetDescription:
    """The description of ``AlexNet(num_classes, arch=arch, ...)`` (options already checked, as the model checks
    them); ``head``: None (the arch's), a list of hidden fc widths, or 'gap'."""
    kernels, strides, pads, channels, fc = (list(x) for x in GEOMETRY[arch])
    input_size = input_size or (227 if arch == "alexnet" else 32)
    if arch == "alexnet-small" and input_size == 64:
        strides[0] = 2
    if towers == 1:  # the footnote's one-GPU net: half the kernels of conv1-conv4, conv5 and the fc layers kept
        channels = [c // 2 for c in channels[:4]] + channels[4:]
    if conv_channels is not None:
        channels = list(conv_channels)
    if head == "gap":
        fc = []
    elif head is not None:
        fc = list(head)
    pool = {"size": 3, "stride": 2} if overlapping_pool else {"size": 2, "stride": 2}
    layers: list[Layer] = []
    for i, name in enumerate(CONV):
        n = str(i + 1)
        bn_here = norm == "batchnorm" and not (POOL_AFTER[i] and bn_position == "after_pool")
        layers.append(Layer(name, "conv", {
            "filters": channels[i], "size": kernels[i], "stride": strides[i], "padding": pads[i],
            "activation": "none" if bn_here else activation, "bias": not bn_here, "init_std": weight_std,
            "init_bias": bias_init if BIAS_ONE[i] else 0.0}, sees="all" if SEES_ALL[i] else "own",
            module=CONV_MODULES[i]))
        if bn_here:
            layers.append(Layer("bn" + n, "batchnorm", {"activation": activation}, module=BN_MODULES[i]))
        if LRN_AFTER[i] and norm == "lrn":
            layers.append(Layer("lrn" + n, "lrn", {"size": 5, "alpha": 1e-4, "beta": 0.75, "k": 2.0}))
        if POOL_AFTER[i]:
            layers.append(Layer("pool" + n, "maxpool", dict(pool)))
            if norm == "batchnorm" and bn_position == "after_pool":
                layers.append(Layer("bn" + n, "batchnorm", {}, module=BN_MODULES[i]))
    if head == "gap":
        layers.append(Layer("gap", "global_avgpool"))
    for k, width in enumerate(fc):
        n = str(6 + k)
        layers.append(Layer("fc" + n, "linear", {"outputs": width, "activation": activation, "init_std": weight_std,
                                                 "init_bias": bias_init}, module=fc_module(k, len(fc))))
        if dropout > 0:
            layers.append(Layer("dropout" + n, "dropout", {"p": dropout}))
    layers.append(Layer(f"fc{6 + len(fc)}", "linear", {"outputs": "classes", "activation": "none",
                                                       "init_std": weight_std}, module=fc_module(len(fc), len(fc))))
    return NetDescription(arch, layers, input_size=input_size, input_channels=3, towers=towers, classes=num_classes)
