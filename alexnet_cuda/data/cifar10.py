"""CIFAR-10 in its python-pickle or binary form, read with a restricted unpickler (see :func:`safe_unpickle`)."""

from __future__ import annotations

import io
import os
import pickle

import numpy as np

from .base import LAYOUTS, Dataset



class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can build only dicts/lists/bytes/numbers and NumPy arrays.

    The CIFAR-10 python batches are pickles; a pickle can name any callable, so loading an untrusted one with
    plain ``pickle.load`` runs arbitrary code. Here every global is checked against this allow-list.
    """

    ALLOWED = {
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a data file")
        if module == "_codecs":
            import _codecs

            return _codecs.encode
        if module == "numpy":
            return getattr(np, name)
        core = module.split(".")[-1]  # multiarray / numeric
        try:  # NumPy >= 2 moved numpy.core to numpy._core
            import importlib

            mod = importlib.import_module(f"numpy._core.{core}")
        except ImportError:  # pragma: no cover - NumPy 1.x
            import importlib

            mod = importlib.import_module(f"numpy.core.{core}")
        return getattr(mod, name)


def safe_unpickle(data: bytes):
    """Load a pickle with :class:`_RestrictedUnpickler` (bytes keys kept as bytes, like Python 2 pickles)."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="bytes").load()


def _get(d: dict, key: str):
    if key.encode() in d:
        return d[key.encode()]
    return d[key]


def _cifar_dir(root: str) -> tuple[str, str] | None:
    """(directory, 'py' or 'bin') for a CIFAR-10 folder at or under ``root``."""
    for d in (root, os.path.join(root, "cifar-10-batches-py"), os.path.join(root, "cifar-10-batches-bin")):
        if os.path.isfile(os.path.join(d, "data_batch_1")) or os.path.isfile(os.path.join(d, "batches.meta")):
            return d, "py"
        if os.path.isfile(os.path.join(d, "data_batch_1.bin")) or os.path.isfile(
                os.path.join(d, "batches.meta.txt")):
            return d, "bin"
    return None


class Cifar10Dataset(Dataset):
    """CIFAR-10 held in memory (150 MB for the training set), decoded once on first use.

    Pickling (for 'spawn' loader workers) sends only the path; each worker re-reads the batches.
    """

    IMAGE_SIZE = 32
    RECORD = 1 + 3 * 32 * 32

    def __init__(self, directory: str, fmt: str, split: str):
        if split not in ("train", "val", "test"):
            raise ValueError(f"{directory}: CIFAR-10 splits are 'train' and 'test' (alias 'val'), not '{split}'")
        self.root, self.fmt, self.split = directory, fmt, split
        self.image_size = self.IMAGE_SIZE
        self._images = self._labels = None
        self.class_ids = self._read_meta()
        self.classes = list(self.class_ids)
        self._ensure()

    def _files(self) -> list[str]:
        suffix = ".bin" if self.fmt == "bin" else ""
        names = [f"data_batch_{k}{suffix}" for k in range(1, 6)] if self.split == "train" else [f"test_batch{suffix}"]
        paths = [os.path.join(self.root, n) for n in names]
        present = [p for p in paths if os.path.isfile(p)]
        if not present:
            raise ValueError(f"{self.root}: no CIFAR-10 {self.split} batches ({', '.join(names)}) found\n{LAYOUTS}")
        return present

    def _read_meta(self) -> list[str]:
        if self.fmt == "bin":
            p = os.path.join(self.root, "batches.meta.txt")
            if os.path.isfile(p):
                with open(p, encoding="utf-8") as f:
                    names = [ln.strip() for ln in f if ln.strip()]
                if names:
                    return names
        else:
            p = os.path.join(self.root, "batches.meta")
            if os.path.isfile(p):
                with open(p, "rb") as f:
                    meta = safe_unpickle(f.read())
                return [n.decode() if isinstance(n, bytes) else str(n) for n in _get(meta, "label_names")]
        return ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]

    def _ensure(self) -> None:
        if self._images is not None:
            return
        images, labels = [], []
        for path in self._files():
            with open(path, "rb") as f:
                raw = f.read()
            if self.fmt == "bin":
                if len(raw) % self.RECORD:
                    raise ValueError(f"{path}: size {len(raw)} is not a multiple of the {self.RECORD}-byte "
                                     "CIFAR-10 record (1 label byte + 3072 pixel bytes)")
                rec = np.frombuffer(raw, dtype=np.uint8).reshape(-1, self.RECORD)
                labels.append(rec[:, 0].astype(np.int32))
                images.append(rec[:, 1:])
            else:
                try:
                    batch = safe_unpickle(raw)
                    data = np.asarray(_get(batch, "data"), dtype=np.uint8)
                    labs = np.asarray(_get(batch, "labels"), dtype=np.int32)
                except (pickle.UnpicklingError, KeyError, EOFError, TypeError, ValueError) as exc:
                    raise ValueError(f"{path}: not a CIFAR-10 python batch ({exc})") from exc
                if data.ndim != 2 or data.shape[1] != 3072 or len(labs) != len(data):
                    raise ValueError(f"{path}: expected data (N, 3072) and N labels, got {data.shape}, {labs.shape}")
                images.append(data)
                labels.append(labs)
        data = np.concatenate(images)
        # Rows are 1024 red, 1024 green, 1024 blue values, each plane row-major 32x32 -> (N, 32, 32, 3).
        self._images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        self._labels = np.concatenate(labels)
        if self._labels.size and (self._labels.min() < 0 or self._labels.max() >= len(self.class_ids)):
            raise ValueError(f"{self.root}: labels outside 0..{len(self.class_ids) - 1}")

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_images"] = state["_labels"] = None
        return state

    def __len__(self) -> int:
        self._ensure()
        return len(self._labels)

    def label(self, i: int) -> int:
        self._ensure()
        return int(self._labels[self._check_index(i)])

    @property
    def labels(self) -> np.ndarray:
        self._ensure()
        return self._labels.copy()

    def load(self, i: int) -> np.ndarray:
        self._ensure()
        return self._images[self._check_index(i)].copy()

    def describe(self, i: int) -> str:
        return f"{self.root} ({self.split} image {i})"


