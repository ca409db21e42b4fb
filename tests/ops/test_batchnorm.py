"""Batch normalization (Ioffe & Szegedy 2015) on every backend against the float64 reference: training mode with
its running statistics, inference mode, the backward; per feature after a linear layer (n, c) and per channel
after a conv (n, c, h, w); a channel with a large mean and a small variance; bad input."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

import alexnet_cuda
from alexnet_cuda import ops
from alexnet_cuda.reference import batchnorm as ref

# (n, c) and (n, c, h, w): batch 2 of a single position (the smallest training batch), odd sizes, one channel,
# channels with more values than a CUDA block has threads (3 * 11 * 13 = 429 > 256), a fully connected layer.
SHAPES = [(2, 3), (5, 7), (64, 33), (2, 3, 1, 1), (1, 4, 2, 3), (3, 1, 5, 4), (3, 6, 11, 13), (4, 5, 3, 3)]


def _params(rng, c):
    gamma = (1.0 + 0.5 * rng.standard_normal(c)).astype(np.float32)
    beta = rng.standard_normal(c).astype(np.float32)
    running_mean = rng.standard_normal(c).astype(np.float32)
    running_var = rng.uniform(0.5, 2.0, c).astype(np.float32)
    return gamma, beta, running_mean, running_var


# ---- (1) the reference's backward against central finite differences (float64) ---------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 2, 2), (3, 2, 1, 3)])
def test_reference_gradient(shape, rng):
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    gamma, beta, rm, rv = (a.astype(np.float64) for a in _params(rng, shape[1]))

    def forward(x=x, gamma=gamma, beta=beta):
        return ref.batchnorm_forward_train(x, gamma, beta, rm, rv, eps=1e-3)[0]

    _, mean, invstd, _, _ = ref.batchnorm_forward_train(x, gamma, beta, rm, rv, eps=1e-3)
    dx, dgamma, dbeta = ref.batchnorm_backward(x, dy, gamma, mean, invstd)
    assert_grad_close(dx, numerical_grad(lambda v: forward(x=v), x, dy), rtol=1e-6)
    assert_grad_close(dgamma, numerical_grad(lambda v: forward(gamma=v), gamma, dy), rtol=1e-6)
    assert_grad_close(dbeta, numerical_grad(lambda v: forward(beta=v), beta, dy), rtol=1e-6)


def test_reference_small_case():
    """Hand-checked: one channel of [1, 3]: mean 2, biased variance 1, unbiased 2."""
    x = np.array([[1.0], [3.0]])
    y, mean, invstd, rm, rv = ref.batchnorm_forward_train(x, np.ones(1), np.zeros(1), np.zeros(1), np.ones(1),
                                                          momentum=0.5, eps=0.0)
    np.testing.assert_allclose(y.ravel(), [-1.0, 1.0])
    np.testing.assert_allclose([mean[0], invstd[0], rm[0], rv[0]], [2.0, 1.0, 1.0, 1.5])


# ---- (2) every backend against the reference --------------------------------------------------------------------
def _check_train(device, x, gamma, beta, rm, rv, dy, momentum=0.1, eps=1e-5, atol_y=1e-5):
    rm_ref, rv_ref = rm.astype(np.float64), rv.astype(np.float64)
    y, mean, invstd = ops.batchnorm_forward_train(x, gamma, beta, rm, rv, momentum, eps, device=device)
    y_ref, mean_ref, invstd_ref, rm_ref, rv_ref = ref.batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref,
                                                                              momentum, eps)
    assert y.dtype == np.float32 and y.shape == x.shape and mean.shape == invstd.shape == gamma.shape
    # Statistics summed in double: only the final float32 rounding.
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-6, atol=1e-7 * np.abs(x).max())
    np.testing.assert_allclose(invstd, invstd_ref, rtol=1e-6)
    np.testing.assert_allclose(rm, rm_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rv, rv_ref, rtol=1e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=atol_y)
    dx, dgamma, dbeta = ops.batchnorm_backward(x, dy, gamma, mean, invstd, device=device)
    dx_ref, dgamma_ref, dbeta_ref = ref.batchnorm_backward(x, dy, gamma, mean, invstd)
    np.testing.assert_allclose(dbeta, dbeta_ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(dgamma, dgamma_ref, rtol=1e-5, atol=1e-5)
    # dx subtracts the batch's mean gradient from each: its error is relative to the largest term.
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5 * np.abs(dy).max() * np.abs(gamma * invstd).max())


@pytest.mark.parametrize("shape", SHAPES)
def test_train_matches_reference(device, shape, rng):
    x = (2.0 + 3.0 * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    _check_train(device, x, *_params(rng, shape[1]), dy)


@pytest.mark.parametrize("shape", SHAPES)
def test_eval_matches_reference(device, shape, rng):
    x = (2.0 + 3.0 * rng.standard_normal(shape)).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, shape[1])
    y = ops.batchnorm_forward_eval(x, gamma, beta, rm, rv, 1e-3, device=device)
    np.testing.assert_allclose(y, ref.batchnorm_forward_eval(x, gamma, beta, rm, rv, 1e-3), rtol=1e-5, atol=1e-5)


def test_large_mean_small_variance(device, rng):
    """Channel 0 is 1000 + N(0, 0.01^2), channel 1 1e4 + N(0, 1): E[x^2] - E[x]^2 in float32 would be pure noise
    (1e8 * 2^-24 = 6 against a variance of 1e-4), and even a float32 running mean loses digits. The variance must
    come out to float32 accuracy. y inherits the rounding of x to float32 and of the mean (half an ulp of 1000 is
    3e-5, i.e. 3e-3 standard deviations), as in every float32 BatchNorm; the tolerance on y says so."""
    n, h, w = 8, 9, 9
    x = np.empty((n, 3, h, w), np.float32)
    x[:, 0] = 1000.0 + 0.01 * rng.standard_normal((n, h, w))
    x[:, 1] = 1e4 + rng.standard_normal((n, h, w))
    x[:, 2] = rng.standard_normal((n, h, w))
    gamma, beta, rm, rv = _params(rng, 3)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _, _, invstd_ref, _, _ = ref.batchnorm_forward_train(x, gamma, beta, rm, rv)
    half_ulp_of_mean = 0.5 * np.spacing(np.float32(1e4))
    _check_train(device, x, gamma, beta, rm, rv, dy, atol_y=2 * half_ulp_of_mean * invstd_ref.max() * gamma.max())


def test_running_statistics_over_steps(device, rng):
    """Three training steps then inference: the running statistics follow PyTorch's update each step."""
    gamma, beta, rm, rv = _params(rng, 4)
    rm_ref, rv_ref = rm.astype(np.float64), rv.astype(np.float64)
    for _ in range(3):
        x = (1.0 + 2.0 * rng.standard_normal((6, 4, 3, 3))).astype(np.float32)
        ops.batchnorm_forward_train(x, gamma, beta, rm, rv, 0.3, 1e-5, device=device)
        rm_ref, rv_ref = ref.batchnorm_forward_train(x, gamma, beta, rm_ref, rv_ref, 0.3, 1e-5)[3:]
    np.testing.assert_allclose(rm, rm_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rv, rv_ref, rtol=1e-6)


