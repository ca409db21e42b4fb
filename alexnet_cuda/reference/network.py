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

Layout of ``params`` (see :func:`merge_towers`): '<layer>.weight' / '<layer>.bias' for conv1..conv5, fc6..fc8, with
conv weights (out, in/groups, k, k) and fc weights (out, in), like PyTorch.
"""

from __future__ import annotations

import numpy as np

from .activation import activation_backward, activation_forward
from .conv2d import bias_backward as conv_bias_backward
from .conv2d import conv2d_backward_input, conv2d_backward_weight, conv2d_forward
from .dropout import dropout_backward, dropout_forward
from .linear import bias_backward as linear_bias_backward
from .linear import linear_backward_input, linear_backward_weight, linear_forward
from .lrn import lrn_backward, lrn_forward
from .maxpool import maxpool_backward, maxpool_forward
from .softmax_xent import softmax_xent_backward, softmax_xent_forward

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FC_LAYERS = ("fc6", "fc7", "fc8")
LRN_AFTER = ("conv1", "conv2")           # Section 3.3
POOL_AFTER = ("conv1", "conv2", "conv5")  # Section 3.4
GROUPED = ("conv2", "conv4", "conv5")     # own-tower connections (Section 3.5, Figure 2)
# The network's parameter names: torchvision's AlexNet positions (features.<i>, classifier.<i>) plus the tower.
PARAM_PREFIX = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6", "conv4": "features.8",
                "conv5": "features.10", "fc6": "classifier.1", "fc7": "classifier.4", "fc8": "classifier.6"}


def dropout_offset(step: int, layer: int, tower: int) -> int:
    """The Philox offset of fc layer ``layer`` (0 = fc6, 1 = fc7) of ``tower`` at training step ``step``."""
    return 4 * step + 2 * layer + tower


def merge_towers(state: dict, towers: int) -> dict:
    """Tower parameters ('features.0.tower<T>.<kind>', ...) -> the dense layout by layer ('conv1.<kind>', ...).

    Every tower parameter holds a block of its layer's output units, in tower order, so the dense parameter is the
    towers' parameters concatenated along axis 0 (for conv2/4/5 this is exactly the grouped-convolution weight).
    """
    dense = {}
    for layer in CONV_LAYERS + FC_LAYERS:
        for kind in ("weight", "bias"):
            parts = [np.asarray(state[f"{PARAM_PREFIX[layer]}.tower{t}.{kind}"], np.float64) for t in range(towers)]
            dense[f"{layer}.{kind}"] = np.concatenate(parts, axis=0)
    return dense


def _dropout_blocks(fn, a: np.ndarray, p: float, seed: int, step: int, layer: int, towers: int) -> np.ndarray:
    """Applies dropout (forward or backward) to each tower's block of neurons with that tower's stream."""
    width = a.shape[1] // towers
    out = np.empty_like(a)
    for t in range(towers):
        cols = slice(t * width, (t + 1) * width)
        out[:, cols] = fn(np.ascontiguousarray(a[:, cols]), p, seed, dropout_offset(step, layer, t), True)
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


def forward_backward(params: dict, config: dict, images: np.ndarray, labels: np.ndarray, *, training: bool = True,
                     seed: int = 0, step: int = 0, backward: bool = True):
    """Loss, logits and (when ``backward``) the gradient of every dense parameter.

    config: the keys of ``AlexNet.config`` used here: towers, conv_stride, conv_pad, lrn, lrn_size, lrn_alpha,
    lrn_beta, lrn_k, pool_kernel, pool_stride, activation, dropout. ``training`` turns dropout on.
    Returns (loss, logits, grads) with grads None when ``backward`` is False.
    """
    towers = config["towers"]
    act = config["activation"]
    p = float(config["dropout"])
    drop = training and p > 0.0
    lrn_args = (config["lrn_size"], config["lrn_alpha"], config["lrn_beta"], config["lrn_k"])
    pk, ps = config["pool_kernel"], config["pool_stride"]
    w = {k: np.asarray(v, np.float64) for k, v in params.items()}

    # ---- forward, keeping what the backward pass needs ----
    cache = {}
    x = np.asarray(images, np.float64)
    for i, layer in enumerate(CONV_LAYERS):
        groups = towers if layer in GROUPED else 1
        stride, pad = config["conv_stride"][i], config["conv_pad"][i]
        y = conv2d_forward(x, w[f"{layer}.weight"], w[f"{layer}.bias"], stride, pad, groups, act)
        c = {"x": x, "y": y, "groups": groups, "stride": stride, "pad": pad}
        if layer in LRN_AFTER and config["lrn"]:
            y_lrn, scale = _lrn_blocks_forward(y, towers, lrn_args)
            c["lrn"] = (y_lrn, scale)
            y = y_lrn
        if layer in POOL_AFTER:
            c["pool_in"] = y
            y = maxpool_forward(y, pk, ps)
        cache[layer] = c
        x = y
    conv5_shape = x.shape
    x = x.reshape(x.shape[0], -1)
    for i, layer in enumerate(FC_LAYERS):
        hidden = layer != "fc8"
        y = linear_forward(x, w[f"{layer}.weight"], w[f"{layer}.bias"])
        if hidden:
            y = activation_forward(y, act)
        cache[layer] = {"x": x, "y": y}
        if hidden and drop:
            y = _dropout_blocks(dropout_forward, y, p, seed, step, i, towers)
        x = y
    logits = x
    loss, probs = softmax_xent_forward(logits, labels)
    if not backward:
        return loss, logits, None

    # ---- backward ----
    grads = {}
    g = softmax_xent_backward(probs, labels)
    for i, layer in reversed(list(enumerate(FC_LAYERS))):
        c = cache[layer]
        if layer != "fc8":
            if drop:
                g = _dropout_blocks(dropout_backward, g, p, seed, step, i, towers)
            g = activation_backward(c["y"], g, act)
        grads[f"{layer}.weight"] = linear_backward_weight(c["x"], g)
        grads[f"{layer}.bias"] = linear_bias_backward(g)
        g = linear_backward_input(g, w[f"{layer}.weight"])
    g = g.reshape(conv5_shape)
    for layer in reversed(CONV_LAYERS):
        c = cache[layer]
        if layer in POOL_AFTER:
            g = maxpool_backward(c["pool_in"], g, pk, ps)
        if "lrn" in c:
            y_lrn, scale = c["lrn"]
            g = _lrn_blocks_backward(c["y"], y_lrn, scale, g, towers, lrn_args)
        g = activation_backward(c["y"], g, act)
        weight = w[f"{layer}.weight"]
        kernel = weight.shape[2:]
        grads[f"{layer}.weight"] = conv2d_backward_weight(c["x"], g, kernel, c["stride"], c["pad"], c["groups"])
        grads[f"{layer}.bias"] = conv_bias_backward(g)
        if layer != "conv1":
            g = conv2d_backward_input(g, weight, c["x"].shape[2:], c["stride"], c["pad"], c["groups"])
    return loss, logits, grads
