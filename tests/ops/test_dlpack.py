"""DLPack: Tensor.__dlpack__ / __dlpack_device__ and alexnet_cuda.from_dlpack (python/dlpack.cpp).

Zero-copy is shown two ways: the data pointers are equal, and a write through one side is read through the other.
Lifetimes are shown with the allocator's statistics and weak references: an exported tensor's memory outlives our
Tensor until the consumer lets go, an imported array outlives the producer's object until our Tensor dies. Under the
AddressSanitizer build (SANITIZERS=1 tools/emulation_test.sh tests/ops/test_dlpack.py) every read after a delete
below goes through memcpy, which ASan checks, so a premature free is a report, not a silent pass.
"""

from __future__ import annotations

import ctypes
import gc
import weakref

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import alexnet_cuda
from alexnet_cuda import _C

DTYPES = [np.float32, np.int32, np.uint8]
KDLCPU, KDLCUDA = 1, 2


def sample(dtype, shape=(3, 4, 5)) -> np.ndarray:
    return (np.arange(int(np.prod(shape))) % 97).astype(dtype).reshape(shape)


def allocated(device: str) -> int:
    return alexnet_cuda.memory_stats(device)["allocated"]


def cuda0(device: str) -> str:
    return "cpu" if device == "cpu" else "cuda:0"


def add_one(t) -> None:
    """Writes through our Tensor: an op in place (add_ takes float32; other dtypes are written through the other
    side only)."""
    if t.dtype != "float32":
        return
    _C.ops.add_(t, alexnet_cuda.tensor(np.ones(t.shape, np.dtype(t.dtype)), t.device))


# ---- CPU, with NumPy as the other side.


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_reads_a_tensor_without_a_copy(dtype):
    t = alexnet_cuda.tensor(sample(dtype))
    assert t.__dlpack_device__() == (KDLCPU, 0)
    a = np.from_dlpack(t)
    assert a.dtype == dtype and a.shape == t.shape
    assert a.ctypes.data == t.data_ptr()
    np.testing.assert_array_equal(a, sample(dtype))
    a[1, 2, 3] = 7  # write through NumPy, read through the Tensor
    assert t.numpy()[1, 2, 3] == 7
    add_one(t)  # write through the Tensor, read through NumPy
    if dtype == np.float32:
        assert a[1, 2, 3] == 8 and a[0, 0, 0] == 1


@pytest.mark.parametrize("dtype", DTYPES)
def test_from_dlpack_shares_a_numpy_array(dtype):
    a = sample(dtype)
    t = alexnet_cuda.from_dlpack(a)
    assert isinstance(t, alexnet_cuda.Tensor)
    assert (t.shape, t.dtype, t.device) == (a.shape, np.dtype(dtype).name, "cpu")
    assert t.data_ptr() == a.ctypes.data
    a[2, 3, 4] = 9
    assert t.numpy()[2, 3, 4] == 9
    add_one(t)
    assert a[2, 3, 4] == (10 if dtype == np.float32 else 9)
    assert np.from_dlpack(t).ctypes.data == a.ctypes.data  # and back again: still the same memory


def test_scalars_empty_tensors_and_views():
    a = np.array(2.5, np.float32)
    t = alexnet_cuda.from_dlpack(a)
    assert t.shape == () and t.numpy() == 2.5
    e = alexnet_cuda.from_dlpack(np.zeros((0, 3), np.float32))
    assert e.shape == (0, 3)
    assert np.from_dlpack(alexnet_cuda.tensor(np.zeros((2, 0), np.uint8))).shape == (2, 0)
    v = alexnet_cuda.tensor(sample(np.float32)).view([12, 5])
    assert np.from_dlpack(v).shape == (12, 5)
    # A slice along the first axis is contiguous (an offset into the buffer) and is shared, not refused.
    big = sample(np.float32, (6, 4))
    assert alexnet_cuda.from_dlpack(big[2:4]).data_ptr() == big[2:4].ctypes.data


def test_capsule_names_follow_the_protocol():
    t = alexnet_cuda.tensor(sample(np.float32))
    assert '"dltensor"' in repr(t.__dlpack__())  # legacy struct by default
    assert '"dltensor_versioned"' in repr(t.__dlpack__(max_version=(1, 0)))  # DLPack 1.0 when asked
    assert '"dltensor"' in repr(t.__dlpack__(max_version=(0, 8)))
    capsule = t.__dlpack__()
    u = alexnet_cuda.from_dlpack(capsule)
    assert '"used_dltensor"' in repr(capsule)  # consumed: the deleter now belongs to u
    assert u.data_ptr() == t.data_ptr()


