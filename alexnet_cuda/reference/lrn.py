"""Local response normalization across channels (paper Section 3.3), float64.

    scale[:, i] = k + (alpha / size) * sum_{j in window(i)} x[:, j]^2
    y[:, i]     = x[:, i] * scale[:, i] ** (-beta)

window(i) is the channels [i - size//2, i + (size-1)//2] clipped to [0, c) -- PyTorch's convention, which for the
odd sizes used in practice (the paper's n = 5) is the symmetric window of cuda-convnet and Caffe. Note that the
paper writes alpha where this convention (like PyTorch's and Caffe's) uses alpha/size. Defaults are the paper's
k = 2, n = 5, alpha = 1e-4, beta = 0.75. x may have any number of trailing (spatial) dims after (n, c).
"""

from __future__ import annotations

import numpy as np


def _window(i: int, size: int, c: int) -> slice:
    """The channels that normalize channel i."""
    return slice(max(0, i - size // 2), min(c, i + (size - 1) // 2 + 1))


def lrn_forward(x: np.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75,
                k: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (y, scale)."""
    x = np.asarray(x, np.float64)
    if x.ndim < 2:
        raise ValueError(f"lrn_forward: expected x of shape (n, c, ...), got {x.shape}")
    if size < 1:
        raise ValueError(f"lrn_forward: size must be >= 1, got {size}")
    c = x.shape[1]
    scale = np.empty_like(x)
    for i in range(c):
        scale[:, i] = k + (alpha / size) * np.sum(x[:, _window(i, size, c)] ** 2, axis=1)
    return x * scale ** (-beta), scale


def lrn_backward(x: np.ndarray, y: np.ndarray, scale: np.ndarray, dy: np.ndarray, size: int = 5,
                 alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> np.ndarray:
    """dL/dx from the forward's x, y, scale and dL/dy (k enters only through scale).

    By the chain rule y_i = x_i * scale_i^-beta depends on x_i directly and on every x_m with m in window(i)
    through scale_i, with d scale_i / d x_m = 2 (alpha/size) x_m. So channel i's output sends
        dy_i * scale_i^-beta                                   to x_i, and
        dy_i * x_i * (-beta) scale_i^(-beta-1) * 2 (alpha/size) x_m = -(2 alpha beta/size) x_m dy_i y_i / scale_i
    to each x_m in its window. This scatters those terms, channel by channel.
    """
    x, y, scale, dy = (np.asarray(a, np.float64) for a in (x, y, scale, dy))
    c = x.shape[1]
    dx = dy * scale ** (-beta)
    for i in range(c):
        w = _window(i, size, c)
        through_scale = dy[:, i] * y[:, i] / scale[:, i]  # (n, spatial...)
        dx[:, w] -= (2.0 * alpha * beta / size) * x[:, w] * np.expand_dims(through_scale, 1)
    return dx
