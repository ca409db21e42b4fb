"""Deterministic, stratified splits of a dataset that ships without its own (a folder of class folders with no
``train/`` and ``val/``): each class is shuffled by the seed and divided into validation, test and training images.

Sizes per class of ``n`` images: ``round(n * val_fraction)`` validation and ``round(n * test_fraction)`` test
images (halves round up), the rest training. A split that was asked for gets at least one image of every class that
has enough of them: a class needs one image per asked-for split (training, and validation and test when their
fraction is above 0). A class with fewer fills the splits in the order training, validation, test, so a class of
one image only trains and a class of two has no test image; :func:`missing_splits` names them so the driver can say
so. The per-class shuffle depends only on the seed and the class's position in the label order, so adding images
to one class does not reshuffle the others.
"""

from __future__ import annotations

import math

import numpy as np

SPLITS = ("train", "val", "test")


def _round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> dict[str, int]:
    """How many of a class's ``n`` images go to each split (see the module docstring)."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(f"split_sizes: fractions must be >= 0 with a sum below 1, got val {val_fraction}, "
                         f"test {test_fraction}")
    wanted = {"val": val_fraction > 0, "test": test_fraction > 0}
    sizes = {"val": _round_half_up(n * val_fraction), "test": _round_half_up(n * test_fraction)}
    if n >= 1 + sum(wanted.values()):
        for name in ("val", "test"):
            if wanted[name]:
                sizes[name] = max(sizes[name], 1)
        while n - sizes["val"] - sizes["test"] < 1:  # keep one training image: take from the larger held-out split
            sizes["val" if sizes["val"] >= sizes["test"] else "test"] -= 1
    else:  # too few images for every asked-for split: training first, then validation, then test
        left = n - 1
        for name in ("val", "test"):
            sizes[name] = 1 if wanted[name] and left > 0 else 0
            left -= sizes[name]
    return {"train": n - sizes["val"] - sizes["test"], **sizes}


def stratified_split(labels, num_classes: int, val_fraction: float, test_fraction: float,
                     seed: int) -> dict[str, np.ndarray]:
    """Indices (int64, ascending) into ``labels`` of the training, validation and test images."""
    labels = np.asarray(labels)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for k in range(int(num_classes)):
        members = np.flatnonzero(labels == k)
        order = np.random.Generator(np.random.PCG64([int(seed) % 2**64, k])).permutation(members)
        sizes = split_sizes(len(members), val_fraction, test_fraction)
        parts["val"].append(order[:sizes["val"]])
        parts["test"].append(order[sizes["val"]:sizes["val"] + sizes["test"]])
        parts["train"].append(order[sizes["val"] + sizes["test"]:])
    return {name: np.sort(np.concatenate(p)).astype(np.int64) if p else np.zeros(0, np.int64)
            for name, p in parts.items()}


def missing_splits(labels, num_classes: int, val_fraction: float, test_fraction: float) -> dict[int, list[str]]:
    """The classes (label -> split names) too small to appear in every asked-for split."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=int(num_classes))
    asked = ["train"] + [n for n, f in (("val", val_fraction), ("test", test_fraction)) if f > 0]
    out = {}
    for k, n in enumerate(counts):
        sizes = split_sizes(int(n), val_fraction, test_fraction)
        missing = [name for name in asked if sizes[name] == 0]
        if missing:
            out[k] = missing
    return out
