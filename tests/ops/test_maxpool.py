"""Max pooling (paper Section 3.4: overlapping 3x3 windows, stride 2) on every backend against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import maxpool as ref

# (shape, kernel, stride): overlapping windows that tile exactly (7x7, 13x13 -> 6x6 as after AlexNet's conv5,
# 27x27 as after conv2) and that leave a remainder row/column (8x8, 3/2 -> 3x3 uses rows 0..6); non-overlapping
# 2/2 with and without remainder; the window equal to the input; kernel 1 (identity for stride 1); stride larger
# than the kernel (gaps in no window); non-square inputs; batch 1 and odd channel counts.
CASES = [
    ((2, 3, 7, 7), 3, 2),
    ((1, 2, 8, 8), 3, 2),
    ((2, 4, 13, 13), 3, 2),
    ((1, 3, 27, 27), 3, 2),
    ((2, 3, 8, 8), 2, 2),
    ((1, 5, 9, 7), 2, 2),
    ((2, 3, 5, 5), 5, 1),
    ((1, 2, 6, 9), 6, 3),
    ((1, 3, 6, 7), 1, 1),
    ((2, 2, 11, 10), 2, 3),
    ((1, 1, 9, 12), 3, 1),
    ((3, 1, 10, 6), 4, 3),
    ((1, 2, 9, 71), 3, 2),  # 35 windows a row: the CPU backward's search runs several 16-lane blocks
]
CASE_IDS = [f"{'x'.join(map(str, s))}-k{k}s{st}" for s, k, st in CASES]


def _distinct(rng, shape, gap=0.1):
    """Values pairwise at least `gap` apart, so finite differences never change which element is a maximum."""
    count = int(np.prod(shape))
    return (rng.permutation(count) * gap + rng.uniform(0, gap / 10, count)).reshape(shape) - count * gap / 2


# ---- (1) the reference's backward against central finite differences (float64, rtol 1e-6) -------------------
@pytest.mark.parametrize("shape,kernel,stride", [((2, 2, 7, 7), 3, 2), ((1, 2, 8, 8), 3, 2), ((1, 3, 6, 6), 2, 2),
                                                 ((1, 1, 7, 8), 2, 3), ((2, 1, 4, 4), 4, 1)])
def test_reference_gradient(shape, kernel, stride, rng):
    x = _distinct(rng, shape)
    h_out, w_out = ref.output_size(shape[2], shape[3], kernel, stride)
    dy = rng.standard_normal((shape[0], shape[1], h_out, w_out))
    numeric = numerical_grad(lambda v: ref.maxpool_forward(v, kernel, stride), x, dy)
    assert_grad_close(ref.maxpool_backward(x, dy, kernel, stride), numeric, rtol=1e-6)


def test_reference_ties_go_to_first_in_scan_order():
    x = np.array([[1.0, 5.0, 0.0],
                  [5.0, 2.0, 5.0],
                  [0.0, 5.0, 1.0]]).reshape(1, 1, 3, 3)
    dx = ref.maxpool_backward(x, np.ones((1, 1, 1, 1)), kernel=3, stride=1)
    expected = np.zeros((3, 3))
    expected[0, 1] = 1.0  # the first 5 row by row, left to right
    np.testing.assert_array_equal(dx[0, 0], expected)


# ---- (2) every backend against the reference ----------------------------------------------------------------
@pytest.mark.parametrize("shape,kernel,stride", CASES, ids=CASE_IDS)
def test_matches_reference(device, shape, kernel, stride, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    y = ops.maxpool_forward(x, kernel, stride, device=device)
    y_ref = ref.maxpool_forward(x, kernel, stride)
    assert y.shape == y_ref.shape and y.dtype == np.float32
    np.testing.assert_array_equal(y, y_ref.astype(np.float32))  # a maximum is exact
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.maxpool_backward(x, y, dy, kernel, stride, device=device)
    # Up to ceil(kernel/stride)^2 float32 gradients are summed per input: a few ulps of the largest.
    np.testing.assert_allclose(dx, ref.maxpool_backward(x, dy, kernel, stride), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape,kernel,stride", CASES, ids=CASE_IDS)
def test_ties_match_reference(device, shape, kernel, stride, rng):
    """Values from {0, 1, 2}: most windows have tied maxima, and each must pick the first in scan order."""
    x = rng.integers(0, 3, shape).astype(np.float32)
    y = ops.maxpool_forward(x, kernel, stride, device=device)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.maxpool_backward(x, y, dy, kernel, stride, device=device)
    np.testing.assert_allclose(dx, ref.maxpool_backward(x, dy, kernel, stride), rtol=1e-6, atol=1e-6)


def test_constant_input_sends_everything_to_each_windows_first_element(device, rng):
    x = np.full((2, 3, 7, 7), 0.5, np.float32)
    y = ops.maxpool_forward(x, 3, 2, device=device)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.maxpool_backward(x, y, dy, 3, 2, device=device)
    expected = np.zeros_like(x)
    expected[:, :, 0:6:2, 0:6:2] = dy  # window (oy, ox) starts at (2*oy, 2*ox); nothing else gets gradient
    np.testing.assert_array_equal(dx, expected)


def test_relu_like_input_with_zero_regions(device, rng):
    """After ReLU whole windows are zero: each such window's gradient goes to its first element only."""
    x = np.maximum(rng.standard_normal((2, 4, 13, 13)), 0.0).astype(np.float32)
    x[:, :, 3:9, 2:8] = 0.0
    y = ops.maxpool_forward(x, device=device)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.maxpool_backward(x, y, dy, device=device)
    np.testing.assert_allclose(dx, ref.maxpool_backward(x, dy), rtol=1e-6, atol=1e-6)