class LegacyProducer:
    """A producer from before DLPack 1.0: its __dlpack__ knows only `stream`, so consumers fall back to the legacy
    struct (NumPy retries without max_version on the TypeError)."""

    def __init__(self, inner):
        self.inner = inner

    def __dlpack_device__(self):
        return self.inner.__dlpack_device__()

    def __dlpack__(self, stream=None):
        return self.inner.__dlpack__(stream=stream)


@pytest.mark.parametrize("dtype", DTYPES)
def test_legacy_structs_both_ways(dtype):
    """The pre-1.0 DLManagedTensor layout, checked against NumPy's in both directions."""
    t = alexnet_cuda.tensor(sample(dtype))
    a = np.from_dlpack(LegacyProducer(t))
    assert a.ctypes.data == t.data_ptr()
    np.testing.assert_array_equal(a, sample(dtype))
    b = sample(dtype)
    capsule = b.__dlpack__()  # NumPy's legacy capsule
    assert '"dltensor"' in repr(capsule)
    u = alexnet_cuda.from_dlpack(capsule)
    assert u.data_ptr() == b.ctypes.data
    assert alexnet_cuda.from_dlpack(LegacyProducer(b)).data_ptr() == b.ctypes.data
    del b, capsule
    gc.collect()
    np.testing.assert_array_equal(u.numpy(), sample(dtype))


def test_a_capsule_imports_once():
    capsule = alexnet_cuda.tensor(sample(np.uint8)).__dlpack__(max_version=(1, 0))
    alexnet_cuda.from_dlpack(capsule)
    with pytest.raises(ValueError, match="from_dlpack: this DLPack capsule was already consumed"):
        alexnet_cuda.from_dlpack(capsule)


def test_copy_true_and_other_devices():
    t = alexnet_cuda.tensor(sample(np.float32))
    copied = alexnet_cuda.from_dlpack(t.__dlpack__(copy=True))
    assert copied.data_ptr() != t.data_ptr()
    np.testing.assert_array_equal(copied.numpy(), t.numpy())
    assert alexnet_cuda.from_dlpack(t.__dlpack__(copy=False, dl_device=(KDLCPU, 0))).data_ptr() == t.data_ptr()
    with pytest.raises(BufferError, match="Tensor.__dlpack__: expected memory on the CPU"):
        t.__dlpack__(dl_device=(14, 0))  # kDLOneAPI
    with pytest.raises(ValueError, match="stream must be None for a CPU tensor"):
        t.__dlpack__(stream=1)


# ---- Lifetimes: the producer stays alive until the consumer's deleter runs.


def test_exported_memory_outlives_our_tensor(device):
    dev = cuda0(device)
    gc.collect()
    before = allocated(dev)
    expected = sample(np.float32)
    t = alexnet_cuda.tensor(expected, dev)
    u = alexnet_cuda.from_dlpack(t)  # on CUDA the consumer is ourselves: NumPy reads only host memory
    a = np.from_dlpack(t) if device == "cpu" else None
    del t
    gc.collect()
    alexnet_cuda.empty_cache(dev)
    # Read first (under ASan a freed block is a report here), then ask the allocator.
    np.testing.assert_array_equal(u.numpy(), expected)
    if a is not None:
        assert a.tobytes() == expected.tobytes()
    assert allocated(dev) > before  # still held by the consumers
    del u
    gc.collect()
    if a is not None:
        assert allocated(dev) > before
        np.testing.assert_array_equal(a, expected)
        del a
        gc.collect()
    assert allocated(dev) == before  # the last consumer's deleter freed it


def test_an_unconsumed_capsule_frees_what_it_holds(device):
    dev = cuda0(device)
    gc.collect()
    before = allocated(dev)
    t = alexnet_cuda.tensor(sample(np.int32), dev)
    capsules = [t.__dlpack__(), t.__dlpack__(max_version=(1, 0))]
    del t
    gc.collect()
    assert allocated(dev) > before
    u = alexnet_cuda.from_dlpack(capsules[0])  # still readable through a capsule taken before the delete
    np.testing.assert_array_equal(u.numpy(), sample(np.int32))
    del u
    del capsules
    gc.collect()
    assert allocated(dev) == before


