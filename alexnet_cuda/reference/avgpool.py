"""Average pooling with cuda-convnet's geometry (its pool=avg), float64.

The windows are max pooling's (:mod:`alexnet_cuda.reference.maxpool`: start, stride, kernel, clipped to the
input); y[:, :, oy, ox] is the mean of the elements window (oy, ox) holds after clipping, i.e. the sum divided by
the clipped window's size, as cuda-convnet's AvgPooler (include/cudaconv2/conv_util.cuh) divides by regionSize.

Backward: the forward is linear, so each window's dy / (its clipped size) goes to every element it holds, and an
element in several windows receives the sum.
"""

from __future__ import annotations

import numpy as np

from .maxpool import output_size, pool, windows


def avgpool_forward(x: np.ndarray, kernel: int = 3, stride: int = 2, start: int = 0, outputs=None) -> np.ndarray:
    return pool(x, np.mean, kernel, stride, start, outputs)


def avgpool_backward(dy: np.ndarray, h: int, w: int, kernel: int = 3, stride: int = 2, start: int = 0,
                     outputs=None) -> np.ndarray:
    dy = np.asarray(dy, np.float64)
    n, c = dy.shape[:2]
    dx = np.zeros((n, c, h, w))
    if dy.shape[2:] != output_size(h, w, kernel, stride, start, outputs):
        raise ValueError(f"avgpool_backward: dy {dy.shape} does not fit the {h}x{w} input's windows")
    for oy, ox, rows, cols in windows(dx, kernel, stride, start, outputs):
        size = (rows.stop - rows.start) * (cols.stop - cols.start)
        dx[:, :, rows, cols] += (dy[:, :, oy, ox] / size)[:, :, None, None]
    return dx
