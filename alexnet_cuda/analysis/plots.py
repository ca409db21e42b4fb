"""The report's and the study's charts, drawn with matplotlib (off screen, Agg). Only the report, the study and the
Figure 1 preset import this module: training never needs matplotlib.

Every figure is saved at a fixed size (``figsize`` times 100 dpi, no tight cropping), so the pictures of two runs
line up and the tests know the size to expect.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (and work on machines without a display)
import matplotlib.pyplot as plt  # noqa: E402 - after choosing the backend
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

DPI = 100
CURVES_SIZE = (11.0, 7.5)   # inches: 1100x750 pixels
CONFUSION_SIZE = (8.0, 7.0)  # 800x700
COMPARE_SIZE = (8.0, 5.0)    # 800x500


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _column(records: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(epochs, values) of the records that have ``key`` (validation fields are None on epochs not validated)."""
    pairs = [(r["epoch"], r[key]) for r in records if r.get(key) is not None]
    return np.array([p[0] for p in pairs], float), np.array([p[1] for p in pairs], float)


def training_curves(epochs: Sequence[dict[str, Any]], steps: Sequence[dict[str, Any]], path: str | Path,
                    title: str = "") -> Path:
    """Four panels: loss (per step, and the training and validation mean per epoch), top-1 and top-5 error per
    epoch, the learning rate per step, and training images/s per epoch."""
    fig, axes = plt.subplots(2, 2, figsize=CURVES_SIZE)
    ax = axes[0, 0]
    if steps:
        per_epoch = max(1, len(steps) / max(1, steps[-1].get("epoch", 1)))
        x = np.array([s["step"] for s in steps], float) / per_epoch  # steps in units of epochs
        ax.plot(x, [s["loss"] for s in steps], color="0.75", lw=0.8, label="training, per step")
    for key, label, style in (("train_loss", "training", "o-"), ("val_loss", "validation", "s-")):
        e, v = _column(epochs, key)
        if len(e):
            ax.plot(e, v, style, label=label)
    ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    for key, label, style in (("train_top1", "training top-1", "o-"), ("val_top1", "validation top-1", "s-"),
                              ("train_top5", "training top-5", "o--"), ("val_top5", "validation top-5", "s--")):
        e, v = _column(epochs, key)
        if len(e):
            ax.plot(e, 100 * (1 - v), style, label=label)
    ax.set(xlabel="epoch", ylabel="error (%)", title="top-1 and top-5 error", ylim=(0, 100))
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    if steps:
        ax.plot([s["step"] for s in steps], [s["lr"] for s in steps], lw=1.2)
        if min(s["lr"] for s in steps) > 0:
            ax.set_yscale("log")
    ax.set(xlabel="step", ylabel="learning rate", title="learning rate")
    ax = axes[1, 1]
    e, v = _column(epochs, "images_per_s")
    if len(e):
        ax.bar(e, v, width=0.6)
    ax.set(xlabel="epoch", ylabel="images/s", title="training throughput")
    for a in (axes[0, 0], axes[0, 1], axes[1, 1]):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def confusion_chart(matrix: np.ndarray, classes: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalized confusion matrix (row: true class, column: predicted), counts in the cells when it is small."""
    m = np.asarray(matrix, float)
    rows = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=CONFUSION_SIZE)
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    n = len(classes)
    ticks = np.arange(n)
    labels = [c if len(c) <= 14 else c[:13] + "…" for c in classes]
    ax.set_xticks(ticks, labels, rotation=90, fontsize=max(4, 9 - n // 8))
    ax.set_yticks(ticks, labels, fontsize=max(4, 9 - n // 8))
    if n <= 15:
        for i in range(n):
            for j in range(n):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if rows[i, j] > 0.5 else "black")
    ax.set(xlabel="predicted class", ylabel="true class", title=title or "confusion matrix (rows sum to 1)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return _save(fig, path)


def compare_curves(curves: dict[str, tuple[Sequence[float], Sequence[float]]], path: str | Path, *, ylabel: str,
                   title: str = "", hline: float | None = None, hline_label: str = "") -> Path:
    """One line per name: ``curves[name] = (epochs, values in %)``; an optional horizontal reference line."""
    fig, ax = plt.subplots(figsize=COMPARE_SIZE)
    for name, (x, y) in curves.items():
        if len(x):
            ax.plot(x, y, "o-", ms=3, label=name)
    if hline is not None:
        ax.axhline(hline, color="0.4", ls=":", label=hline_label or None)
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, path)
