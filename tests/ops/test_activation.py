"""Activation op (ReLU, paper Section 3.1; tanh) on every backend against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import activation as ref

ACTS = ["relu", "tanh", "none"]
# Odd counts exercise the scalar tail after the float4 body of the CUDA kernels; (70001,) is above the CPU
# kernel's OpenMP threshold.
SHAPES = [(1,), (3,), (7, 5), (2, 3, 5, 7), (1, 96, 13, 13), (70001,)]


def _away_from_zero(rng, shape, margin=0.05):
    """Random values with |x| >= margin, so a central difference never straddles ReLU's kink at 0."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-300) * margin + x, x)


# ---- (1) the reference's backward against central finite differences (float64, rtol 1e-6) -------------------
@pytest.mark.parametrize("act", ACTS)
def test_reference_gradient(act, rng):
    x = _away_from_zero(rng, (3, 4, 5))
    dy = rng.standard_normal(x.shape)
    y = ref.activation_forward(x, act)
    numeric = numerical_grad(lambda v: ref.activation_forward(v, act), x, dy)
    assert_grad_close(ref.activation_backward(y, dy, act), numeric, rtol=1e-6)


# ---- (2) every backend against the reference ----------------------------------------------------------------
@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_backward_match_reference(device, act, shape, rng):
    x = (2.0 * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = ops.activation_forward(x, act, device=device)
    assert y.dtype == np.float32 and y.shape == shape
    # ReLU and identity are exact in float32; tanh is within a few ulps of the float64 value.
    np.testing.assert_allclose(y, ref.activation_forward(x, act), rtol=1e-6, atol=1e-7)
    dx = ops.activation_backward(y, dy, act, device=device)
    # The backward is compared from the same float32 y the op produced: a product, so ulp-level agreement.
    np.testing.assert_allclose(dx, ref.activation_backward(y, dy, act), rtol=1e-6, atol=1e-7)


def test_named_wrappers(device, rng):
    x = rng.standard_normal((4, 9)).astype(np.float32)
    dy = rng.standard_normal((4, 9)).astype(np.float32)
    np.testing.assert_array_equal(ops.relu_forward(x, device=device), ops.activation_forward(x, "relu", device=device))
    np.testing.assert_array_equal(ops.tanh_forward(x, device=device), ops.activation_forward(x, "tanh", device=device))
    y = ops.relu_forward(x, device=device)
    np.testing.assert_array_equal(ops.relu_backward(y, dy, device=device), ref.relu_backward(y, dy).astype(np.float32))
    yt = ops.tanh_forward(x, device=device)
    np.testing.assert_allclose(ops.tanh_backward(yt, dy, device=device), ref.tanh_backward(yt, dy), rtol=1e-6,
                               atol=1e-7)


def test_relu_special_values(device):
    """ReLU at exactly 0 and at negative zero outputs +0 and passes no gradient (the subgradient 0 is used)."""
    x = np.array([-2.0, -0.0, 0.0, 1e-30, 3.0], np.float32)
    y = ops.relu_forward(x, device=device)
    np.testing.assert_array_equal(y, np.array([0.0, 0.0, 0.0, 1e-30, 3.0], np.float32))
    assert not np.signbit(y[1]), "relu(-0.0) should be +0.0"
    dx = ops.relu_backward(y, np.ones_like(x), device=device)
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0, 1.0, 1.0])


def test_tanh_saturates(device):
    x = np.array([-50.0, -1.0, 0.0, 1.0, 50.0], np.float32)
    y = ops.tanh_forward(x, device=device)
    np.testing.assert_allclose(y, np.tanh(x.astype(np.float64)), rtol=1e-6, atol=1e-7)
    dx = ops.tanh_backward(y, np.ones_like(x), device=device)
    np.testing.assert_allclose(dx, [0.0, 1 - np.tanh(1.0) ** 2, 1.0, 1 - np.tanh(1.0) ** 2, 0.0], rtol=1e-6, atol=1e-7)


def test_empty_input(device):
    x = np.zeros((0, 3), np.float32)
    assert ops.relu_forward(x, device=device).shape == (0, 3)
    assert ops.relu_backward(x, x, device=device).shape == (0, 3)


# ---- (3) bad input ------------------------------------------------------------------------------------------
def test_bad_inputs():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError, match="activation_forward: expected x of dtype float32"):
        ops.activation_forward(x.astype(np.float64), "relu")
    with pytest.raises(ValueError, match="activation_forward: activation must be"):
        ops.activation_forward(x, "sigmoid")
    with pytest.raises(ValueError, match=r"activation_backward: expected dy of shape \(2, 3\)"):
        ops.activation_backward(x, np.ones((3, 2), np.float32), "relu")
    with pytest.raises(TypeError, match="activation_backward: expected dy of dtype float32"):
        ops.activation_backward(x, np.ones((2, 3), np.int32), "tanh")
