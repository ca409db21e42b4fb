"""Element-wise activations in float64: ReLU (paper Section 3.1) and tanh (the saturating baseline).

The backward functions take the forward's OUTPUT y, as the ops do: relu'(x) = 1 where y > 0 else 0 (the
derivative at exactly 0 is taken as 0), tanh'(x) = 1 - tanh(x)^2 = 1 - y^2.
"""

from __future__ import annotations

import numpy as np


def relu_forward(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, 0.0)


def relu_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    y, dy = np.asarray(y, np.float64), np.asarray(dy, np.float64)
    return np.where(y > 0, dy, 0.0)


def tanh_forward(x: np.ndarray) -> np.ndarray:
    return np.tanh(np.asarray(x, np.float64))


def tanh_backward(y: np.ndarray, dy: np.ndarray) -> np.ndarray:
    y, dy = np.asarray(y, np.float64), np.asarray(dy, np.float64)
    return dy * (1.0 - y * y)


def activation_forward(x: np.ndarray, activation: str | None = "relu") -> np.ndarray:
    """activation is 'relu', 'tanh' or 'none'/None (identity)."""
    if activation == "relu":
        return relu_forward(x)
    if activation == "tanh":
        return tanh_forward(x)
    if activation in ("none", None):
        return np.asarray(x, np.float64).copy()
    raise ValueError(f"activation_forward: unknown activation {activation!r}")


def activation_backward(y: np.ndarray, dy: np.ndarray, activation: str | None = "relu") -> np.ndarray:
    if activation == "relu":
        return relu_backward(y, dy)
    if activation == "tanh":
        return tanh_backward(y, dy)
    if activation in ("none", None):
        return np.asarray(dy, np.float64).copy()
    raise ValueError(f"activation_backward: unknown activation {activation!r}")
