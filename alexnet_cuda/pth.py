"""PyTorch ``.pth`` state dicts read without PyTorch, by an unpickler that builds arrays and nothing else.

``torch.save`` (since PyTorch 1.6) writes a zip archive: ``<name>/data.pkl``, a pickle of the object, and one record
``<name>/data/<key>`` of raw bytes per tensor storage (``<name>/byteorder`` says ``little`` or ``big``). Before 1.6
(and with ``_use_new_zipfile_serialization=False``) it wrote a stream of pickles followed by the storages' bytes (see
:func:`_from_legacy`); torchvision's older weight files are in that format. Both are read. A state dict's pickle needs
only three callables: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
requires_grad, hooks[, metadata])`` and, as persistent ids ``('storage', torch.FloatStorage, key, location, numel)``,
the storage types that say each storage's dtype (PyTorch's ``torch/serialization.py``, ``_save``, ``_legacy_save``
and ``_load``).

Why restricted: a pickle can call any importable function with any arguments (``os.system``), so opening an untrusted
``.pth`` with plain ``pickle`` or ``torch.load(weights_only=False)`` runs whatever it holds. Like PyTorch's own
``weights_only`` loader (``torch/_weights_only_unpickler.py``), this one resolves an allow-list of names to functions
of its own (the storages become NumPy arrays, ``_rebuild_tensor_v2`` a strided copy out of one), and refuses every
other global, naming it. ``BUILD`` (which would call an object's ``__setstate__``) is allowed only to set a dict's
attributes, as a state dict's ``_metadata`` does. Every number that comes from the file (offsets, sizes, strides,
element counts) is checked against the storages' real sizes before an array is made, so no tensor costs more memory
than the file holds.
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
import zlib
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
    """One storage, read: a 1-D array of its elements (persistent ids resolve to these and nothing else). ``values``
    is None during the legacy format's first pass, when the storages are only being listed."""

    def __init__(self, values: np.ndarray | None, name: str, kind: _StorageType, numel: int):
        self.values, self.name, self.kind, self.numel = values, name, kind, numel


class _RestrictedUnpickler(pickle._Unpickler):  # the pure-Python unpickler: its opcodes can be replaced one by one
    """Unpickles a state dict; ``read_storage(key, kind, numel)`` returns a storage's elements (or None: a dry run
    that only lists the storages, whose tensors are then None)."""

    def __init__(self, file, read_storage, where: str):
        super().__init__(file)
        self.read_storage, self.where = read_storage, where
        self.storages: dict[str, _Storage] = {}
        self.dispatch = dict(self.dispatch)
        self.dispatch[pickle.BUILD[0]] = _RestrictedUnpickler._build
        # Protocol 5's buffers: no state dict has them, and BYTEARRAY8 allocates the length it reads before reading.
        for opcode in (pickle.BYTEARRAY8, pickle.NEXT_BUFFER, pickle.READONLY_BUFFER):
            self.dispatch[opcode[0]] = _RestrictedUnpickler._refuse_buffers

    def _refuse_buffers(self):
        raise PthError(f"{self.where}: refused: its pickle holds protocol 5 buffers, which no state dict has")

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
        """('storage', type, key, location, numel), and in the legacy format a sixth item: None, or (view key,
        offset, size) for a storage that is a slice of the one named by key (PyTorch < 0.4 storage views)."""
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str) or not isinstance(pid[3], str)
                or not is_int(pid[4]) or pid[4] < 0):
            raise PthError(f"{self.where}: refused: a persistent id that is not a tensor storage ({pid!r:.120})")
        _, kind, key, _location, numel = pid[:5]
        root = self._storage(key, kind, numel)
        view = pid[5] if len(pid) == 6 else None
        if view is None:
            return root
        if (not isinstance(view, tuple) or len(view) != 3 or not isinstance(view[0], str)
                or not all(is_int(v) and v >= 0 for v in view[1:]) or view[1] + view[2] > numel):
            raise PthError(f"{self.where}: storage {key!r}: a view {view!r:.80} outside it")
        view_key, offset, size = view
        values = None if root.values is None else root.values[offset:offset + size]
        return _Storage(values, f"{key}[{offset}:{offset + size}]", kind, size)

    def _storage(self, key: str, kind: _StorageType, numel: int) -> _Storage:
        if key in self.storages:
            stored = self.storages[key]
            if stored.kind.name != kind.name or stored.numel != numel:
                raise PthError(f"{self.where}: storage {key!r} is named twice with different types or sizes")
            return stored
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
            raise PthError(f"{self.where}: refused: a storage key {key!r:.80} that is not a plain name")
        values = self.read_storage(key, kind, numel)
        if values is not None and kind.name == "BFloat16Storage":
            values = widen_bfloat16(values)
        self.storages[key] = _Storage(values, key, kind, numel)
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
        if values is None:  # the legacy format's first pass: the storages are not read yet
            return None
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
        if data is not None and not isinstance(data, np.ndarray):
            raise PthError(f"{self.where}: refused: a parameter made of a {type(data).__name__}")
        return data


