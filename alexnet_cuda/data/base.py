"""The dataset interface every reader implements (:class:`Dataset`), views of one (:class:`Subset`), the error
for an unreadable image (:class:`BadImage`) and the text of the layouts :func:`~.datasets.open_dataset` understands
(:data:`LAYOUTS`, quoted by every reader's "not found" error)."""

from __future__ import annotations

import numpy as np

LAYOUTS = """expected one of these layouts:
  class folders   : ROOT/train/<class>/<image files> and ROOT/val/<class>/<image files> (optional ROOT/classes.txt
                    with '<class id><TAB><name>' lines), or ROOT/<class>/<image files> directly (then split
                    per class by the trainer: --val-fraction, --test-fraction)
  ILSVRC-2012 val : ROOT/val/<image files> (flat) plus a labels file (ILSVRC2012_validation_ground_truth.txt with
                    one 1-based index per line in sorted filename order, or '<filename> <label>' lines in val.txt /
                    val_labels.txt / labels.txt) in ROOT/val or ROOT
  CIFAR-10        : ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} or
                    ROOT/cifar-10-batches-bin/{data_batch_1..5.bin,test_batch.bin,batches.meta.txt}
                    (ROOT may also be the batches folder itself)
  Tiny ImageNet   : ROOT/wnids.txt, ROOT/words.txt, ROOT/train/<wnid>/images/*.JPEG,
                    ROOT/val/images/*.JPEG and ROOT/val/val_annotations.txt
  synthetic       : the word 'synthetic' (kind='synthetic'), generated in memory"""


class BadImage(Exception):
    """An image file that cannot be read, is truncated or does not decode. The message names the file."""


class Dataset:
    """Indexable collection of square uint8 RGB images with integer labels.

    Subclasses set ``classes`` (readable names, index = label), ``class_ids`` (e.g. wnids, same order),
    ``image_size`` and ``root``, and implement ``__len__``, ``label`` and ``load``.
    """

    classes: list[str]
    class_ids: list[str]
    image_size: int
    root: str | None = None
    # Whether a horizontally mirrored image keeps its label: training mirrors images at random (paper Section 4.1)
    # only when it does. True for photographs; the synthetic dataset's classes tell left from right.
    mirror_invariant: bool = True

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def label(self, i: int) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        """uint8 (image_size, image_size, 3) RGB; raises BadImage for an unreadable or truncated file."""
        raise NotImplementedError

    def describe(self, i: int) -> str:
        """What to name in a warning about item ``i`` (the file path for file-backed datasets)."""
        return f"{type(self).__name__}[{i}]"

    @property
    def labels(self) -> np.ndarray:
        """All labels as int32 (n,)."""
        return np.fromiter((self.label(i) for i in range(len(self))), dtype=np.int32, count=len(self))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _check_index(self, i: int) -> int:
        n = len(self)
        i = int(i)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"{type(self).__name__}: index {i} out of range for {n} images")
        return i

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={self.root!r}, images={len(self)}, classes={len(self.classes)}, "
                f"image_size={self.image_size})")


class Subset(Dataset):
    """A view of some items of another dataset (same classes and image size)."""

    def __init__(self, dataset: Dataset, indices):
        self.dataset = dataset
        self.indices = np.asarray(indices, dtype=np.int64)
        self.classes, self.class_ids = dataset.classes, dataset.class_ids
        self.image_size, self.root = dataset.image_size, dataset.root
        self.mirror_invariant = dataset.mirror_invariant

    def __len__(self) -> int:
        return len(self.indices)

    def label(self, i: int) -> int:
        return self.dataset.label(int(self.indices[self._check_index(i)]))

    def load(self, i: int) -> np.ndarray:
        return self.dataset.load(int(self.indices[self._check_index(i)]))

    def describe(self, i: int) -> str:
        return self.dataset.describe(int(self.indices[self._check_index(i)]))


# ---------------------------------------------------------------------------------------------- decoding