def test_backward_is_deterministic(device, rng):
    x = rng.integers(0, 4, (2, 8, 15, 15)).astype(np.float32)
    y = ops.maxpool_forward(x, device=device)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    first = ops.maxpool_backward(x, y, dy, device=device)
    for _ in range(3):
        np.testing.assert_array_equal(ops.maxpool_backward(x, y, dy, device=device), first)


def test_defaults_are_the_papers_overlapping_pooling(device, rng):
    x = rng.standard_normal((1, 2, 13, 13)).astype(np.float32)
    y = ops.maxpool_forward(x, device=device)
    assert y.shape == (1, 2, 6, 6)
    np.testing.assert_array_equal(y, ref.maxpool_forward(x, 3, 2).astype(np.float32))


# ---- cuda-convnet's geometry (start, outputs: windows clipped to the input) -----------------------------------
# (shape, kernel, stride, start, outputs): layers-18pct's and conv-local's pool1 at 32x32 (cuda-convnet's ceil rule:
# 16 outputs where whole windows give 15) and at conv-local's 24x24 crops (12); windows hanging over the top/left
# edge (negative start); a positive start; an (h, w) outputs pair on a non-square input; stride > kernel.
CONVNET_CASES = [
    ((2, 3, 32, 32), 3, 2, 0, 16),
    ((1, 2, 24, 24), 3, 2, 0, 12),
    ((1, 2, 12, 12), 3, 2, 0, 6),
    ((2, 2, 9, 9), 3, 2, -1, 5),
    ((1, 3, 9, 8), 3, 2, 1, None),
    ((1, 3, 9, 6), 4, 3, -2, (4, 3)),
    ((2, 2, 11, 10), 2, 3, 0, 4),
]
CONVNET_IDS = [f"{'x'.join(map(str, s))}-k{k}s{st}-start{b}-out{o}" for s, k, st, b, o in CONVNET_CASES]


def test_convnet_outputs_rule():
    """layer.py's outputsX for pool layers: ceil((imgSize - start - sizeX) / stride) + 1."""
    assert ops.convnet_pool_outputs(32, 3, 2) == ref.convnet_pool_outputs(32, 3, 2) == 16
    assert ops.convnet_pool_outputs(16, 3, 2) == 8 and ops.convnet_pool_outputs(8, 3, 2) == 4
    assert ops.convnet_pool_outputs(24, 3, 2) == 12 and ops.convnet_pool_outputs(27, 3, 2) == 13
    for size in range(1, 20):
        for kernel in range(1, size + 1):
            for stride in range(1, kernel + 1):
                for start in range(-kernel + 1, 1):
                    assert ops.convnet_pool_outputs(size, kernel, stride, start) == \
                        ref.convnet_pool_outputs(size, kernel, stride, start)


@pytest.mark.parametrize("shape,kernel,stride,start,outputs", CONVNET_CASES[1:6], ids=CONVNET_IDS[1:6])
def test_reference_gradient_convnet_geometry(shape, kernel, stride, start, outputs, rng):
    x = _distinct(rng, shape)
    g = dict(start=start, outputs=outputs)
    y = ref.maxpool_forward(x, kernel, stride, **g)
    dy = rng.standard_normal(y.shape)
    numeric = numerical_grad(lambda v: ref.maxpool_forward(v, kernel, stride, **g), x, dy)
    assert_grad_close(ref.maxpool_backward(x, dy, kernel, stride, **g), numeric, rtol=1e-6)


