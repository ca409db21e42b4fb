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
