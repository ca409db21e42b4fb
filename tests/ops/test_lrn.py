"""Local response normalization (paper Section 3.3) on every backend against the float64 reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import lrn as ref

PAPER = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
# Parameter sets: the paper's; strong normalization (alpha/size = 1, so the cross-channel terms matter); even
# sizes (the window is asymmetric and the backward's window is its mirror image); size 1; beta values taking
# each of the kernels' power paths (0.5, 1, 0 and a general exponent through powf).
PARAMS = [
    PAPER,
    dict(size=3, alpha=3.0, beta=0.75, k=1.0),
    dict(size=4, alpha=2.0, beta=0.6, k=0.5),
    dict(size=2, alpha=1.0, beta=1.0, k=1.5),
    dict(size=6, alpha=0.5, beta=0.5, k=1.0),
    dict(size=1, alpha=1.0, beta=0.75, k=1.0),
    dict(size=5, alpha=1.0, beta=0.0, k=1.0),
    dict(size=7, alpha=0.3, beta=1.3, k=0.8),
]
PARAM_IDS = [f"n{p['size']}-a{p['alpha']}-b{p['beta']}-k{p['k']}" for p in PARAMS]

# (n, c, spatial...): odd sizes, batch 1, c = 1, c < size, a 2-D (n, c) input, 3-D input, a spatial size above
# the CPU kernel's 256-position block (17 * 19 = 323) and a multiple of 4 (the CUDA float4 path).
SHAPES = [(2, 7, 5, 3), (1, 16, 9, 9), (3, 1, 4, 5), (2, 3, 6), (4, 10), (1, 12, 17, 19), (2, 9, 4, 8)]


# ---- (1) the reference's backward against central finite differences (float64, rtol 1e-6) -------------------
@pytest.mark.parametrize("params", PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize("shape", [(2, 6, 3, 2), (1, 3, 2, 2), (2, 1, 3)])
def test_reference_gradient(params, shape, rng):
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    y, scale = ref.lrn_forward(x, **params)
    numeric = numerical_grad(lambda v: ref.lrn_forward(v, **params)[0], x, dy)
    assert_grad_close(ref.lrn_backward(x, y, scale, dy, **params), numeric, rtol=1e-6)


def test_reference_small_cases():
    """Hand-checked values: the window clips at the channel edges, and even sizes reach further back."""
    x = np.array([[1.0, 2.0, 3.0]]).reshape(1, 3, 1)
    _, scale = ref.lrn_forward(x, size=3, alpha=3.0, beta=1.0, k=1.0)  # alpha/size = 1
    np.testing.assert_allclose(scale.ravel(), [1 + 1 + 4, 1 + 1 + 4 + 9, 1 + 4 + 9])
    _, scale = ref.lrn_forward(x, size=2, alpha=2.0, beta=1.0, k=1.0)  # window(i) = [i - 1, i]
    np.testing.assert_allclose(scale.ravel(), [1 + 1, 1 + 1 + 4, 1 + 4 + 9])
    _, scale = ref.lrn_forward(x, size=9, alpha=9.0, beta=1.0, k=1.0)  # larger than c: every channel
    np.testing.assert_allclose(scale.ravel(), [15, 15, 15])


# ---- (2) every backend against the reference ----------------------------------------------------------------
def _compare(device, x, dy, params):
    y, scale = ops.lrn_forward(x, **params, device=device)
    assert y.dtype == np.float32 and scale.dtype == np.float32 and y.shape == x.shape == scale.shape
    y_ref, scale_ref = ref.lrn_forward(x, **params)
    # float32 outputs of a few well-conditioned operations: a few ulps relative to each value.
    np.testing.assert_allclose(scale, scale_ref, rtol=2e-6, atol=0)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6 * np.abs(y_ref).max())
    dx = ops.lrn_backward(x, y, scale, dy, **params, device=device)
    dx_ref = ref.lrn_backward(x, y_ref, scale_ref, dy, **params)
    # The backward subtracts two terms that can nearly cancel, so its error is relative to the largest gradient.
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-5, atol=1e-5 * np.abs(dx_ref).max())


@pytest.mark.parametrize("params", PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_matches_reference(device, params, shape, rng):
    x = (3.0 * rng.standard_normal(shape)).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    _compare(device, x, dy, params)


def test_alexnet_sizes(device, rng):
    """The paper's LRN after conv1 (96 channels, 55x55 in the paper) at batch 2 on a 27x27 map, paper parameters."""
    x = (10.0 * rng.standard_normal((2, 96, 27, 27))).astype(np.float32)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    _compare(device, x, dy, PAPER)


