"""The data side of a training run: opening the training and validation sets of a resolved config (and splitting,
and recording the split of, a folder that ships none), the input statistics the paper subtracts and perturbs (mean
image, RGB PCA), and the loaders."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt_io
from .cli import ConfigError
from .train_config import SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_VAL_IMAGES, TrainConfig
from .train_log import log

SPLIT_DIR = "splits"  # in the run directory: train.txt, val.txt, test.txt and split.json


def open_datasets(c: TrainConfig, out: Path | None = None):
    """The training and validation sets of a resolved config. Raises ConfigError with one clear line.

    A folder of class folders without train/ and val/ is split (:func:`folder_splits`; the lists go to
    ``out/splits/`` when ``out`` is given). With ``--val-on-train`` the validation set is the training set, and the
    log says so."""
    if c.dataset == "synthetic":
        train_set, val_set = _synthetic(c)
    elif _unsplit(c):
        splits = folder_splits(c, _open(c, "train"), out)
        train_set, val_set = splits["train"], splits["val"]
    else:
        train_set, val_set = _open(c, "train"), _open(c, "val")
    if c.val_on_train:
        val_set = train_set
        log(f"WARNING: --val-on-train: validating on the {len(train_set)} training images. The validation accuracy "
            f"then measures how well the network remembers them, not how it does on images it has not seen.")
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


def _synthetic(c: TrainConfig):
    from . import data

    n_train = c.synthetic_images or SYNTHETIC_TRAIN_IMAGES
    n_val = min(SYNTHETIC_VAL_IMAGES, max(n_train // 5, 1))
    train_set = data.synthetic_dataset("train", num_classes=c.synthetic_classes,
                                       num_images=c.synthetic_images, image_size=c.image_size, seed=0)
    val_set = data.synthetic_dataset("val", num_classes=c.synthetic_classes, num_images=n_val,
                                     image_size=c.image_size, seed=0)
    return train_set, val_set


def _open(c: TrainConfig, split: str):
    from . import data
    from .data.resize import at_size

    try:
        # CIFAR-10 and Tiny ImageNet come at their native size: resampled to --image-size like any other folder.
        return at_size(data.open_dataset(c.data, kind=c.dataset, split=split, image_size=c.image_size), c.image_size)
    except (OSError, ValueError, KeyError) as exc:
        # The data package's messages go on with the supported layouts, which --help lists: keep the first line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--data {c.data}: {first} (--help lists the supported layouts)") from None


def _unsplit(c: TrainConfig) -> bool:
    from .data.datasets import is_unsplit_folder

    return c.dataset in ("folder", "imagenet") and c.data is not None and is_unsplit_folder(c.data)


# --------------------------------------------------------------------------------------------------------------------
# Splits of a folder without train/ and val/, recorded in the run directory
# --------------------------------------------------------------------------------------------------------------------

def folder_splits(c: TrainConfig, whole, out: Path | None) -> dict[str, Any]:
    """The training, validation and test subsets of ``whole`` (every image of the folder). Resuming, the ones
    recorded in ``out/splits/`` (refused when the folder changed since); otherwise split by ``--split-seed`` and
    recorded there."""
    from .data import Subset
    from .data.splits import stratified_split

    record = _read_record(out / SPLIT_DIR) if out is not None and c.resume else None
    if record is not None:
        indices = _indices_of_record(whole, record, out / SPLIT_DIR)
        log(f"splits of {c.data} as recorded in {out / SPLIT_DIR}: {_counts(indices)}")
    else:
        indices = stratified_split(whole.labels, len(whole.classes), c.val_fraction, c.test_fraction, c.split_seed)
        _log_new_split(c, whole, indices, out)
        if out is not None and len(indices["train"]) and len(whole.classes) >= 2:
            _write_record(out / SPLIT_DIR, c, whole, indices)
    return {name: Subset(whole, idx) for name, idx in indices.items()}


def open_split(c: TrainConfig, run_dir: Path, split: str):
    """One split (train, val or test) of a finished or running run's data, for evaluate: a folder without train/
    and val/ is read through the lists in ``run_dir/splits/``."""
    if split == "val" and c.val_on_train:
        split = "train"
    if c.dataset == "synthetic":
        train_set, val_set = _synthetic(c)
        return train_set if split == "train" else val_set
    if not _unsplit(c):
        return _open(c, split)
    whole = _open(c, "train")
    record = _read_record(run_dir / SPLIT_DIR)
    if record is None:
        raise ConfigError(f"{c.data} has no train/ and val/ and {run_dir / SPLIT_DIR} does not hold the split this "
                          f"run used; pass --data to evaluate on a folder of your choice")
    from .data import Subset

    return Subset(whole, _indices_of_record(whole, record, run_dir / SPLIT_DIR)[split])


def _counts(indices: dict[str, np.ndarray]) -> str:
    return (f"{len(indices['train'])} training / {len(indices['val'])} validation / {len(indices['test'])} test "
            f"images")


def _log_new_split(c: TrainConfig, whole, indices: dict[str, np.ndarray], out: Path | None) -> None:
    from .data.splits import missing_splits

    where = f"; the file lists are in {out / SPLIT_DIR}" if out is not None else ""
    log(f"{c.data} has no train/ and val/: split each class by seed {c.split_seed} into {_counts(indices)} "
        f"(--val-fraction {c.val_fraction:g}, --test-fraction {c.test_fraction:g}){where}")
    small = missing_splits(whole.labels, len(whole.classes), c.val_fraction, c.test_fraction)
    for k, missing in list(small.items())[:5]:
        log(f"note: class '{whole.classes[k]}' has too few images for every split: none for {' or '.join(missing)}")
    if len(small) > 5:
        log(f"note: {len(small) - 5} more classes are too small for every split")


def _relative_paths(whole) -> list[str]:
    return [os.path.relpath(whole.path(i), whole.root) for i in range(len(whole))]


def _write_record(directory: Path, c: TrainConfig, whole, indices: dict[str, np.ndarray]) -> None:
    """``splits/<split>.txt`` (one path per line, relative to the data folder), then ``splits/split.json`` (the
    settings, written last: a record without it is incomplete and not used)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = _relative_paths(whole)
    for name, idx in indices.items():
        text = "".join(paths[i] + "\n" for i in idx)
        ckpt_io.atomic_write(directory / f"{name}.txt", lambda f, t=text: f.write(t.encode("utf-8", "surrogateescape")))
    settings = {"data": c.data, "split_seed": c.split_seed, "val_fraction": c.val_fraction,
                "test_fraction": c.test_fraction, "class_ids": list(whole.class_ids),
                "images": {name: int(len(idx)) for name, idx in indices.items()}}
    ckpt_io.atomic_write(directory / "split.json", lambda f: f.write(json.dumps(settings, indent=1).encode()))


