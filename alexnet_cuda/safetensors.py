"""The safetensors file format, read and written without the ``safetensors`` package (nor any other dependency).

The format (Hugging Face's, https://github.com/huggingface/safetensors, README "Format"): 8 bytes, a little-endian
unsigned 64-bit N; N bytes of a UTF-8 JSON object, which may end in spaces; then the byte buffer. The object maps
each tensor's name to ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets into the byte
buffer, values little-endian in C order), plus an optional ``"__metadata__"`` of string keys and string values. The
buffer must be covered exactly by the tensors' ranges: no overlaps, no holes, nothing after the last one (the spec
forbids these so that a file cannot hide a second one, a polyglot).

Why our own reader: a weights file may come from anywhere, and this one trusts nothing in it. Every number of the
header is checked against the file's size before anything is allocated, so a hostile or truncated file gives a
:class:`SafetensorsError` naming the file (and the tensor), never a crash nor an allocation bigger than the file.
"""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from . import files
from .arguments import is_int

# The reference implementation refuses headers above 100 MB; real ones are a few hundred KB at most.
MAX_HEADER_BYTES = 100_000_000
METADATA_KEY = "__metadata__"

# safetensors dtype codes -> NumPy dtypes (all little-endian). BF16 and the F8 types have no NumPy dtype: BF16 is
# widened to float32 exactly (its 16 bits are the top half of a float32); the F8 types are refused.
_DTYPES = {"BOOL": np.dtype("?"), "U8": np.dtype("u1"), "I8": np.dtype("i1"), "U16": np.dtype("<u2"),
           "I16": np.dtype("<i2"), "F16": np.dtype("<f2"), "U32": np.dtype("<u4"), "I32": np.dtype("<i4"),
           "F32": np.dtype("<f4"), "U64": np.dtype("<u8"), "I64": np.dtype("<i8"), "F64": np.dtype("<f8")}
_BF16 = "BF16"
_KNOWN_UNSUPPORTED = ("F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2", "C64")
_CODES = {dt: code for code, dt in _DTYPES.items()}


class SafetensorsError(ValueError):
    """A safetensors file cannot be read (malformed, truncated, or unsupported) or written. The message names the file
    and, where it applies, the tensor."""


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"the key {k!r} appears twice")
        out[k] = v
    return out


def _entry(where: str, name: str, info: Any, data_len: int) -> tuple[str, tuple[int, ...], int, int]:
    """Checks one tensor's header entry: (dtype code, shape, begin, end)."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise SafetensorsError(f"{where}: tensor {name!r}: expected exactly dtype, shape and data_offsets, got "
                               f"{sorted(info) if isinstance(info, dict) else type(info).__name__}")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if code in _KNOWN_UNSUPPORTED:
        raise SafetensorsError(f"{where}: tensor {name!r}: dtype {code} is not supported here (NumPy has no such "
                               f"type)")
    if code not in _DTYPES and code != _BF16:
        raise SafetensorsError(f"{where}: tensor {name!r}: unknown dtype {code!r}")
    if not isinstance(shape, list) or not all(is_int(d) and d >= 0 for d in shape):
        raise SafetensorsError(f"{where}: tensor {name!r}: shape must be a list of integers >= 0, got {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(is_int(o) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise SafetensorsError(f"{where}: tensor {name!r}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                               f"got {offsets!r}")
    begin, end = offsets
    if end > data_len:
        raise SafetensorsError(f"{where}: tensor {name!r}: data_offsets {offsets} reach past the end of the data "
                               f"({data_len} bytes): the file is truncated or corrupt")
    itemsize = 2 if code == _BF16 else _DTYPES[code].itemsize
    need = math.prod(shape) * itemsize  # Python ints: no overflow however large the shape
    if end - begin != need:
        raise SafetensorsError(f"{where}: tensor {name!r}: {code} of shape {tuple(shape)} takes {need} bytes, but its "
                               f"data_offsets {offsets} hold {end - begin}")
    return code, tuple(shape), begin, end


def read_header(f, where: str, file_size: int) -> tuple[dict[str, tuple], dict[str, str], int]:
    """Reads and checks the header of the file object ``f`` (positioned at its start): the tensors by name ((dtype
    code, shape, begin, end) in header order), the metadata, and where the byte buffer starts."""
    head = f.read(8)
    if len(head) != 8:
        raise SafetensorsError(f"{where}: not a safetensors file: {file_size} bytes, shorter than the 8-byte header "
                               f"length")
    (n,) = struct.unpack("<Q", head)
    if n > file_size - 8 or n > MAX_HEADER_BYTES:
        raise SafetensorsError(f"{where}: not a safetensors file, or truncated: the header length {n} exceeds "
                               f"{'the file' if n > file_size - 8 else f'the limit of {MAX_HEADER_BYTES} bytes'} "
                               f"({file_size} bytes)")
    raw = f.read(n)
    try:
        text = raw.decode("utf-8")
        if not text.startswith("{"):
            raise ValueError("it does not start with '{'")
        header = json.loads(text, object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SafetensorsError(f"{where}: not a safetensors file: its header is not a JSON object ({exc})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{where}: not a safetensors file: its header is not a JSON object")
    metadata = header.pop(METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise SafetensorsError(f"{where}: {METADATA_KEY} must map strings to strings")
    data_len = file_size - 8 - n
    entries = {name: _entry(where, name, info, data_len) for name, info in header.items()}
    # The ranges must tile the buffer: sorted by begin, each starts where the previous one ended (empty tensors may
    # sit anywhere between), and the last one ends at the end of the file.
    at, last = 0, None
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda e: (e[1][2], e[1][3])):
        if begin != at:
            what = f"overlaps {last!r}" if begin < at else f"leaves a hole of {begin - at} bytes before it"
            raise SafetensorsError(f"{where}: tensor {name!r}: data_offsets [{begin}, {end}] {what}")
        at, last = end, name
    if at != data_len:
        raise SafetensorsError(f"{where}: {data_len - at} bytes after the last tensor's data: trailing garbage, or "
                               f"not a safetensors file")
    return entries, metadata, 8 + n


def widen_bfloat16(bits: np.ndarray) -> np.ndarray:
    """bfloat16 values (their 16 bits, as unsigned integers) as float32, exactly: a bfloat16 is the top half of the
    float32 of the same value."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _decode(raw: bytes, code: str, shape: tuple[int, ...]) -> np.ndarray:
    if code == "BOOL":  # any nonzero byte is True, as in C
        return (np.frombuffer(raw, np.uint8) != 0).reshape(shape)
    if code == _BF16:
        return widen_bfloat16(np.frombuffer(raw, "<u2")).reshape(shape)
    return np.frombuffer(bytearray(raw), _DTYPES[code]).reshape(shape).astype(_DTYPES[code].newbyteorder("="))