def test_large_values_leaving_the_window(device):
    """A huge channel followed by tiny ones, with a small k: once the huge square has slid out of the window the
    remaining sum is ~1e-4 while the square that left was 1e6. A float32 running sum would keep an error of
    ~1e6 * 2^-24 = 0.06 there, hundreds of times the true scale; the kernels must not."""
    c = 12
    x = np.full((1, c, 3, 5), 1e-2, np.float32)
    x[:, 0] = 1e3
    x[:, 6] = -1e3
    dy = np.linspace(-1, 1, x.size, dtype=np.float32).reshape(x.shape)
    params = dict(size=3, alpha=3.0, beta=0.75, k=1e-4)
    _compare(device, x, dy, params)


def test_zero_input(device):
    x = np.zeros((2, 5, 3, 3), np.float32)
    y, scale = ops.lrn_forward(x, device=device)
    np.testing.assert_array_equal(y, 0.0)
    np.testing.assert_array_equal(scale, 2.0)
    dx = ops.lrn_backward(x, y, scale, np.ones_like(x), device=device)
    np.testing.assert_allclose(dx, 2.0 ** -0.75, rtol=1e-6)


@pytest.mark.parametrize("params, x", [
    # scale = 1 + 3.4e38 * x^2 overflows float (stored as inf, its rounding) but b = x * scale^-0.0625 ~ 0.003 x
    (dict(size=1, alpha=3.4e38, beta=0.0625, k=1.0), [1.0956935, -1.8417063, -3.672212, -3.867779]),
    # scale = 1e-45 (denormal): 1/scale overflows, and 0 * inf was NaN where b = 0
    (dict(size=1, alpha=0.0, beta=1.0, k=1e-45), [0.0, 0.0, 0.0, 0.0]),
    # a size far beyond the channels once allocated a ring of size * 256 floats (2 TB) and aborted
    (dict(size=2**31 - 1, alpha=1e-4, beta=0.75, k=2.0), [1.0, -2.0, 3.0, 0.5]),
], ids=["alpha-3.4e38", "k-1e-45", "size-2^31-1"])
def test_extreme_parameters(device, params, x):
    """Parameters at the edge of float32 (found by ALEXNET_FUZZ=long): where the exact answer is a float32 number
    kernels give it, through a double redo of the elements whose intermediates left float's range."""
    x = np.array(x, np.float32).reshape(1, 1, 2, 2)
    dy = np.array([0.094573, 3.6037095, -2.846723, 3.5891955], np.float32).reshape(x.shape)
    y, scale = ops.lrn_forward(x, **params, device=device)
    y_ref, scale_ref = ref.lrn_forward(x, **params)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-30)
    dx = ops.lrn_backward(x, y, scale, dy, **params, device=device)
    dx_ref = ref.lrn_backward(x.astype(np.float64), y.astype(np.float64), scale.astype(np.float64), dy, **params)
    finite = np.abs(dx_ref) <= np.finfo(np.float32).max
    assert np.isfinite(dx[finite]).all()
    np.testing.assert_allclose(dx[finite], dx_ref[finite], rtol=1e-4,
                               atol=1e-6 * np.abs(dx_ref[finite]).max(initial=0.0))


def test_backward_coefficient_beyond_float(device):
    """2 * alpha * beta / size = 3.4e38 * x overflowed in float where dx is an ordinary number (fuzz-found)."""
    x = np.array([1.0956935, -1.8417063, -3.672212, -3.867779], np.float32).reshape(1, 1, 2, 2)
    scale = np.ones_like(x)
    dy = np.array([0.094573, 3.6037095, -2.846723, 3.5891955], np.float32).reshape(x.shape)
    params = dict(size=2, alpha=3.4e38, beta=1.0, k=1.0)
    dx = ops.lrn_backward(x, x, scale, dy, **params, device=device)
    dx_ref = ref.lrn_backward(x, x, scale, dy, **params)
    finite = np.abs(dx_ref) <= np.finfo(np.float32).max
    assert np.isfinite(dx[finite]).all()


