"""A network as data: a list of layers, each with its kind, its settings, its input and how it connects across the
towers, in the spirit of Caffe's prototxt and cuda-convnet's layers.cfg.

Every layer is replicated on each tower (the paper's Figure 2). A layer's channels (``filters``, ``outputs``) are
the total over the towers and are split between them, tower 0 taking the larger half of an odd count (as fc8's
classes). ``sees`` says which maps a tower's layer reads: ``own`` (its own tower's, the default for convolutions)
or ``all`` (every tower's: an exchange point, as conv3's input and fc6-fc8's in the paper; the default for fully
connected layers). Layers without weights always read their own tower's maps.

:func:`layer_table` checks a description and gives, per layer and tower, the output shape, parameters and
multiply-adds and parameter shapes: the C++ network (``csrc/network_layers.h``) is built from the same description
(``alexnet_cuda/net_spec.py``) and checks the same shapes.
Anything wrong is one :class:`DescriptionError` naming the layer and the field.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .convnet_cfg import conv_modules_x, pool_outputs_x

ACTIVATIONS = ("relu", "tanh", "none")

# Each kind's settings: name -> (type, default); a default of REQUIRED must be given.
REQUIRED = object()
# Per-layer learning settings (cuda-convnet's epsW, epsB, momW, momB, wc); None: the run's --lr, --momentum and
# --weight-decay. Weight decay applies to the weights only.
LEARNING = ("lr_weight", "lr_bias", "momentum_weight", "momentum_bias", "weight_decay")
_WEIGHTED = {"activation": (str, "relu"), "init_std": (float, 0.01), "init_bias": (float, 0.0), "bias": (bool, True),
             **{name: (float, None) for name in LEARNING}}
# A pooling layer's `outputs` per side: "whole" (as many whole windows as fit from `start`: the paper's), "ceil"
# (cuda-convnet's rule, layer.py: windows while their first pixel is inside the maps, the last clipped), or a count.
POOL_OUTPUTS = ("whole", "ceil")
KINDS: dict[str, dict[str, tuple[type, Any]]] = {
    "conv": {"filters": (int, REQUIRED), "size": (int, REQUIRED), "stride": (int, 1), "padding": (int, 0),
             **_WEIGHTED},
    # cuda-convnet's `local`: a convolution whose weights are not shared across output positions
    "local": {"filters": (int, REQUIRED), "size": (int, REQUIRED), "stride": (int, 1), "padding": (int, 0),
              **_WEIGHTED},
    "linear": {"outputs": (str, REQUIRED), **_WEIGHTED},  # an int, or "classes" for the output layer
    # windows of `size` every `stride` from `start`, `outputs` of them per side (POOL_OUTPUTS), clipped to the maps
    "maxpool": {"size": (int, 3), "stride": (int, 2), "start": (int, 0), "outputs": (str, "whole"),
                "activation": (str, "none")},
    "avgpool": {"size": (int, 3), "stride": (int, 2), "start": (int, 0), "outputs": (str, "whole"),
                "activation": (str, "none")},
    "lrn": {"size": (int, 5), "alpha": (float, 1e-4), "beta": (float, 0.75), "k": (float, 2.0)},  # Section 3.3
    "spatial_lrn": {"size": (int, 3), "alpha": (float, 1e-4), "beta": (float, 0.75), "k": (float, 1.0)},
    "batchnorm": {"momentum": (float, 0.1), "eps": (float, 1e-5), "activation": (str, "none")},
    "dropout": {"p": (float, 0.5)},
    "global_avgpool": {},
}
WEIGHTED_KINDS = ("conv", "local", "linear")
DATA = "data"  # the input of the first layer: the images


class DescriptionError(ValueError):
    """A network description that cannot be built; the message names the layer and the field."""


@dataclasses.dataclass
class Layer:
    name: str
    kind: str
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)
    input: str | None = None  # None: the layer before it (the images for the first layer)
    sees: str | None = None   # "own" | "all"; None: "all" for linear layers, "own" for the others
    # the prefix of its parameters' names ("<module>.tower<t>.weight"); None: the layer's name. The AlexNet
    # descriptions use torchvision's module names (features.0, classifier.1, ...), as the checkpoints always have.
    module: str | None = None


@dataclasses.dataclass
class NetDescription:
    name: str
    layers: list[Layer]
    input_size: int = 32      # the side of the (square) crops the network takes
    input_channels: int = 3
    towers: int = 1
    classes: int = 10         # what a linear layer's outputs="classes" means


@dataclasses.dataclass
class _Maps:
    """What flows out of a layer, per tower."""
    channels: list[int]  # per tower
    side: int            # 0 once flattened (after a linear layer)


def _fail(layer: Layer | str, field: str | None, why: str) -> DescriptionError:
    name = layer.name if isinstance(layer, Layer) else layer
    return DescriptionError(f"network description: layer '{name}'{f', {field}' if field else ''}: {why}")


def resolved_settings(layer: Layer) -> dict[str, Any]:
    """The layer's settings with defaults filled in and types checked; refuses unknown and missing fields."""
    if layer.kind not in KINDS:
        raise _fail(layer, "type", f"unknown kind '{layer.kind}' (known: {', '.join(KINDS)})")
    spec = KINDS[layer.kind]
    unknown = sorted(set(layer.settings) - set(spec))
    if unknown:
        raise _fail(layer, unknown[0], f"not a setting of a {layer.kind} layer (its settings: "
                                       f"{', '.join(spec) or 'none'})")
    out = {}
    for field, (kind, default) in spec.items():
        value = layer.settings.get(field, default)
        if value is REQUIRED:
            raise _fail(layer, field, "missing (required)")
        out[field] = None if value is None else _typed(layer, field, kind, value)
    if "activation" in out and out["activation"] not in ACTIVATIONS:
        raise _fail(layer, "activation", f"must be one of {', '.join(ACTIVATIONS)}, got '{out['activation']}'")
    return out


