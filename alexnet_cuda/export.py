"""ONNX export: ``python -m alexnet_cuda.export CHECKPOINT --onnx model.onnx`` (issue 21, part 2).

The exported graph is the whole inference path of :meth:`AlexNet.predict` with its default (centre) crop:

    images   uint8 (N, S, S, 3), RGB, NHWC: the checkpoint's image size S (the side of the training images;
             ``alexnet_cuda.data.load_image_file(path, S)`` gives such an image), any batch size N
    -> centre crop to the net's input size s (top = left = (S - s) // 2, as AlexNet.predict without ``crops``)
    -> float32, NCHW, minus the training mean (the checkpoint's mean image, cropped the same way, or its per-channel
       mean), times the checkpoint's normalization scale
    -> the network, with dropout the identity and BatchNorm on its running statistics
    -> probabilities  float32 (N, num_classes): the softmax

It is written as ONE dense network, as :mod:`alexnet_cuda.reference.network` computes it: the paper's towers
(Section 3.2) become grouped convolutions (groups = towers) for conv2, conv4 and conv5, and conv3 and the fc layers
read every tower. Local response normalization (Section 3.3) is per tower, its window stopping at the tower boundary,
so it is exported as a Split over the channels, one ONNX LRN per tower, and a Concat. ONNX's LRN computes
``x / (bias + alpha / size * sum of squares) ** beta`` over the channels
``[c - floor((size - 1) / 2), c + ceil((size - 1) / 2)]``: the project's formula (alpha/size, PyTorch's convention)
and, for an odd size, the project's window. An even size puts the window one channel off, so it is an export error.

A described network of one tower (torchvision-alexnet, cuda-convnet's layers-18pct/19pct/80sec) is written from
its description and weights (:func:`description_to_onnx`): pooling of cuda-convnet's geometry as a Slice and the
pooling operator's own pads, cuda-convnet's rnorm composed from Mul, AveragePool, Add and Pow, its locally
connected layer (conv-local-11pct/13pct) from a one-hot Conv (im2col) and a MatMul batched over the output positions
(docs/weights.md, "ONNX export").

The ``onnx`` package is imported here only (the optional extra ``.[onnx]``); the core never needs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt_io
from . import cli
from .reference.network import CONV_LAYERS, GROUPED, LRN_AFTER, POOL_AFTER, merge_towers

PROG = "python -m alexnet_cuda.export"
OPSET = 17  # supported by every onnxruntime >= 1.17 (the extra's floor); Split takes its sizes as an input (>= 13)
INPUT_NAME, OUTPUT_NAME = "images", "probabilities"


class ExportError(ValueError):
    """The network has a layer or setting that the ONNX graph cannot express exactly. The message names it."""


def _import_onnx():
    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError:
        raise cli.ConfigError("ONNX export needs the onnx package: pip install 'alexnet_cuda[onnx]' "
                              "(or pip install onnx)") from None
    return onnx, helper, numpy_helper


class _Graph:
    """Nodes and initializers being collected, with fresh tensor names."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.initializers: list = []

    def const(self, name: str, array: np.ndarray) -> str:
        self.initializers.append(self.numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attrs))
        return output


def _check_exportable(config: dict) -> None:
    if config["norm"] == "lrn" and config["lrn_size"] % 2 == 0:
        raise ExportError(f"export: LRN of even size {config['lrn_size']} has a window one channel off ONNX's LRN "
                          f"(which reaches further up than down); only odd sizes export")
    if config["activation"] not in ("relu", "tanh"):
        raise ExportError(f"export: no ONNX operator for the activation {config['activation']!r}")


