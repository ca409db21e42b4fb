"""The locally connected layer (cuda-convnet's ``local``: layer.py LocalUnsharedLayerParser, src/layer.cu
LocalUnsharedLayer), float64.

A convolution whose filters are not shared: output position (oy, ox) has its own weight block::

    y[i, o, oy, ox] = bias[o, oy, ox] + sum_{c, r, q} w[oy, ox, c, r, q, o] * x[i, g*Cg + c, oy*s - p + r, ox*s - p + q]

with g = o // (c_out / groups) the output channel's group, Cg = c_in / groups, and x read as zero outside the
image. x (n, c_in, h, w), w (h_out, w_out, Cg, kh, kw, c_out), bias (c_out, h_out, w_out): one bias per output
element, as in cuda-convnet's local layers. The output size is cuda-convnet's (LocalLayerParser's modulesX):
h_out = 1 + ceil((h + 2p - kh) / s), so when s does not divide h + 2p - kh the last window runs past the padding
and reads zeros there.
"""

from __future__ import annotations

import numpy as np

from .activation import activation_forward


def output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """cuda-convnet's rule; refused when the last window would start past the padded input (it would read only
    zeros: possible when stride > kernel)."""
    if size + 2 * padding < kernel:
        raise ValueError(f"local: kernel {kernel} is larger than the padded input {size + 2 * padding}")
    out = 1 + -(-(size + 2 * padding - kernel) // stride)
    if (out - 1) * stride >= size + 2 * padding:
        raise ValueError(f"local: stride {stride} puts the last window outside the padded input")
    return out


def _padded(x: np.ndarray, kh: int, kw: int, stride: int, padding: int, h_out: int, w_out: int) -> np.ndarray:
    """x with `padding` zeros before and enough zeros after for every window (the ceil rule's overhang)."""
    n, c, h, w = x.shape
    hp = max(h + 2 * padding, (h_out - 1) * stride + kh)
    wp = max(w + 2 * padding, (w_out - 1) * stride + kw)
    out = np.zeros((n, c, hp, wp))
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def _dims(x, w, stride, padding, groups):
    n, c_in, h, wd = x.shape
    h_out, w_out, cg, kh, kw, c_out = w.shape
    if c_in % groups or c_out % groups or cg != c_in // groups:
        raise ValueError(f"local: weight {w.shape} does not fit x {x.shape} with groups={groups}")
    if (h_out, w_out) != (output_size(h, kh, stride, padding), output_size(wd, kw, stride, padding)):
        raise ValueError(f"local: weight {w.shape} has the wrong output size for x {x.shape}")
    return h_out, w_out, cg, kh, kw, c_out


def local_forward(x, weight, bias=None, stride=1, padding=0, groups=1, activation=None) -> np.ndarray:
    """act(y) with act 'relu', 'tanh' or 'none'/None."""
    x, w = np.asarray(x, np.float64), np.asarray(weight, np.float64)
    h_out, w_out, cg, kh, kw, c_out = _dims(x, w, stride, padding, groups)
    xp = _padded(x, kh, kw, stride, padding, h_out, w_out)
    mg = c_out // groups
    y = np.zeros((x.shape[0], c_out, h_out, w_out))
    for oy in range(h_out):
        for ox in range(w_out):
            window = xp[:, :, oy * stride:oy * stride + kh, ox * stride:ox * stride + kw]
            for g in range(groups):
                patch = window[:, g * cg:(g + 1) * cg]  # (n, cg, kh, kw)
                y[:, g * mg:(g + 1) * mg, oy, ox] = np.einsum("icrq,crqo->io", patch,
                                                              w[oy, ox, :, :, :, g * mg:(g + 1) * mg])
    if bias is not None:
        y += np.asarray(bias, np.float64)[None]
    return activation_forward(y, activation)


def local_backward(x, weight, dy, stride=1, padding=0, groups=1):
    """(dx, dw, dbias) for the gradient dy of y."""
    x, w, dy = np.asarray(x, np.float64), np.asarray(weight, np.float64), np.asarray(dy, np.float64)
    h_out, w_out, cg, kh, kw, c_out = _dims(x, w, stride, padding, groups)
    xp = _padded(x, kh, kw, stride, padding, h_out, w_out)
    dxp = np.zeros_like(xp)
    dw = np.zeros_like(w)
    mg = c_out // groups
    for oy in range(h_out):
        for ox in range(w_out):
            ys, xs = slice(oy * stride, oy * stride + kh), slice(ox * stride, ox * stride + kw)
            for g in range(groups):
                cs, os_ = slice(g * cg, (g + 1) * cg), slice(g * mg, (g + 1) * mg)
                d = dy[:, os_, oy, ox]  # (n, mg)
                dw[oy, ox, :, :, :, os_] = np.einsum("icrq,io->crqo", xp[:, cs, ys, xs], d)
                dxp[:, cs, ys, xs] += np.einsum("io,crqo->icrq", d, w[oy, ox, :, :, :, os_])
    h, wd = x.shape[2:]
    dx = dxp[:, :, padding:padding + h, padding:padding + wd]
    return dx, dw, dy.sum(axis=0)
