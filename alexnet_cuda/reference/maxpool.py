"""Max pooling (paper Section 3.4) with cuda-convnet's window geometry, float64.

Window (oy, ox) covers rows [start + oy*stride, start + oy*stride + kernel) and the same columns, CLIPPED to the
input (cuda-convnet's kLocalPool in src/cudaconv2/conv_util.cu), and y[:, :, oy, ox] is the maximum over it. By
default (start 0, outputs None) there are h_out = (h - start - kernel) // stride + 1 windows, all whole: trailing
rows and columns may belong to no window. ``outputs`` (an int, or an (h, w) pair) asks for exactly that many
windows, which may then hang over the far edge; cuda-convnet's rule for it is :func:`convnet_pool_outputs`. The
paper's overlapping pooling is kernel 3, stride 2.

Backward: each output's gradient goes to exactly one element of its window, the FIRST maximum in scan order (row
by row, left to right) -- which is what numpy's argmax of the row-major flattened window returns. When windows
overlap, an input that is the chosen maximum of several windows receives the sum of their gradients; inputs in no
window receive zero.
"""

from __future__ import annotations

import math

import numpy as np


def convnet_pool_outputs(size: int, kernel: int, stride: int, start: int = 0) -> int:
    """cuda-convnet's outputsX when a pool layer gives 0 (layer.py, PoolLayerParser.parse), transcribed."""
    return int(math.ceil((size - start - kernel) / float(stride))) + 1


def _outputs_along(size: int, kernel: int, stride: int, start: int, outputs: int | None, axis: str) -> int:
    if start + kernel < 1:
        raise ValueError(f"pool: start must be > -kernel, got start={start} with kernel={kernel}")
    if outputs is None:
        if size - start < kernel:
            raise ValueError(f"pool: window {kernel}x{kernel} is larger than the input {axis} from start")
        return (size - start - kernel) // stride + 1
    if outputs < 1 or start + (outputs - 1) * stride > size - 1:
        raise ValueError(f"pool: {outputs} windows of {kernel} at stride {stride} from {start} do not all overlap "
                         f"the input {axis} [0, {size})")
    return outputs


def output_size(h: int, w: int, kernel: int, stride: int, start: int = 0,
                outputs: int | tuple[int, int] | None = None) -> tuple[int, int]:
    if kernel < 1 or stride < 1:
        raise ValueError(f"maxpool: kernel and stride must be >= 1, got kernel={kernel}, stride={stride}")
    if start == 0 and outputs is None and (kernel > h or kernel > w):
        raise ValueError(f"maxpool: window {kernel}x{kernel} is larger than the input {h}x{w}")
    out_h, out_w = outputs if isinstance(outputs, (tuple, list)) else (outputs, outputs)
    return (_outputs_along(h, kernel, stride, start, out_h, "height"),
            _outputs_along(w, kernel, stride, start, out_w, "width"))


def window(o: int, kernel: int, stride: int, start: int, size: int) -> slice:
    """The input elements of window o along one axis, clipped to [0, size)."""
    first = start + o * stride
    return slice(max(0, first), min(size, first + kernel))


def windows(x: np.ndarray, kernel: int, stride: int, start: int = 0, outputs=None):
    """Yields (oy, ox, row slice, column slice) of every window of x (n, c, h, w)."""
    h, w = x.shape[2:]
    h_out, w_out = output_size(h, w, kernel, stride, start, outputs)
    for oy in range(h_out):
        for ox in range(w_out):
            yield oy, ox, window(oy, kernel, stride, start, h), window(ox, kernel, stride, start, w)


def pool(x: np.ndarray, reduce, kernel: int, stride: int, start: int = 0, outputs=None) -> np.ndarray:
    """y[:, :, oy, ox] = reduce(window (oy, ox) of x, axis=(2, 3)): max or average pooling."""
    x = np.asarray(x, np.float64)
    n, c, h, w = x.shape
    y = np.empty((n, c) + output_size(h, w, kernel, stride, start, outputs))
    for oy, ox, rows, cols in windows(x, kernel, stride, start, outputs):
        y[:, :, oy, ox] = reduce(x[:, :, rows, cols], axis=(2, 3))
    return y


def maxpool_forward(x: np.ndarray, kernel: int = 3, stride: int = 2, start: int = 0, outputs=None) -> np.ndarray:
    return pool(x, np.max, kernel, stride, start, outputs)


def maxpool_backward(x: np.ndarray, dy: np.ndarray, kernel: int = 3, stride: int = 2, start: int = 0,
                     outputs=None) -> np.ndarray:
    """dL/dx, found from x alone (the forward's y is not needed: the argmax is recomputed)."""
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    n, c = x.shape[:2]
    dx = np.zeros_like(x)
    ni, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
    for oy, ox, rows, cols in windows(x, kernel, stride, start, outputs):
        win = x[:, :, rows, cols]
        first_max = win.reshape(n, c, -1).argmax(axis=2)  # first occurrence: scan order
        ky, kx = np.divmod(first_max, win.shape[3])
        # Each (image, channel) pair hits one distinct element here, so plain fancy-index += is safe.
        dx[ni, ci, rows.start + ky, cols.start + kx] += dy[:, :, oy, ox]
    return dx