def test_imported_memory_outlives_the_producer():
    a = sample(np.float32)
    expected = a.copy()
    producer = weakref.ref(a)
    t = alexnet_cuda.from_dlpack(a)
    del a
    gc.collect()
    assert producer() is not None  # NumPy's capsule context keeps the array alive for us
    np.testing.assert_array_equal(t.numpy(), expected)
    view = t.view([60])  # shares the storage: the array lives until the last Tensor sharing it dies
    del t
    gc.collect()
    assert producer() is not None
    np.testing.assert_array_equal(view.numpy(), expected.reshape(60))
    del view
    gc.collect()
    assert producer() is None  # our storage's destructor called NumPy's deleter


def test_an_op_result_from_imported_inputs_owns_its_memory():
    a = sample(np.float32, (2, 3, 4, 4))
    y = _C.ops.activation_forward(alexnet_cuda.from_dlpack(a), _C.ops.parse_activation("relu"))
    del a
    gc.collect()
    np.testing.assert_array_equal(y.numpy(), np.maximum(sample(np.float32, (2, 3, 4, 4)), 0))


# ---- Refusals: clear errors naming from_dlpack and what was expected.


@pytest.mark.parametrize(
    "array, error, message",
    [
        (np.ones((4, 4), np.float32)[:, ::2], ValueError, "expected a C-contiguous tensor"),
        (np.ones((4, 4), np.float32).T, ValueError, "expected a C-contiguous tensor"),
        (np.ones(3, np.float64), TypeError, "expected float32, int32 or uint8 data, got float64"),
        (np.ones(3, np.int64), TypeError, "expected float32, int32 or uint8 data, got int64"),
        (np.ones(3, bool), TypeError, "expected float32, int32 or uint8 data, got bool"),
        ([1.0, 2.0], TypeError, "expected an object with __dlpack__ and __dlpack_device__"),
    ],
)
def test_from_dlpack_refuses(array, error, message):
    with pytest.raises(error, match="from_dlpack: " + message):
        alexnet_cuda.from_dlpack(array)


def test_from_dlpack_refuses_read_only_memory():
    a = np.ones(3, np.float32)
    a.flags.writeable = False
    with pytest.raises((ValueError, BufferError)):  # NumPy itself may refuse to export it
        alexnet_cuda.from_dlpack(a)


def test_from_dlpack_refuses_misaligned_memory():
    buffer = np.zeros(20, np.uint8)
    misaligned = np.ndarray((4,), np.float32, buffer=buffer, offset=1)
    with pytest.raises(ValueError, match="from_dlpack: the data at 0x[0-9a-f]+ is not aligned to its 4-byte float32"):
        alexnet_cuda.from_dlpack(misaligned)


def test_a_refused_capsule_is_not_consumed():
    class Strided:
        """A producer whose tensor we refuse: its capsule must stay unconsumed (its own destructor frees it)."""

        def __init__(self):
            self.array = np.ones((4, 4), np.float32)[:, ::2]

        def __dlpack_device__(self):
            return self.array.__dlpack_device__()

        def __dlpack__(self, **kwargs):
            self.capsule = self.array.__dlpack__()
            return self.capsule

    producer = Strided()
    with pytest.raises(ValueError, match="C-contiguous"):
        alexnet_cuda.from_dlpack(producer)
    assert '"dltensor"' in repr(producer.capsule)


# ---- A foreign producer written with ctypes: the C structs of csrc/dlpack.h, a deleter that counts its calls.


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device", DLDevice), ("ndim", ctypes.c_int32), ("dtype", DLDataType),
                ("shape", ctypes.POINTER(ctypes.c_int64)), ("strides", ctypes.POINTER(ctypes.c_int64)),
                ("byte_offset", ctypes.c_uint64)]


class DLManagedTensor(ctypes.Structure):
    pass


class DLManagedTensorVersioned(ctypes.Structure):
    pass


DELETER = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))
DELETER_VERSIONED = ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensorVersioned))
DLManagedTensor._fields_ = [("dl_tensor", DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", DELETER)]
DLManagedTensorVersioned._fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32),
                                     ("manager_ctx", ctypes.c_void_p), ("deleter", DELETER_VERSIONED),
                                     ("flags", ctypes.c_uint64), ("dl_tensor", DLTensor)]
CAPSULE_NEW = ctypes.pythonapi.PyCapsule_New
CAPSULE_NEW.restype = ctypes.py_object
CAPSULE_NEW.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
NAMES = {False: ctypes.create_string_buffer(b"dltensor"), True: ctypes.create_string_buffer(b"dltensor_versioned")}