def _preprocess(g: _Graph, x: str, image_size: int, input_size: int, mean: np.ndarray | None, scale) -> str:
    """uint8 (N, S, S, 3) -> float32 (N, 3, s, s): centre crop, NCHW, minus the mean, times the scale, one number or
    one per channel (the input op of :mod:`alexnet_cuda.reference.prepare_batch` with the default crop and no
    flip)."""
    top = (image_size - input_size) // 2
    if top > 0:
        starts = g.const("crop_starts", np.array([top, top], np.int64))
        ends = g.const("crop_ends", np.array([top + input_size] * 2, np.int64))
        axes = g.const("crop_axes", np.array([1, 2], np.int64))
        x = g.node("Slice", [x, starts, ends, axes], "crop")
    x = g.node("Cast", [x], "as_float", to=1)  # TensorProto.FLOAT
    x = g.node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    if mean is not None:
        mean = np.asarray(mean, np.float32)
        if mean.ndim == 3:  # the mean image, cropped like the images
            mean = mean[:, top:top + input_size, top:top + input_size][None]
        else:
            mean = mean.reshape(1, 3, 1, 1)
        x = g.node("Sub", [x, g.const("mean", mean)], "centred")
    scale = np.asarray(scale, np.float32)
    if (scale != 1.0).any():
        x = g.node("Mul", [x, g.const("scale", scale.reshape(1, 3, 1, 1) if scale.ndim else scale)], "scaled")
    return x


def _numbers(scale) -> str:
    """'0.0171' or '(0.0171, 0.0175, 0.0174)': a scale for the model's description."""
    values = np.atleast_1d(np.asarray(scale, np.float64))
    return f"{values[0]:g}" if values.size == 1 else "(" + ", ".join(f"{v:g}" for v in values) + ")"


def _activation(g: _Graph, x: str, kind: str, name: str) -> str:
    return g.node("Relu" if kind == "relu" else "Tanh", [x], name)


def _batchnorm(g: _Graph, x: str, w: dict, i: int, eps: float) -> str:
    bn = f"bn{i + 1}"
    inputs = [g.const(f"{bn}.{k}", w[f"{bn}.{k}"]) for k in ("weight", "bias", "running_mean", "running_var")]
    return g.node("BatchNormalization", [x] + inputs, bn, epsilon=float(eps))


