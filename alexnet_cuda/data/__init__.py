"""Data side of the training driver: datasets, the paper's augmentation, and a parallel prefetching loader."""

from .augment import Augmenter, apply_augmentation, center_crop, compute_mean, compute_pca, ten_crops
from .base import BadImage, Dataset, Subset
from .datasets import FileDataset, load_image_file, open_dataset
from .jitter import PixelJitter
from .loader import Loader
from .synthetic import SyntheticDataset, synthetic_dataset

__all__ = ["Augmenter", "BadImage", "Dataset", "FileDataset", "Loader", "PixelJitter", "Subset",
           "SyntheticDataset", "apply_augmentation", "center_crop", "compute_mean", "compute_pca",
           "load_image_file", "open_dataset", "synthetic_dataset", "ten_crops"]
