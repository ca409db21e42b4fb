"""Max pooling without padding (paper Section 3.4), float64.

y[:, :, oy, ox] = max of x[:, :, oy*stride : oy*stride + kernel, ox*stride : ox*stride + kernel], with
h_out = (h - kernel) // stride + 1 (likewise for the width): windows that do not fit are dropped, so trailing rows
and columns may belong to no window. The paper's overlapping pooling is kernel 3, stride 2.

Backward: each output's gradient goes to exactly one element of its window, the FIRST maximum in scan order (row
by row, left to right) -- which is what numpy's argmax of the row-major flattened window returns. When windows
overlap, an input that is the chosen maximum of several windows receives the sum of their gradients; inputs in no
window receive zero.
"""

from __future__ import annotations

import numpy as np


def output_size(h: int, w: int, kernel: int, stride: int) -> tuple[int, int]:
    if kernel < 1 or stride < 1:
        raise ValueError(f"maxpool: kernel and stride must be >= 1, got kernel={kernel}, stride={stride}")
    if kernel > h or kernel > w:
        raise ValueError(f"maxpool: window {kernel}x{kernel} is larger than the input {h}x{w}")
    return (h - kernel) // stride + 1, (w - kernel) // stride + 1


def maxpool_forward(x: np.ndarray, kernel: int = 3, stride: int = 2) -> np.ndarray:
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    h_out, w_out = output_size(h, w, kernel, stride)
    y = np.empty((n, c, h_out, w_out))
    for oy in range(h_out):
        for ox in range(w_out):
            window = x[:, :, oy * stride: oy * stride + kernel, ox * stride: ox * stride + kernel]
            y[:, :, oy, ox] = window.max(axis=(2, 3))
    return y


def maxpool_backward(x: np.ndarray, dy: np.ndarray, kernel: int = 3, stride: int = 2) -> np.ndarray:
    """dL/dx, found from x alone (the forward's y is not needed: the argmax is recomputed)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    n, c, h, w = x.shape
    h_out, w_out = output_size(h, w, kernel, stride)
    dx = np.zeros_like(x)
    ni, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for oy in range(h_out):
        for ox in range(w_out):
            window = x[:, :, oy * stride: oy * stride + kernel, ox * stride: ox * stride + kernel]
            first_max = window.reshape(n, c, kernel * kernel).argmax(axis=2)  # first occurrence: scan order
            ky, kx = np.divmod(first_max, kernel)
            # Each (image, channel) pair hits one distinct element here, so plain fancy-index += is safe.
            dx[ni, ci, oy * stride + ky, ox * stride + kx] += dy[:, :, oy, ox]
    return dx
