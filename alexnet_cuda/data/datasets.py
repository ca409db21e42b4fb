"""Datasets: ImageNet-style class folders, the flat ILSVRC-2012 validation set, CIFAR-10, Tiny ImageNet.

This module holds the file readers and :func:`open_dataset`; the :class:`Dataset` interface is in :mod:`.base`
and the CIFAR-10 reader in :mod:`.cifar10`.

Every dataset returns square uint8 RGB images of one fixed side (``Dataset.image_size``) and integer labels, so
a batch is a plain ``(B, S, S, 3)`` array. Images of variable size are prepared as in the paper (Section 2):
"we down-sampled the images to a fixed resolution of 256 x 256. Given a rectangular image, we first rescaled the
image such that the shorter side was of length 256, and then cropped out the central 256x256 patch".

Layouts understood by :func:`open_dataset` (``kind`` in parentheses; ``"auto"`` detects them):

* class folders (``"folder"`` / ``"imagenet"``, two names for the same reader)::

      root/train/<class>/*.JPEG       root/val/<class>/*.JPEG      root/classes.txt (optional)

  ``classes.txt`` holds one ``<class id><TAB or space><readable name>`` line per class; when present its order
  is the label order, otherwise the sorted folder names are. The class list always comes from ``train/`` (or
  ``classes.txt``) so that validation labels agree with training labels even when ``val/`` lacks a class.
* the ILSVRC-2012 validation set as a flat folder (``"imagenet"`` or ``"folder"``, ``split="val"``, next to a
  class-folder ``train/``): ``root/val/*.JPEG`` with
  no class sub-folders and a labels file in ``root/val/`` or ``root/``, either

  - ``ILSVRC2012_validation_ground_truth.txt`` (or ``val_labels.txt``/``labels.txt`` with one column): one
    **1-based** class index per line, line k labelling the k-th image in sorted filename order. Index i means
    the i-th class of the class list (``classes.txt`` order, else sorted ``train/`` folders). The devkit's
    own file numbers classes by ILSVRC2012_ID (the order of the devkit's meta.mat, NOT sorted wnids): to use
    it unchanged, give a ``classes.txt`` that lists the wnids in ILSVRC2012_ID order; or
  - a two-column ``<filename> <label>`` file (``val.txt``, ``val_labels.txt``, ``labels.txt``;
    whitespace, tab or comma separated, e.g. Caffe's val.txt or LOC_val_solution.csv) where ``label`` is a
    class id (wnid) or a **0-based** class index (the Caffe convention).
* CIFAR-10 (``"cifar10"``): ``cifar-10-batches-py/`` (python pickles ``data_batch_1..5``, ``test_batch``,
  ``batches.meta``; read with a restricted unpickler that can only build plain containers and NumPy arrays)
  or ``cifar-10-batches-bin/`` (``data_batch_*.bin``, ``test_batch.bin``, ``batches.meta.txt``). ``split="val"``
  and ``split="test"`` both mean the test batch. Images are always 32 x 32.
* Tiny ImageNet (``"tinyimagenet"``): ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG`` with
  ``val/val_annotations.txt``, ``wnids.txt``, ``words.txt``. Images are always 64 x 64; labels follow the
  sorted wnids.

Image conversion (:func:`load_image_file`): grayscale, CMYK, palette and 16-bit images are converted to RGB;
images with transparency (RGBA, LA, palette with a transparent colour) are **composited on black**, so a fully
transparent pixel reads as 0 like the zero padding the network sees elsewhere; images smaller than
``image_size`` are upscaled. Unreadable, truncated or undecodable files raise :class:`BadImage`, which the
:class:`~alexnet_cuda.data.loader.Loader` skips with a warning.
"""

from __future__ import annotations

import os
import re
import stat

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm")

from .base import LAYOUTS, BadImage, Dataset
from .cifar10 import Cifar10Dataset, _cifar_dir
from .synthetic import synthetic_dataset

KINDS = ("auto", "synthetic", "folder", "imagenet", "cifar10", "tinyimagenet")


