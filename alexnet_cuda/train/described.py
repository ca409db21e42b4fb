"""Training a described network (issue 19): ``--net FILE`` (the project's format, docs/network_format.md),
``--net layers-X.cfg --net-params layer-params-X.cfg`` (cuda-convnet's files, docs/cuda_convnet.md), or ``--arch NAME``
for a built-in description (``nets/builtin.py``: the authors' CIFAR-10 networks).

:func:`resolve_described` reads the description once, when the run starts, and keeps its text in
``TrainConfig.description``: checkpoints record it, so ``--resume``, ``evaluate``, ``predict`` and ``report`` rebuild
the network without the file. It then fills in the settings that come from the description rather than from an
arch's recipe (``RECIPES`` in config.py), each documented in docs/training.md ("Training a described network"):

- the network's input side and towers are the description's; the images are stored at the data's own side (32 for
  CIFAR-10 and the synthetic set, 64 for Tiny ImageNet, a folder's typical side when at most 96; the paper's ratio
  256/227 of the input side for folders of large images), and crops of the input side are taken from them: random
  ones when training, the centre one to validate (conv-local nets: 24x24 of 32x32, as cuda-convnet's). A description
  whose input is larger than the data's images is refused unless --image-size says to upscale them.
- learning: a layer's ``lr_weight`` / ``lr_bias`` multiply the step's learning rate (``AlexNet.from_description``
  applies them with ``set_learning``), so ``--lr`` is a global multiplier: 1.0 by default when every weight layer
  sets both (the file's rates are then the run's rates, as in cuda-convnet), else 0.01 (0.001 for Adam).
  ``--momentum`` / ``--weight-decay`` apply to the layers that do not set their own and are refused when every
  weight layer sets its own (they would change nothing).
- inputs: the training set's mean image subtracted, pixels on the 0-255 scale (``--input-scale`` 1), the paper's and
  cuda-convnet's convention; cuda-convnet's networks train without the paper's PCA colour noise by default
  (``--pca-std 0``: its CIFAR-10 data providers have none).
- batch 128 (the paper's and cuda-convnet's CIFAR-10 runs).

The AlexNet variant flags edit the paper's description and mean nothing for another one: given with a description
they are refused, except ``--activation``, which replaces every relu/tanh activation of the description (Figure 1:
relu against tanh on conv-local-13pct).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ..cli import ConfigError
from ..nets.builtin import BUILTIN_FILES, convnet_files
from ..nets.description import WEIGHTED_KINDS, DescriptionError, NetDescription, layer_table, resolved_settings
from ..nets.file_format import format_net, parse_net, read_net
from ..nets.from_convnet import read_convnet
from ..network_options import ADAM_DEFAULT_LR

BUILTIN_ARCHS = tuple(BUILTIN_FILES)
DESCRIBED_BATCH_SIZE = 128
DEFAULT_LR = 0.01           # a description without its own rates: the paper's learning rate (Section 5)
DEFAULT_MOMENTUM = 0.9      # for the layers without their own momentum (the paper's)
DEFAULT_WEIGHT_DECAY = 5e-4
# The images' own side per dataset (a folder's is detected); the synthetic set is drawn at CIFAR-10's size.
NATIVE_SIDE = {"cifar10": 32, "synthetic": 32, "tinyimagenet": 64}
# The AlexNet variant flags (TrainConfig field -> flag): refused with a description when not at their defaults.
VARIANT_FLAGS = {"lrn": "--no-lrn", "overlapping_pool": "--no-overlap-pool", "towers": "--towers",
                 "dropout": "--dropout", "norm": "--norm", "bn_position": "--bn-position", "head": "--head",
                 "weight_std": "--weight-std", "bias_init": "--bias-init", "widths": "widths"}


def is_described(c: Any) -> bool:
    """Whether the run trains a description (rather than AlexNet's constructor with the variant flags)."""
    return (c.description is not None or c.net is not None or c.net_params is not None
            or c.arch in BUILTIN_ARCHS)


def is_convnet(c: Any) -> bool:
    """Whether the network comes from cuda-convnet's files (a built-in, or --net-params): its input conventions."""
    return c.net_params is not None or c.arch in BUILTIN_ARCHS


def _refuse_variant_flags(c: Any, what: str) -> None:
    defaults = {f.name: f.default for f in dataclasses.fields(type(c))}
    for field, flag in VARIANT_FLAGS.items():
        if getattr(c, field) != defaults[field]:
            raise ConfigError(f"{flag} edits the paper's AlexNet; {what} is a described network whose layers say "
                              f"it (edit the description instead; only --activation applies to a description)")


def read_description(c: Any) -> NetDescription:
    """The description the flags name (--net [--net-params], or a built-in --arch), checked, with --activation
    applied. Raises ConfigError."""
    if c.net_params is not None and c.net is None:
        raise ConfigError(f"--net-params {c.net_params} is cuda-convnet's layer-params-*.cfg: it needs --net "
                          f"layers-*.cfg (the layers it gives the settings of)")
    if c.net is not None and c.arch is not None:
        raise ConfigError(f"--net {c.net} and --arch {c.arch} both name the network: give one of them")
    what = f"--net {c.net}" if c.net is not None else f"--arch {c.arch}"
    _refuse_variant_flags(c, what)
    try:
        if c.net_params is not None:
            desc = read_convnet(c.net, c.net_params, input_size=c.input_size or 32)
        elif c.net is not None:
            desc = _read_project_file(c)
        else:
            stem, side = BUILTIN_FILES[c.arch]
            desc = read_convnet(*convnet_files(stem), input_size=c.input_size or side, name=c.arch)
        layer_table(desc)  # every check of the description, naming the layer and the field
    except (DescriptionError, ValueError, OSError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None
    if desc.input_channels != 3:
        raise ConfigError(f"{what}: the network takes {desc.input_channels}-channel inputs; the datasets are RGB "
                          f"images (input = 3x{desc.input_size}x{desc.input_size})")
    if c.activation is not None:
        desc = with_activation(desc, c.activation)
    return desc


def _read_project_file(c: Any) -> NetDescription:
    path = Path(c.net)
    if not path.is_file():
        raise ConfigError(f"--net {c.net}: no such file")
    try:
        desc = read_net(path)
    except DescriptionError as exc:
        if path.suffix == ".cfg" and "no [net] section" in str(exc):  # cuda-convnet's layers file without its params
            raise ConfigError(f"{exc}; a cuda-convnet layers-*.cfg file needs --net-params layer-params-*.cfg") \
                from None
        raise
    if c.input_size is not None and c.input_size != desc.input_size:
        raise ConfigError(f"--input-size {c.input_size}: --net {c.net} takes {desc.input_size}x{desc.input_size} "
                          f"inputs (its [net] input says so; edit it there)")
    return desc


def with_activation(desc: NetDescription, activation: str) -> NetDescription:
    """``desc`` with every relu or tanh activation replaced by ``activation`` (layers without one keep none)."""
    layers = []
    for layer in desc.layers:
        settings = dict(layer.settings)
        if "activation" in resolved_settings(layer) and resolved_settings(layer)["activation"] in ("relu", "tanh"):
            settings["activation"] = activation
        layers.append(dataclasses.replace(layer, settings=settings))
    return dataclasses.replace(desc, layers=layers)


def weight_layers(desc: NetDescription) -> list[dict[str, Any]]:
    """The resolved settings of the layers with weights."""
    return [resolved_settings(x) for x in desc.layers if x.kind in WEIGHTED_KINDS]


def _every(desc: NetDescription, *fields: str) -> bool:
    layers = weight_layers(desc)
    return bool(layers) and all(s[f] is not None for s in layers for f in fields)


def resolve_described(c: Any, data_side: int | None) -> None:
    """Fills in (in place) the settings of a run that trains a description; ``data_side``: the typical side of a
    folder's images when small (else None). On the first resolution the flags are checked and the description read;
    a resumed run's config already holds it, and its settings."""
    first = c.description is None
    if first:
        desc = read_description(c)
        if c.momentum is not None and _every(desc, "momentum_weight", "momentum_bias"):
            raise ConfigError(f"--momentum {c.momentum:g}: every weight layer of {desc.name} sets its own momentum "
                              f"(the description's momentum_weight / momentum_bias), so it would change nothing")
        if c.weight_decay is not None and _every(desc, "weight_decay"):
            raise ConfigError(f"--weight-decay {c.weight_decay:g}: every weight layer of {desc.name} sets its own "
                              f"weight_decay, so it would change nothing")
        c.description = format_net(desc)
    else:
        desc = parse_net(c.description, "the recorded network description")
    if c.arch is None:  # --net: the run is named by the description (a built-in --arch keeps its name)
        c.arch = desc.name
    c.input_size, c.towers = desc.input_size, desc.towers
    if c.image_size is None:
        c.image_size = _image_side(c, data_side)
    if c.batch_size is None:
        c.batch_size = DESCRIBED_BATCH_SIZE
    if c.lr is None:
        c.lr = (1.0 if _every(desc, "lr_weight", "lr_bias")
                else ADAM_DEFAULT_LR if c.optimizer in ("adam", "adamw") else DEFAULT_LR)
    if c.momentum is None:
        c.momentum = DEFAULT_MOMENTUM
    if c.weight_decay is None:
        c.weight_decay = DEFAULT_WEIGHT_DECAY
    if c.input_scale is None:
        c.input_scale = 1.0
    if c.pca_std is None:
        c.pca_std = 0.0 if is_convnet(c) else 0.1


def _image_side(c: Any, data_side: int | None) -> int:
    """The stored image side for a description's input side (module doc); refuses data smaller than the input."""
    native = NATIVE_SIDE.get(c.dataset) or data_side
    if native is None:  # large images (ImageNet, a folder of photos): crops of the input side, as 227 of 256
        return max(c.input_size, round(c.input_size * 256 / 227))
    if native < c.input_size:
        if c.dataset == "synthetic":
            return round(c.input_size * 256 / 227)
        raise ConfigError(f"{c.arch} takes {c.input_size}x{c.input_size} inputs but the images of --data {c.data} are "
                          f"{native}x{native}: choose a network for them, or pass --image-size "
                          f"{max(c.input_size, round(c.input_size * 256 / 227))} to train on them upscaled")
    return native


# --------------------------------------------------------------------------------------------------------------------
# Building
# --------------------------------------------------------------------------------------------------------------------

def network_config(c: Any, num_classes: int) -> dict[str, Any]:
    """The model configuration of a described run (stored in checkpoints; checkpoint.model_from_config builds it):
    the description with the dataset's classes, and from_description's other arguments."""
    desc = parse_net(c.description, "the recorded network description")
    scoring = [x for x in desc.layers if x.kind != "dropout"][-1]  # cuda-convnet's fc may carry a dropout after it
    outputs = str(scoring.settings.get("outputs", "")).strip()
    if scoring.kind != "linear":
        raise ConfigError(f"{desc.name}: the class scores come from the last layer, which must be a linear layer "
                          f"(outputs = classes), not the {scoring.kind} layer '{scoring.name}'")
    if outputs != "classes" and outputs != str(num_classes):
        raise ConfigError(f"{desc.name}: layer '{scoring.name}', outputs: {outputs} class scores, but the data has "
                          f"{num_classes} classes (write outputs = classes)")
    desc = dataclasses.replace(desc, classes=int(num_classes))
    return {"description": format_net(desc), "arch": desc.name, "num_classes": int(num_classes),
            "input_size": desc.input_size, "towers": desc.towers, "seed": c.seed, "optimizer": c.optimizer,
            "adam_betas": [float(b) for b in c.adam_betas], "adam_eps": c.adam_eps}


def learning_summary(c: Any) -> str:
    """How the run's learning rate acts, for the start message."""
    desc = parse_net(c.description, "the recorded network description")
    if _every(desc, "lr_weight", "lr_bias"):
        return f"learning rate {c.lr:g} x each layer's own (--lr multiplies them)"
    return f"learning rate {c.lr:g}" + (" (x lr_weight / lr_bias where a layer sets them)"
                                        if any(s["lr_weight"] is not None or s["lr_bias"] is not None
                                               for s in weight_layers(desc)) else "")
