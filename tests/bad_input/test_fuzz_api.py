"""Property-based fuzzing of the Tensor API, AlexNet and checkpoint loading (issue 9): bad and edge-case inputs
must give a TypeError/ValueError naming the method and argument (MemoryError for sizes no machine has), or a correct
result; never a crash, a hang, NaN/inf from finite input, or code run from a checkpoint. Cases run in a child process
(fuzz_harness.py); ALEXNET_FUZZ=long runs many more examples."""

from __future__ import annotations

import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
from fuzz_harness import Child, assert_clean_error, view_of
from hypothesis import given
from hypothesis import strategies as st

import alexnet_cuda
from alexnet_cuda import AlexNet, Tensor
from alexnet_cuda import checkpoint as ckpt_io

TINY = dict(arch="alexnet-small", input_size=32, widths={"conv": [4, 4, 4, 4, 4], "fc": [8, 8]})
# Dimensions are small, or so large that no allocation can succeed (2^40 uint8 is 1 TiB): a size in between would
# really be allocated and filled, which is slow, starves the machine and tests no check.
DIMS = st.one_of(st.integers(0, 5), st.sampled_from([-1, -2**63, 2**40, 2**50, 2**62, 2**63 - 1, 2**63, 2**64]))
NOT_INTS = st.sampled_from([1.5, "3", None, True, b"1", [2], float("nan")])


@pytest.fixture(scope="module")
def child():
    c = Child()
    yield c
    c.close()


# ---- Tensor -------------------------------------------------------------------------------------------------------
def tensor_zeros(shape, dtype):
    t = Tensor.zeros(shape, "cpu", dtype)
    return t.shape, t.numpy()


def tensor_view(shape):
    return alexnet_cuda.tensor(np.arange(6, dtype=np.float32)).view(shape).numpy()


def tensor_roundtrip(a):
    return Tensor.from_numpy(a).numpy(), alexnet_cuda.tensor(a).numpy()


@given(shape=st.one_of(st.lists(st.one_of(DIMS, NOT_INTS), max_size=5), NOT_INTS, st.tuples(DIMS, DIMS)),
       dtype=st.sampled_from(["float32", "int32", "uint8", "float64", "", 3]))
def test_tensor_zeros(child, shape, dtype):
    outcome = child.call(tensor_zeros, shape, dtype)
    call = f"Tensor.zeros({shape!r}, {dtype!r})"
    if outcome.memory:  # a size no machine has: refused by the allocator, not by a wrapped-around count
        assert "out of memory" in outcome.message, call
    elif outcome.error is not None:
        assert outcome.clean, f"{call}: {outcome.error}: {outcome.message}"
        assert outcome.message.lower().startswith(("tensor", "tensor.zeros")), f"{call}: {outcome.message}"
    else:
        got_shape, values = outcome.value
        assert got_shape == tuple(shape) and values.dtype == np.dtype(dtype) and not values.any(), call


@given(shape=st.one_of(st.lists(st.one_of(DIMS, NOT_INTS), max_size=4), NOT_INTS))
def test_tensor_view(child, shape):
    outcome = child.call(tensor_view, shape)
    call = f"Tensor.view({shape!r})"
    if outcome.error is not None:
        assert_clean_error(outcome, "Tensor.view", ["shape", "view", "dimension", "negative", "ints"], call)
    else:
        assert outcome.value.shape == tuple(shape), call
        np.testing.assert_array_equal(outcome.value.reshape(-1), np.arange(6))


@given(data=st.data())
def test_tensor_from_numpy(child, data):
    dtype = data.draw(st.sampled_from(["<f4", ">f4", "<i4", ">i4", "u1", "f8", "i8", "?", "c8", "f2", "O", "U3"]))
    shape = tuple(data.draw(st.lists(st.integers(0, 4), max_size=3)))
    a = np.arange(int(np.prod(shape)), dtype=np.int64).reshape(shape).astype(dtype)
    if data.draw(st.booleans()) and a.ndim and a.shape[-1] > 1:
        a = view_of(a, (Ellipsis, slice(None, None, 2)))
    outcome = child.call(tensor_roundtrip, a)
    call = f"Tensor.from_numpy(array({a.dtype}, {a.shape}))"
    if outcome.error is not None:
        assert outcome.clean and outcome.message.startswith(("Tensor.from_numpy:", "tensor:")), \
            f"{call}: {outcome.error}: {outcome.message}"
    else:
        for got in outcome.value:
            assert got.dtype.isnative, call
            np.testing.assert_array_equal(got, a)