def _to_rgb(img):
    """Any Pillow mode -> 'RGB'. Transparency is composited on black (see the module docstring)."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        # 16-bit or float grayscale: Pillow's convert('RGB') would clip to 0..255; rescale instead.
        a = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I") and a.max(initial=0) > 255 else 255.0
        if img.mode == "F":
            top = max(1.0, float(a.max(initial=1.0)))
        g = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(g, "L").convert("RGB")
    return img.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def _open_regular_file(path):
    """``path`` opened for reading, or BadImage when it is not a regular file. Opening a FIFO (or a terminal) blocks
    until someone writes to it, so the file is opened without blocking and checked before anything reads it."""
    f = open(path, "rb", opener=lambda p, flags: os.open(p, flags | getattr(os, "O_NONBLOCK", 0)))
    try:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise BadImage(f"{path}: not a regular file (a directory, FIFO, socket or device)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(f.fileno(), True)
        return f
    except BaseException:
        f.close()
        raise


def load_image_file(path, image_size: int) -> np.ndarray:
    """Decode an image file and prepare it as in the paper: shorter side -> ``image_size``, centre square crop.

    Returns uint8 (image_size, image_size, 3) RGB. Raises :class:`BadImage` (naming ``path``) when the file is
    missing, unreadable, truncated or not an image. JPEGs are decoded in draft mode (libjpeg's DCT scaling by
    1/2, 1/4 or 1/8) when they are at least twice as large as needed, which makes big photos much cheaper.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with _open_regular_file(path) as f, Image.open(f) as img:
            if img.format == "JPEG":
                # draft() picks the largest DCT scale that keeps BOTH sides >= image_size, so the shorter side
                # still needs resampling down (or not at all) - never up - after it.
                img.draft("RGB", (image_size, image_size))
            img.load()  # raises OSError("image file is truncated") for truncated data
            img = _to_rgb(img)
            w, h = img.size
            if w < 1 or h < 1:
                raise BadImage(f"{path}: empty image ({w}x{h})")
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            # One resample of the central square == resize shorter side to image_size then centre crop.
            # Bilinear with Pillow's area-aware support (antialiased when shrinking, interpolating when growing).
            if side == image_size and w == h:
                out = img
            else:
                out = img.resize((image_size, image_size), Image.BILINEAR,
                                 box=(left, top, left + side, top + side))
            arr = np.asarray(out, dtype=np.uint8)
    except BadImage:
        raise
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError,
            EOFError, MemoryError) as exc:
        raise BadImage(f"{path}: cannot decode image ({type(exc).__name__}: {exc})") from exc
    if arr.shape != (image_size, image_size, 3):  # pragma: no cover - defensive
        raise BadImage(f"{path}: decoded to unexpected shape {arr.shape}")
    return np.ascontiguousarray(arr)


# ------------------------------------------------------------------------------------------ file datasets


class _PathList:
    """Many relative paths packed in one bytes blob + offsets.

    A Python list of 1.28 M strings costs ~100 MB and, after fork, every access touches reference counts and
    un-shares the pages in each worker; a single blob stays shared and pickles fast for 'spawn' workers.
    """

    def __init__(self, paths: list[str]):
        encoded = [p.encode("utf-8", "surrogateescape") for p in paths]
        self.offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
        if encoded:
            np.cumsum([len(e) for e in encoded], out=self.offsets[1:])
        self.blob = b"".join(encoded)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.blob[self.offsets[i]:self.offsets[i + 1]].decode("utf-8", "surrogateescape")


class FileDataset(Dataset):
    """Images stored as files: ``root/<relative path>`` with a label each."""

    def __init__(self, root, rel_paths: list[str], labels, classes: list[str], class_ids: list[str],
                 image_size: int):
        self.root = str(root)
        self._paths = _PathList(list(rel_paths))
        self._labels = np.asarray(labels, dtype=np.int32)
        if len(self._labels) != len(self._paths):
            raise ValueError("FileDataset: one label per file expected")
        self.classes, self.class_ids = list(classes), list(class_ids)
        self.image_size = int(image_size)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, i: int) -> str:
        return os.path.join(self.root, self._paths[self._check_index(i)])

    def describe(self, i: int) -> str:
        return self.path(i)

    def label(self, i: int) -> int:
        return int(self._labels[self._check_index(i)])

    @property
    def labels(self) -> np.ndarray:
        return self._labels.copy()

    def load(self, i: int) -> np.ndarray:
        return load_image_file(self.path(i), self.image_size)


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith(".")


def _list_images(directory: str) -> list[str]:
    """Sorted image file names (not paths) directly inside ``directory``."""
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if _is_image(e.name) and e.is_file())


def _subdirs(directory: str) -> list[str]:
    with os.scandir(directory) as it:
        return sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))


