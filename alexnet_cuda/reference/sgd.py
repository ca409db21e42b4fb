"""Stochastic gradient descent with momentum and weight decay, exactly the paper's rule (Section 5):

    v_{i+1} = 0.9 v_i - 0.0005 * eps * w_i - eps * <dL/dw>_i
    w_{i+1} = w_i + v_{i+1}

with momentum 0.9, weight decay 0.0005 and learning rate eps in the paper. Note the weight decay is multiplied by
the learning rate, so it follows the learning-rate schedule.
"""

from __future__ import annotations

import numpy as np


def sgd_update(weight, momentum_buffer, grad, lr: float, momentum: float = 0.9, weight_decay: float = 5e-4):
    """One step; returns the new (weight, momentum_buffer) in float64 (the inputs are not modified)."""
    w = np.asarray(weight, dtype=np.float64)
    v = np.asarray(momentum_buffer, dtype=np.float64)
    dw = np.asarray(grad, dtype=np.float64)
    if not (w.shape == v.shape == dw.shape):
        raise ValueError(f"sgd_update: weight, momentum buffer and gradient shapes differ: {w.shape}, {v.shape}, "
                         f"{dw.shape}")
    v_new = momentum * v - weight_decay * lr * w - lr * dw
    return w + v_new, v_new
