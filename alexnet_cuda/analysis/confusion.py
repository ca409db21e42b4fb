"""The confusion matrix of a checkpoint on its validation set, and the most confused class pairs.

The predictions come from :func:`alexnet_cuda.evaluate.predictions` (centre crop), the same code the evaluate
command uses, so the matrix's diagonal agrees with its top-1 error.
"""

from __future__ import annotations

import numpy as np


def confusion_matrix(model, dataset, *, batch_size: int = 128, workers: int | None = None,
                     max_images: int | None = None) -> np.ndarray:
    """(classes, classes) int64 counts: row = true class, column = the top-1 prediction on the centre crop."""
    from ..evaluate import predictions

    k = int(model.num_classes)
    counts = np.zeros((k, k), np.int64)
    for labels, probs in predictions(model, dataset, batch_size=batch_size, ten_crop=False, workers=workers,
                                     max_images=max_images):
        np.add.at(counts, (np.asarray(labels, np.int64), probs["center"].argmax(axis=1)), 1)
    return counts


def most_confused(matrix: np.ndarray, classes: list[str], top: int = 20) -> list[dict]:
    """The off-diagonal cells with the most images, largest first: {true, predicted, count, fraction of the true
    class}."""
    m = np.asarray(matrix)
    off = m.copy()
    np.fill_diagonal(off, 0)
    order = np.argsort(off, axis=None)[::-1][:top]
    out = []
    for flat in order:
        i, j = np.unravel_index(flat, m.shape)
        if off[i, j] == 0:
            break
        out.append({"true": classes[i], "predicted": classes[j], "count": int(m[i, j]),
                    "fraction": float(m[i, j] / max(1, m[i].sum()))})
    return out