def _lrn(g: _Graph, x: str, layer: str, channels: int, towers: int, c: dict) -> str:
    """LRN of each tower's block of channels on its own (the window never crosses the tower boundary)."""
    attrs = dict(size=int(c["lrn_size"]), alpha=float(c["lrn_alpha"]), beta=float(c["lrn_beta"]),
                 bias=float(c["lrn_k"]))
    if towers == 1:
        return g.node("LRN", [x], f"{layer}.lrn", **attrs)
    sizes = g.const(f"{layer}.tower_channels", np.full(towers, channels // towers, np.int64))
    parts = [f"{layer}.tower{t}" for t in range(towers)]
    g.nodes.append(g.helper.make_node("Split", [x, sizes], parts, name=f"{layer}.split", axis=1))
    normed = [g.node("LRN", [p], f"{p}.lrn", **attrs) for p in parts]
    return g.node("Concat", normed, f"{layer}.lrn", axis=1)


def _network(g: _Graph, x: str, config: dict, w: dict) -> str:
    """The dense network of reference.network (conv blocks, then the head) on the NCHW input ``x``; the logits."""
    towers, act, norm = config["towers"], config["activation"], config["norm"]
    after_pool = config["bn_position"] == "after_pool"
    for i, layer in enumerate(CONV_LAYERS):
        bn_after_conv = norm == "batchnorm" and not (layer in POOL_AFTER and after_pool)
        weight = w[f"{layer}.weight"]
        inputs = [x, g.const(f"{layer}.weight", weight)]
        if f"{layer}.bias" in w:
            inputs.append(g.const(f"{layer}.bias", w[f"{layer}.bias"]))
        pad, stride = int(config["conv_pad"][i]), int(config["conv_stride"][i])
        x = g.node("Conv", inputs, layer, kernel_shape=list(weight.shape[2:]), strides=[stride, stride],
                   pads=[pad] * 4, group=towers if layer in GROUPED else 1)
        if bn_after_conv:
            x = _batchnorm(g, x, w, i, config["bn_eps"])
        x = _activation(g, x, act, f"{layer}.{act}")
        if layer in LRN_AFTER and norm == "lrn":
            x = _lrn(g, x, layer, weight.shape[0], towers, config)
        if layer in POOL_AFTER:
            k, s = int(config["pool_kernel"]), int(config["pool_stride"])
            x = g.node("MaxPool", [x], f"{layer}.pool", kernel_shape=[k, k], strides=[s, s])
            if norm == "batchnorm" and after_pool:
                x = _batchnorm(g, x, w, i, config["bn_eps"])
    if config["gap_head"]:
        x = g.node("GlobalAveragePool", [x], "gap")
    x = g.node("Flatten", [x], "features", axis=1)  # (channel, y, x) order, as fc6's weights read conv5's maps
    hidden = len(config["fc_width"]) if not config["gap_head"] else 0
    for k in range(hidden + 1):
        layer = f"fc{6 + k}"
        x = g.node("Gemm", [x, g.const(f"{layer}.weight", w[f"{layer}.weight"]),
                            g.const(f"{layer}.bias", w[f"{layer}.bias"])], layer, transB=1)
        if k < hidden:  # dropout is the identity at inference
            x = _activation(g, x, act, f"{layer}.{act}")
    return x


def to_onnx(model: Any, *, image_size: int | None = None, mean: np.ndarray | None = None, scale: Any = 1.0,
            name: str = "alexnet_cuda"):
    """The ONNX model (``onnx.ModelProto``, checked) of ``model`` (an :class:`alexnet_cuda.AlexNet`) with the
    preprocessing of :meth:`AlexNet.predict` for uint8 images of ``image_size`` (default: the mean image's size,
    else the input size): ``mean`` and ``scale`` are what was given to ``set_normalization`` (None: no mean)."""
    _, helper, numpy_helper = _import_onnx()
    config = model.config
    _check_exportable(config)
    s = int(config["input_size"])
    mean, image_size = _input(mean, image_size, s)
    dense = {k: v.astype(np.float32) for k, v in merge_towers(model.state_dict(), config["towers"]).items()}
    g = _Graph(helper, numpy_helper)
    x = _preprocess(g, INPUT_NAME, image_size, s, mean, scale)
    return _finish(g, _network(g, x, config, dense), image_size, s, int(config["num_classes"]), scale, name)


def _input(mean: np.ndarray | None, image_size: int | None, s: int) -> tuple[np.ndarray | None, int]:
    """The mean (float32) and image size checked against each other and the net's input size ``s``."""
    if mean is not None:
        mean = np.asarray(mean, np.float32)
        if not (mean.shape == (3,) or (mean.ndim == 3 and mean.shape[0] == 3 and mean.shape[1] == mean.shape[2])):
            raise ExportError(f"export: expected a mean of shape (3,) or (3, S, S), got {mean.shape}")
    if image_size is None:
        image_size = mean.shape[1] if mean is not None and mean.ndim == 3 else s
    image_size = int(image_size)
    if image_size < s:
        raise ExportError(f"export: the images ({image_size}x{image_size}) are smaller than the net's input ({s})")
    if mean is not None and mean.ndim == 3 and mean.shape[1] != image_size:
        raise ExportError(f"export: the mean image is {mean.shape[1]}x{mean.shape[2]} but the images are "
                          f"{image_size}x{image_size}")
    return mean, image_size


def _finish(g: _Graph, logits: str, image_size: int, s: int, num_classes: int, scale: Any, name: str):
    """The checked model: the softmax of ``logits``, the uint8 input and the float output declared."""
    onnx, helper, _ = _import_onnx()
    g.node("Softmax", [logits], OUTPUT_NAME, axis=1)
    graph = helper.make_graph(
        g.nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, onnx.TensorProto.UINT8, ["N", image_size, image_size, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["N", num_classes])],
        g.initializers)
    proto = helper.make_model(graph, producer_name="alexnet_cuda", opset_imports=[helper.make_opsetid("", OPSET)])
    proto.doc_string = (f"uint8 (N, {image_size}, {image_size}, 3) RGB images -> centre {s}x{s} crop, minus the "
                        f"training mean, times {_numbers(scale)} -> softmax probabilities (N, {num_classes})")
    onnx.checker.check_model(proto)
    return proto


# The layers a described network (one tower, a chain) exports as. Pooling of any geometry (cuda-convnet's start and
# ceil rule included), both response normalizations and BatchNorm are composed or mapped exactly (_described_layer);
# cuda-convnet's locally connected layer (no ONNX operator) is composed; anything else is refused by name.
_DESCRIBED = ("conv", "local", "linear", "dropout", "maxpool", "avgpool", "global_avgpool", "lrn", "spatial_lrn",
              "batchnorm")


def _pool(g: _Graph, x: str, layer: Any, s: dict, side: int, outputs: int) -> str:
    """Max or average pooling with cuda-convnet's geometry (reference/maxpool.py, csrc/pool_geometry.h): window o
    covers [start + o*stride, start + o*stride + size) clipped to the maps, an average divides by the pixels left
    after clipping. As ONNX: the rows before the first window (start > 0) and after the last are sliced off, and
    the windows' overhang on either side (start < 0, the last window of the ceil rule) is the pooling's own ``pads``,
    which MaxPool ignores and AveragePool with count_include_pad=0 leaves out of the count -- so every window is
    whole in the padded maps, ceil_mode stays 0 and the output count is exactly ``outputs``."""
    k, stride, start = int(s["size"]), int(s["stride"]), int(s["start"])
    extent = (outputs - 1) * stride + k  # the padded span the windows cover, from `start`
    first, last = max(0, start), min(side, start + extent)  # the input rows any window holds
    before, after = max(0, -start), max(0, start + extent - side)
    if first > 0 or last < side:
        x = g.node("Slice", [x, g.const(f"{layer.name}.starts", np.array([first, first], np.int64)),
                             g.const(f"{layer.name}.ends", np.array([last, last], np.int64)),
                             g.const(f"{layer.name}.axes", np.array([2, 3], np.int64))], f"{layer.name}.inside")
    attrs = dict(kernel_shape=[k, k], strides=[stride, stride], pads=[before, before, after, after])
    if layer.kind == "maxpool":
        return g.node("MaxPool", [x], layer.name, **attrs)
    return g.node("AveragePool", [x], layer.name, count_include_pad=0, **attrs)


def _spatial_lrn(g: _Graph, x: str, name: str, s: dict) -> str:
    """cuda-convnet's rnorm (reference/spatial_lrn.py): x * (k + alpha / size^2 * sum of x^2 over the size x size
    window [i - size//2, i - size//2 + size) clipped to the map) ** -beta. ONNX has no such operator; composed as
    Mul (the squares), AveragePool over the window with zero padding counted (count_include_pad=1: the clipped sum
    divided by size^2 everywhere, the divisor cuda-convnet keeps at the edges), Mul by alpha, Add k, Pow -beta, Mul."""
    size = int(s["size"])
    lead = size // 2
    squares = g.node("Mul", [x, x], f"{name}.squares")
    mean = g.node("AveragePool", [squares], f"{name}.window_mean", kernel_shape=[size, size], strides=[1, 1],
                  pads=[lead, lead, size - 1 - lead, size - 1 - lead], count_include_pad=1)
    scaled = g.node("Mul", [mean, g.const(f"{name}.alpha", np.array(s["alpha"], np.float32))], f"{name}.scaled")
    denom = g.node("Add", [scaled, g.const(f"{name}.k", np.array(s["k"], np.float32))], f"{name}.denom")
    factor = g.node("Pow", [denom, g.const(f"{name}.minus_beta", np.array(-s["beta"], np.float32))], f"{name}.factor")
    return g.node("Mul", [x, factor], name)


def _local(g: _Graph, x: str, name: str, s: dict, side: int, weight: np.ndarray, bias: str | None) -> str:
    """cuda-convnet's locally connected layer (reference/local.py): y[n, f, oy, ox] = sum over (c, r, q) of
    w[oy, ox, c, r, q, f] * x[n, c, oy*stride - pad + r, ox*stride - pad + q] (+ bias[f, oy, ox]), zeros outside
    the maps, the ceil rule's last window running past the padding. ONNX has no such operator; composed as a Conv
    with one-hot kernels that copies each window's C*k*k values into channels (im2col: exact, each output is one
    input times 1), Reshape to (N, C*k*k, positions), Transpose to (positions, N, C*k*k), a batched MatMul with
    each position's own (C*k*k, filters) weights, Transpose and Reshape back to (N, filters, side, side), Add the
    per-position bias."""
    out_side, _, channels, k, _, filters = weight.shape
    stride, pad = int(s["stride"]), int(s["padding"])
    after = max(pad, (out_side - 1) * stride + k - side - pad)  # the ceil rule's overhang past the padding
    one_hot = np.zeros((channels * k * k, channels, k, k), np.float32)
    for c in range(channels):
        one_hot[c * k * k:(c + 1) * k * k, c] = np.eye(k * k, dtype=np.float32).reshape(k * k, k, k)
    patches = g.node("Conv", [x, g.const(f"{name}.one_hot", one_hot)], f"{name}.patches", kernel_shape=[k, k],
                     strides=[stride, stride], pads=[pad, pad, after, after])
    flat = g.node("Reshape", [patches, g.const(f"{name}.patch_shape", np.array([0, channels * k * k, -1], np.int64))],
                  f"{name}.columns")
    by_position = g.node("Transpose", [flat], f"{name}.by_position", perm=[2, 0, 1])
    w = np.ascontiguousarray(weight.reshape(out_side * out_side, channels * k * k, filters), np.float32)
    y = g.node("MatMul", [by_position, g.const(f"{name}.weight", w)], f"{name}.products")
    y = g.node("Transpose", [y], f"{name}.by_image", perm=[1, 2, 0])
    y = g.node("Reshape", [y, g.const(f"{name}.out_shape", np.array([0, filters, out_side, out_side], np.int64))],
               f"{name}.maps")
    return g.node("Add", [y, bias], name) if bias else y


def _refusal(desc: Any, layer: Any, s: dict) -> str | None:
    """Why ``layer`` cannot be exported exactly, or None."""
    where = f"layer '{layer.name}' ({layer.kind}) of '{desc.name}'"
    if layer.kind not in _DESCRIBED:
        return f"{where} has no ONNX export here (exported: {', '.join(_DESCRIBED)})"
    if layer.input is not None:
        return f"{where} reads '{layer.input}', not the layer before it: only a chain of layers exports"
    if s.get("activation", "none") not in ("relu", "tanh", "none"):
        return f"{where}: no ONNX operator for the activation {s['activation']!r}"
    if layer.kind == "lrn" and s["size"] % 2 == 0:
        return (f"{where}: LRN of even size {s['size']} has a window one channel off ONNX's LRN (which reaches "
                f"further up than down); only odd sizes export")
    return None


def _described_layer(g: _Graph, x: str, layer: Any, s: dict, params: dict, side: int, out: tuple) -> str:
    """``layer`` (one tower) on ``x``; ``side`` is its input maps' side, ``out`` its output shape per image."""
    prefix = f"{layer.module or layer.name}.tower0"
    kind = layer.kind

    def array(key: str) -> np.ndarray:
        if f"{prefix}.{key}" not in params:
            raise ExportError(f"export: layer '{layer.name}' ({kind}): the checkpoint has no parameter "
                              f"'{prefix}.{key}'")
        return np.asarray(params[f"{prefix}.{key}"], np.float32)

    def const(key: str) -> str:
        return g.const(f"{prefix}.{key}", array(key))

    if kind == "dropout":
        return x  # the identity at inference
    if kind in ("maxpool", "avgpool"):
        return _pool(g, x, layer, s, side, int(out[1]))
    if kind == "global_avgpool":
        return g.node("Flatten", [g.node("GlobalAveragePool", [x], layer.name)], f"{layer.name}.flat")
    if kind == "lrn":  # ONNX's LRN: the project's alpha/size convention and, for odd sizes, its window
        return g.node("LRN", [x], layer.name, size=int(s["size"]), alpha=float(s["alpha"]), beta=float(s["beta"]),
                      bias=float(s["k"]))
    if kind == "spatial_lrn":
        return _spatial_lrn(g, x, layer.name, s)
    if kind == "batchnorm":  # inference: the running statistics
        return g.node("BatchNormalization", [x] + [const(k) for k in ("weight", "bias", "running_mean", "running_var")],
                      layer.name, epsilon=float(s["eps"]))
    if kind == "linear" and side:  # (channel, y, x) order, as the weights read the maps
        x = g.node("Flatten", [x], f"{layer.name}.flat", axis=1)
    if kind == "local":
        return _local(g, x, layer.name, s, side, array("weight"), const("bias") if s["bias"] else None)
    inputs = [x, const("weight")] + ([const("bias")] if s["bias"] else [])
    if kind == "conv":
        return g.node("Conv", inputs, layer.name, kernel_shape=[s["size"]] * 2, strides=[s["stride"]] * 2,
                      pads=[s["padding"]] * 4)
    return g.node("Gemm", inputs, layer.name, transB=1)


def description_to_onnx(desc: Any, params: dict[str, np.ndarray], *, image_size: int | None = None,
                        mean: np.ndarray | None = None, scale: Any = 1.0, name: str = "alexnet_cuda"):
    """The ONNX model of a one-tower network description (``torchvision-alexnet``, ``layers-18pct``, ...) with the
    parameters ``params`` under this project's names (``<module>.tower0.weight``), with the same preprocessing as
    :func:`to_onnx`; no network is built. Every layer kind of _DESCRIBED, in a chain, with its activation (a pooling
    layer's too); anything else (two towers, a layer reading another than the one before, an even cross-map LRN) is
    an ExportError naming it."""
    from .nets.description import layer_table, resolved_settings

    _, helper, numpy_helper = _import_onnx()
    rows = layer_table(desc)  # a valid description; one row per layer with one tower
    if desc.towers != 1:
        raise ExportError(f"export: '{desc.name}' has {desc.towers} towers; described networks export with one")
    settings = [resolved_settings(layer) for layer in desc.layers]
    for layer, s in zip(desc.layers, settings):
        why = _refusal(desc, layer, s)
        if why:
            raise ExportError(f"export: {why}")
    mean, image_size = _input(mean, image_size, desc.input_size)
    g = _Graph(helper, numpy_helper)
    x = _preprocess(g, INPUT_NAME, image_size, desc.input_size, mean, scale)
    side = desc.input_size
    for layer, s, row in zip(desc.layers, settings, rows):
        x = _described_layer(g, x, layer, s, params, side, tuple(row["output"]))
        if s.get("activation", "none") != "none":
            x = _activation(g, x, s["activation"], f"{layer.name}.{s['activation']}")
        side = int(row["output"][1]) if len(row["output"]) == 3 else 0
    return _finish(g, x, image_size, desc.input_size, desc.classes, scale, name)


def export_checkpoint(checkpoint: str | Path, out: str | Path) -> dict:
    """Writes the ONNX model of a training checkpoint to ``out``; returns what it takes and gives."""
    onnx, _, _ = _import_onnx()
    ckpt = ckpt_io.load(checkpoint)
    mean = ckpt.arrays.get("mean")
    # As build_model: the normalization (mean and scale) is set only when the checkpoint has a mean.
    scale = ckpt_io.normalization_scale(ckpt.meta) if mean is not None else 1.0
    image_size = int(ckpt.meta.get("image_size") or 0) or None
    config = ckpt.model_config
    if ckpt_io.DESCRIPTION in config:  # a described network (torchvision-alexnet, ...): from its description and
        # weights, no network built; a layer description_to_onnx does not cover is an ExportError naming it
        desc = ckpt_io.network_description(config)
        proto = description_to_onnx(desc, ckpt.params, image_size=image_size, mean=mean, scale=scale)
        num_classes = int(desc.classes)
    else:
        model = ckpt_io.build_model(ckpt, devices="cpu")
        proto = to_onnx(model, image_size=image_size, mean=mean, scale=scale)
        num_classes = int(model.num_classes)
    for i, cls in enumerate(ckpt.classes):
        proto.metadata_props.add(key=f"class.{i}", value=str(cls))
    onnx.save(proto, str(out))
    shape = proto.graph.input[0].type.tensor_type.shape.dim
    return {"input": [d.dim_param or d.dim_value for d in shape], "classes": num_classes}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Write a trained checkpoint as an ONNX model (needs the onnx package: pip install "
                    "'alexnet_cuda[onnx]'). The model takes uint8 RGB images (N, S, S, 3), S the checkpoint's "
                    "image size, and gives the softmax probabilities (N, classes): the centre crop, the training "
                    "mean and the normalization scale are inside the graph, as in 'predict'.")
    p.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint written by alexnet_cuda.train")
    p.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    cli.add_debug_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.command(PROG, build_parser(), _run, argv)


def _run(args) -> int:
    if not Path(args.checkpoint).is_file():
        raise cli.ConfigError(f"{args.checkpoint}: no such checkpoint file")
    info = export_checkpoint(args.checkpoint, args.onnx)
    n, h, w, c = info["input"]
    print(f"wrote {args.onnx}: uint8 images ({n}, {h}, {w}, {c}) -> probabilities ({n}, {info['classes']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
