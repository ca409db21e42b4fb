"""Average pooling with cuda-convnet's geometry (pool=avg: windows clipped to the input, each mean divided by the
elements it holds) on every backend against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CUDA_SKIP, assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import avgpool as ref

# (shape, kernel, stride, start, outputs): layers-18pct's pool2/pool3 (3/2 with cuda-convnet's ceil rule: 16 -> 8,
# 8 -> 4, the last windows hanging over the edge); whole windows only (outputs None); a negative start (windows
# hanging over the top/left edge too); a positive start; non-overlapping 2/2; stride > kernel (gaps); a window as
# large as the input; non-square inputs with an (h, w) outputs pair; batch 1 and odd channel counts.
CASES = [
    ((2, 3, 16, 16), 3, 2, 0, 8),
    ((1, 2, 8, 8), 3, 2, 0, 4),
    ((2, 3, 7, 7), 3, 2, 0, None),
    ((1, 2, 9, 9), 3, 2, -1, 5),
    ((1, 3, 9, 8), 3, 2, 1, None),
    ((2, 3, 8, 8), 2, 2, 0, None),
    ((1, 2, 11, 10), 2, 3, 0, 4),
    ((2, 1, 5, 5), 5, 1, 0, None),
    ((1, 3, 9, 6), 4, 3, -2, (4, 3)),
    ((3, 1, 6, 7), 1, 1, 0, None),
]
CASE_IDS = [f"{'x'.join(map(str, s))}-k{k}s{st}-start{b}-out{o}" for s, k, st, b, o in CASES]


def _geometry(kernel, stride, start, outputs):
    return dict(kernel=kernel, stride=stride, start=start, outputs=outputs)


# ---- (1) the reference's backward against central finite differences (float64, rtol 1e-6) -------------------
@pytest.mark.parametrize("shape,kernel,stride,start,outputs", CASES[:5] + CASES[8:9], ids=CASE_IDS[:5] + CASE_IDS[8:9])
def test_reference_gradient(shape, kernel, stride, start, outputs, rng):
    x = rng.standard_normal(shape)
    g = _geometry(kernel, stride, start, outputs)
    y = ref.avgpool_forward(x, **g)
    dy = rng.standard_normal(y.shape)
    numeric = numerical_grad(lambda v: ref.avgpool_forward(v, **g), x, dy)
    assert_grad_close(ref.avgpool_backward(dy, shape[2], shape[3], **g), numeric, rtol=1e-6)


def _kLocalPool_average(x, size_x, start, stride, outputs):
    """A NumPy transcription of cuda-convnet's kLocalPool with AvgPooler (src/cudaconv2/conv_util.cu, square
    images): loop bounds clipped with MAX(0, ...) and MIN(imgSize, ...), the sum divided by regionSize."""
    n, c, img_size, _ = x.shape
    y = np.zeros((n, c, outputs, outputs))
    for oy in range(outputs):
        for ox in range(outputs):
            start_y, start_x = start + oy * stride, start + ox * stride
            loop_start_y, loop_start_x = max(0, start_y), max(0, start_x)
            loop_end_y, loop_end_x = min(img_size, start_y + size_x), min(img_size, start_x + size_x)
            region_size = (loop_end_y - loop_start_y) * (loop_end_x - loop_start_x)
            total = np.zeros((n, c))
            for yy in range(loop_start_y, loop_end_y):
                for xx in range(loop_start_x, loop_end_x):
                    total += x[:, :, yy, xx]
            y[:, :, oy, ox] = total / region_size
    return y


@pytest.mark.parametrize("size,kernel,stride,start", [(16, 3, 2, 0), (8, 3, 2, 0), (12, 3, 2, 0), (9, 4, 3, -1)])
def test_reference_is_cuda_convnets_average(size, kernel, stride, start, rng):
    x = rng.standard_normal((2, 3, size, size))
    outputs = ops.convnet_pool_outputs(size, kernel, stride, start)
    np.testing.assert_allclose(ref.avgpool_forward(x, kernel, stride, start, outputs),
                               _kLocalPool_average(x, kernel, start, stride, outputs), rtol=1e-12)


def test_edge_windows_divide_by_the_elements_they_hold():
    """4x4 input, 3/2 from 0 with cuda-convnet's 2 outputs: window (1, 1) holds rows and columns 2..3 only."""
    x = np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)
    y = ref.avgpool_forward(x, 3, 2, 0, 2)
    assert y[0, 0, 1, 1] == np.mean([10, 11, 14, 15])
    assert y[0, 0, 0, 1] == np.mean([2, 3, 6, 7, 10, 11])
    dx = ref.avgpool_backward(np.ones((1, 1, 2, 2)), 4, 4, 3, 2, 0, 2)
    assert dx[0, 0, 3, 3] == 1 / 4 and dx[0, 0, 0, 0] == 1 / 9 and dx[0, 0, 2, 2] == 1 / 9 + 2 / 6 + 1 / 4


