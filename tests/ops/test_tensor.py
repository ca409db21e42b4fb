"""The Tensor type, devices and build information: the boundary every op stands on."""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_cuda
from alexnet_cuda import ops
from conftest import CUDA_SKIP


def test_build_info_reports_backends_and_gpus():
    info = alexnet_cuda.build_info()
    assert info["cpu"] is True
    assert isinstance(info["cuda"], bool)
    assert isinstance(info["gpus"], list)  # empty without a GPU: a normal answer, not an error
    assert info["openmp_threads"] >= 1
    if info["cuda"]:
        assert info["cuda_compiler_version"]
    assert alexnet_cuda.cuda_available() == (info["cuda"] and len(info["gpus"]) > 0)


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.uint8])
def test_numpy_round_trip(device, dtype):
    a = (np.arange(2 * 3 * 5) % 251).astype(dtype).reshape(2, 3, 5)
    t = alexnet_cuda.tensor(a, device)
    assert t.shape == (2, 3, 5)
    assert t.dtype == np.dtype(dtype).name
    assert t.device.startswith(device)
    np.testing.assert_array_equal(t.numpy(), a)
    np.testing.assert_array_equal(t.to("cpu").numpy(), a)
    np.testing.assert_array_equal(t.clone().numpy(), a)


def test_empty_and_zero_sized_tensors(device):
    t = alexnet_cuda.tensor(np.zeros((0, 3), np.float32), device)
    assert t.shape == (0, 3) and t.numpy().shape == (0, 3)
    z = alexnet_cuda.Tensor.zeros([2, 2], device, "int32")
    np.testing.assert_array_equal(z.numpy(), np.zeros((2, 2), np.int32))


def test_view_shares_storage_and_checks_numel():
    t = alexnet_cuda.tensor(np.arange(6, dtype=np.float32))
    np.testing.assert_array_equal(t.view([2, 3]).numpy(), np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(ValueError, match="view"):
        t.view([4, 2])


@pytest.mark.parametrize("spec", ["gpu", "cuda:", "cuda:x", "cpu:0", "", "CUDA"])
def test_unknown_device_is_a_value_error(spec):
    with pytest.raises(ValueError, match="device"):
        alexnet_cuda.tensor(np.zeros(3, np.float32), spec)


@pytest.mark.skipif(CUDA_SKIP is None, reason="a GPU is visible")
def test_cuda_device_without_gpu_is_a_clear_value_error():
    with pytest.raises(ValueError, match="cuda"):
        alexnet_cuda.tensor(np.zeros(3, np.float32), "cuda:0")


def test_nonexistent_gpu_index_is_a_value_error():
    with pytest.raises(ValueError, match="cuda:99"):
        alexnet_cuda.tensor(np.zeros(3, np.float32), "cuda:99")


def test_unsupported_dtypes_are_type_errors():
    for a in (np.zeros(3, np.float64), np.zeros(3, np.int64), np.zeros(3, np.complex64), np.zeros(3, bool)):
        with pytest.raises(TypeError, match="relu_forward: expected x of dtype float32"):
            ops.relu_forward(a)
    with pytest.raises(TypeError, match="relu_forward: expected x as a numpy.ndarray"):
        ops.relu_forward([1.0, 2.0])  # not an array


def test_non_contiguous_arrays_are_rejected():
    a = np.zeros((4, 6), np.float32)[:, ::2]
    with pytest.raises(ValueError, match="contiguous"):
        ops.relu_forward(a)
    with pytest.raises(ValueError, match="contiguous"):
        alexnet_cuda.tensor(np.asfortranarray(np.zeros((3, 4), np.float32)))


def test_tensor_dtype_mismatch_names_the_op():
    labels_as_float = alexnet_cuda.tensor(np.zeros(4, np.float32))
    logits = alexnet_cuda.tensor(np.zeros((4, 3), np.float32))
    with pytest.raises(TypeError, match="softmax_xent_forward"):
        ops.softmax_xent_forward(logits, labels_as_float)


def test_device_argument_must_match_tensor_inputs():
    t = alexnet_cuda.tensor(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="relu_forward"):
        ops.relu_forward(t, device="cuda:7")


def test_memory_stats_track_cpu_allocations():
    alexnet_cuda.reset_peak_memory("cpu")
    before = alexnet_cuda.memory_stats("cpu")["allocated"]
    t = alexnet_cuda.tensor(np.zeros(1 << 20, np.float32))
    stats = alexnet_cuda.memory_stats("cpu")
    assert stats["allocated"] >= before + 4 * (1 << 20)
    assert stats["peak_allocated"] >= stats["allocated"]
    del t
    assert alexnet_cuda.memory_stats("cpu")["allocated"] == before


def test_copy_channels_and_add(device):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2, 5, 3, 3)).astype(np.float32)
    b = np.zeros((2, 4, 3, 3), np.float32)
    ta, tb = alexnet_cuda.tensor(a, device), alexnet_cuda.tensor(b, device)
    alexnet_cuda._C.ops.copy_channels(ta, 1, tb, 2, 2)
    expected = b.copy()
    expected[:, 2:4] = a[:, 1:3]
    np.testing.assert_array_equal(tb.numpy(), expected)
    alexnet_cuda._C.ops.add_(tb, tb)
    np.testing.assert_array_equal(tb.numpy(), 2 * expected)
    with pytest.raises(ValueError, match="copy_channels"):
        alexnet_cuda._C.ops.copy_channels(ta, 4, tb, 0, 2)
    with pytest.raises(ValueError, match="add_"):
        alexnet_cuda._C.ops.add_(tb, ta)