# ---- AlexNet ------------------------------------------------------------------------------------------------------
BAD = st.sampled_from([-1, 0, 1, 2**31, 2**64, 1.5, float("nan"), float("inf"), 1e39, -1e39, "2", None, True,
                       [4], {"conv": [4] * 5}, {"conv": [2**31] * 5}, {"fc": [0, 8]}, {"bogus": 1}, "cuda:9", "tpu",
                       ["cpu"], ["cpu", "cuda:0"], "relu", "alexnet", 227, 64])
CONSTRUCTOR = ["num_classes", "devices", "arch", "input_size", "lrn", "overlapping_pool", "activation", "dropout",
               "towers", "bias_init", "weight_std", "seed", "widths", "norm", "bn_position", "head", "optimizer",
               "adam_betas", "adam_eps"]


def build_and_predict(kwargs):
    net = AlexNet(**kwargs)
    return net.predict(np.zeros((2, net.input_size, net.input_size, 3), np.uint8))


@given(name=st.sampled_from(CONSTRUCTOR), bad=BAD)
def test_alexnet_constructor(child, name, bad):
    kwargs = dict(num_classes=4, devices="cpu", **TINY)
    kwargs[name] = bad
    if name in ("arch", "input_size") and "widths" not in kwargs:
        kwargs["widths"] = TINY["widths"]
    outcome = child.call(build_and_predict, kwargs)
    call = f"AlexNet({name}={bad!r})"
    if outcome.error is not None:
        assert_clean_error(outcome, "AlexNet", [name, *name.split("_"), "device", "tower", "towers", "arch", "fc6",
                                                "conv1", "input_size"], call)
    else:
        # A finite but absurd initial scale (weight_std=2**31) may overflow the forward pass: then every output is
        # NaN, never a plausible-looking distribution.
        probs = outcome.value
        for row in probs:
            assert np.isnan(row).all() or (np.isfinite(row).all() and abs(row.sum() - 1) < 1e-4), f"{call}: {row}"


METHOD_ARGS = {
    "train_step": ["images", "labels", "lr", "momentum", "weight_decay", "crops", "flips", "rgb_shift"],
    "evaluate": ["images", "labels", "crops", "flips"],
    "predict": ["images", "crops", "flips"],
    "compute_gradients": ["images", "labels", "crops", "flips", "rgb_shift"],
}


def bad_batch_values(n: int):
    mirrored = view_of(np.zeros((n, 32, 32, 3), np.uint8), (slice(None), slice(None, None, -1)))  # not contiguous
    return st.sampled_from([
        np.zeros((n, 32, 32, 3), np.float32), np.zeros((n, 3, 32, 32), np.float64),
        np.full((n, 3, 32, 32), np.nan, np.float32), np.zeros((n, 31, 31, 3), np.uint8),
        np.zeros((0, 32, 32, 3), np.uint8), np.zeros((n, 40, 40, 3), np.uint8), mirrored, np.array([0, 9]),
        np.array([-1] * n), np.array([2**40] * n), np.full(n, 3.5), np.zeros((n, 2), np.int64) + 2**31 - 1,
        np.zeros((n, 2), np.int32) - 1, np.ones((n, 3), np.float32) * np.inf, np.zeros((n, 3), np.float64),
        np.zeros(n, bool), np.zeros((n, 32, 32, 3), ">u2"), [[0, 0]] * n, None, "x", 1e39, -0.1, float("nan"), 1.0,
        0.5, 0, 2**31])


def run_method(method, kwargs):
    net = AlexNet(4, "cpu", **TINY)
    r = getattr(net, method)(**kwargs)
    return np.asarray(r, np.float64)


@given(data=st.data())
@pytest.mark.parametrize("method", sorted(METHOD_ARGS))
def test_alexnet_methods(child, method, data):
    n = 2
    kwargs = {"images": np.zeros((n, 36, 36, 3), np.uint8)}
    if "labels" in METHOD_ARGS[method]:
        kwargs["labels"] = np.array([0, 3], np.int32)
    if method == "train_step":
        kwargs["lr"] = 0.01
    name = data.draw(st.sampled_from(METHOD_ARGS[method]), label="argument")
    kwargs[name] = data.draw(bad_batch_values(n), label="bad value")
    outcome = child.call(run_method, method, kwargs)
    call = f"AlexNet.{method}({name}=...)"
    if outcome.error is not None:
        assert_clean_error(outcome, ("AlexNet", f"AlexNet.{method}"),
                           [name, name.rstrip("s"), "image", "images", "crop", "label", "mean"], call)
    else:
        assert np.isfinite(outcome.value).all(), f"{call}: NaN/inf from finite input"