def test_tensors_stay_on_device_and_update_in_place(device, rng):
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    gamma, beta, rm, rv = _params(rng, 3)
    rm_t, rv_t = alexnet_cuda.tensor(rm, device), alexnet_cuda.tensor(rv, device)
    y, mean, invstd = ops.batchnorm_forward_train(alexnet_cuda.tensor(x, device), alexnet_cuda.tensor(gamma, device),
                                                  alexnet_cuda.tensor(beta, device), rm_t, rv_t)
    assert isinstance(y, alexnet_cuda.Tensor) and y.device == rm_t.device
    _, _, _, rm_ref, rv_ref = ref.batchnorm_forward_train(x, gamma, beta, rm, rv)
    np.testing.assert_allclose(rm_t.numpy(), rm_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rv_t.numpy(), rv_ref, rtol=1e-6)


# ---- (3) bad input ----------------------------------------------------------------------------------------------
def test_bad_inputs():
    x = np.ones((2, 3, 2, 2), np.float32)
    g, b, rm, rv = (np.ones(3, np.float32) for _ in range(4))
    train = ops.batchnorm_forward_train
    with pytest.raises(ValueError, match=r"batchnorm_forward_train: expected x of shape \(n, c\) or \(n, c, h, w\)"):
        train(np.ones((2, 3, 4), np.float32), g, b, rm, rv)
    with pytest.raises(ValueError, match=r"batchnorm_forward_train: expected gamma of shape \(3,\)"):
        train(x, np.ones(4, np.float32), b, rm, rv)
    with pytest.raises(ValueError, match=r"batchnorm_forward_train: expected running_var of shape \(3,\)"):
        train(x, g, b, rm, np.ones((3, 1), np.float32))
    with pytest.raises(TypeError, match="batchnorm_forward_train: expected beta of dtype float32"):
        train(x, g, b.astype(np.float64), rm, rv)
    with pytest.raises(ValueError, match=r"batchnorm_forward_train: training mode needs at least 2 values"):
        train(np.ones((1, 3), np.float32), g, b, rm, rv)
    with pytest.raises(ValueError, match=r"batchnorm_forward_train: training mode needs at least 2 values"):
        train(np.ones((1, 3, 1, 1), np.float32), g, b, rm, rv)
    # An empty batch names x, the argument to blame (the long fuzz run found the message naming none)
    with pytest.raises(ValueError, match=r"batchnorm_forward_train: .* values per channel of x \(n \* h \* w >= 2\)"):
        train(np.ones((0, 3), np.float32), g, b, rm, rv)
    for eps in (0.0, -1e-5):
        with pytest.raises(ValueError, match="batchnorm_forward_train: eps must be > 0"):
            train(x, g, b, rm, rv, eps=eps)
    for momentum in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"batchnorm_forward_train: momentum must be in \[0, 1\]"):
            train(x, g, b, rm, rv, momentum=momentum)
    for name, value in (("momentum", float("nan")), ("eps", float("inf"))):
        with pytest.raises(ValueError, match=f"batchnorm_forward_train: {name} must be a finite float32"):
            train(x, g, b, rm, rv, **{name: value})
    readonly = np.ones(3, np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="batchnorm_forward_train: running_mean and running_var must be writeable"):
        train(x, g, b, readonly, rv)
    with pytest.raises(ValueError, match="batchnorm_forward_eval: eps must be > 0"):
        ops.batchnorm_forward_eval(x, g, b, rm, rv, eps=0.0)
    with pytest.raises(ValueError, match=r"batchnorm_forward_eval: expected running_mean of shape \(3,\)"):
        ops.batchnorm_forward_eval(x, g, b, np.ones(2, np.float32), rv)
    with pytest.raises(ValueError, match=r"batchnorm_backward: expected dy of shape \(2, 3, 2, 2\)"):
        ops.batchnorm_backward(x, np.ones((2, 3, 2, 1), np.float32), g, rm, rv)
    with pytest.raises(ValueError, match=r"batchnorm_backward: expected saved_invstd of shape \(3,\)"):
        ops.batchnorm_backward(x, x, g, rm, np.ones(1, np.float32))
    with pytest.raises(ValueError, match=r"batchnorm_backward: training mode needs at least 2 values"):
        ops.batchnorm_backward(x[:1, :, :1, :1].copy(), x[:1, :, :1, :1].copy(), g, rm, rv)


def test_cuda_device_mismatch_names_the_op():
    if alexnet_cuda.build_info()["gpus"] == []:
        pytest.skip("needs a CUDA device (a GPU or the emulated device) to put one input elsewhere")
    x = alexnet_cuda.tensor(np.ones((2, 3), np.float32), "cpu")
    g_cuda = alexnet_cuda.tensor(np.ones(3, np.float32), "cuda")
    ones = alexnet_cuda.tensor(np.ones(3, np.float32), "cpu")
    with pytest.raises(ValueError, match="batchnorm_forward_train: gamma is on cuda:0 but the other inputs are on cpu"):
        ops.batchnorm_forward_train(x, g_cuda, ones, ones.clone(), ones.clone())
