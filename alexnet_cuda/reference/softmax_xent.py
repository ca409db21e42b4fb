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


NEVER_CORRECT = np.iinfo(np.int64).max  # the rank of a label whose score is NaN: above every k


def label_rank(scores, labels) -> np.ndarray:
    """For each row, how many other classes score at least as high as the label (int64 (n,)); a row is top-k
    correct when its rank is below k.

    Ties count against the label, so constant outputs (a dead or diverged network) are never correct; a NaN score
    anywhere in a row outranks the label, and a NaN label score has rank NEVER_CORRECT.
    """
    scores = np.asarray(scores, dtype=np.float64)
    n, classes = scores.shape
    labels = _check_labels("topk_correct", labels, n, classes)
    label_scores = scores[np.arange(n), labels]
    with np.errstate(invalid="ignore"):
        at_least = ~(scores < label_scores[:, None])
    at_least[np.arange(n), labels] = False
    rank = at_least.sum(axis=1).astype(np.int64)
    rank[np.isnan(label_scores)] = NEVER_CORRECT
    return rank


def topk_correct(scores, labels, ks=(1, 5)):
    """For each k, how many rows have their label among the k best scores (:func:`label_rank` below k)."""
    rank = label_rank(scores, labels)
    return tuple(int((rank < k).sum()) for k in ks)
