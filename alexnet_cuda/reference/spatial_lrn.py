"""Response normalization within each map (cuda-convnet's ``rnorm``), float64.

    denom[:, :, i, j] = k + (alpha / size^2) * sum of x[:, :, r, c]^2 over r in window(i), c in window(j)
    y = x * denom ** (-beta)

window(i) is [i - size//2, i - size//2 + size) clipped to the map: cuda-convnet's kCNorm_* kernels
(src/cudaconv2/conv_util.cu, startPxX = -sizeX/2 + pxIdxX), centred for odd sizes. The divisor stays size^2 where
the window is clipped: cuda-convnet's layer.py divides a layer's ``scale`` by size^2 once (NormLayerParser.
add_params), and its kernels add 1 (k = 1) to scale times the clipped sum. A cuda-convnet rnorm layer with size,
scale, pow is this with size, alpha = scale, beta = pow, k = 1.
"""

from __future__ import annotations

import numpy as np


def _window(i: int, size: int, extent: int) -> slice:
    return slice(max(0, i - size // 2), min(extent, i - size // 2 + size))


def spatial_lrn_forward(x: np.ndarray, size: int = 3, alpha: float = 5e-5, beta: float = 0.75,
                        k: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Returns (y, denom)."""
    x = np.asarray(x, np.float64)
    if x.ndim != 4:
        raise ValueError(f"spatial_lrn_forward: expected x of shape (n, c, h, w), got {x.shape}")
    if size < 1:
        raise ValueError(f"spatial_lrn_forward: size must be >= 1, got {size}")
    h, w = x.shape[2:]
    denom = np.empty_like(x)
    for i in range(h):
        for j in range(w):
            window = x[:, :, _window(i, size, h), _window(j, size, w)]
            denom[:, :, i, j] = k + alpha / size**2 * np.sum(window**2, axis=(2, 3))
    return x * denom ** (-beta), denom


def spatial_lrn_backward(x: np.ndarray, y: np.ndarray, denom: np.ndarray, dy: np.ndarray, size: int = 3,
                         alpha: float = 5e-5, beta: float = 0.75, k: float = 1.0) -> np.ndarray:
    """dL/dx (k enters only through denom). y_p = x_p denom_p^-beta depends on x_p directly and on every x_m in
    p's window through denom_p, with d denom_p / d x_m = 2 (alpha/size^2) x_m; so output p sends dy_p denom_p^-beta
    to x_p and -(2 alpha beta / size^2) x_m dy_p y_p / denom_p to each x_m of its window. This scatters those."""
    x, y, denom, dy = (np.asarray(a, np.float64) for a in (x, y, denom, dy))
    h, w = x.shape[2:]
    dx = dy * denom ** (-beta)
    through_denom = dy * y / denom
    for i in range(h):
        for j in range(w):
            rows, cols = _window(i, size, h), _window(j, size, w)
            dx[:, :, rows, cols] -= (2.0 * alpha * beta / size**2) * x[:, :, rows, cols] * \
                through_denom[:, :, i, j][:, :, None, None]
    return dx
