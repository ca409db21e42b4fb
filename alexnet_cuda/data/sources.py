"""The datasets of a run: its training and validation (and test) sets, opened from its data settings, which the
trainer and ``evaluate`` share. A folder of class folders that ships no train/ and val/ is split per class here, and
the split is recorded in the run directory (``splits/``) so that a resumed run and ``evaluate --split test`` read the
same images.

The settings are any object with the fields of :class:`DataSettings` (a training config has them all)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from ..cli import ConfigError
from ..console import log
from .base import Subset
from .datasets import is_unsplit_folder, open_dataset
from .resize import at_size
from .splits import SPLITS, missing_splits, stratified_split
from .synthetic import SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_VAL_IMAGES, synthetic_dataset



@dataclasses.dataclass
class DataSettings:
    """What says which images a run trains and validates on (a subset of the trainer's settings)."""

    dataset: str | None = None
    data: str | None = None
    image_size: int | None = None
    synthetic_images: int | None = None
    synthetic_classes: int = 10
    val_on_train: bool = False
    split_seed: int | None = None
    val_fraction: float | None = None
    test_fraction: float | None = None
    resume: bool = False

    @classmethod
    def of(cls, saved: dict[str, Any]) -> "DataSettings":
        """The data settings in a run's saved config (other keys are ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in saved.items() if k in fields})


SPLIT_DIR = "splits"  # in the run directory: train.txt, val.txt, test.txt and split.json


def open_datasets(c: DataSettings, out: Path | None = None):
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


def _synthetic(c: DataSettings):
    n_train = c.synthetic_images or SYNTHETIC_TRAIN_IMAGES
    n_val = min(SYNTHETIC_VAL_IMAGES, max(n_train // 5, 1))
    train_set = synthetic_dataset("train", num_classes=c.synthetic_classes,
                                       num_images=c.synthetic_images, image_size=c.image_size, seed=0)
    val_set = synthetic_dataset("val", num_classes=c.synthetic_classes, num_images=n_val,
                                     image_size=c.image_size, seed=0)
    return train_set, val_set


def _open(c: DataSettings, split: str):
    try:
        # CIFAR-10 and Tiny ImageNet come at their native size: resampled to --image-size like any other folder.
        return at_size(open_dataset(c.data, kind=c.dataset, split=split, image_size=c.image_size), c.image_size)
    except (OSError, ValueError, KeyError) as exc:
        # The data package's messages go on with the supported layouts, which --help lists: keep the first line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--data {c.data}: {first} (--help lists the supported layouts)") from None


def _unsplit(c: DataSettings) -> bool:
    return c.dataset in ("folder", "imagenet") and c.data is not None and is_unsplit_folder(c.data)


# --------------------------------------------------------------------------------------------------------------------
# Splits of a folder without train/ and val/, recorded in the run directory
# --------------------------------------------------------------------------------------------------------------------

def folder_splits(c: DataSettings, whole, out: Path | None) -> dict[str, Any]:
    """The training, validation and test subsets of ``whole`` (every image of the folder). Resuming, the ones
    recorded in ``out/splits/`` (refused when the folder changed since); otherwise split by ``--split-seed`` and
    recorded there."""
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


def open_split(c: DataSettings, run_dir: Path, split: str):
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

    return Subset(whole, _indices_of_record(whole, record, run_dir / SPLIT_DIR)[split])


def _counts(indices: dict[str, np.ndarray]) -> str:
    return (f"{len(indices['train'])} training / {len(indices['val'])} validation / {len(indices['test'])} test "
            f"images")


def _log_new_split(c: DataSettings, whole, indices: dict[str, np.ndarray], out: Path | None) -> None:
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


def _write_record(directory: Path, c: DataSettings, whole, indices: dict[str, np.ndarray]) -> None:
    """``splits/<split>.txt`` (one path per line, relative to the data folder), then ``splits/split.json`` (the
    settings, written last: a record without it is incomplete and not used)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = _relative_paths(whole)
    for name, idx in indices.items():
        text = "".join(paths[i] + "\n" for i in idx)
        files.atomic_write(directory / f"{name}.txt", lambda f, t=text: f.write(t.encode("utf-8", "surrogateescape")))
    settings = {"data": c.data, "split_seed": c.split_seed, "val_fraction": c.val_fraction,
                "test_fraction": c.test_fraction, "class_ids": list(whole.class_ids),
                "images": {name: int(len(idx)) for name, idx in indices.items()}}
    files.atomic_write(directory / "split.json", lambda f: f.write(json.dumps(settings, indent=1).encode()))


def _read_record(directory: Path) -> dict[str, Any] | None:
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