def _has_class_folders(directory: str) -> bool:
    """True when ``directory`` holds sub-folders and at least one of them holds an image file."""
    if not os.path.isdir(directory):
        return False
    for sub in _subdirs(directory):
        try:
            with os.scandir(os.path.join(directory, sub)) as it:
                if any(_is_image(e.name) for e in it):
                    return True
        except OSError:
            continue
    return False


def _has_flat_images(directory: str) -> bool:
    if not os.path.isdir(directory):
        return False
    with os.scandir(directory) as it:
        return any(_is_image(e.name) and e.is_file() for e in it)


def _read_class_file(path: str) -> tuple[list[str], list[str]]:
    """``<id><TAB or spaces><name>`` lines -> (ids, names); a line with only an id uses it as the name."""
    ids, names = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = re.split(r"\t|\s+", line, maxsplit=1)
            ids.append(parts[0])
            names.append(parts[1].strip() if len(parts) > 1 and parts[1].strip() else parts[0])
    return ids, names


CLASS_FILES = ("classes.txt", "LOC_synset_mapping.txt", "synsets.txt")


def _class_list(root: str, split_dir: str | None) -> tuple[list[str], list[str]] | None:
    """The label order: classes.txt (or a synset mapping) in ``root``, else sorted ``root/train`` folders."""
    for name in CLASS_FILES:
        p = os.path.join(root, name)
        if os.path.isfile(p):
            ids, names = _read_class_file(p)
            if ids:
                return ids, names
    for candidate in (os.path.join(root, "train"), split_dir):
        if candidate and _has_class_folders(candidate):
            ids = [d for d in _subdirs(candidate) if _list_images(os.path.join(candidate, d))]
            return ids, list(ids)
    return None


def _folder_dataset(root: str, split_dir: str, image_size: int) -> FileDataset:
    found = _class_list(root, split_dir)
    assert found is not None
    class_ids, classes = found
    index = {cid: k for k, cid in enumerate(class_ids)}
    rel_paths, labels = [], []
    for sub in _subdirs(split_dir):
        files = _list_images(os.path.join(split_dir, sub))
        if not files:
            continue
        if sub not in index:
            raise ValueError(f"{split_dir}: class folder '{sub}' is not in the class list "
                             f"({len(class_ids)} classes from classes.txt or {root}/train)")
        rel = os.path.relpath(os.path.join(split_dir, sub), root)
        rel_paths += [os.path.join(rel, f) for f in files]
        labels += [index[sub]] * len(files)
    return FileDataset(root, rel_paths, labels, classes, class_ids, image_size)


VAL_LABEL_FILES = ("ILSVRC2012_validation_ground_truth.txt", "val_labels.txt", "labels.txt", "val.txt",
                   "LOC_val_solution.csv")


def _find_val_labels(split_dir: str, root: str) -> str | None:
    for d in (split_dir, root):
        for name in VAL_LABEL_FILES:
            p = os.path.join(d, name)
            if os.path.isfile(p):
                return p
    return None


