"""Any described network (``alexnet_cuda.nets``) in float64 NumPy, forward and backward, from the reference layers.

Dense, like :mod:`.network`: the towers are groups. A conv reading its own tower's maps is a grouped convolution
(groups = towers), one reading every tower's is an ordinary one; a linear layer reading its own tower's features is
block-diagonal. Cross-map LRN and dropout are per tower (each tower normalizes its own maps and draws its own
masks); every other layer works per channel, so the dense layer equals the towers side by side. For the paper's
network this computes exactly what :func:`.network.forward_backward` computes (tests/network/test_descriptions.py).

``params`` holds '<layer>.weight' and '<layer>.bias' for conv, local, linear and batchnorm layers (conv weights
(out, in/groups, k, k), local weights (h_out, w_out, in/groups, k, k, out) with biases (out, h_out, w_out), linear
weights (out, in)), and '<layer>.running_mean' / '.running_var' for batchnorm.
"""

from __future__ import annotations

import numpy as np

from ..nets.description import NetDescription, layer_table, resolved_settings
from .activation import activation_backward, activation_forward
from .avgpool import avgpool_backward, avgpool_forward
from .batchnorm import batchnorm_backward, batchnorm_forward_eval, batchnorm_forward_train
from .conv2d import bias_backward as conv_bias_backward
from .conv2d import conv2d_backward_input, conv2d_backward_weight, conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .global_avgpool import global_avgpool_backward, global_avgpool_forward
from .linear import bias_backward as linear_bias_backward
from .linear import linear_backward_input, linear_backward_weight, linear_forward
from .local import local_backward, local_forward
from .lrn import lrn_backward, lrn_forward
from .maxpool import maxpool_backward, maxpool_forward
from .network import dropout_offset
from .softmax_xent import softmax_xent_backward, softmax_xent_forward
from .spatial_lrn import spatial_lrn_backward, spatial_lrn_forward


def _blocks(a: np.ndarray, towers: int) -> list[slice]:
    width = a.shape[1] // towers
    return [slice(t * width, (t + 1) * width) for t in range(towers)]


def pool_outputs(settings: dict, row: dict) -> int | None:
    """The explicit output count of a pooling layer from its ``layer_table`` row (None: whole windows, the ops'
    default)."""
    return None if settings["outputs"] == "whole" else row["output"][1]


def tower_groups(desc: NetDescription, layer) -> int:
    """Towers as groups: a layer reading its own tower's maps is grouped, except on the images, which every tower
    reads whole."""
    own = (layer.sees or ("all" if layer.kind == "linear" else "own")) == "own"
    return desc.towers if own and layer is not desc.layers[0] else 1


def dense_params(state: dict, desc: NetDescription) -> dict:
    """An engine's ``state_dict()`` ('<module>.tower<t>.<kind>') as this module's dense '<layer>.<kind>' float64
    tensors: the towers' blocks concatenated along the output channels (a local weight's last axis)."""
    modules = {(layer.module or layer.name): layer.name for layer in desc.layers}
    blocks: dict[str, list] = {}
    for key, value in state.items():
        module, rest = key.split(".tower", 1)
        tower, kind = rest.split(".", 1)
        blocks.setdefault(f"{modules[module]}.{kind}", [None] * desc.towers)[int(tower)] = np.asarray(value,
                                                                                                     np.float64)
    return {k: np.concatenate(v, axis=5 if v[0].ndim == 6 else 0) for k, v in blocks.items()}


