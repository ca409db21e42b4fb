"""Response normalization within each map (cuda-convnet's ``rnorm``) on every backend against the float64
reference, and the reference against a transcription of cuda-convnet's kernel."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import spatial_lrn as ref

# layers-18pct's rnorm1/rnorm2 (size 3, scale 0.00005, pow 0.75, on maps of 0-255-scale activations); strong
# normalization (alpha / size^2 near 1, so the neighbours matter); even sizes (the window reaches one further
# up/left, and the backward's window is its mirror image); size 1; a window larger than the map; each of the
# kernels' power paths (beta 0.5, 1, 0 and a general exponent through powf).
LAYERS_18PCT = dict(size=3, alpha=5e-5, beta=0.75, k=1.0)
PARAMS = [
    LAYERS_18PCT,
    dict(size=3, alpha=9.0, beta=0.75, k=1.0),
    dict(size=4, alpha=16.0, beta=0.6, k=0.5),
    dict(size=2, alpha=4.0, beta=1.0, k=1.5),
    dict(size=5, alpha=10.0, beta=0.5, k=1.0),
    dict(size=1, alpha=1.0, beta=0.75, k=1.0),
    dict(size=9, alpha=30.0, beta=1.3, k=0.8),
    dict(size=3, alpha=9.0, beta=0.0, k=1.0),
]
PARAM_IDS = [f"n{p['size']}-a{p['alpha']}-b{p['beta']}-k{p['k']}" for p in PARAMS]
# (n, c, h, w): layers-18pct's maps are 16x16 and 8x8; odd and non-square maps; 1xN and Nx1 maps; a map smaller
# than the window.
SHAPES = [(2, 3, 8, 8), (1, 4, 16, 16), (2, 2, 5, 7), (1, 3, 1, 6), (2, 1, 6, 1), (1, 2, 2, 2)]


# ---- (1) the reference ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("params", PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize("shape", [(2, 2, 4, 5), (1, 1, 3, 3)])
def test_reference_gradient(params, shape, rng):
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    y, denom = ref.spatial_lrn_forward(x, **params)
    numeric = numerical_grad(lambda v: ref.spatial_lrn_forward(v, **params)[0], x, dy)
    assert_grad_close(ref.spatial_lrn_backward(x, y, denom, dy, **params), numeric, rtol=1e-6)


def _kCNorm(images, size_x, add_scale, pow_scale):
    """A NumPy transcription of cuda-convnet's within-map response normalization: convResponseNorm ->
    convContrastNorm(images, images, ...) -> kCNorm_fewfilter / kCNorm_manyfilter (src/cudaconv2/conv_util.cu),
    with add_scale already divided by size^2 as layer.py's NormLayerParser.add_params does for 'rnorm'."""
    n, c, img_size, _ = images.shape
    denoms = np.zeros_like(images)
    for py in range(img_size):
        for px in range(img_size):
            start_y, start_x = -(size_x // 2) + py, -(size_x // 2) + px  # -sizeX/2 + pxIdx (C division, sizeX > 0)
            loop_start_y, loop_start_x = max(0, start_y), max(0, start_x)
            loop_end_y, loop_end_x = min(img_size, start_y + size_x), min(img_size, start_x + size_x)
            prod = np.zeros((n, c))
            for yy in range(loop_start_y, loop_end_y):
                for xx in range(loop_start_x, loop_end_x):
                    prod += images[:, :, yy, xx] ** 2
            denoms[:, :, py, px] = 1 + add_scale * prod
    return images * denoms ** -pow_scale, denoms


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_reference_is_cuda_convnets_rnorm(size, rng):
    """A cfg's rnorm (size, scale, pow) is spatial_lrn(size, alpha=scale, beta=pow, k=1)."""
    x = rng.standard_normal((2, 3, 7, 7)) * 30
    scale, pow_ = 0.01, 0.75
    y_cc, denom_cc = _kCNorm(x, size, scale / size**2, pow_)
    y, denom = ref.spatial_lrn_forward(x, size=size, alpha=scale, beta=pow_, k=1.0)
    np.testing.assert_allclose(denom, denom_cc, rtol=1e-12)
    np.testing.assert_allclose(y, y_cc, rtol=1e-12)


def test_reference_small_case():
    """Hand-checked: a 1x3 map, size 3: the corner windows hold two elements, the divisor stays 9."""
    x = np.array([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3)
    _, denom = ref.spatial_lrn_forward(x, size=3, alpha=9.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(denom.ravel(), [1 + 1 + 4, 1 + 1 + 4 + 9, 1 + 4 + 9])
    _, denom = ref.spatial_lrn_forward(x, size=2, alpha=4.0, beta=1.0, k=1.0)  # window(j) = [j - 1, j]
    np.testing.assert_allclose(denom.ravel(), [1 + 1, 1 + 1 + 4, 1 + 4 + 9])


# ---- (2) every backend against the reference ----------------------------------------------------------------
def _compare(device, x, dy, params):
    y, denom = ops.spatial_lrn_forward(x, **params, device=device)
    assert y.dtype == np.float32 and denom.dtype == np.float32 and y.shape == x.shape == denom.shape
    y_ref, denom_ref = ref.spatial_lrn_forward(x, **params)
    np.testing.assert_allclose(denom, denom_ref, rtol=2e-6)
    np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-6 * np.abs(y_ref).max())
    dx = ops.spatial_lrn_backward(x, y, denom, dy, **params, device=device)
    dx_ref = ref.spatial_lrn_backward(x, y, denom, dy, **params)
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-4, atol=1e-5 * np.abs(dx_ref).max())


@pytest.mark.parametrize("params", PARAMS, ids=PARAM_IDS)
@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_matches_reference(device, shape, params, rng):
    x = rng.standard_normal(shape).astype(np.float32)
    _compare(device, x, rng.standard_normal(shape).astype(np.float32), params)


def test_layers_18pct_scale(device, rng):
    """rnorm1 after pool1 of layers-18pct: activations on the 0-255 pixel scale, 32 maps of 16x16 (above the CPU
    kernel's OpenMP threshold)."""
    x = (rng.standard_normal((4, 32, 16, 16)) * 60).astype(np.float32)
    _compare(device, x, rng.standard_normal(x.shape).astype(np.float32), LAYERS_18PCT)


def test_defaults_are_layers_18pct(device, rng):
    x = (rng.standard_normal((1, 2, 8, 8)) * 50).astype(np.float32)
    y, _ = ops.spatial_lrn_forward(x, device=device)
    np.testing.assert_allclose(y, ref.spatial_lrn_forward(x, **LAYERS_18PCT)[0], rtol=1e-5)


# ---- (3) bad input ------------------------------------------------------------------------------------------
def test_bad_inputs():
    x = np.ones((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"spatial_lrn_forward: expected x with 4 dimensions"):
        ops.spatial_lrn_forward(np.ones((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="spatial_lrn_forward: size must be >= 1"):
        ops.spatial_lrn_forward(x, size=0)
    with pytest.raises(ValueError, match="spatial_lrn_forward: k must be > 0"):
        ops.spatial_lrn_forward(x, k=0.0)
    with pytest.raises(ValueError, match="spatial_lrn_forward: alpha and beta must be >= 0"):
        ops.spatial_lrn_forward(x, alpha=-1.0)
    y, denom = ops.spatial_lrn_forward(x)
    with pytest.raises(ValueError, match=r"spatial_lrn_backward: expected denom of shape \(1, 2, 4, 4\)"):
        ops.spatial_lrn_backward(x, y, denom[:, :1].copy(), y)
    with pytest.raises(TypeError, match="spatial_lrn_backward: expected dy of dtype float32"):
        ops.spatial_lrn_backward(x, y, denom, y.astype(np.float64))
