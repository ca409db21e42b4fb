"""Fully connected layer in float64 NumPy (paper Section 3.5: fc6, fc7 with 4096 units and fc8 with 1000).

    y[i, o] = act(bias[o] + sum_k x[i, k] * w[o, k])      x (n, in), w (out, in), y (n, out)

With L a function of y (before the activation; the backward ops take dL/dy of the affine part):
    dL/dx[i, k] = sum_o dy[i, o] * w[o, k]         (dx = dy w)
    dL/dw[o, k] = sum_i dy[i, o] * x[i, k]         (dw = dy^T x)
    dL/dbias[o] = sum_i dy[i, o]
"""

from __future__ import annotations

import numpy as np

from .activation import activation_forward




def linear_forward(x, weight, bias=None, activation=None) -> np.ndarray:
    x = np.asarray(x, np.float64)
    weight = np.asarray(weight, np.float64)
    y = np.einsum("ik,ok->io", x, weight)
    if bias is not None:
        y = y + np.asarray(bias, np.float64)[None, :]
    return activation_forward(y, activation)  # the fused epilogue


def linear_backward_input(dy, weight) -> np.ndarray:
    return np.einsum("io,ok->ik", np.asarray(dy, np.float64), np.asarray(weight, np.float64))


def linear_backward_weight(x, dy) -> np.ndarray:
    return np.einsum("io,ik->ok", np.asarray(dy, np.float64), np.asarray(x, np.float64))


def bias_backward(dy) -> np.ndarray:
    return np.asarray(dy, np.float64).sum(axis=0)