def _from_zip(path: Path, where: str) -> Any:
    """torch.save's format since PyTorch 1.6: <name>/data.pkl and one record <name>/data/<key> per storage."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            raise PthError(f"{where}: not a file written by torch.save (expected one <name>/data.pkl, found "
                           f"{len(pickles)})")
        prefix = pickles[0][: -len("data.pkl")]
        if archive.getinfo(pickles[0]).file_size > _MAX_PICKLE_BYTES:
            raise PthError(f"{where}: its pickle is larger than a state dict's could be")
        order = archive.read(f"{prefix}byteorder") if f"{prefix}byteorder" in archive.namelist() else b"little"
        if order not in (b"little", b"big"):
            raise PthError(f"{where}: unknown byte order {order[:20]!r}")

        def read_storage(key: str, kind: _StorageType, numel: int) -> np.ndarray:
            record = f"{prefix}data/{key}"
            try:
                info = archive.getinfo(record)
            except KeyError:
                raise PthError(f"{where}: storage {key!r}: no record {record} in the archive (truncated?)") from None
            nbytes = numel * kind.dtype.itemsize
            if info.file_size != nbytes:
                raise PthError(f"{where}: storage {key!r}: {numel} elements of {kind} take {nbytes} bytes, but its "
                               f"record holds {info.file_size}")
            if info.compress_type != zipfile.ZIP_STORED:  # a compressed record could expand beyond the file
                raise PthError(f"{where}: storage {key!r} is compressed; torch.save stores storages uncompressed")
            return _decode(archive.read(record), kind, order == b"big")

        return _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), read_storage, where).load()


def _decode(raw: bytes, kind: _StorageType, big_endian: bool = False) -> np.ndarray:
    return np.frombuffer(raw, kind.dtype.newbyteorder(">" if big_endian else "<")).astype(kind.dtype)


def _from_legacy(f, size: int, where: str) -> Any:
    """PyTorch's format before 1.6 (``torch/serialization.py`` ``_legacy_save``): pickles of the magic number, the
    protocol version (1001) and the writer's system (byte order), the object's pickle, the list of storage keys, then
    each storage as an int64 element count and its little-endian bytes. The storages follow the pickle that uses them,
    so it is read twice: once to list the storages (no tensor is made), then, with the storages read, for real."""
    def small_pickle() -> Any:
        return _RestrictedUnpickler(f, lambda *_: None, where).load()

    small_pickle()  # the magic number, already compared
    version, system = small_pickle(), small_pickle()
    if version != 1001 or not isinstance(system, dict):
        raise PthError(f"{where}: PyTorch's pre-1.6 format with protocol version {version!r:.20}, not read here")
    if not system.get("little_endian", True):
        raise PthError(f"{where}: written on a big-endian machine in PyTorch's pre-1.6 format, not read here")
    start = f.tell()
    listing = _RestrictedUnpickler(f, lambda *_: None, where)
    listing.load()
    keys = small_pickle()
    if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(listing.storages):
        raise PthError(f"{where}: its list of storages does not match the storages its pickle uses")
    read: dict[str, np.ndarray] = {}
    for key in keys:
        kind, numel = listing.storages[key].kind, listing.storages[key].numel
        count = f.read(8)
        if len(count) != 8 or struct.unpack("<q", count)[0] != numel:
            raise PthError(f"{where}: storage {key!r}: its data does not start with its size {numel} (truncated?)")
        nbytes = numel * kind.dtype.itemsize
        if nbytes > size - f.tell():
            raise PthError(f"{where}: storage {key!r}: {numel} elements of {kind} reach past the end of the file")
        read[key] = _decode(f.read(nbytes), kind)
    f.seek(start)
    return _RestrictedUnpickler(f, lambda key, kind, numel: read[key], where).load()


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The state dict in a ``torch.save`` file (either format), as NumPy arrays by name (in the file's order). Raises
    :class:`PthError` (a ValueError) naming the file for anything but a state dict of tensors; OSError when the file
    cannot be opened."""
    path = Path(path)
    where = f"pth {path}"
    if path.is_dir():
        raise PthError(f"{where}: is a directory, expected a .pth file")
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC:
                # From memory: a length in a corrupt pickle makes a file's read(n) allocate n bytes first, a
                # BytesIO's read only what there is.
                f.seek(0)
                state = _from_legacy(io.BytesIO(f.read()), size, where)
            elif zipfile.is_zipfile(f):
                try:
                    state = _from_zip(path, where)
                except OSError as exc:  # the file opened: a seek or read the archive's own numbers asked for failed
                    raise PthError(f"{where}: cannot be read, the archive is corrupt ({exc})") from None
            else:
                raise PthError(f"{where}: not a file written by torch.save (neither a zip archive nor PyTorch's "
                               f"pre-1.6 format)")
    except PthError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            struct.error, RuntimeError, zipfile.BadZipFile, zlib.error, OverflowError) as exc:
        # RuntimeError: zipfile's "encrypted" and NotImplementedError (unknown compression), and RecursionError.
        raise PthError(f"{where}: cannot be read, it is truncated or corrupt, or not a state dict "
                       f"({type(exc).__name__}: {str(exc)[:200]})") from None
    if not isinstance(state, dict):
        raise PthError(f"{where}: holds a {type(state).__name__}, not a state dict (a dict of tensors by name)")
    for k, v in state.items():
        if not isinstance(k, str) or not isinstance(v, np.ndarray):
            raise PthError(f"{where}: entry {k!r:.80} is a {type(v).__name__}, not a tensor: not a plain state dict")
    return dict(state)
