"""Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019, Algorithm 2), float64, one step t >= 1:

    g = grad + weight_decay * w          (Adam: weight decay as an L2 penalty in the gradient; AdamW: g = grad)
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g^2
    m_hat = m / (1 - beta1^t),  v_hat = v / (1 - beta2^t)
    w = w - lr * m_hat / (sqrt(v_hat) + eps) - (lr * weight_decay * w  for AdamW only, with the old w)

AdamW's decay is scaled by lr as in PyTorch (the paper writes it with a separate schedule multiplier eta_t).
"""

from __future__ import annotations

import numpy as np


def adam_update(weight, m, v, grad, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8,
                weight_decay: float = 0.0, decoupled: bool = False, step: int = 1):
    """One step; returns the new (weight, m, v) in float64 (the inputs are not modified)."""
    w, m, v, g = (np.asarray(a, np.float64) for a in (weight, m, v, grad))
    if not (w.shape == m.shape == v.shape == g.shape):
        raise ValueError(f"adam_update: weight, m, v and grad shapes differ: {w.shape}, {m.shape}, {v.shape}, "
                         f"{g.shape}")
    if step < 1:
        raise ValueError(f"adam_update: step must be >= 1, got {step}")
    if not decoupled:
        g = g + weight_decay * w
    m = beta1 * m + (1.0 - beta1) * g
    v = beta2 * v + (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** step)
    v_hat = v / (1.0 - beta2 ** step)
    decay = lr * weight_decay * w if decoupled else 0.0
    return w - lr * m_hat / (np.sqrt(v_hat) + eps) - decay, m, v