class _Pass:
    def __init__(self, desc: NetDescription, params: dict, training: bool, seed: int, step: int, batch_stats: bool):
        self.desc, self.towers = desc, desc.towers
        self.w = {k: np.asarray(v, np.float64) for k, v in params.items()}
        self.training, self.seed, self.step, self.batch_stats = training, seed, step, batch_stats
        self.rows = {r["name"]: r for r in layer_table(desc) if r["tower"] == 0}
        self.dropouts = [layer.name for layer in desc.layers if layer.kind == "dropout"]
        self.cache: dict[str, dict] = {}
        self.running: dict[str, np.ndarray] = {}

    def groups(self, layer) -> int:
        return tower_groups(self.desc, layer)

    def forward(self, layer, s: dict, x: np.ndarray) -> np.ndarray:
        c = self.cache[layer.name] = {"x": x}
        w, kind, name = self.w, layer.kind, layer.name
        if kind == "conv":
            y = conv2d_forward(x, w[f"{name}.weight"], w.get(f"{name}.bias"), s["stride"], s["padding"],
                               self.groups(layer), s["activation"])
        elif kind == "local":
            y = local_forward(x, w[f"{name}.weight"], w.get(f"{name}.bias"), s["stride"], s["padding"],
                              self.groups(layer), s["activation"])
        elif kind == "linear":
            c["in_shape"] = x.shape
            x = c["x"] = x.reshape(x.shape[0], -1)
            y = self._linear(layer, x, w[f"{name}.weight"], w.get(f"{name}.bias"))
            y = activation_forward(y, s["activation"])
        elif kind in ("maxpool", "avgpool"):
            args = (s["size"], s["stride"], s["start"], pool_outputs(s, self.rows[name]))
            y = activation_forward((maxpool_forward if kind == "maxpool" else avgpool_forward)(x, *args),
                                   s["activation"])
        elif kind == "lrn":
            y, c["scale"] = np.empty_like(x), np.empty_like(x)
            for b in _blocks(x, self.towers):  # the window never crosses towers
                y[:, b], c["scale"][:, b] = lrn_forward(x[:, b], s["size"], s["alpha"], s["beta"], s["k"])
        elif kind == "spatial_lrn":
            y, c["denom"] = spatial_lrn_forward(x, s["size"], s["alpha"], s["beta"], s["k"])
        elif kind == "batchnorm":
            y = activation_forward(self._batchnorm(name, s, x, c), s["activation"])
        elif kind == "dropout":
            y = self._dropout(dropout_forward, name, s, x) if self.training and s["p"] > 0 else x
        elif kind == "global_avgpool":
            y = global_avgpool_forward(x)
        else:
            raise NotImplementedError(f"reference network: no {kind} layer yet")
        c["y"] = y
        return y

    def backward(self, layer, s: dict, g: np.ndarray, grads: dict, first: bool) -> np.ndarray:
        c, w, kind, name = self.cache[layer.name], self.w, layer.kind, layer.name
        x = c["x"]
        if kind == "conv":
            g = activation_backward(c["y"], g, s["activation"])
            weight = w[f"{name}.weight"]
            grads[f"{name}.weight"] = conv2d_backward_weight(x, g, weight.shape[2:], s["stride"], s["padding"],
                                                             self.groups(layer))
            if f"{name}.bias" in w:
                grads[f"{name}.bias"] = conv_bias_backward(g)
            return None if first else conv2d_backward_input(g, weight, x.shape[2:], s["stride"], s["padding"],
                                                            self.groups(layer))
        if kind == "local":
            g = activation_backward(c["y"], g, s["activation"])
            dx, grads[f"{name}.weight"], db = local_backward(x, w[f"{name}.weight"], g, s["stride"], s["padding"],
                                                             self.groups(layer))
            if f"{name}.bias" in w:
                grads[f"{name}.bias"] = db
            return dx
        if kind == "linear":
            g = activation_backward(c["y"], g, s["activation"])
            return self._linear_backward(layer, g, grads).reshape(c["in_shape"])
        if kind in ("maxpool", "avgpool"):
            g = activation_backward(c["y"], g, s["activation"])
            args = (s["size"], s["stride"], s["start"], pool_outputs(s, self.rows[name]))
            if kind == "maxpool":
                return maxpool_backward(x, g, *args)
            return avgpool_backward(g, x.shape[2], x.shape[3], *args)
        if kind == "lrn":
            dx = np.empty_like(x)
            for b in _blocks(x, self.towers):
                dx[:, b] = lrn_backward(x[:, b], c["y"][:, b], c["scale"][:, b], g[:, b], s["size"], s["alpha"],
                                        s["beta"], s["k"])
            return dx
        if kind == "spatial_lrn":
            return spatial_lrn_backward(x, c["y"], c["denom"], g, s["size"], s["alpha"], s["beta"], s["k"])
        if kind == "batchnorm":
            g = activation_backward(c["y"], g, s["activation"])
            dx, grads[f"{name}.weight"], grads[f"{name}.bias"] = batchnorm_backward(
                x, g, w[f"{name}.weight"], *c["saved"])
            return dx
        if kind == "dropout":
            return self._dropout(dropout_backward, name, s, g) if self.training and s["p"] > 0 else g
        return global_avgpool_backward(g, x.shape[2], x.shape[3])

    def _linear(self, layer, x, weight, bias):
        if self.groups(layer) == 1:
            return linear_forward(x, weight, bias)
        rows = np.array_split(np.arange(weight.shape[0]), self.towers)  # block-diagonal: each tower its own
        out = [linear_forward(x[:, xb], weight[r], None if bias is None else bias[r])
               for xb, r in zip(_blocks(x, self.towers), rows)]
        return np.concatenate(out, axis=1)

    def _linear_backward(self, layer, g, grads):
        name, x, weight = layer.name, self.cache[layer.name]["x"], self.w[f"{layer.name}.weight"]
        if self.groups(layer) == 1:
            grads[f"{name}.weight"] = linear_backward_weight(x, g)
            dx = linear_backward_input(g, weight)
        else:
            rows = np.array_split(np.arange(weight.shape[0]), self.towers)
            parts = list(zip(_blocks(x, self.towers), rows))
            grads[f"{name}.weight"] = np.concatenate([linear_backward_weight(x[:, xb], g[:, r]) for xb, r in parts])
            dx = np.concatenate([linear_backward_input(g[:, r], weight[r]) for _, r in parts], axis=1)
        if f"{name}.bias" in self.w:
            grads[f"{name}.bias"] = linear_bias_backward(g)
        return dx

    def _batchnorm(self, name: str, s: dict, x: np.ndarray, c: dict) -> np.ndarray:
        w = self.w
        if not self.batch_stats:
            return batchnorm_forward_eval(x, w[f"{name}.weight"], w[f"{name}.bias"], w[f"{name}.running_mean"],
                                          w[f"{name}.running_var"], s["eps"])
        y, mean, invstd, rm, rv = batchnorm_forward_train(x, w[f"{name}.weight"], w[f"{name}.bias"],
                                                          w[f"{name}.running_mean"], w[f"{name}.running_var"],
                                                          s["momentum"], s["eps"])
        c["saved"] = (mean, invstd)
        self.running[f"{name}.running_mean"], self.running[f"{name}.running_var"] = rm, rv
        return y

    def _dropout(self, fn, name: str, s: dict, a: np.ndarray) -> np.ndarray:
        """Each tower drops its own block of units with its own Philox stream (the network's offsets)."""
        k, hidden = self.dropouts.index(name), len(self.dropouts)
        out = np.empty_like(a)
        for t, b in enumerate(_blocks(a, self.towers)):
            out[:, b] = fn(np.ascontiguousarray(a[:, b]), s["p"], self.seed, dropout_offset(self.step, k, t, hidden),
                           True)
        return out