@pytest.mark.parametrize("shape,kernel,stride,start,outputs", CONVNET_CASES, ids=CONVNET_IDS)
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_convnet_geometry_matches_reference(device, shape, kernel, stride, start, outputs, values, rng):
    x = (rng.standard_normal(shape) if values == "normal" else rng.integers(0, 3, shape)).astype(np.float32)
    g = dict(start=start, outputs=outputs)
    y = ops.maxpool_forward(x, kernel, stride, **g, device=device)
    np.testing.assert_array_equal(y, ref.maxpool_forward(x, kernel, stride, **g).astype(np.float32))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    dx = ops.maxpool_backward(x, y, dy, kernel, stride, **g, device=device)
    np.testing.assert_allclose(dx, ref.maxpool_backward(x, dy, kernel, stride, **g), rtol=1e-6, atol=1e-6)


def test_explicit_defaults_are_bit_identical(device, rng):
    """start=0 with the whole-window count is the paper's pooling, through the same kernels."""
    x = rng.standard_normal((2, 4, 13, 13)).astype(np.float32)
    y = ops.maxpool_forward(x, device=device)
    np.testing.assert_array_equal(ops.maxpool_forward(x, 3, 2, start=0, outputs=6, device=device), y)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    np.testing.assert_array_equal(ops.maxpool_backward(x, y, dy, 3, 2, start=0, outputs=(6, 6), device=device),
                                  ops.maxpool_backward(x, y, dy, device=device))


def test_last_window_hangs_over_the_edge(device):
    """32x32 at 3/2 under cuda-convnet's rule: output 15 is the maximum of rows/columns 30..31 only."""
    x = np.zeros((1, 1, 32, 32), np.float32)
    x[0, 0, 31, 31] = 5.0
    y = ops.maxpool_forward(x, 3, 2, outputs=16, device=device)
    assert y.shape == (1, 1, 16, 16) and y[0, 0, 15, 15] == 5.0 and y[0, 0, 14, 14] == 0.0


# ---- (3) bad input ------------------------------------------------------------------------------------------
def test_bad_inputs():
    x = np.ones((1, 2, 5, 5), np.float32)
    with pytest.raises(ValueError, match="maxpool_forward: window 3x3 is larger than the input 2x4"):
        ops.maxpool_forward(np.ones((1, 1, 2, 4), np.float32), 3, 2)
    with pytest.raises(ValueError, match="maxpool_forward: window 6x6 is larger than the input 5x5"):
        ops.maxpool_forward(x, 6, 1)
    with pytest.raises(ValueError, match="maxpool: window 3x3 is larger than the input 2x2"):
        ref.maxpool_forward(np.ones((1, 1, 2, 2)), 3, 2)
    with pytest.raises(ValueError, match="maxpool_forward: stride must be >= 1"):
        ops.maxpool_forward(x, 3, 0)
    with pytest.raises(ValueError, match="maxpool_forward: kernel must be >= 1"):
        ops.maxpool_forward(x, 0, 1)
    with pytest.raises(ValueError, match="maxpool_forward: expected x with 4 dimensions"):
        ops.maxpool_forward(np.ones((2, 5, 5), np.float32))
    with pytest.raises(TypeError, match="maxpool_forward: expected x of dtype float32"):
        ops.maxpool_forward(x.astype(np.float64))
    y = ops.maxpool_forward(x)
    with pytest.raises(ValueError, match=r"maxpool_backward: expected dy of shape \(1, 2, 2, 2\)"):
        ops.maxpool_backward(x, y, np.ones((1, 2, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"maxpool_backward: expected y of shape \(1, 2, 2, 2\)"):
        ops.maxpool_backward(x, np.ones((1, 2, 1, 2), np.float32), np.ones_like(y))
    with pytest.raises(ValueError, match="maxpool_backward: window 7x7 is larger than the input 5x5"):
        ops.maxpool_backward(x, y, y, 7, 2)
    with pytest.raises(ValueError, match=r"maxpool_forward: with start=0, kernel=3, stride=2 and 17 outputs, the "
                                         r"windows span input height positions \[0, 35\)"):
        ops.maxpool_forward(np.ones((1, 1, 32, 32), np.float32), 3, 2, outputs=17)
    with pytest.raises(ValueError,
                       match=r"maxpool_forward: window 3x3 is larger than the input height from start=3 \(2 elements\)"):
        ops.maxpool_forward(x, 3, 2, start=3)
    with pytest.raises(ValueError, match="maxpool_backward: outputs must be >= 1"):
        ops.maxpool_backward(x, y, y, 3, 2, outputs=-1)
    with pytest.raises(ValueError, match=r"maxpool_backward: expected y of shape \(1, 2, 3, 3\)"):
        ops.maxpool_backward(x, y, y, 3, 2, outputs=3)