def _read_record(directory: Path) -> dict[str, Any] | None:
    from .data.splits import SPLITS

    if not (directory / "split.json").exists():
        return None
    try:
        record = json.loads((directory / "split.json").read_text())
        record["lists"] = {name: (directory / f"{name}.txt").read_bytes().decode("utf-8", "surrogateescape")
                           .splitlines() for name in SPLITS}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{directory}: the recorded split cannot be read ({exc})") from None
    return record


def _indices_of_record(whole, record: dict[str, Any], directory: Path) -> dict[str, np.ndarray]:
    """The recorded lists as indices into ``whole``; refuses a folder that no longer holds exactly those images."""
    position = {p: i for i, p in enumerate(_relative_paths(whole))}
    recorded = [p for lst in record["lists"].values() for p in lst]
    missing = [p for p in recorded if p not in position]
    added = len(position) - (len(recorded) - len(missing))
    if missing or added or list(record.get("class_ids", [])) != list(whole.class_ids):
        example = f", e.g. {missing[0]} is gone" if missing else ""
        raise ConfigError(f"--data {whole.root}: the folder changed since its split was recorded in {directory} "
                          f"({len(missing)} images missing, {added} new{example}); restore it, or train a new run "
                          f"(another --out) to split it again")
    return {name: np.asarray([position[p] for p in lst], dtype=np.int64) for name, lst in record["lists"].items()}


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


def make_loaders(c: TrainConfig, train_set, val_set, shard: tuple[int, int] = (0, 1)):
    """The shuffled training loader (whole batches only) and the ordered validation loader. Data-parallel,
    ``shard`` = (rank, ranks): each rank loads its share of every (global) batch."""
    from . import data

    if len(train_set) < c.batch_size:
        raise ConfigError(f"the training set ({len(train_set)} images) is smaller than one batch ({c.batch_size}); "
                          f"lower --batch-size")
    train_loader = data.Loader(train_set, c.batch_size, shuffle=True, drop_last=True, seed=c.seed,
                               workers=c.workers, shard=shard)
    val_loader = data.Loader(val_set, c.batch_size, shuffle=False, drop_last=False, seed=c.seed,
                             workers=c.workers, shard=shard)
    return train_loader, val_loader
