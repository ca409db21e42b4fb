"""The whole network in float64 NumPy, forward and backward, built from the reference layers.

Written as ONE dense network, not as towers: the paper's two-GPU split (Section 3.2) is equivalent to a single net in
which conv2, conv4 and conv5 are grouped convolutions (groups = towers: each half of the kernels sees only its half of
the previous layer's maps) and conv3, fc6, fc7 and fc8 are fully connected to the previous layer. Comparing the C++
towers against this dense net therefore checks the exchanges as well as the layers.

Two things are local to a tower and show through:

- Local response normalization (Section 3.3) sums over adjacent kernel maps OF THE SAME TOWER: each GPU normalized
  its own maps in cuda-convnet, so the window stops at the tower boundary. Here LRN is applied to each tower's block
  of channels separately.
- Dropout: each tower drops its own half of fc6's and fc7's neurons with its own Philox stream, so the dense mask of
  an fc layer with W neurons is the concatenation, along the neurons, of the towers' (n, W/towers) masks, drawn with
  offset ``dropout_offset(step, layer, tower)``.

The variants (issue 10) are dense too: BatchNorm normalizes each channel on its own, so one dense BN over all the
channels equals each tower normalizing its own; global average pooling of the dense conv5 maps is the towers' pooled
features side by side; any list of hidden fc widths is a chain of dense linear layers.

Layout of ``params`` (see :func:`merge_towers`): '<layer>.weight' / '<layer>.bias' for conv1..conv5, fc6, fc7, ...
(the last is the output layer), and 'bn<i>.weight', 'bn<i>.bias', 'bn<i>.running_mean', 'bn<i>.running_var' for the
BatchNorm after conv i, with conv weights (out, in/groups, k, k) and fc weights (out, in), like PyTorch.
"""

from __future__ import annotations

import numpy as np

from .activation import activation_backward, activation_forward
from .batchnorm import batchnorm_backward, batchnorm_forward_eval, batchnorm_forward_train
from .conv2d import bias_backward as conv_bias_backward
from .conv2d import conv2d_backward_input, conv2d_backward_weight, conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .global_avgpool import global_avgpool_backward, global_avgpool_forward
from .linear import bias_backward as linear_bias_backward
from .linear import linear_backward_input, linear_backward_weight, linear_forward
from .lrn import lrn_backward, lrn_forward
from .maxpool import maxpool_backward, maxpool_forward
from .softmax_xent import softmax_xent_backward, softmax_xent_forward

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
LRN_AFTER = ("conv1", "conv2")           # Section 3.3
POOL_AFTER = ("conv1", "conv2", "conv5")  # Section 3.4
GROUPED = ("conv2", "conv4", "conv5")     # own-tower connections (Section 3.5, Figure 2)
# The network's parameter names: torchvision's AlexNet positions (features.<i>) plus the tower; a conv's BatchNorm
# sits at the position of torchvision's ReLU after it; classifier.<i> are the fc layers in order (fc6, fc7, ...).
CONV_PREFIX = {"features.0": "conv1", "features.3": "conv2", "features.6": "conv3", "features.8": "conv4",
               "features.10": "conv5"}
BN_PREFIX = {"features.1": "bn1", "features.4": "bn2", "features.7": "bn3", "features.9": "bn4", "features.11": "bn5"}


def dropout_offset(step: int, layer: int, tower: int, hidden_layers: int = 2) -> int:
    """The Philox offset of hidden fc layer ``layer`` (0 = fc6, 1 = fc7, ...) of ``tower`` at training step ``step``
    (a step spans 2 * max(2, hidden_layers) offsets: the paper's head keeps 4 per step)."""
    return 2 * max(2, hidden_layers) * step + 2 * layer + tower


def _dense_name(module: str, classifier_modules: list[str]) -> str:
    if module in CONV_PREFIX:
        return CONV_PREFIX[module]
    if module in BN_PREFIX:
        return BN_PREFIX[module]
    return f"fc{6 + classifier_modules.index(module)}"


def merge_towers(state: dict, towers: int) -> dict:
    """Tower tensors ('features.0.tower<T>.<kind>', ...) -> the dense layout by layer ('conv1.<kind>', ...).

    Every tower tensor holds a block of its layer's output units (or channels), in tower order, so the dense tensor
    is the towers' concatenated along axis 0 (for conv2/4/5 this is exactly the grouped-convolution weight).
    Works for parameters, gradients and optimizer states alike (any '<module>.tower<T>.<kind>' keys).
    """
    groups: dict[tuple[str, str], dict[int, np.ndarray]] = {}
    for key, value in state.items():
        module, rest = key.split(".tower", 1)
        tower, kind = rest.split(".", 1)
        groups.setdefault((module, kind), {})[int(tower)] = np.asarray(value, np.float64)
    classifier = sorted({m for m, _ in groups if m.startswith("classifier.")}, key=lambda m: int(m.split(".")[1]))
    return {f"{_dense_name(m, classifier)}.{kind}": np.concatenate([parts[t] for t in range(towers)], axis=0)
            for (m, kind), parts in groups.items()}


