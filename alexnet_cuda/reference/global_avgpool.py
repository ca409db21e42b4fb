"""Global average pooling (Lin, Chen & Yan 2014, "Network in Network", Section 3.2), float64:
y[i, c] = mean over (h, w) of x[i, c, h, w]; the backward gives every position dy[i, c] / (h * w)."""

from __future__ import annotations

import numpy as np


def global_avgpool_forward(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 4:
        raise ValueError(f"global_avgpool_forward: expected x of shape (n, c, h, w), got {x.shape}")
    return x.mean(axis=(2, 3))


def global_avgpool_backward(dy, h: int, w: int) -> np.ndarray:
    dy = np.asarray(dy, np.float64)
    return np.broadcast_to(dy[:, :, None, None] / (h * w), dy.shape + (h, w)).copy()