def forward_backward(desc: NetDescription, params: dict, images: np.ndarray, labels: np.ndarray, *,
                     training: bool = True, seed: int = 0, step: int = 0, backward: bool = True,
                     bn_batch_stats: bool | None = None, running_out: dict | None = None):
    """Loss, logits and (when ``backward``) the gradient of every dense parameter; the same arguments and results
    as :func:`.network.forward_backward`, for any description."""
    run = _Pass(desc, params, training, seed, step, backward if bn_batch_stats is None else bn_batch_stats)
    settings = [(layer, resolved_settings(layer)) for layer in desc.layers]
    previous = "data"
    for layer, _ in settings:
        if layer.input not in (None, previous):
            raise NotImplementedError(f"reference network: layer '{layer.name}' reads '{layer.input}', not the layer "
                                      f"before it; only chains of layers are computed here")
        previous = layer.name
    x = np.asarray(images, np.float64)
    for layer, s in settings:
        x = run.forward(layer, s, x)
    logits = x
    loss, probs = softmax_xent_forward(logits, labels)
    if running_out is not None:
        running_out.update(run.running)
    if not backward:
        return loss, logits, None
    grads: dict[str, np.ndarray] = {}
    g = softmax_xent_backward(probs, labels)
    for i, (layer, s) in reversed(list(enumerate(settings))):
        g = run.backward(layer, s, g, grads, first=i == 0)
    return loss, logits, grads