def _dropout_blocks(fn, a: np.ndarray, p: float, seed: int, step: int, layer: int, towers: int,
                    hidden_layers: int) -> np.ndarray:
    """Applies dropout (forward or backward) to each tower's block of neurons with that tower's stream."""
    width = a.shape[1] // towers
    out = np.empty_like(a)
    for t in range(towers):
        cols = slice(t * width, (t + 1) * width)
        out[:, cols] = fn(np.ascontiguousarray(a[:, cols]), p, seed, dropout_offset(step, layer, t, hidden_layers),
                          True)
    return out


def _lrn_blocks_forward(x: np.ndarray, towers: int, lrn_args) -> tuple[np.ndarray, np.ndarray]:
    """LRN of each tower's block of channels on its own (the window never crosses towers)."""
    width = x.shape[1] // towers
    y, scale = np.empty_like(x), np.empty_like(x)
    for t in range(towers):
        block = slice(t * width, (t + 1) * width)
        y[:, block], scale[:, block] = lrn_forward(x[:, block], *lrn_args)
    return y, scale


def _lrn_blocks_backward(x, y, scale, dy, towers: int, lrn_args) -> np.ndarray:
    width = x.shape[1] // towers
    dx = np.empty_like(x)
    for t in range(towers):
        b = slice(t * width, (t + 1) * width)
        dx[:, b] = lrn_backward(x[:, b], y[:, b], scale[:, b], dy[:, b], *lrn_args)
    return dx


class _Net:
    """One forward/backward pass of the dense net for a config (the keys of ``AlexNet.config``), keeping what the
    backward pass needs."""

    def __init__(self, params: dict, config: dict, training: bool, seed: int, step: int, bn_batch_stats: bool):
        self.c = config
        self.w = {k: np.asarray(v, np.float64) for k, v in params.items()}
        self.towers = config["towers"]
        self.act = config["activation"]
        self.p = float(config["dropout"])
        self.drop = training and self.p > 0.0
        self.seed, self.step = seed, step
        self.lrn_args = (config["lrn_size"], config["lrn_alpha"], config["lrn_beta"], config["lrn_k"])
        self.hidden = len(config["fc_width"])
        self.bn_batch_stats = bn_batch_stats
        self.cache: dict = {}
        self.running: dict[str, np.ndarray] = {}  # BatchNorm running statistics after this pass
        self.conv5_shape: tuple = ()

        self.norm = config.get("norm", "lrn" if config["lrn"] else "none")

    def bn_after_conv(self, layer: str) -> bool:
        return self.norm == "batchnorm" and not (layer in POOL_AFTER and self.c["bn_position"] == "after_pool")

    def bn_after_pool(self, layer: str) -> bool:
        return self.norm == "batchnorm" and layer in POOL_AFTER and self.c["bn_position"] == "after_pool"

    # ---- BatchNorm (Ioffe & Szegedy 2015) ----
    def bn_forward(self, i: int, x: np.ndarray, c: dict) -> np.ndarray:
        bn, w = f"bn{i + 1}", self.w
        c["bn_in"] = x
        if not self.bn_batch_stats:
            return batchnorm_forward_eval(x, w[f"{bn}.weight"], w[f"{bn}.bias"], w[f"{bn}.running_mean"],
                                          w[f"{bn}.running_var"], self.c["bn_eps"])
        y, mean, invstd, rm, rv = batchnorm_forward_train(x, w[f"{bn}.weight"], w[f"{bn}.bias"],
                                                          w[f"{bn}.running_mean"], w[f"{bn}.running_var"],
                                                          self.c["bn_momentum"], self.c["bn_eps"])
        c["bn_saved"] = (mean, invstd)
        self.running[f"{bn}.running_mean"], self.running[f"{bn}.running_var"] = rm, rv
        return y

    def bn_backward(self, i: int, g: np.ndarray, c: dict, grads: dict) -> np.ndarray:
        bn = f"bn{i + 1}"
        dx, grads[f"{bn}.weight"], grads[f"{bn}.bias"] = batchnorm_backward(c["bn_in"], g, self.w[f"{bn}.weight"],
                                                                            *c["bn_saved"])
        return dx

    # ---- conv blocks: conv -> [BN] -> act -> [LRN] -> [pool] -> [BN] ----
    def conv_forward(self, i: int, layer: str, x: np.ndarray) -> np.ndarray:
        cfg, w = self.c, self.w
        groups = self.towers if layer in GROUPED else 1
        stride, pad = cfg["conv_stride"][i], cfg["conv_pad"][i]
        bn_first = self.bn_after_conv(layer)
        y = conv2d_forward(x, w[f"{layer}.weight"], w.get(f"{layer}.bias"), stride, pad, groups,
                           "none" if bn_first else self.act)
        c = {"x": x, "groups": groups, "stride": stride, "pad": pad}
        if bn_first:
            y = activation_forward(self.bn_forward(i, y, c), self.act)
        c["y"] = y
        if layer in LRN_AFTER and self.norm == "lrn":
            y_lrn, scale = _lrn_blocks_forward(y, self.towers, self.lrn_args)
            c["lrn"] = (y_lrn, scale)
            y = y_lrn
        if layer in POOL_AFTER:
            c["pool_in"] = y
            y = maxpool_forward(y, cfg["pool_kernel"], cfg["pool_stride"])
        if self.bn_after_pool(layer):
            y = self.bn_forward(i, y, c)
        self.cache[layer] = c
        return y

    def conv_backward(self, i: int, layer: str, g: np.ndarray, grads: dict) -> np.ndarray:
        c = self.cache[layer]
        if self.bn_after_pool(layer):
            g = self.bn_backward(i, g, c, grads)
        if layer in POOL_AFTER:
            g = maxpool_backward(c["pool_in"], g, self.c["pool_kernel"], self.c["pool_stride"])
        if "lrn" in c:
            y_lrn, scale = c["lrn"]
            g = _lrn_blocks_backward(c["y"], y_lrn, scale, g, self.towers, self.lrn_args)
        g = activation_backward(c["y"], g, self.act)
        if self.bn_after_conv(layer):
            g = self.bn_backward(i, g, c, grads)
        weight = self.w[f"{layer}.weight"]
        grads[f"{layer}.weight"] = conv2d_backward_weight(c["x"], g, weight.shape[2:], c["stride"], c["pad"],
                                                          c["groups"])
        if f"{layer}.bias" in self.w:
            grads[f"{layer}.bias"] = conv_bias_backward(g)
        if layer == "conv1":
            return g
        return conv2d_backward_input(g, weight, c["x"].shape[2:], c["stride"], c["pad"], c["groups"])

    # ---- the head: [GAP] -> hidden fc layers (linear -> act -> dropout) -> the output layer ----
    def head_forward(self, x: np.ndarray) -> np.ndarray:
        self.conv5_shape = x.shape
        x = global_avgpool_forward(x) if self.c["gap_head"] else x.reshape(x.shape[0], -1)
        for k in range(self.hidden + 1):
            layer, hidden = f"fc{6 + k}", k < self.hidden
            y = linear_forward(x, self.w[f"{layer}.weight"], self.w[f"{layer}.bias"])
            if hidden:
                y = activation_forward(y, self.act)
            self.cache[layer] = {"x": x, "y": y}
            if hidden and self.drop:
                y = _dropout_blocks(dropout_forward, y, self.p, self.seed, self.step, k, self.towers, self.hidden)
            x = y
        return x

    def head_backward(self, g: np.ndarray, grads: dict) -> np.ndarray:
        for k in reversed(range(self.hidden + 1)):
            layer, c = f"fc{6 + k}", self.cache[f"fc{6 + k}"]
            if k < self.hidden:
                if self.drop:
                    g = _dropout_blocks(dropout_backward, g, self.p, self.seed, self.step, k, self.towers,
                                        self.hidden)
                g = activation_backward(c["y"], g, self.act)
            grads[f"{layer}.weight"] = linear_backward_weight(c["x"], g)
            grads[f"{layer}.bias"] = linear_bias_backward(g)
            g = linear_backward_input(g, self.w[f"{layer}.weight"])
        h, w = self.conv5_shape[2:]
        return global_avgpool_backward(g, h, w) if self.c["gap_head"] else g.reshape(self.conv5_shape)


