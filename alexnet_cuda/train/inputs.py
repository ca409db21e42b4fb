"""The inputs of a training run beside its datasets (which ``alexnet_cuda.data.sources`` opens): the input
statistics the paper subtracts and perturbs (mean image, RGB PCA), cached in the run directory, and the loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import files
from .. import data
from ..cli import ConfigError
from .config import TrainConfig


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
    mean_path, pca_path = out / "mean.npy", out / "pca.npz"
    mean = _cached_mean(mean_path, int(train_set.image_size))
    if mean is None:
        mean = np.ascontiguousarray(data.compute_mean(train_set, max_images=c.stats_images, progress=c.progress),
                                    dtype=np.float32)
        files.atomic_write(mean_path, lambda f: np.save(f, mean, allow_pickle=False))
    pca = _cached_pca(pca_path)
    if pca is None:
        ev, evec = data.compute_pca(train_set, max_images=c.stats_images, progress=c.progress)
        pca = np.asarray(ev, np.float32), np.asarray(evec, np.float32)
        eigvals, eigvecs = pca
        files.atomic_write(pca_path, lambda f: np.savez(f, eigvals=eigvals, eigvecs=eigvecs))
    return mean, pca[0], pca[1]


def make_loaders(c: TrainConfig, train_set, val_set, shard: tuple[int, int] = (0, 1)):
    """The shuffled training loader (whole batches only) and the ordered validation loader. Data-parallel,
    ``shard`` = (rank, ranks): each rank loads its share of every (global) batch."""
    if len(train_set) < c.batch_size:
        raise ConfigError(f"the training set ({len(train_set)} images) is smaller than one batch ({c.batch_size}); "
                          f"lower --batch-size")
    train_loader = data.Loader(train_set, c.batch_size, shuffle=True, drop_last=True, seed=c.seed,
                               workers=c.workers, shard=shard)
    val_loader = data.Loader(val_set, c.batch_size, shuffle=False, drop_last=False, seed=c.seed,
                             workers=c.workers, shard=shard)
    return train_loader, val_loader
