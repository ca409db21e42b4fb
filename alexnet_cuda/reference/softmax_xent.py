"""Softmax cross-entropy, the training objective (paper Section 2: the network "maximizes the multinomial logistic
regression objective"), its gradient, and the top-1 / top-5 counts the paper reports (Section 6).

    p_ij  = exp(z_ij) / sum_k exp(z_ik)
    loss  = (1/n) sum_i -log p_i,label_i
    dL/dz = (p - onehot(label)) / n

The logits are shifted by their row maximum first (this changes nothing mathematically) so exp cannot overflow,
and the loss uses log-sum-exp directly instead of log(p), which would be log(0) for a label with a tiny probability.
"""

from __future__ import annotations

import numpy as np


def _check_labels(op: str, labels, n: int, classes: int) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{op}: expected {n} labels, got shape {labels.shape}")
    if n and (labels.min() < 0 or labels.max() >= classes):
        raise ValueError(f"{op}: labels must be in [0, {classes}), got values in [{labels.min()}, {labels.max()}]")
    return labels.astype(np.int64)


def softmax_xent_forward(logits, labels):
    """Returns (mean loss, probs) for logits (n, classes) and integer labels (n,)."""
    z = np.asarray(logits, dtype=np.float64)
    n, classes = z.shape
    labels = _check_labels("softmax_xent_forward", labels, n, classes)
    shifted = z - z.max(axis=1, keepdims=True)
    log_sum_exp = np.log(np.exp(shifted).sum(axis=1))
    probs = np.exp(shifted - log_sum_exp[:, None])
    row_loss = log_sum_exp - shifted[np.arange(n), labels]
    return float(row_loss.mean()), probs


def softmax_xent_backward(probs, labels) -> np.ndarray:
    """dL/dlogits = (probs - onehot(labels)) / n."""
    probs = np.asarray(probs, dtype=np.float64)
    n, classes = probs.shape
    labels = _check_labels("softmax_xent_backward", labels, n, classes)
    grad = probs.copy()
    grad[np.arange(n), labels] -= 1.0
    return grad / n


def topk_correct(scores, labels, ks=(1, 5)):
    """For each k, how many rows have their label among the k best scores.

    A label's rank is the number of classes scoring strictly higher than it, so ties count in its favour; it is
    top-k correct when that number is below k (always, for k > the number of classes - 1).
    """
    scores = np.asarray(scores, dtype=np.float64)
    n, classes = scores.shape
    labels = _check_labels("topk_correct", labels, n, classes)
    label_scores = scores[np.arange(n), labels]
    higher = (scores > label_scores[:, None]).sum(axis=1)
    return tuple(int((higher < k).sum()) for k in ks)