def forward_backward(params: dict, config: dict, images: np.ndarray, labels: np.ndarray, *, training: bool = True,
                     seed: int = 0, step: int = 0, backward: bool = True, bn_batch_stats: bool | None = None,
                     running_out: dict | None = None):
    """Loss, logits and (when ``backward``) the gradient of every dense parameter.

    config: the keys of ``AlexNet.config`` used here: towers, conv_stride, conv_pad, norm (or lrn), lrn_size,
    lrn_alpha, lrn_beta, lrn_k, bn_position, bn_momentum, bn_eps, pool_kernel, pool_stride, activation, dropout,
    fc_width, gap_head. ``training`` turns dropout on. BatchNorm uses the batch's statistics when
    ``bn_batch_stats`` (default: when ``backward``, as the network does), the running ones otherwise; the updated
    running statistics go into ``running_out`` when given.
    Returns (loss, logits, grads) with grads None when ``backward`` is False.
    """
    net = _Net(params, config, training, seed, step, backward if bn_batch_stats is None else bn_batch_stats)
    x = np.asarray(images, np.float64)
    for i, layer in enumerate(CONV_LAYERS):
        x = net.conv_forward(i, layer, x)
    logits = net.head_forward(x)
    loss, probs = softmax_xent_forward(logits, labels)
    if running_out is not None:
        running_out.update(net.running)
    if not backward:
        return loss, logits, None
    grads: dict[str, np.ndarray] = {}
    g = net.head_backward(softmax_xent_backward(probs, labels), grads)
    for i, layer in reversed(list(enumerate(CONV_LAYERS))):
        g = net.conv_backward(i, layer, g, grads)
    return loss, logits, grads