def _flat_val_dataset(root: str, split_dir: str, labels_path: str, image_size: int) -> FileDataset:
    files = _list_images(split_dir)
    with open(labels_path, encoding="utf-8") as f:
        rows = [ln.strip() for ln in f if ln.strip()]
    if rows and rows[0].lower().startswith("imageid"):
        rows = rows[1:]  # LOC_val_solution.csv header
    found = _class_list(root, None)
    class_ids, classes = found if found else ([], [])
    split_rows = [re.split(r"[,\s]+", r) for r in rows]
    where = f"{labels_path}"
    if all(len(r) == 1 for r in split_rows):
        # ILSVRC2012_validation_ground_truth.txt: 1-based class index per line, sorted filename order.
        if len(split_rows) != len(files):
            raise ValueError(f"{where}: {len(split_rows)} labels for {len(files)} images in {split_dir} "
                             "(one 1-based class index per image, in sorted filename order, expected)")
        try:
            idx = np.array([int(r[0]) for r in split_rows], dtype=np.int64) - 1
        except ValueError as exc:
            raise ValueError(f"{where}: one-column labels must be 1-based integers ({exc})") from None
        if idx.min(initial=0) < 0:
            raise ValueError(f"{where}: one-column labels are 1-based; found 0")
        if not class_ids:
            class_ids = [str(k + 1) for k in range(int(idx.max(initial=0)) + 1)]
            classes = list(class_ids)
        if idx.max(initial=0) >= len(class_ids):
            raise ValueError(f"{where}: label {idx.max() + 1} exceeds the {len(class_ids)} known classes")
        return FileDataset(root, [os.path.relpath(os.path.join(split_dir, f), root) for f in files], idx,
                           classes, class_ids, image_size)
    # Two columns: filename, label (class id or 0-based index). Extra columns (boxes) are ignored.
    by_name: dict[str, str] = {}
    for r in split_rows:
        if len(r) < 2:
            raise ValueError(f"{where}: mixed one- and two-column lines")
        by_name[r[0]] = r[1]
        stem = os.path.splitext(r[0])[0]
        by_name.setdefault(stem, r[1])
    tokens = list(by_name.values())
    numeric = all(t.isdigit() for t in tokens)
    if not class_ids:
        if numeric:
            class_ids = [str(k) for k in range(max(int(t) for t in tokens) + 1)]
        else:
            class_ids = sorted(set(tokens))
        classes = list(class_ids)
    index = {cid: k for k, cid in enumerate(class_ids)}
    rel_paths, labels, missing = [], [], []
    for f in files:
        tok = by_name.get(f, by_name.get(os.path.splitext(f)[0]))
        if tok is None:
            missing.append(f)
            continue
        if tok in index:
            lab = index[tok]
        elif tok.isdigit() and int(tok) < len(class_ids):
            lab = int(tok)  # 0-based index (Caffe's val.txt)
        else:
            raise ValueError(f"{where}: unknown label '{tok}' for {f}")
        rel_paths.append(os.path.relpath(os.path.join(split_dir, f), root))
        labels.append(lab)
    if missing:
        raise ValueError(f"{where}: no label for {len(missing)} of {len(files)} images in {split_dir} "
                         f"(first: {missing[0]})")
    return FileDataset(root, rel_paths, labels, classes, class_ids, image_size)


# -------------------------------------------------------------------------------------------- Tiny ImageNet


def _is_tinyimagenet(root: str) -> bool:
    return os.path.isfile(os.path.join(root, "wnids.txt")) and os.path.isdir(os.path.join(root, "train"))


def _tinyimagenet(root: str, split: str) -> FileDataset:
    with open(os.path.join(root, "wnids.txt"), encoding="utf-8") as f:
        class_ids = sorted({ln.strip() for ln in f if ln.strip()})
    words = {}
    wp = os.path.join(root, "words.txt")
    if os.path.isfile(wp):
        ids, names = _read_class_file(wp)
        words = dict(zip(ids, names))
    classes = [words.get(c, c) for c in class_ids]
    index = {c: k for k, c in enumerate(class_ids)}
    rel_paths, labels = [], []
    if split == "train":
        for cid in class_ids:
            d = os.path.join(root, "train", cid, "images")
            if not os.path.isdir(d):
                d = os.path.join(root, "train", cid)
            if not os.path.isdir(d):
                continue
            rel = os.path.relpath(d, root)
            files = _list_images(d)
            rel_paths += [os.path.join(rel, f) for f in files]
            labels += [index[cid]] * len(files)
    elif split == "val":
        ann = os.path.join(root, "val", "val_annotations.txt")
        if not os.path.isfile(ann):
            raise ValueError(f"{root}: Tiny ImageNet val split needs val/val_annotations.txt\n{LAYOUTS}")
        with open(ann, encoding="utf-8") as f:
            for ln in f:
                parts = ln.split()
                if len(parts) < 2:
                    continue
                if parts[1] not in index:
                    raise ValueError(f"{ann}: wnid {parts[1]} not in wnids.txt")
                img_dir = "images" if os.path.isdir(os.path.join(root, "val", "images")) else ""
                rel_paths.append(os.path.join("val", img_dir, parts[0]) if img_dir else os.path.join("val", parts[0]))
                labels.append(index[parts[1]])
        order = np.argsort(np.array(rel_paths, dtype=object), kind="stable") if rel_paths else []
        rel_paths = [rel_paths[k] for k in order]
        labels = [labels[k] for k in order]
    else:
        raise ValueError(f"{root}: Tiny ImageNet has labelled splits 'train' and 'val' only, not '{split}'")
    if not rel_paths:
        raise ValueError(f"{root}: no Tiny ImageNet {split} images found\n{LAYOUTS}")
    return FileDataset(root, rel_paths, labels, classes, class_ids, 64)


# ------------------------------------------------------------------------------------------------- CIFAR-10
# ------------------------------------------------------------------------------------------------- open