# ---- checkpoints --------------------------------------------------------------------------------------------------
MARKER = Path("/tmp/alexnet_cuda_fuzz_pickle_ran")


class _RunsCode:
    """An object whose unpickling would create MARKER: loading a checkpoint must never get that far."""

    def __reduce__(self):
        return (Path.touch, (MARKER,))


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory) -> bytes:
    net = AlexNet(4, "cpu", **TINY)
    path = tmp_path_factory.mktemp("ckpt") / "good.npz"
    ckpt_io.save(path, ckpt_io.Checkpoint(params=net.state_dict(), arrays={"mean": np.zeros(3, np.float32)},
                                          meta={"model": dict(num_classes=4, **TINY), "image_size": 36}))
    return path.read_bytes()


def _with_entry(data: bytes, name: str, payload: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            dst.writestr(item, payload if item.filename == name else src.read(item.filename))
        if name not in src.namelist():
            dst.writestr(name, payload)
    return out.getvalue()


def _npy(a: np.ndarray) -> bytes:
    f = io.BytesIO()
    np.lib.format.write_array(f, a, allow_pickle=True)
    return f.getvalue()


def load_and_predict(path):
    ckpt = ckpt_io.load(path)
    model = ckpt_io.build_model(ckpt, devices="cpu")
    return model.predict(np.zeros((1, model.input_size, model.input_size, 3), np.uint8))


META_VALUES = st.sampled_from([None, 0, -1, 2**31, 2**64, 1.5, float("nan"), "x", [], {}, {"conv": [2**31] * 5},
                               "alexnet", "alexnet-small", 227, True])
MODEL_KEYS = st.sampled_from(["num_classes", "arch", "input_size", "towers", "dropout", "weight_std", "bias_init",
                              "seed", "widths", "activation", "lrn", "norm", "head", "optimizer", "adam_betas",
                              "bogus"])


@given(data=st.data())
def test_checkpoint_loading(child, checkpoint_bytes, tmp_path_factory, data):
    how = data.draw(st.sampled_from(["truncate", "flip", "meta", "model", "pickle", "param"]), label="corruption")
    blob = checkpoint_bytes
    if how == "truncate":
        blob = blob[:data.draw(st.integers(0, len(blob) - 1))]
    elif how == "flip":
        b = bytearray(blob)
        for i in data.draw(st.lists(st.integers(0, len(b) - 1), min_size=1, max_size=8)):
            b[i] ^= 0xFF
        blob = bytes(b)
    elif how == "meta":
        meta = data.draw(st.one_of(st.just(b"{"), st.just(b"\xff\xfe"), st.just(json.dumps([1]).encode()),
                                   st.just(json.dumps({"format": "alexnet_cuda.checkpoint", "version": 99}).encode())))
        blob = _with_entry(blob, "meta.npy", _npy(np.frombuffer(meta, np.uint8)))
    elif how == "model":
        with np.load(io.BytesIO(blob)) as z:
            meta = json.loads(z["meta"].tobytes())
        meta["model"][data.draw(MODEL_KEYS)] = data.draw(META_VALUES)
        blob = _with_entry(blob, "meta.npy", _npy(np.frombuffer(json.dumps(meta).encode(), np.uint8)))
    elif how == "pickle":
        blob = _with_entry(blob, data.draw(st.sampled_from(["param/features.0.tower0.weight.npy", "array/x.npy"])),
                           _npy(np.array([_RunsCode()], dtype=object)))
    else:
        bad = data.draw(st.sampled_from([np.zeros(3, np.float32), np.full((2, 3, 5, 5), np.nan, np.float32),
                                         np.zeros((2, 3, 5, 5), np.int32), np.zeros((2, 3, 5, 5), ">f4")]))
        blob = _with_entry(blob, "param/features.0.tower0.weight.npy", _npy(bad))
    path = tmp_path_factory.mktemp("fuzzed") / "ckpt.npz"
    path.write_bytes(blob)
    MARKER.unlink(missing_ok=True)
    outcome = child.call(load_and_predict, str(path))
    assert not MARKER.exists(), "loading a checkpoint ran code from it"
    if outcome.error is not None:
        assert outcome.clean and outcome.message.startswith(f"checkpoint {path}"), \
            f"{how}: {outcome.error}: {outcome.message}"
    else:  # it loaded: the weights it holds may be NaN (then so is the output), but nothing else may be
        assert outcome.value.shape == (1, 4), how