class Foreign:
    """Memory owned by Python (a NumPy buffer kept here), lent through a capsule without a destructor: the test holds
    everything alive and counts the deleter's calls, which must be exactly one once the capsule is consumed."""

    def __init__(self, shape=(3, 4), code=2, bits=32, device_type=KDLCPU, versioned=False, major=1, flags=0):
        self.buffer = np.arange(int(np.prod([d for d in shape if d < 2**20])), dtype=np.float32)
        self.shape = (ctypes.c_int64 * len(shape))(*shape)
        self.calls = 0
        tensor = DLTensor(self.buffer.ctypes.data, DLDevice(device_type, 0), len(shape), DLDataType(code, bits, 1),
                          self.shape, None, 0)
        if versioned:
            self.deleter = DELETER_VERSIONED(self.count)
            self.managed = DLManagedTensorVersioned(major, 0, None, self.deleter, flags, tensor)
        else:
            self.deleter = DELETER(self.count)
            self.managed = DLManagedTensor(tensor, None, self.deleter)
        self.capsule = CAPSULE_NEW(ctypes.addressof(self.managed), NAMES[versioned], None)

    def count(self, managed):
        self.calls += 1


def test_our_storage_calls_a_foreign_deleter_once():
    producer = Foreign()
    t = alexnet_cuda.from_dlpack(producer.capsule)
    assert t.data_ptr() == producer.buffer.ctypes.data
    assert '"used_dltensor"' in repr(producer.capsule)
    view = t.view([12])
    del t
    gc.collect()
    assert producer.calls == 0  # the view still shares the storage
    np.testing.assert_array_equal(view.numpy(), np.arange(12, dtype=np.float32))
    del view
    gc.collect()
    assert producer.calls == 1


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(bits=16), TypeError, "expected float32, int32 or uint8 data, got float16"),
        (dict(code=9), TypeError, "expected float32, int32 or uint8 data, got type code 9 of 32 bits"),
        (dict(device_type=3), ValueError,
         r"expected memory on the CPU \(kDLCPU\) or a CUDA device \(kDLCUDA\), got kDLCUDAHost"),
        (dict(shape=(2, -1)), ValueError, r"malformed DLTensor \(shape \(2, -1\)\)"),
        (dict(versioned=True, major=2), ValueError, "expected DLPack version 1.x, the producer wrote 2.0"),
        (dict(versioned=True, flags=1), ValueError, "the producer exported read-only memory"),
    ],
)
def test_a_refused_foreign_capsule_stays_unconsumed(kwargs, error, message):
    producer = Foreign(**kwargs)
    with pytest.raises(error, match="from_dlpack: " + message):
        alexnet_cuda.from_dlpack(producer.capsule)
    assert '"dltensor' in repr(producer.capsule) and producer.calls == 0  # still the producer's to release


def test_a_shape_too_large_is_refused_after_consuming_and_released_once():
    producer = Foreign(shape=(2**62, 2**62))
    with pytest.raises(ValueError, match=r"from_dlpack: shape \(4611686018427387904, 4611686018427387904\)"):
        alexnet_cuda.from_dlpack(producer.capsule)
    assert producer.calls == 1


# ---- CUDA: kDLCUDA and the device id; the emulated device runs these in CI.


def test_cuda_tensors_report_kdlcuda(device):
    if device == "cpu":
        pytest.skip("CUDA only")
    t = alexnet_cuda.tensor(sample(np.float32), "cuda:0")
    assert t.__dlpack_device__() == (KDLCUDA, 0)
    u = alexnet_cuda.from_dlpack(t)
    assert (u.device, u.data_ptr()) == ("cuda:0", t.data_ptr())
    add_one(u)
    np.testing.assert_array_equal(t.numpy(), sample(np.float32) + 1)
    with pytest.raises(ValueError, match="stream=0 is ambiguous"):
        t.__dlpack__(stream=0)
    assert '"dltensor"' in repr(t.__dlpack__(stream=-1))
    # To the CPU only with a copy, which copy=False forbids.
    host = alexnet_cuda.from_dlpack(t.__dlpack__(dl_device=(KDLCPU, 0)))
    assert host.device == "cpu"
    np.testing.assert_array_equal(host.numpy(), t.numpy())
    with pytest.raises(BufferError, match="copy=False forbids"):
        t.__dlpack__(dl_device=(KDLCPU, 0), copy=False)
    a = np.from_dlpack(t, device="cpu")  # NumPy asks for dl_device=(kDLCPU, 0): a host copy
    assert a.ctypes.data != t.data_ptr()
    np.testing.assert_array_equal(a, t.numpy())
    with pytest.raises(ValueError, match="from_dlpack: the tensor is on CUDA device 99"):
        alexnet_cuda.from_dlpack(FakeCuda(t, 99))


