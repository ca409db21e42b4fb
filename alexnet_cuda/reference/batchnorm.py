"""Batch normalization (Ioffe & Szegedy 2015, Algorithm 1), float64.

Over x (n, c) each feature is normalized over the batch; over x (n, c, h, w) each channel over n, h and w
(Section 3.2: "different elements of the same feature map, at different locations, are normalized in the same way").

Training mode, with M = n * h * w values per channel:
    mean = (1/M) sum x,   var = (1/M) sum (x - mean)^2   (biased),   xhat = (x - mean) / sqrt(var + eps)
    y = gamma * xhat + beta
and the running statistics for inference move towards the batch's (PyTorch's convention; the paper's Algorithm 2
averages over many batches instead):
    running_mean = (1 - momentum) * running_mean + momentum * mean
    running_var  = (1 - momentum) * running_var  + momentum * var * M / (M - 1)   (unbiased)
Inference mode uses the running statistics in place of the batch's.
"""

from __future__ import annotations

import numpy as np


def _channel_axes(x: np.ndarray, op: str) -> tuple[int, ...]:
    if x.ndim not in (2, 4):
        raise ValueError(f"{op}: expected x of shape (n, c) or (n, c, h, w), got {x.shape}")
    return (0,) if x.ndim == 2 else (0, 2, 3)


def _per_channel(v: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A (c) vector shaped to broadcast against x."""
    return np.asarray(v, np.float64).reshape((1, -1) + (1,) * (x.ndim - 2))


def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum: float = 0.1, eps: float = 1e-5):
    """Returns (y, saved_mean, saved_invstd, new_running_mean, new_running_var); the inputs are not modified."""
    x = np.asarray(x, np.float64)
    axes = _channel_axes(x, "batchnorm_forward_train")
    count = x.size // x.shape[1]
    if count < 2:
        raise ValueError(f"batchnorm_forward_train: needs n * h * w >= 2 values per channel, got {count}")
    mean = x.mean(axis=axes)
    var = ((x - _per_channel(mean, x)) ** 2).mean(axis=axes)
    invstd = 1.0 / np.sqrt(var + eps)
    y = _per_channel(gamma, x) * (x - _per_channel(mean, x)) * _per_channel(invstd, x) + _per_channel(beta, x)
    new_mean = (1.0 - momentum) * np.asarray(running_mean, np.float64) + momentum * mean
    new_var = (1.0 - momentum) * np.asarray(running_var, np.float64) + momentum * var * count / (count - 1)
    return y, mean, invstd, new_mean, new_var


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps: float = 1e-5) -> np.ndarray:
    x = np.asarray(x, np.float64)
    _channel_axes(x, "batchnorm_forward_eval")
    invstd = 1.0 / np.sqrt(np.asarray(running_var, np.float64) + eps)
    return (_per_channel(gamma, x) * (x - _per_channel(running_mean, x)) * _per_channel(invstd, x)
            + _per_channel(beta, x))


def batchnorm_backward(x, dy, gamma, saved_mean, saved_invstd):
    """Returns (dx, dgamma, dbeta) of the training-mode forward.

    The chain rule through the batch statistics (the paper's Section 3, the backward after Algorithm 1):
        dbeta = sum dy,  dgamma = sum dy * xhat,
        dxhat = dy * gamma,
        dvar  = sum dxhat * (x - mean) * (-1/2) (var + eps)^(-3/2),
        dmean = -sum dxhat / sqrt(var + eps)   (the dvar term through mean sums to zero),
        dx    = dxhat / sqrt(var + eps) + dvar * 2 (x - mean) / M + dmean / M
    written here exactly as the paper lists it, not in the simplified form the kernels use (batchnorm.h).
    """
    x, dy = np.asarray(x, np.float64), np.asarray(dy, np.float64)
    axes = _channel_axes(x, "batchnorm_backward")
    count = x.size // x.shape[1]
    centred = x - _per_channel(saved_mean, x)
    invstd = _per_channel(saved_invstd, x)
    xhat = centred * invstd
    dxhat = dy * _per_channel(gamma, x)
    dvar = np.sum(dxhat * centred, axis=axes) * -0.5 * np.asarray(saved_invstd, np.float64) ** 3
    dmean = -np.sum(dxhat, axis=axes) * np.asarray(saved_invstd, np.float64)
    dx = dxhat * invstd + _per_channel(dvar, x) * 2.0 * centred / count + _per_channel(dmean, x) / count
    return dx, np.sum(dy * xhat, axis=axes), np.sum(dy, axis=axes)
