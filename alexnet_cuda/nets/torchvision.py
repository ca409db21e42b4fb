"""torchvision's AlexNet (``torchvision.models.alexnet``) as a description: ``--arch torchvision-alexnet``.

torchvision's module (torchvision/models/alexnet.py, class AlexNet), one tower, no LRN::

    features   = Conv2d(3, 64, 11, stride=4, padding=2), ReLU, MaxPool2d(3, 2),         # features.0
                 Conv2d(64, 192, 5, padding=2), ReLU, MaxPool2d(3, 2),                   # features.3
                 Conv2d(192, 384, 3, padding=1), ReLU,                                   # features.6
                 Conv2d(384, 256, 3, padding=1), ReLU,                                   # features.8
                 Conv2d(256, 256, 3, padding=1), ReLU, MaxPool2d(3, 2)                   # features.10
    avgpool    = AdaptiveAvgPool2d((6, 6))
    classifier = Dropout(0.5), Linear(9216, 4096), ReLU,                                 # classifier.1
                 Dropout(0.5), Linear(4096, 4096), ReLU,                                 # classifier.4
                 Linear(4096, num_classes)                                               # classifier.6

Dropout comes before each hidden Linear (not after it, as in the paper's net), and the description keeps that order.
Each weighted layer's ``module`` is torchvision's module name, so the parameters are named ``features.0.tower0.weight``
... ``classifier.6.tower0.bias``: torchvision's state_dict keys with ``.tower0`` inserted (:func:`to_torchvision`,
:func:`from_torchvision`).

The adaptive average pooling to 6x6 is the identity on the 6x6 maps that a 224x224 input gives (224 -> 55 -> 27 -> 27
-> 13 -> 13 -> 6), so the description has no layer for it and takes 224x224 inputs only: any other size is refused
(:func:`torchvision_alexnet`), rather than silently computing something torchvision does not.

The initial weights (for training from scratch) have the variance of PyTorch's default initialization, which this
module uses (kaiming_uniform with a = sqrt(5): uniform in +-1/sqrt(fan_in), standard deviation 1/sqrt(3 fan_in));
the biases start at 0 (PyTorch draws them uniformly in the same range).

The preprocessing of torchvision's ImageNet weights (``AlexNet_Weights.IMAGENET1K_V1.transforms``, ImageClassification):
resize the shorter side to 256, centre crop 224, divide by 255, subtract the ImageNet mean and divide by its standard
deviation per channel. :func:`normalization` gives it as this project's mean and per-channel scale:
``(pixel - 255 mean) * 1 / (255 std)``.
"""

from __future__ import annotations

import math

import numpy as np

from .description import DescriptionError, Layer, NetDescription, layer_table

NAME = "torchvision-alexnet"
INPUT_SIZE = 224
RESIZE = 256  # the shorter side the images are resized to before the centre 224x224 crop
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_TOWER = ".tower0."

# (layer name, torchvision module, kind, settings)
_FEATURES = [
    ("conv1", "features.0", {"filters": 64, "size": 11, "stride": 4, "padding": 2}),
    ("conv2", "features.3", {"filters": 192, "size": 5, "padding": 2}),
    ("conv3", "features.6", {"filters": 384, "size": 3, "padding": 1}),
    ("conv4", "features.8", {"filters": 256, "size": 3, "padding": 1}),
    ("conv5", "features.10", {"filters": 256, "size": 3, "padding": 1}),
]
_POOL_AFTER = ("conv1", "conv2", "conv5")


def _default_std(fan_in: int) -> float:
    """The standard deviation of PyTorch's default weight initialization, uniform in +-1/sqrt(fan_in)."""
    return 1.0 / math.sqrt(3.0 * fan_in)


