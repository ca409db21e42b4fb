"""PyTorch ``.pth`` state dicts read without PyTorch, by an unpickler that builds arrays and nothing else.

``torch.save`` (since PyTorch 1.6) writes a zip archive: ``<name>/data.pkl``, a pickle of the object, and one record
``<name>/data/<key>`` of raw bytes per tensor storage (``<name>/byteorder`` says ``little`` or ``big``). A state
dict's pickle needs only three callables: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2(storage,
offset, size, stride, requires_grad, hooks[, metadata])`` and, as persistent ids ``('storage', torch.FloatStorage,
key, location, numel)``, the storage types that say each record's dtype (PyTorch's ``torch/serialization.py``
``_save`` and ``_load``).

Why restricted: a pickle can call any importable function with any arguments (``os.system``), so opening an untrusted
``.pth`` with plain ``pickle`` or ``torch.load(weights_only=False)`` runs whatever it holds. Like PyTorch's own
``weights_only`` loader (``torch/_weights_only_unpickler.py``), this one resolves an allow-list of names to functions
of its own (the storages become NumPy arrays, ``_rebuild_tensor_v2`` a strided copy out of one), and refuses every
other global, naming it. ``BUILD`` (which would call an object's ``__setstate__``) is allowed only to set a dict's
attributes, as a state dict's ``_metadata`` does. Every number that comes from the file (offsets, sizes, strides,
element counts) is checked against the records' real sizes before an array is made, so no tensor costs more memory
than the file holds.

Not read: the pre-1.6 format (a stream of pickles, not a zip) and ``torch.save(..., _use_new_zipfile_serialization=
False)``; loading one and saving it again with a current PyTorch converts it.
"""

from __future__ import annotations

import collections
import io
import math
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .arguments import is_int
from .safetensors import widen_bfloat16

# The storage classes a state dict's pickle names, by PyTorch's names; BFloat16 is widened to float32 exactly.
_STORAGES = {"FloatStorage": np.dtype("f4"), "DoubleStorage": np.dtype("f8"), "HalfStorage": np.dtype("f2"),
             "BFloat16Storage": np.dtype("u2"), "LongStorage": np.dtype("i8"), "IntStorage": np.dtype("i4"),
             "ShortStorage": np.dtype("i2"), "CharStorage": np.dtype("i1"), "ByteStorage": np.dtype("u1"),
             "BoolStorage": np.dtype("?")}
_MAX_PICKLE_BYTES = 64 << 20  # a state dict's pickle is a few KB; this bounds what a zip bomb can expand to
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"  # the pickled magic number opening pre-1.6 files


class PthError(ValueError):
    """A .pth file is not a state dict this reader accepts (malformed, truncated, unsupported, or asking for a
    callable outside the allow-list). The message names the file, and the key or global where it applies."""