def _typed(layer: Layer, field: str, kind: type, value: Any) -> Any:
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError
                return value.lower() in ("1", "true", "yes")
            return bool(value)
        if kind is int:
            if isinstance(value, float) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
                raise ValueError
            return int(value)
        if kind is float:
            v = float(value)
            if not math.isfinite(v):
                raise ValueError
            return v
        return str(value)
    except (TypeError, ValueError):
        raise _fail(layer, field, f"expected {'an integer' if kind is int else f'a {kind.__name__}'}, "
                                  f"got {value!r}") from None


def _split(total: int, towers: int) -> list[int]:
    """A count split between the towers, tower 0 taking the larger half of an odd count."""
    return [total // towers + (1 if t < total % towers else 0) for t in range(towers)]


def _pooled(layer: Layer, s: dict, side: int) -> int:
    k, stride, start, outputs = s["size"], s["stride"], s["start"], s["outputs"]
    if k < 1 or stride < 1:
        raise _fail(layer, "size" if k < 1 else "stride", "must be at least 1")
    if outputs in POOL_OUTPUTS:
        if side - start < k:
            raise _fail(layer, "size", f"a {k}x{k} window from {start} does not fit the {side}x{side} maps")
        if outputs == "whole":
            return (side - start - k) // stride + 1
        return pool_outputs_x(side, k, stride, start)  # cuda-convnet's rule, from its own module
    outputs = _typed(layer, "outputs", int, outputs)
    if start + (outputs - 1) * stride >= side or start + k <= 0:
        raise _fail(layer, "outputs", f"{outputs} windows of {k} every {stride} from {start} leave the last one "
                                      f"outside the {side}x{side} maps")
    return outputs


def layer_table(desc: NetDescription) -> list[dict[str, Any]]:
    """Every layer of every tower (tower 0 then tower 1 within a layer), in forward order: name, kind, tower,
    output shape (per image), parameters, multiply-adds, detail. Raises DescriptionError."""
    if desc.towers not in (1, 2):
        raise DescriptionError(f"network description '{desc.name}': towers must be 1 or 2, got {desc.towers}")
    if desc.input_size < 1 or desc.input_channels < 1:
        raise DescriptionError(f"network description '{desc.name}': the input must be at least 1x1x1")
    if not desc.layers:
        raise DescriptionError(f"network description '{desc.name}': no layers")
    maps = {DATA: _Maps([desc.input_channels] * desc.towers, desc.input_size)}
    rows: list[dict[str, Any]] = []
    read: set[str] = set()
    previous = DATA
    for layer in desc.layers:
        if layer.name in maps:
            raise _fail(layer, None, "a second layer of this name (names must be unique, and 'data' is the input)")
        source = layer.input or previous
        if source not in maps:
            raise _fail(layer, "input", f"'{source}' is not a layer defined before it")
        s = resolved_settings(layer)
        sees = layer.sees or ("all" if layer.kind == "linear" else "own")
        if sees not in ("own", "all"):
            raise _fail(layer, "sees", f"must be 'own' or 'all', got '{sees}'")
        if sees == "all" and layer.kind not in WEIGHTED_KINDS:
            raise _fail(layer, "sees", f"a {layer.kind} layer reads its own tower's maps only; only conv, local and "
                                       f"linear layers can read every tower's")
        out, layer_rows = _infer(desc, layer, s, sees, maps[source])
        maps[layer.name] = out
        rows += layer_rows
        read.add(source)
        previous = layer.name
    for layer in desc.layers[:-1]:
        if layer.name not in read:
            raise _fail(layer, None, "no layer reads it (only the last layer's outputs are the network's, so every "
                                     "other layer must be some layer's input)")
    last = rows[-1]
    if len(last["output"]) != 1 or sum(r["output"][0] for r in rows if r["name"] == last["name"]) != desc.classes:
        raise _fail(desc.layers[-1], None, f"the last layer must output the {desc.classes} classes (a linear layer "
                                           f"with outputs = classes), got {last['output']} per tower")
    return rows


def _infer(desc: NetDescription, layer: Layer, s: dict, sees: str, inp: _Maps) -> tuple[_Maps, list[dict]]:
    towers = desc.towers
    seen = [sum(inp.channels)] * towers if sees == "all" else list(inp.channels)
    params, mult_adds = [0] * towers, [0] * towers
    weights, biases, buffers = [[] for _ in range(towers)], [0] * towers, [0] * towers
    kind = layer.kind
    if kind in ("conv", "local"):
        if inp.side == 0:
            raise _fail(layer, "input", f"a {kind} layer needs maps, but its input is a fully connected layer's")
        k, stride, pad = s["size"], s["stride"], s["padding"]
        if k < 1 or stride < 1 or pad < 0:
            raise _fail(layer, "size" if k < 1 else "stride" if stride < 1 else "padding", "out of range")
        if inp.side + 2 * pad < k:
            raise _fail(layer, "size", f"a {k}x{k} kernel (padding {pad}) does not fit the {inp.side}x{inp.side} maps")
        if s["filters"] < towers or s["filters"] % towers:
            raise _fail(layer, "filters", f"{s['filters']} filters do not split evenly between {towers} towers")
        # a local layer follows cuda-convnet's rule, 1 + ceil(...): its last window may run past the padding
        side = (inp.side + 2 * pad - k) // stride + 1 if kind == "conv" else conv_modules_x(inp.side, k, pad, stride)
        channels = _split(s["filters"], towers)
        # cuda-convnet's local layer: unshared weights and biases, one set per output position (layer.py,
        # LocalUnsharedLayerParser: make_biases(modules * filters))
        positions = side * side if kind == "local" else 1
        for t in range(towers):
            params[t] = positions * channels[t] * (seen[t] * k * k + (1 if s["bias"] else 0))
            mult_adds[t] = channels[t] * side * side * seen[t] * k * k
            weights[t] = ([side, side, seen[t], k, k, channels[t]] if kind == "local"
                          else [channels[t], seen[t], k, k])
            biases[t] = positions * channels[t] if s["bias"] else 0
        out = _Maps(channels, side)
        detail = f"{k}x{k} stride {stride} pad {pad}, {s['activation']}"
    elif kind == "linear":
        total = desc.classes if s["outputs"] == "classes" else _typed(layer, "outputs", int, s["outputs"])
        if total < towers:
            raise _fail(layer, "outputs", f"{total} outputs cannot be split between {towers} towers")
        flat = [c * max(inp.side, 1) ** 2 for c in inp.channels]
        seen = [sum(flat)] * towers if sees == "all" else flat
        channels = _split(total, towers)
        for t in range(towers):
            params[t] = channels[t] * seen[t] + (channels[t] if s["bias"] else 0)
            mult_adds[t] = channels[t] * seen[t]
            weights[t] = [channels[t], seen[t]]
            biases[t] = channels[t] if s["bias"] else 0
        out = _Maps(channels, 0)
        detail = s["activation"]
    elif kind in ("maxpool", "avgpool"):
        if inp.side == 0:
            raise _fail(layer, "input", "pooling needs maps, but its input is a fully connected layer's")
        side = _pooled(layer, s, inp.side)
        out = _Maps(list(inp.channels), side)
        detail = (f"{kind[:3]} {s['size']}x{s['size']} stride {s['stride']}" + (f" start {s['start']}" if s["start"] else "")
                  + (f", {s['outputs']}" if s["outputs"] != "whole" else "")
                  + (f", {s['activation']}" if s["activation"] != "none" else ""))
    elif kind == "global_avgpool":
        if inp.side == 0:
            raise _fail(layer, "input", "global average pooling needs maps")
        out = _Maps(list(inp.channels), 0)  # one number per map: flat, as a linear layer's output
        detail = "mean of each map"
    elif kind in ("lrn", "spatial_lrn"):
        if s["size"] < 1:
            raise _fail(layer, "size", "must be at least 1")
        out = _Maps(list(inp.channels), inp.side)
        detail = f"size {s['size']}" + (" (within the tower)" if kind == "lrn" else " x size, within each map")
    elif kind == "batchnorm":
        out = _Maps(list(inp.channels), inp.side)
        params = [2 * c for c in inp.channels]
        weights, biases, buffers = [[c] for c in inp.channels], list(inp.channels), list(inp.channels)
        detail = f"momentum {s['momentum']:g}"
    else:  # dropout
        if not 0 <= s["p"] < 1:
            raise _fail(layer, "p", f"must be in [0, 1), got {s['p']}")
        out = _Maps(list(inp.channels), inp.side)
        detail = f"p={s['p']:g}"
    if sees == "all" and towers > 1:
        detail += ", sees both towers"
    def shape(c: int, side: int) -> list[int]:
        return [c, side, side] if side else [c]

    in_side = inp.side if kind != "linear" else 0
    in_channels = seen if kind != "linear" else [c * max(inp.side, 1) ** 2 for c in ([sum(inp.channels)] * towers
                                                                                   if sees == "all" else inp.channels)]
    module = (layer.module or layer.name) if any(params) else ""
    rows = [{"name": layer.name, "kind": kind, "tower": t, "input": shape(in_channels[t], in_side),
             "output": shape(out.channels[t], out.side), "module": module, "weight": weights[t], "bias": biases[t],
             "buffers": buffers[t], "parameters": params[t], "mult_adds": mult_adds[t], "detail": detail}
            for t in range(towers)]
    return out, rows