# ---- (3) bad input ------------------------------------------------------------------------------------------
def test_bad_inputs():
    x = np.ones((2, 4, 3, 3), np.float32)
    with pytest.raises(ValueError, match="lrn_forward: size must be >= 1"):
        ops.lrn_forward(x, size=0)
    with pytest.raises(ValueError, match="lrn_forward: k must be > 0"):
        ops.lrn_forward(x, k=0.0)
    with pytest.raises(ValueError, match="lrn_forward: alpha and beta must be >= 0"):
        ops.lrn_forward(x, alpha=-1.0)
    with pytest.raises(ValueError, match=r"lrn_forward: expected x of shape \(n, c, ...\)"):
        ops.lrn_forward(np.ones(4, np.float32))
    with pytest.raises(TypeError, match="lrn_forward: expected x of dtype float32"):
        ops.lrn_forward(x.astype(np.float64))
    y, scale = ops.lrn_forward(x)
    with pytest.raises(ValueError, match=r"lrn_backward: expected dy of shape \(2, 4, 3, 3\)"):
        ops.lrn_backward(x, y, scale, np.ones((2, 4, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"lrn_backward: expected scale of shape"):
        ops.lrn_backward(x, y, scale[:1].copy(), np.ones_like(x))
    with pytest.raises(ValueError, match="lrn_backward: size must be >= 1"):
        ops.lrn_backward(x, y, scale, np.ones_like(x), size=-3)


# ---- cuda-convnet's cmrnorm is this op with k = 1 -------------------------------------------------------------
def _kFCNorm(images, size_f, scale, pow_scale):
    """A NumPy transcription of cuda-convnet's cross-map response normalization (cmrnorm, not blocked):
    CrossMapResponseNormLayer (src/layer.cu) -> convResponseNormCrossMap -> kFCNorm (src/cudaconv2/conv_util.cu),
    with layer.py's NormLayerParser.add_params dividing the cfg's scale by size for cmrnorm."""
    add_scale = scale / size_f
    num_filters = images.shape[1]
    denoms = np.empty_like(images)
    for f in range(num_filters):
        start_f = -(size_f // 2) + f  # -sizeF/2 + filterIdx (C division truncates: -(sizeF/2) for sizeF > 0)
        loop_start_f, loop_end_f = max(0, start_f), min(num_filters, start_f + size_f)
        denoms[:, f] = 1 + add_scale * np.sum(images[:, loop_start_f:loop_end_f] ** 2, axis=1)
    return images * denoms ** -pow_scale, denoms


@pytest.mark.parametrize("size", [9, 5, 4, 2, 16])
def test_cuda_convnet_cmrnorm_is_lrn_with_k_1(device, size, rng):
    """A cfg's cmrnorm (size, scale, pow) is lrn(size, alpha=scale, beta=pow, k=1): the same window for odd AND
    even sizes ([f - size//2, f - size//2 + size), clipped), the same alpha/size, the constant 1. Checked on the
    conv-local-11pct layers' values (size 9, scale 0.001, pow 0.75) and on even sizes, forward on both backends, and
    the backward against finite differences of the transcription."""
    x = (rng.standard_normal((2, 16, 3, 3)) * 20).astype(np.float32)
    scale, pow_ = 0.001 * 9 / size * 3, 0.75  # strong enough that every neighbour matters
    y_cc, denom_cc = _kFCNorm(x.astype(np.float64), size, scale, pow_)
    params = dict(size=size, alpha=scale, beta=pow_, k=1.0)
    y, lrn_scale = ops.lrn_forward(x, **params, device=device)
    np.testing.assert_allclose(lrn_scale, denom_cc, rtol=2e-6)
    np.testing.assert_allclose(y, y_cc, rtol=1e-5, atol=1e-6 * np.abs(y_cc).max())
    np.testing.assert_allclose(ref.lrn_forward(x, **params)[1], denom_cc, rtol=1e-12)
    small = x[:1, :, :1, :2].astype(np.float64)
    dy = rng.standard_normal(small.shape)
    numeric = numerical_grad(lambda v: _kFCNorm(v, size, scale, pow_)[0], small, dy)
    ys, ss = ops.lrn_forward(small.astype(np.float32), **params, device=device)
    dx = ops.lrn_backward(small.astype(np.float32), ys, ss, dy.astype(np.float32), **params, device=device)
    assert_grad_close(dx, numeric, rtol=1e-4)
