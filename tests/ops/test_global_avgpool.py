"""Global average pooling (Lin et al. 2014, Network in Network) on every backend against the float64 reference,
forward and backward, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import global_avgpool as ref

# 1x1 planes, odd planes, conv5's 13x13 and 6x6 maps (more and fewer positions than a warp's 32 lanes), one
# channel, more planes than a CUDA block's 8 warps.
SHAPES = [(1, 1, 1, 1), (2, 3, 5, 7), (2, 16, 13, 13), (3, 9, 6, 6), (1, 1, 2, 3), (4, 5, 1, 9)]


@pytest.mark.parametrize("shape", [(2, 3, 2, 3), (1, 2, 1, 1)])
def test_reference_gradient(shape, rng):
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape[:2])
    numeric = numerical_grad(ref.global_avgpool_forward, x, dy)
    assert_grad_close(ref.global_avgpool_backward(dy, *shape[2:]), numeric, rtol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(device, shape, rng):
    x = (5.0 + 3.0 * rng.standard_normal(shape)).astype(np.float32)
    y = ops.global_avgpool_forward(x, device=device)
    assert y.dtype == np.float32 and y.shape == shape[:2]
    # summed in double: only the final rounding to float32
    np.testing.assert_allclose(y, ref.global_avgpool_forward(x), rtol=1e-6, atol=1e-7 * np.abs(x).max())
    dy = rng.standard_normal(shape[:2]).astype(np.float32)
    dx = ops.global_avgpool_backward(dy, *shape[2:], device=device)
    assert dx.shape == shape
    np.testing.assert_allclose(dx, ref.global_avgpool_backward(dy, *shape[2:]), rtol=1e-6, atol=0)


def test_empty_batch(device):
    assert ops.global_avgpool_forward(np.zeros((0, 3, 2, 2), np.float32), device=device).shape == (0, 3)
    assert ops.global_avgpool_backward(np.zeros((0, 3), np.float32), 2, 2, device=device).shape == (0, 3, 2, 2)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"global_avgpool_forward: expected x with 4 dimensions, got shape \(2, 3\)"):
        ops.global_avgpool_forward(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match="global_avgpool_forward: expected a non-empty h x w map"):
        ops.global_avgpool_forward(np.ones((2, 3, 0, 4), np.float32))
    with pytest.raises(TypeError, match="global_avgpool_forward: expected x of dtype float32"):
        ops.global_avgpool_forward(np.ones((2, 3, 2, 2)))
    with pytest.raises(ValueError, match="global_avgpool_backward: expected dy with 2 dimensions"):
        ops.global_avgpool_backward(np.ones((2, 3, 1, 1), np.float32), 1, 1)
    with pytest.raises(ValueError, match="global_avgpool_backward: the input size h x w must be positive, got 0x3"):
        ops.global_avgpool_backward(np.ones((2, 3), np.float32), 0, 3)
    with pytest.raises(TypeError, match="global_avgpool_backward: h must be an int"):
        ops.global_avgpool_backward(np.ones((2, 3), np.float32), 2.5, 3)
