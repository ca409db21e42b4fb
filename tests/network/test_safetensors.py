"""safetensors files (alexnet_cuda.safetensors): round trips, the layout of the spec, and every malformed file refused
with an error naming the file and the tensor, never a crash nor a large allocation."""

from __future__ import annotations

import json
import re
import os
import struct

import numpy as np
import pytest

from alexnet_cuda import safetensors as st
from alexnet_cuda.safetensors import SafetensorsError


def _raw(path, header, data: bytes = b"", length: int | None = None) -> None:
    """Writes a file by hand: ``header`` (an object, dumped to JSON, or bytes as they are) after its length."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)


def _f32(name="w", shape=(2, 3), begin=0):
    n = int(np.prod(shape)) * 4
    return {name: {"dtype": "F32", "shape": list(shape), "data_offsets": [begin, begin + n]}}


def test_round_trip_of_every_dtype(tmp_path, rng):
    tensors = {"f32": rng.standard_normal((3, 4)).astype(np.float32), "f64": rng.standard_normal(5),
               "f16": rng.standard_normal((2, 2)).astype(np.float16), "i64": np.arange(-3, 3, dtype=np.int64),
               "u8": np.arange(7, dtype=np.uint8), "i8": np.arange(-4, 4, dtype=np.int8),
               "b": np.array([1, 0, 1], bool),
               "i32": np.arange(6, dtype=np.int32).reshape(2, 3), "u16": np.arange(3, dtype=np.uint16),
               "empty": np.zeros((0, 5), np.float32), "scalar": np.array(2.5, np.float32),
               "big_endian": np.arange(4, dtype=">f4")}
    path = st.save(tmp_path / "all.safetensors", tensors, {"format": "test", "note": "ünïcode"})
    back, meta = st.load(path)
    assert list(back) == list(tensors) and meta == {"format": "test", "note": "ünïcode"}
    for k, a in tensors.items():
        assert back[k].shape == a.shape and back[k].dtype == a.dtype.newbyteorder("="), k
        assert np.array_equal(back[k], a), k
    assert back["big_endian"].dtype.isnative


def test_layout_is_the_specs(tmp_path):
    """8-byte little-endian length, a JSON header padded with spaces to a multiple of 8, then the raw little-endian
    data in order (so any safetensors reader reads it)."""
    a, b = np.array([1.0, -2.0], np.float32), np.array([7], np.int64)
    path = st.save(tmp_path / "x.safetensors", {"a": a, "b": b}, {"what": "it"})
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    assert n % 8 == 0
    header = json.loads(raw[8:8 + n])
    assert header == {"__metadata__": {"what": "it"}, "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                      "b": {"dtype": "I64", "shape": [1], "data_offsets": [8, 16]}}
    assert raw[8 + n:] == a.astype("<f4").tobytes() + b.astype("<i8").tobytes()


def test_bf16_is_widened_exactly(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    top = (values.view(np.uint32) >> 16).astype("<u2")
    _raw(tmp_path / "bf.safetensors", {"x": {"dtype": "BF16", "shape": [4], "data_offsets": [0, 8]}}, top.tobytes())
    back, _ = st.load(tmp_path / "bf.safetensors")
    assert back["x"].dtype == np.float32 and np.array_equal(back["x"], values)


def test_the_reference_implementation_reads_ours_and_we_read_its(tmp_path, rng):
    safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="the safetensors package is not installed")
    tensors = {"w": rng.standard_normal((3, 5)).astype(np.float32), "n": np.arange(4, dtype=np.int64)}
    st.save(tmp_path / "ours.safetensors", tensors, {"k": "v"})
    theirs = safetensors_numpy.load_file(str(tmp_path / "ours.safetensors"))
    assert all(np.array_equal(theirs[k], tensors[k]) for k in tensors)
    safetensors_numpy.save_file(tensors, str(tmp_path / "theirs.safetensors"), metadata={"k": "v"})
    back, meta = st.load(tmp_path / "theirs.safetensors")
    assert meta == {"k": "v"} and all(np.array_equal(back[k], tensors[k]) for k in tensors)


def test_save_refuses_what_the_format_cannot_hold(tmp_path):
    with pytest.raises(SafetensorsError, match="tensor 'c': dtype complex64 has no safetensors type"):
        st.save(tmp_path / "x.safetensors", {"c": np.zeros(2, np.complex64)})
    with pytest.raises(SafetensorsError, match="metadata must map strings to strings"):
        st.save(tmp_path / "x.safetensors", {}, {"n": 1})
    with pytest.raises(SafetensorsError, match="bad tensor name '__metadata__'"):
        st.save(tmp_path / "x.safetensors", {"__metadata__": np.zeros(1)})
    assert not os.listdir(tmp_path)


def test_save_is_atomic(tmp_path, monkeypatch):
    path = st.save(tmp_path / "w.safetensors", {"w": np.ones(3, np.float32)})

    def crash(src, dst):
        raise OSError("simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="simulated"):
        st.save(path, {"w": np.zeros(3, np.float32)})
    monkeypatch.undo()
    assert np.array_equal(st.load(path)[0]["w"], np.ones(3)) and os.listdir(tmp_path) == ["w.safetensors"]


W = bytes(24)  # the data of _f32()
MALFORMED = {
    # name: (header, data, length override or None, what the message must say)
    "empty": (b"", b"", 0, None),
    "short": (None, b"", None, "shorter than the 8-byte header length"),
    "length_past_the_file": (_f32(), W, 10_000, "the header length 10000 exceeds the file"),
    "huge_length": (_f32(), W, 2**64 - 1, "exceeds the file"),
    "not_json": (b"{not json", b"", None, "its header is not a JSON object"),
    "not_utf8": (b"{\xff\xfe}", b"", None, "its header is not a JSON object"),
    "a_list": (b"[1, 2]", b"", None, "its header is not a JSON object"),
    "duplicate_key": (b'{"w": 1, "w": 2}', b"", None, "the key 'w' appears twice"),
    "unknown_dtype": ({"w": {"dtype": "F31", "shape": [1], "data_offsets": [0, 4]}}, bytes(4), None,
                      "tensor 'w': unknown dtype 'F31'"),
    "f8": ({"w": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}, bytes(1), None,
           "tensor 'w': dtype F8_E4M3 is not supported"),
    "missing_field": ({"w": {"dtype": "F32", "shape": [1]}}, b"", None,
                      "tensor 'w': expected exactly dtype, shape and data_offsets"),
    "extra_field": ({"w": dict(_f32()["w"], evil=1)}, W, None, "tensor 'w': expected exactly dtype, shape"),
    "negative_dim": ({"w": {"dtype": "F32", "shape": [-1, 2], "data_offsets": [0, 4]}}, bytes(4), None,
                     "tensor 'w': shape must be a list of integers >= 0"),
    "float_dim": ({"w": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}, bytes(4), None,
                  "tensor 'w': shape must be a list of integers"),
    "reversed_offsets": ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 0]}}, bytes(4), None,
                         "tensor 'w': data_offsets must be \\[begin, end\\] with 0 <= begin <= end"),
    "out_of_range": (_f32(), bytes(20), None, "tensor 'w': data_offsets \\[0, 24\\] reach past the end of the data"),
    "size_mismatch": ({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 20]}}, bytes(20), None,
                      "tensor 'w': F32 of shape \\(2, 3\\) takes 24 bytes, but its data_offsets \\[0, 20\\] hold 20"),
    "huge_shape": ({"w": {"dtype": "F64", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, bytes(8), None,
                   "takes 9671406556917033397649408 bytes"),
    "overlap": ({**_f32("a", (2,)), **_f32("b", (2,), begin=4)}, bytes(12), None,
                "tensor 'b': data_offsets \\[4, 12\\] overlaps 'a'"),
    "hole": ({**_f32("a", (2,)), **_f32("b", (2,), begin=12)}, bytes(20), None,
             "tensor 'b': data_offsets \\[12, 20\\] leaves a hole of 4 bytes"),
    "trailing_garbage": (_f32(), W + b"#!/bin/sh", None, "9 bytes after the last tensor's data"),
    "bad_metadata": ({"__metadata__": {"n": 3}}, b"", None, "__metadata__ must map strings to strings"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_refused_naming_the_file(tmp_path, case):
    header, data, length, message = MALFORMED[case]
    path = tmp_path / f"{case}.safetensors"
    if header is None:
        path.write_bytes(b"\x01\x02\x03")
    elif case == "empty":
        path.write_bytes(b"")
    else:
        _raw(path, header, data, length)
    with pytest.raises(SafetensorsError) as info:
        st.load(path)
    assert str(info.value).startswith(f"safetensors {path}: ")
    if message:
        assert re.search(message, str(info.value)), str(info.value)


def test_every_truncation_of_a_good_file_is_refused(tmp_path, rng):
    good = st.save(tmp_path / "good.safetensors", {"a": rng.standard_normal(5).astype(np.float32),
                                                   "b": np.arange(3, dtype=np.int64)}, {"m": "x"}).read_bytes()
    bad = tmp_path / "cut.safetensors"
    for n in range(len(good)):
        bad.write_bytes(good[:n])
        with pytest.raises(SafetensorsError, match="safetensors .*cut.safetensors"):
            st.load(bad)


def test_a_directory_or_a_missing_file(tmp_path):
    with pytest.raises(SafetensorsError, match="is a directory"):
        st.load(tmp_path)
    with pytest.raises(FileNotFoundError):
        st.load(tmp_path / "nope.safetensors")


def test_random_corruptions_give_a_clear_error_or_the_file(tmp_path, rng):
    """Bytes of a good file flipped, inserted or removed at random: the reader returns arrays or raises
    SafetensorsError, never another exception."""
    good = st.save(tmp_path / "good.safetensors", {"a": rng.standard_normal((3, 4)).astype(np.float32),
                                                   "b": np.arange(5, dtype=np.int64)}, {"m": "x"}).read_bytes()
    bad = tmp_path / "bad.safetensors"
    for _ in range(400):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 4))):
            at = int(rng.integers(0, len(data)))
            what = rng.integers(0, 3)
            if what == 0:
                data[at] = int(rng.integers(0, 256))
            elif what == 1:
                data.insert(at, int(rng.integers(0, 256)))
            else:
                del data[at]
        bad.write_bytes(bytes(data))
        try:
            tensors, _ = st.load(bad)
        except SafetensorsError:
            continue
        assert all(isinstance(a, np.ndarray) for a in tensors.values())