def load(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads a safetensors file: ``(tensors by name in the file's order, metadata)``. The arrays are native-endian
    NumPy arrays of the file's dtype (BF16 widened to float32). Raises :class:`SafetensorsError` (a ValueError) naming
    the file, and the tensor, for anything malformed; OSError when the file cannot be opened."""
    path = Path(path)
    where = f"safetensors {path}"
    if path.is_dir():
        raise SafetensorsError(f"{where}: is a directory, expected a .safetensors file")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        entries, metadata, start = read_header(f, where, size)
        tensors = {}
        for name, (code, shape, begin, end) in entries.items():
            f.seek(start + begin)
            raw = f.read(end - begin)  # at most the file's size: the header was checked against it
            if len(raw) != end - begin:
                raise SafetensorsError(f"{where}: tensor {name!r}: the file ended while reading it (it changed "
                                       f"while being read?)")
            tensors[name] = _decode(raw, code, shape)
    return tensors, metadata


def save(path: str | os.PathLike, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> Path:
    """Writes ``tensors`` (NumPy arrays of a dtype safetensors has: bool, [u]int8-64, float16/32/64) and the string
    ``metadata`` as a safetensors file, atomically (:func:`alexnet_cuda.files.atomic_write`). The tensors are stored
    in the order given; the header is padded with spaces to a multiple of 8 bytes, so that every tensor of a file
    holding only 8-byte-multiple tensors starts aligned (as the reference writer does)."""
    path = Path(path)
    where = f"safetensors {path}"
    metadata = dict(metadata or {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise SafetensorsError(f"{where}: metadata must map strings to strings")
    header: dict[str, Any] = {METADATA_KEY: metadata} if metadata else {}
    blobs, at = [], 0
    for name, value in tensors.items():
        a = np.asarray(value)
        if not isinstance(name, str) or name == METADATA_KEY:
            raise SafetensorsError(f"{where}: bad tensor name {name!r}")
        code = _CODES.get(a.dtype.newbyteorder("<"))
        if code is None:
            raise SafetensorsError(f"{where}: tensor {name!r}: dtype {a.dtype} has no safetensors type")
        blob = np.ascontiguousarray(a, _DTYPES[code]).tobytes()
        header[name] = {"dtype": code, "shape": list(a.shape), "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)

    def write(f):
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)

    path.parent.mkdir(parents=True, exist_ok=True)
    files.atomic_write(path, write)
    return path