class FakeCuda:
    """Claims a CUDA device id that does not exist."""

    def __init__(self, t, index):
        self.t, self.index = t, index

    def __dlpack_device__(self):
        return (KDLCUDA, self.index)

    def __dlpack__(self, **kwargs):
        return self.t.__dlpack__(**kwargs)


def test_cuda_capsule_refused_without_cuda():
    if alexnet_cuda.build_info()["cuda"]:
        pytest.skip("this build has CUDA")
    with pytest.raises(ValueError, match="from_dlpack: the tensor is on CUDA device 0, but alexnet_cuda was built"):
        alexnet_cuda.from_dlpack(FakeCuda(alexnet_cuda.tensor(sample(np.float32)), 0))


# ---- PyTorch, when installed.


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_round_trip(dtype):
    torch = pytest.importorskip("torch")
    t = alexnet_cuda.tensor(sample(dtype))
    x = torch.from_dlpack(t)
    assert x.data_ptr() == t.data_ptr()
    x[0, 0, 0] = 5
    assert t.numpy()[0, 0, 0] == 5
    y = torch.arange(24, dtype=getattr(torch, np.dtype(dtype).name)).reshape(2, 3, 4)
    u = alexnet_cuda.from_dlpack(y)
    assert u.data_ptr() == y.data_ptr()
    y[0, 0, 0] = 3
    assert u.numpy()[0, 0, 0] == 3
    add_one(u)
    expected = y.numpy().copy()
    del y
    gc.collect()
    np.testing.assert_array_equal(u.numpy(), expected)
    with pytest.raises(ValueError, match="C-contiguous"):
        alexnet_cuda.from_dlpack(torch.ones(4, 4).t())


# ---- Bad arguments to __dlpack__: TypeError/ValueError naming the argument, never pybind11's RuntimeError.


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(max_version=1), TypeError, "max_version .* must be a pair of ints, got 1"),
        (dict(max_version=("1", 0)), TypeError, "max_version"),
        (dict(dl_device="cpu"), TypeError, "dl_device .* must be a pair of ints"),
        (dict(dl_device=(1, 2**40)), ValueError, "dl_device .* out of range"),
        (dict(copy="yes"), TypeError, "copy must be None, True or False"),
        (dict(stream="x"), ValueError, "stream must be None for a CPU tensor"),
    ],
)
def test_dlpack_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match="Tensor.__dlpack__: " + message):
        alexnet_cuda.tensor(sample(np.float32)).__dlpack__(**kwargs)


def test_from_dlpack_rejects_a_bad_producer():
    class Liar:
        def __dlpack_device__(self):
            return "cpu"

        def __dlpack__(self, **kwargs):
            return None

    with pytest.raises(TypeError, match=r"from_dlpack: __dlpack_device__\(\) must be a pair of ints"):
        alexnet_cuda.from_dlpack(Liar())
    Liar.__dlpack_device__ = lambda self: (KDLCPU, 0)
    with pytest.raises(TypeError, match=r"from_dlpack: __dlpack__\(\) returned NoneType, not a capsule"):
        alexnet_cuda.from_dlpack(Liar())


ODD = st.sampled_from([None, True, False, 0, 1, -1, 2, 2**31, 2**63, -(2**63) - 1, 1.5, "1", b"", (), (1,), (1, 0),
                       (2, 0), (0, 0), (1, 0, 0), [1, 0], (1.0, 0), (True, 0), ("1", "0"), (2**40, 0), object()])


@settings(max_examples=150, deadline=None)
@given(stream=ODD, max_version=ODD, dl_device=ODD, copy=ODD)
def test_dlpack_arguments_fuzzed(stream, max_version, dl_device, copy):
    """Any argument values: a capsule, or a clean TypeError/ValueError/BufferError naming Tensor.__dlpack__."""
    t = alexnet_cuda.tensor(sample(np.float32))
    try:
        capsule = t.__dlpack__(stream=stream, max_version=max_version, dl_device=dl_device, copy=copy)
    except (TypeError, ValueError, BufferError) as e:
        assert str(e).startswith("Tensor.__dlpack__: "), repr(e)
        return
    u = alexnet_cuda.from_dlpack(capsule)
    np.testing.assert_array_equal(u.numpy(), sample(np.float32))
