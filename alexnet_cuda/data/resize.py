"""A dataset of fixed-size images seen at another side, so that ``--image-size`` means the same for every layout.

CIFAR-10 (32 x 32) and Tiny ImageNet (64 x 64) come at one native size (:func:`~.datasets.open_dataset` keeps it).
The trainer's recipe for them takes random 32 x 32 (64 x 64) crops of 36 x 36 (72 x 72) images, the paper's
227-of-256 crop scaled down (Section 4.1), so their images are resampled to the run's image side first, bilinearly
as :func:`~.datasets.load_image_file` resamples a photo.
"""

from __future__ import annotations

import numpy as np

from .base import Dataset


class Resized(Dataset):
    """``dataset``'s images resampled to ``image_size`` x ``image_size`` (same classes, labels and order)."""

    def __init__(self, dataset: Dataset, image_size: int):
        self.dataset, self.image_size = dataset, int(image_size)
        self.classes, self.class_ids, self.root = dataset.classes, dataset.class_ids, dataset.root

    def __len__(self) -> int:
        return len(self.dataset)

    def label(self, i: int) -> int:
        return self.dataset.label(i)

    @property
    def labels(self) -> np.ndarray:
        return self.dataset.labels

    def describe(self, i: int) -> str:
        return self.dataset.describe(i)

    def load(self, i: int) -> np.ndarray:
        from PIL import Image

        image = Image.fromarray(self.dataset.load(i))
        return np.asarray(image.resize((self.image_size, self.image_size), Image.BILINEAR), dtype=np.uint8)


def at_size(dataset: Dataset, image_size: int | None) -> Dataset:
    """``dataset`` itself when its images already have side ``image_size`` (or no size is asked), else resampled."""
    if image_size is None or int(image_size) == int(dataset.image_size):
        return dataset
    return Resized(dataset, image_size)