def is_unsplit_folder(path) -> bool:
    """True for ``ROOT/<class>/<images>`` without ``train/`` and ``val/``: a dataset that ships no splits, which
    :func:`open_dataset` returns whole (the training driver splits it, see :mod:`.splits`)."""
    path = str(path)
    return _has_class_folders(path) and not any(os.path.isdir(os.path.join(path, s)) for s in ("train", "val"))


def _detect(path: str, split: str) -> str:
    if _cifar_dir(path):
        return "cifar10"
    if _is_tinyimagenet(path):
        return "tinyimagenet"
    split_dir = os.path.join(path, split)
    if _has_class_folders(split_dir):
        return "folder"
    if _has_flat_images(split_dir) and _find_val_labels(split_dir, path):
        return "imagenet"
    if is_unsplit_folder(path):
        return "folder"
    return "unknown"


def open_dataset(path, kind: str = "auto", split: str = "train", image_size: int = 256) -> Dataset:
    """Open a dataset directory (see the module docstring for the layouts).

    ``kind``: "auto" (detect), "synthetic", "folder", "imagenet", "cifar10" or "tinyimagenet". ``image_size``
    applies to folder/ImageNet datasets and the synthetic one; CIFAR-10 (32) and Tiny ImageNet (64) keep their
    native size. An empty or unrecognised directory raises one ValueError naming the path and the layouts.
    """
    if kind not in KINDS:
        raise ValueError(f"open_dataset: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    image_size = int(image_size)
    if image_size < 1:
        raise ValueError(f"open_dataset: image_size must be positive, got {image_size}")
    if kind == "synthetic" or (kind == "auto" and str(path) == "synthetic" and not os.path.exists(str(path))):
        return synthetic_dataset(split=split, image_size=image_size)
    if path is None:
        raise ValueError(f"open_dataset: a dataset path is required for kind={kind!r}\n{LAYOUTS}")
    root = os.path.abspath(os.path.expanduser(str(path)))
    if not os.path.isdir(root):
        raise ValueError(f"open_dataset: {root} is not a directory\n{LAYOUTS}")
    detected = _detect(root, split)
    if kind == "auto":
        kind = detected
    if kind == "cifar10":
        found = _cifar_dir(root)
        if not found:
            raise ValueError(f"open_dataset: {root} does not hold CIFAR-10 batches\n{LAYOUTS}")
        return Cifar10Dataset(found[0], found[1], split)
    if kind == "tinyimagenet":
        if not _is_tinyimagenet(root):
            raise ValueError(f"open_dataset: {root} is not a Tiny ImageNet folder (wnids.txt + train/)\n{LAYOUTS}")
        return _tinyimagenet(root, split)
    if kind in ("folder", "imagenet"):
        split_dir = os.path.join(root, split)
        if _has_class_folders(split_dir):
            ds = _folder_dataset(root, split_dir, image_size)
        elif _has_flat_images(split_dir) and _find_val_labels(split_dir, root):
            # ILSVRC-style flat val (accepted for kind "folder" too: the train split next to it is class folders)
            ds = _flat_val_dataset(root, split_dir, _find_val_labels(split_dir, root), image_size)
        elif is_unsplit_folder(root):
            ds = _folder_dataset(root, root, image_size)  # ROOT/<class>/<images>: every image, ``split`` unused
        elif _has_flat_images(split_dir):
            raise ValueError(f"open_dataset: {split_dir} holds images but no class folders and no labels file "
                             f"({', '.join(VAL_LABEL_FILES)})\n{LAYOUTS}")
        else:
            raise ValueError(f"open_dataset: no '{split}' images found in {root}\n{LAYOUTS}")
        if len(ds) == 0:
            raise ValueError(f"open_dataset: no '{split}' images found in {root}\n{LAYOUTS}")
        return ds
    raise ValueError(f"open_dataset: {root} is empty or not a recognised dataset layout (split '{split}')\n{LAYOUTS}")


def typical_image_side(dataset: Dataset, sample: int = 32) -> int | None:
    """The median shorter side of up to ``sample`` of a file dataset's images (evenly spread over it), read from
    their headers only; None when it holds no files or none can be read. It decides whether a folder of images is
    small (CIFAR-10-like) before a network is chosen for it."""
    path = getattr(dataset, "path", None)
    n = len(dataset)
    if path is None or n == 0:
        return None
    from PIL import Image

    sides = []
    for i in sorted({int(k) for k in np.linspace(0, n - 1, min(sample, n))}):
        try:
            with Image.open(path(i)) as img:
                sides.append(min(img.size))
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return int(np.median(sides)) if sides else None