def torchvision_alexnet(num_classes: int = 1000, input_size: int = INPUT_SIZE, dropout: float = 0.5) -> NetDescription:
    """The description of ``torchvision.models.alexnet(num_classes=num_classes, dropout=dropout)``."""
    if input_size != INPUT_SIZE:
        raise DescriptionError(f"network description '{NAME}': takes {INPUT_SIZE}x{INPUT_SIZE} inputs only, got "
                               f"{input_size}x{input_size} (torchvision's adaptive average pooling to 6x6 is the "
                               f"identity only there, and this project does not build it for other sizes)")
    layers: list[Layer] = []
    channels = 3
    for name, module, s in _FEATURES:
        std = _default_std(channels * s["size"] ** 2)
        layers.append(Layer(name, "conv", {**s, "activation": "relu", "init_std": std, "init_bias": 0.0},
                            module=module))
        if name in _POOL_AFTER:
            layers.append(Layer("pool" + name[-1], "maxpool", {"size": 3, "stride": 2}))
        channels = s["filters"]
    inputs = channels * 6 * 6
    for n, (module, width) in zip((6, 7), (("classifier.1", 4096), ("classifier.4", 4096))):
        if dropout > 0:
            layers.append(Layer(f"dropout{n}", "dropout", {"p": dropout}))
        layers.append(Layer(f"fc{n}", "linear", {"outputs": width, "activation": "relu",
                                                 "init_std": _default_std(inputs), "init_bias": 0.0}, module=module))
        inputs = width
    layers.append(Layer("fc8", "linear", {"outputs": "classes", "activation": "none", "init_std": _default_std(inputs),
                                          "init_bias": 0.0}, module="classifier.6"))
    return NetDescription(NAME, layers, input_size=INPUT_SIZE, input_channels=3, towers=1, classes=int(num_classes))


def normalization() -> tuple[np.ndarray, np.ndarray]:
    """torchvision's ImageNet normalization as (mean, scale) for ``AlexNet.set_normalization``: the network sees
    ``(pixel - mean[c]) * scale[c]`` = ``(pixel / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]``."""
    mean = 255.0 * np.array(IMAGENET_MEAN, np.float64)
    scale = 1.0 / (255.0 * np.array(IMAGENET_STD, np.float64))
    return mean.astype(np.float32), scale.astype(np.float32)


def parameter_shapes(desc: NetDescription) -> dict[str, tuple[int, ...]]:
    """The shape of every parameter of a one-tower description of conv and linear layers, by this project's name
    (``<module>.tower0.weight``: conv (out, in, k, k), linear (out, in), biases (out,)), from its layer table."""
    if desc.towers != 1:
        raise DescriptionError(f"network description '{desc.name}': parameter_shapes covers one tower only")
    rows = {r["name"]: r for r in layer_table(desc)}
    shapes: dict[str, tuple[int, ...]] = {}
    for layer in desc.layers:
        if layer.kind not in ("conv", "linear"):
            if layer.kind in ("local", "batchnorm"):
                raise DescriptionError(f"network description '{desc.name}': layer '{layer.name}': parameter_shapes "
                                       f"covers conv and linear layers only")
            continue
        row, prefix = rows[layer.name], (layer.module or layer.name) + _TOWER
        out = int(row["output"][0])
        if layer.kind == "conv":
            k = int(layer.settings["size"])
            shapes[prefix + "weight"] = (out, int(row["input"][0]), k, k)
        else:
            shapes[prefix + "weight"] = (out, int(row["input"][0]))
        if str(layer.settings.get("bias", True)).lower() not in ("false", "0", "no"):
            shapes[prefix + "bias"] = (out,)
    return shapes


def torchvision_name(name: str) -> str:
    """This project's name of a one-tower parameter (``features.0.tower0.weight``) -> torchvision's
    (``features.0.weight``)."""
    if _TOWER not in name:
        raise ValueError(f"'{name}' is not a one-tower parameter name ('<module>.tower0.weight')")
    return name.replace(_TOWER, ".", 1)


def our_name(name: str) -> str:
    """torchvision's name (``features.0.weight``) -> this project's (``features.0.tower0.weight``)."""
    module, dot, field = name.rpartition(".")
    if not dot:
        raise ValueError(f"'{name}' is not a parameter name ('<module>.weight')")
    return f"{module}{_TOWER}{field}"


def to_torchvision(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {torchvision_name(name): a for name, a in params.items()}


def from_torchvision(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {our_name(name): a for name, a in state.items()}
