"""SGD with the paper's momentum and weight decay (Section 5), in place: several steps on every backend against
the NumPy float64 reference, vectorized bodies with scalar tails, and bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_cuda
from alexnet_cuda import ops
from alexnet_cuda.reference import sgd as ref


# sizes hit: a single weight, tails of 1..3 after the float4 body, a conv-like 4-D weight
@pytest.mark.parametrize("shape", [(1,), (3,), (5,), (4, 4), (7, 13), (96, 3, 11, 11), (4099,)])
def test_several_steps_match_reference(device, rng, shape):
    lr, momentum, weight_decay = 0.01, 0.9, 5e-4  # the paper's values
    w = rng.standard_normal(shape).astype(np.float32)
    v = (0.01 * rng.standard_normal(shape)).astype(np.float32)
    w_ref, v_ref = w.astype(np.float64), v.astype(np.float64)
    for step in range(4):
        dw = rng.standard_normal(shape).astype(np.float32)
        ops.sgd_update(w, v, dw, lr, momentum, weight_decay, device=device)
        w_ref, v_ref = ref.sgd_update(w_ref, v_ref, dw, lr, momentum, weight_decay)
        # float32 rounding of O(1) weights and O(0.01) velocities accumulates over the steps
        np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(v, v_ref, rtol=1e-5, atol=1e-8)
    assert w.dtype == np.float32 and v.dtype == np.float32


def test_single_step_formula(device):
    w = np.array([1.0, -2.0, 0.5, 4.0, 0.0], dtype=np.float32)
    v = np.array([0.1, 0.0, -0.2, 1.0, 0.0], dtype=np.float32)
    dw = np.array([0.5, 1.0, -1.0, 0.0, 2.0], dtype=np.float32)
    lr, momentum, wd = 0.1, 0.5, 0.01
    expected_v = momentum * v.astype(np.float64) - wd * lr * w - lr * dw
    expected_w = w + expected_v
    ops.sgd_update(w, v, dw, lr, momentum, wd, device=device)
    np.testing.assert_allclose(v, expected_v, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(w, expected_w, rtol=1e-6, atol=1e-8)


def test_zero_lr_only_decays_momentum(device, rng):
    w = rng.standard_normal(10).astype(np.float32)
    v = rng.standard_normal(10).astype(np.float32)
    w0, v0 = w.copy(), v.copy()
    ops.sgd_update(w, v, rng.standard_normal(10).astype(np.float32), 0.0, 0.9, 5e-4, device=device)
    np.testing.assert_allclose(v, 0.9 * v0, rtol=1e-6)
    np.testing.assert_allclose(w, w0 + v, rtol=1e-6)


def test_tensors_are_updated_in_place(device, rng):
    w = rng.standard_normal(9).astype(np.float32)
    v = np.zeros(9, dtype=np.float32)
    dw = rng.standard_normal(9).astype(np.float32)
    tw, tv, tdw = (alexnet_cuda.tensor(a, device) for a in (w, v, dw))
    ops.sgd_update(tw, tv, tdw, 0.1, 0.9, 0.0)
    ops.sgd_update(tw, tv, tdw, 0.1, 0.9, 0.0)
    w_ref, v_ref = ref.sgd_update(w, v, dw, 0.1, 0.9, 0.0)
    w_ref, v_ref = ref.sgd_update(w_ref, v_ref, dw, 0.1, 0.9, 0.0)
    np.testing.assert_allclose(tw.numpy(), w_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tv.numpy(), v_ref, rtol=1e-6, atol=1e-7)


def test_bad_args(device):
    w, v, dw = (np.zeros((2, 3), np.float32) for _ in range(3))
    with pytest.raises(ValueError, match="sgd_update: lr must be >= 0"):
        ops.sgd_update(w, v, dw, -0.1, device=device)
    with pytest.raises(ValueError, match=r"sgd_update: momentum must be in \[0, 1\)"):
        ops.sgd_update(w, v, dw, 0.1, momentum=1.0, device=device)
    with pytest.raises(ValueError, match="sgd_update: weight_decay must be >= 0"):
        ops.sgd_update(w, v, dw, 0.1, weight_decay=-1e-4, device=device)
    with pytest.raises(ValueError, match=r"sgd_update: expected grad of shape \(2, 3\)"):
        ops.sgd_update(w, v, np.zeros((3, 2), np.float32), 0.1, device=device)
    with pytest.raises(ValueError, match=r"sgd_update: expected momentum_buffer of shape \(2, 3\)"):
        ops.sgd_update(w, np.zeros(6, np.float32), dw, 0.1, device=device)
    with pytest.raises(TypeError, match="sgd_update: expected grad of dtype float32"):
        ops.sgd_update(w, v, np.zeros((2, 3)), 0.1, device=device)
    readonly = np.zeros((2, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="sgd_update: weight and momentum_buffer must be writeable"):
        ops.sgd_update(readonly, v, dw, 0.1, device=device)
    with pytest.raises(ValueError, match="sgd_update: weight, momentum buffer and gradient shapes differ"):
        ref.sgd_update(w, v, np.zeros(3), 0.1)
