"""The data side of a training run: opening the training and validation sets of a resolved config, the input
statistics the paper subtracts and perturbs (mean image, RGB PCA), and the loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import checkpoint as ckpt_io
from .cli import ConfigError
from .train_config import SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_VAL_IMAGES, TrainConfig


def open_datasets(c: TrainConfig):
    """The training and validation sets of a resolved config. Raises ConfigError with one clear line."""
    from . import data

    if c.dataset == "synthetic":
        n_train = c.synthetic_images or SYNTHETIC_TRAIN_IMAGES
        n_val = min(SYNTHETIC_VAL_IMAGES, max(n_train // 5, 1))
        train_set = data.synthetic_dataset("train", num_classes=c.synthetic_classes,
                                           num_images=c.synthetic_images, image_size=c.image_size, seed=0)
        val_set = data.synthetic_dataset("val", num_classes=c.synthetic_classes, num_images=n_val,
                                         image_size=c.image_size, seed=0)
        return train_set, val_set
    try:
        train_set = data.open_dataset(c.data, kind=c.dataset, split="train", image_size=c.image_size)
        val_set = data.open_dataset(c.data, kind=c.dataset, split="val", image_size=c.image_size)
    except (OSError, ValueError, KeyError) as exc:
        # The data package's messages go on with the supported layouts, which --help lists: keep the first line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--data {c.data}: {first} (--help lists the supported layouts)") from None
    if len(train_set) == 0:
        raise ConfigError(f"--data {c.data}: no training images found")
    if len(val_set) == 0:
        raise ConfigError(f"--data {c.data}: no validation images found")
    if len(train_set.classes) < 2:
        raise ConfigError(f"--data {c.data}: found {len(train_set.classes)} class ({', '.join(train_set.classes)}); "
                          f"a classifier needs at least 2")
    if list(train_set.classes) != list(val_set.classes):
        raise ConfigError(f"--data {c.data}: the training and validation splits have different classes")
    return train_set, val_set


def _cached_mean(path: Path, size: int) -> np.ndarray | None:
    if not path.exists():
        return None
    try:
        cached = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if cached.shape == (3, size, size) and cached.dtype == np.float32 and np.isfinite(cached).all():
        return cached
    return None


def _cached_pca(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if (z["eigvals"].shape == (3,) and z["eigvecs"].shape == (3, 3)
                    and np.isfinite(z["eigvals"]).all() and np.isfinite(z["eigvecs"]).all()):
                return z["eigvals"].astype(np.float32), z["eigvecs"].astype(np.float32)
    except (OSError, ValueError, KeyError):
        return None
    return None


def input_statistics(c: TrainConfig, train_set, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training-set mean image (paper Section 2) and the RGB PCA (Section 4.1), computed once and cached in the
    run directory as mean.npy / pca.npz."""
    from . import data

    mean_path, pca_path = out / "mean.npy", out / "pca.npz"
    mean = _cached_mean(mean_path, int(train_set.image_size))
    if mean is None:
        mean = np.ascontiguousarray(data.compute_mean(train_set, max_images=c.stats_images, progress=c.progress),
                                    dtype=np.float32)
        ckpt_io.atomic_write(mean_path, lambda f: np.save(f, mean, allow_pickle=False))
    pca = _cached_pca(pca_path)
    if pca is None:
        ev, evec = data.compute_pca(train_set, max_images=c.stats_images, progress=c.progress)
        pca = np.asarray(ev, np.float32), np.asarray(evec, np.float32)
        eigvals, eigvecs = pca
        ckpt_io.atomic_write(pca_path, lambda f: np.savez(f, eigvals=eigvals, eigvecs=eigvecs))
    return mean, pca[0], pca[1]


def make_loaders(c: TrainConfig, train_set, val_set):
    """The shuffled training loader (whole batches only) and the ordered validation loader."""
    from . import data

    if len(train_set) < c.batch_size:
        raise ConfigError(f"the training set ({len(train_set)} images) is smaller than one batch ({c.batch_size}); "
                          f"lower --batch-size")
    train_loader = data.Loader(train_set, c.batch_size, shuffle=True, drop_last=True, seed=c.seed,
                               workers=c.workers)
    val_loader = data.Loader(val_set, c.batch_size, shuffle=False, drop_last=False, seed=c.seed,
                             workers=c.workers)
    return train_loader, val_loader