class _StorageType:
    """What a storage class of the pickle resolves to: only its dtype."""

    def __init__(self, name: str):
        self.name, self.dtype = name, _STORAGES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage record, read: a 1-D array of its elements (persistent ids resolve to these and nothing else)."""

    def __init__(self, values: np.ndarray, name: str):
        self.values, self.name = values, name


class _RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be replaced one by one
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, big_endian: bool, where: str):
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix, self.big_endian, self.where = archive, prefix, big_endian, where
        self.storages: dict[str, _Storage] = {}
        self.dispatch = dict(self.dispatch)
        self.dispatch[pickle.BUILD[0]] = _RestrictedUnpickler._build

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full == "collections.OrderedDict":
            return collections.OrderedDict
        if full in ("torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor"):
            return self._rebuild_tensor
        if full == "torch._utils._rebuild_parameter":
            return self._rebuild_parameter
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        raise PthError(f"{self.where}: refused: its pickle asks for {full}, which is not on the allow-list of a "
                       f"state dict (OrderedDict, torch._utils._rebuild_tensor_v2, the storage types); the file may "
                       f"run code when loaded with pickle or torch.load(weights_only=False)")

    def _build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if not isinstance(target, dict) or not isinstance(state, dict):
            raise PthError(f"{self.where}: refused: its pickle sets the state of a {type(target).__name__} (only a "
                           f"state dict's own attributes, such as _metadata, may be set)")
        # The attributes (PyTorch's per-module `_metadata` versions) mean nothing to this package: dropped.

    def persistent_load(self, pid: Any) -> _Storage:
        if (not isinstance(pid, tuple) or len(pid) != 5 or pid[0] != "storage" or not isinstance(pid[1], _StorageType)
                or not isinstance(pid[2], str) or not isinstance(pid[3], str) or not is_int(pid[4]) or pid[4] < 0):
            raise PthError(f"{self.where}: refused: a persistent id that is not a tensor storage ({pid!r:.120})")
        _, kind, key, _location, numel = pid
        if key in self.storages:
            stored = self.storages[key]
            if stored.values.dtype != kind.dtype or len(stored.values) != numel:
                raise PthError(f"{self.where}: storage {key!r} is named twice with different types or sizes")
            return stored
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise PthError(f"{self.where}: refused: a storage key {key!r:.80} that is not a plain name")
        record = f"{self.prefix}data/{key}"
        try:
            info = self.archive.getinfo(record)
        except KeyError:
            raise PthError(f"{self.where}: storage {key!r}: no record {record} in the archive (truncated?)") from None
        nbytes = numel * kind.dtype.itemsize
        if info.file_size != nbytes:
            raise PthError(f"{self.where}: storage {key!r}: {numel} elements of {kind} take {nbytes} bytes, but its "
                           f"record holds {info.file_size}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise PthError(f"{self.where}: storage {key!r} is compressed; torch.save stores storages uncompressed")
        values = np.frombuffer(bytearray(self.archive.read(record)), kind.dtype.newbyteorder(
            ">" if self.big_endian else "<")).astype(kind.dtype)
        if kind.name == "BFloat16Storage":
            values = widen_bfloat16(values)
        self.storages[key] = _Storage(values, key)
        return self.storages[key]

    def _rebuild_tensor(self, storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
        if not isinstance(storage, _Storage):
            raise PthError(f"{self.where}: refused: a tensor rebuilt from a {type(storage).__name__}, not a storage")
        shape, strides = tuple(size) if isinstance(size, (tuple, list)) else None, \
            tuple(stride) if isinstance(stride, (tuple, list)) else None
        ok = (is_int(offset) and offset >= 0 and shape is not None and strides is not None
              and len(shape) == len(strides) and all(is_int(d) and d >= 0 for d in shape)
              and all(is_int(s) and s >= 0 for s in strides) and isinstance(requires_grad, bool)
              and (hooks is None or (isinstance(hooks, dict) and not hooks))
              and (metadata is None or (isinstance(metadata, dict) and not metadata)))
        if not ok:
            raise PthError(f"{self.where}: refused: a tensor with unusual arguments (offset {offset!r:.40}, size "
                           f"{size!r:.60}, stride {stride!r:.60}, hooks or metadata): storage {storage.name!r}")
        values = storage.values
        count = math.prod(shape)
        if count == 0:
            return np.zeros(shape, values.dtype)
        last = offset + sum((d - 1) * s for d, s in zip(shape, strides))
        if last >= len(values) or count > len(values):
            raise PthError(f"{self.where}: a tensor of size {shape} with stride {strides} at offset {offset} reaches "
                           f"past its storage {storage.name!r} ({len(values)} elements), or repeats its elements")
        view = np.lib.stride_tricks.as_strided(values[offset:], shape, [s * values.itemsize for s in strides],
                                               writeable=False)
        return np.array(view, order="C")

    def _rebuild_parameter(self, data, requires_grad=False, hooks=None):
        if not isinstance(data, np.ndarray):
            raise PthError(f"{self.where}: refused: a parameter made of a {type(data).__name__}")
        return data


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict in a ``torch.save`` file, as NumPy arrays by name (in the file's order). Raises
    :class:`PthError` (a ValueError) naming the file for anything but a state dict of tensors; OSError when the file
    cannot be opened."""
    path = Path(path)
    where = f"pth {path}"
    if path.is_dir():
        raise PthError(f"{where}: is a directory, expected a .pth file")
    with open(path, "rb") as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head == _LEGACY_MAGIC:
        raise PthError(f"{where}: PyTorch's pre-1.6 format, not read here; load it with torch.load and torch.save it "
                       f"again with a current PyTorch")
    if not zipfile.is_zipfile(path):
        raise PthError(f"{where}: not a file written by torch.save (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise PthError(f"{where}: not a file written by torch.save (expected one <name>/data.pkl, found "
                               f"{len(pickles)})")
            prefix = pickles[0][: -len("data.pkl")]
            info = archive.getinfo(pickles[0])
            if info.file_size > _MAX_PICKLE_BYTES:
                raise PthError(f"{where}: its pickle is {info.file_size} bytes, more than a state dict's could be")
            big_endian = False
            if f"{prefix}byteorder" in archive.namelist():
                order = archive.read(f"{prefix}byteorder")
                if order not in (b"little", b"big"):
                    raise PthError(f"{where}: unknown byte order {order[:20]!r}")
                big_endian = order == b"big"
            unpickler = _RestrictedUnpickler(archive.read(pickles[0]), archive, prefix, big_endian, where)
            state = unpickler.load()
    except PthError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, RecursionError, zipfile.BadZipFile, NotImplementedError, OverflowError) as exc:
        raise PthError(f"{where}: cannot be read, it is truncated or corrupt, or not a state dict "
                       f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, dict):
        raise PthError(f"{where}: holds a {type(state).__name__}, not a state dict (a dict of tensors by name)")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, np.ndarray):
            raise PthError(f"{where}: entry {k!r:.80} is a {type(v).__name__}, not a tensor: not a plain state dict")
    return dict(state)