# ---- (2) every backend against the reference ----------------------------------------------------------------
@pytest.mark.parametrize("shape,kernel,stride,start,outputs", CASES, ids=CASE_IDS)
def test_matches_reference(device, shape, kernel, stride, start, outputs, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    g = _geometry(kernel, stride, start, outputs)
    y = ops.avgpool_forward(x, **g, device=device)
    y_ref = ref.avgpool_forward(x, **g)
    assert y.shape == y_ref.shape and y.dtype == np.float32
    np.testing.assert_allclose(y, y_ref, rtol=1e-6, atol=1e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.avgpool_backward(dy, shape[2], shape[3], **g, device=device)
    assert dx.shape == x.shape and dx.dtype == np.float32
    np.testing.assert_allclose(dx, ref.avgpool_backward(dy, shape[2], shape[3], **g), rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(CUDA_SKIP is not None, reason=CUDA_SKIP or "")
@pytest.mark.parametrize("shape,kernel,stride,start,outputs", CASES, ids=CASE_IDS)
def test_cuda_matches_cpu_bit_for_bit(shape, kernel, stride, start, outputs, rng):
    """The CPU and CUDA kernels add the same terms in the same order (cpu/avgpool.cpp)."""
    x = rng.standard_normal(shape).astype(np.float32)
    g = _geometry(kernel, stride, start, outputs)
    y = ops.avgpool_forward(x, **g, device="cpu")
    np.testing.assert_array_equal(ops.avgpool_forward(x, **g, device="cuda"), y)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.avgpool_backward(dy, shape[2], shape[3], **g, device="cuda"),
                                  ops.avgpool_backward(dy, shape[2], shape[3], **g, device="cpu"))


def test_matches_torch_ceil_mode(device, rng):
    """PyTorch's avg_pool2d with ceil_mode=True (no padding) is the same pooling: its last window starts inside the
    input and divides by the elements it holds."""
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 4, 16, 16)).astype(np.float32)
    y = ops.avgpool_forward(x, 3, 2, outputs=ops.convnet_pool_outputs(16, 3, 2), device=device)
    expected = torch.nn.functional.avg_pool2d(torch.from_numpy(x), 3, 2, ceil_mode=True).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_large_planes_run_in_parallel_and_match(device, rng):
    """layers-18pct's pool2 at batch 4 (above the CPU kernel's OpenMP threshold)."""
    x = rng.standard_normal((4, 32, 16, 16)).astype(np.float32)
    y = ops.avgpool_forward(x, 3, 2, outputs=8, device=device)
    np.testing.assert_allclose(y, ref.avgpool_forward(x, 3, 2, 0, 8), rtol=1e-6, atol=1e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_allclose(ops.avgpool_backward(dy, 16, 16, 3, 2, outputs=8, device=device),
                               ref.avgpool_backward(dy, 16, 16, 3, 2, 0, 8), rtol=1e-6, atol=1e-6)


# ---- (3) bad input ------------------------------------------------------------------------------------------
def test_bad_inputs():
    x = np.ones((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="avgpool_forward: window 6x6 is larger than the input 5x5"):
        ops.avgpool_forward(x, 6, 1)
    with pytest.raises(ValueError, match=r"avgpool_forward: with start=0, kernel=3, stride=2 and 4 outputs, the "
                                         r"windows span input height positions \[0, 9\)"):
        ops.avgpool_forward(x, 3, 2, outputs=4)
    with pytest.raises(ValueError, match="avgpool_forward: start must be > -kernel"):
        ops.avgpool_forward(x, 3, 2, start=-3, outputs=2)
    with pytest.raises(ValueError, match="avgpool_forward: start must be > -kernel"):
        ops.avgpool_forward(x, 3, 2, start=-3)
    with pytest.raises(ValueError, match="avgpool_forward: outputs must be >= 1"):
        ops.avgpool_forward(x, 3, 2, outputs=0)
    with pytest.raises(TypeError, match="avgpool_forward: outputs must be a pair"):
        ops.avgpool_forward(x, 3, 2, outputs=(1, 2, 3))
    with pytest.raises(ValueError, match="avgpool_forward: stride must be >= 1"):
        ops.avgpool_forward(x, 3, 0)
    with pytest.raises(ValueError, match="avgpool_forward: expected x with 4 dimensions"):
        ops.avgpool_forward(np.ones((2, 5, 5), np.float32))
    with pytest.raises(ValueError, match=r"avgpool_backward: expected dy of shape \(1, 2, 2, 2\)"):
        ops.avgpool_backward(np.ones((1, 2, 3, 3), np.float32), 5, 5)
    with pytest.raises(ValueError, match="avgpool_backward: the input size h x w must be positive"):
        ops.avgpool_backward(np.ones((1, 2, 2, 2), np.float32), 0, 5)
    with pytest.raises(ValueError, match="convnet_pool_outputs: size, kernel and stride must be >= 1"):
        ops.convnet_pool_outputs(32, 3, 0)
