"""The locally connected layer (cuda-convnet's ``local``) on every backend against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import conv2d as conv_ref
from alexnet_cuda.reference import local as ref

# (n, c_in, h, w, c_out, kh, kw, stride, padding, groups): cuda-convnet's local3 geometry at a small batch (3x3,
# pad 1, stride 1), a stride that does not divide the span (the last window runs past the padding: ceil rule),
# groups, non-square inputs and kernels, a 1x1 output, channel counts that are not multiples of 4, and one case
# where they and the batch are (the CUDA kernels' float4 loads and stores).
CASES = [
    pytest.param((2, 4, 6, 6, 8, 3, 3, 1, 1, 1), id="local3-like"),
    pytest.param((3, 3, 7, 5, 5, 3, 2, 2, 0, 1), id="stride2-ceil-overhang"),
    pytest.param((2, 4, 5, 6, 6, 3, 3, 2, 1, 2), id="groups2-stride2-pad1"),
    pytest.param((1, 6, 4, 4, 3, 4, 4, 1, 0, 3), id="groups3-1x1-output"),
    pytest.param((5, 2, 3, 3, 7, 2, 2, 3, 2, 1), id="stride3-pad2"),
    pytest.param((8, 8, 5, 5, 8, 3, 3, 1, 1, 2), id="float4-paths-groups2"),  # batch, channels per group % 4 == 0
]


def _random_case(rng, case):
    n, c_in, h, w, c_out, kh, kw, stride, padding, groups = case
    h_out, w_out = ref.output_size(h, kh, stride, padding), ref.output_size(w, kw, stride, padding)
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = (rng.standard_normal((h_out, w_out, c_in // groups, kh, kw, c_out)) /
              np.sqrt(c_in // groups * kh * kw)).astype(np.float32)
    bias = rng.standard_normal((c_out, h_out, w_out)).astype(np.float32)
    dy = rng.standard_normal((n, c_out, h_out, w_out)).astype(np.float32)
    return x, weight, bias, dy, dict(stride=stride, padding=padding, groups=groups)


def assert_matches(actual, expected, rtol=1e-5):
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-6)
    err = np.abs(actual.astype(np.float64) - expected).max(initial=0.0)
    assert err <= rtol * scale, f"max abs error {err:.3e} vs scale {scale:.3e} (rtol {rtol})"


# ---- the reference against central finite differences (float64) ------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_reference_gradients_match_finite_differences(rng, case):
    x, weight, bias, dy, args = (a.astype(np.float64) if isinstance(a, np.ndarray) else a
                                 for a in _random_case(rng, case))
    dx, dw, db = ref.local_backward(x, weight, dy, **args)
    assert_grad_close(dx, numerical_grad(lambda v: ref.local_forward(v, weight, bias, **args), x, dy))
    assert_grad_close(dw, numerical_grad(lambda v: ref.local_forward(x, v, bias, **args), weight, dy))
    assert_grad_close(db, numerical_grad(lambda v: ref.local_forward(x, weight, v, **args), bias, dy))


def test_reference_with_shared_weights_is_a_convolution(rng):
    """The same filters at every position (and a shared bias) make the layer conv2d (when stride divides the span,
    where both size rules agree)."""
    x = rng.standard_normal((2, 4, 6, 6))
    conv_w = rng.standard_normal((6, 2, 3, 3))
    conv_b = rng.standard_normal(6)
    weight = np.broadcast_to(conv_w.transpose(1, 2, 3, 0), (6, 6, 2, 3, 3, 6))
    bias = np.broadcast_to(conv_b[:, None, None], (6, 6, 6))
    np.testing.assert_allclose(ref.local_forward(x, weight, bias, 1, 1, 2),
                               conv_ref.conv2d_forward(x, conv_w, conv_b, 1, 1, 2), rtol=1e-12, atol=1e-12)


def _cuda_convnet_forward(x, w_matrix, biases, filter_size, padding, stride, groups):
    """cuda-convnet's local layer, written from its indexing: filters (numModules, numFilterColors, filterPixels,
    numFilters) as in src/cudaconv2/filter_acts.cu, module m = my * modulesX + mx reading image pixel
    (my * stride + paddingStart + fy, mx * stride + paddingStart + fx) with paddingStart = -padding (layer.py
    negates the cfg's padding), filter f in group f // (numFilters / groups), biases (numFilters * numModules) added
    to the output row f * numModules + m (LocalUnsharedLayer::fpropActs: targets (numFilters, numModules, ...))."""
    n, channels, size, _ = x.shape
    modules_x = 1 + int(np.ceil((2 * padding + size - filter_size) / stride))
    num_filters = w_matrix.shape[1]
    colors, pixels = channels // groups, filter_size * filter_size
    y = np.zeros((n, num_filters, modules_x, modules_x))
    for m in range(modules_x * modules_x):
        my, mx = divmod(m, modules_x)
        for f in range(num_filters):
            g = f // (num_filters // groups)
            total = np.full(n, biases[f * modules_x * modules_x + m, 0])
            for c in range(colors):
                for p in range(pixels):
                    iy, ix = my * stride - padding + p // filter_size, mx * stride - padding + p % filter_size
                    if 0 <= iy < size and 0 <= ix < size:
                        row = (m * colors + c) * pixels + p
                        total += w_matrix[row, f] * x[:, g * colors + c, iy, ix]
            y[:, f, my, mx] = total
    return y


@pytest.mark.parametrize("size,filter_size,padding,stride,groups", [(5, 3, 1, 1, 1), (6, 3, 0, 2, 2)])
def test_cuda_convnet_layout_maps_by_reshape(rng, size, filter_size, padding, stride, groups):
    """NOTES-layers-local.md: cuda-convnet's weight matrix (modules * filterChannels * filterPixels, filters) is our
    weight reshaped, and its bias column (filters * modules, 1) our bias reshaped."""
    channels, filters = 4, 6
    modules_x = 1 + int(np.ceil((2 * padding + size - filter_size) / stride))
    x = rng.standard_normal((2, channels, size, size))
    w_matrix = rng.standard_normal((modules_x ** 2 * (channels // groups) * filter_size ** 2, filters))
    biases = rng.standard_normal((filters * modules_x ** 2, 1))
    expected = _cuda_convnet_forward(x, w_matrix, biases, filter_size, padding, stride, groups)
    weight = w_matrix.reshape(modules_x, modules_x, channels // groups, filter_size, filter_size, filters)
    bias = biases.reshape(filters, modules_x, modules_x)
    np.testing.assert_allclose(ref.local_forward(x, weight, bias, stride, padding, groups), expected, rtol=1e-12,
                               atol=1e-12)


# ---- every backend against the reference -------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("activation", [None, "relu"])
def test_forward(device, rng, case, activation):
    x, weight, bias, _, args = _random_case(rng, case)
    y = ops.local_forward(x, weight, bias, activation=activation, device=device, **args)
    assert_matches(y, ref.local_forward(x, weight, bias, activation=activation, **args))
    assert_matches(ops.local_forward(x, weight, device=device, **args), ref.local_forward(x, weight, None, **args))


@pytest.mark.parametrize("case", CASES)
def test_backward(device, rng, case):
    x, weight, _, dy, args = _random_case(rng, case)
    dx, dw, db = ops.local_backward(x, weight, dy, device=device, **args)
    for actual, expected in zip((dx, dw, db), ref.local_backward(x, weight, dy, **args)):
        assert_matches(actual, expected)


def test_backward_is_deterministic(device, rng):
    x, weight, _, dy, args = _random_case(rng, (9, 8, 6, 6, 16, 3, 3, 1, 1, 1))
    first = ops.local_backward(x, weight, dy, device=device, **args)
    for a, b in zip(first, ops.local_backward(x, weight, dy, device=device, **args)):
        np.testing.assert_array_equal(a, b)


def test_tensor_inputs_stay_on_device(device, rng):
    import alexnet_cuda
    x, weight, bias, dy, args = _random_case(rng, CASES[0].values[0])
    t = {k: alexnet_cuda.tensor(v, device) for k, v in dict(x=x, w=weight, b=bias, dy=dy).items()}
    y = ops.local_forward(t["x"], t["w"], t["b"], **args)
    assert isinstance(y, alexnet_cuda.Tensor) and y.device.startswith(device)
    grads = ops.local_backward(t["x"], t["w"], t["dy"], **args)
    assert all(isinstance(g, alexnet_cuda.Tensor) for g in grads)
    assert_matches(y.numpy(), ref.local_forward(x, weight, bias, **args))


def test_empty_batch(device):
    x = np.zeros((0, 3, 6, 6), np.float32)
    weight = np.ones((4, 4, 3, 3, 3, 5), np.float32)
    dy = np.zeros((0, 5, 4, 4), np.float32)
    assert ops.local_forward(x, weight, device=device).shape == (0, 5, 4, 4)
    dx, dw, db = ops.local_backward(x, weight, dy, device=device)
    assert dx.shape == x.shape
    np.testing.assert_array_equal(dw, np.zeros_like(weight))  # an empty sum
    np.testing.assert_array_equal(db, np.zeros((5, 4, 4), np.float32))


def test_no_input_channels(device):
    """The output is the bias alone, and the bias still gets its gradient."""
    x, weight = np.zeros((2, 0, 4, 4), np.float32), np.zeros((4, 4, 0, 3, 3, 5), np.float32)
    bias = np.arange(80, dtype=np.float32).reshape(5, 4, 4)
    np.testing.assert_array_equal(ops.local_forward(x, weight, bias, 1, 1, device=device), np.stack([bias, bias]))
    dx, dw, db = ops.local_backward(x, weight, np.ones((2, 5, 4, 4), np.float32), 1, 1, device=device)
    assert dx.shape == x.shape and dw.shape == weight.shape
    np.testing.assert_array_equal(db, np.full((5, 4, 4), 2, np.float32))


def test_output_size_is_cuda_convnets():
    assert ref.output_size(6, 3, 1, 1) == 6  # local3/local4 of the conv-local nets at 24x24 crops
    assert ref.output_size(8, 3, 1, 1) == 8  # ... and on whole 32x32 images
    assert ref.output_size(7, 2, 2, 0) == 4  # ceil: the last window reads one column past the image
    assert ref.output_size(7, 3, 2, 0) == 3


# ---- bad input: ValueError / TypeError naming the op and what was expected ---------------------------------------
def _f32(*shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize("call, error, match", [
    (lambda: ops.local_forward(_f32(3, 6, 6), _f32(6, 6, 3, 3, 3, 4), padding=1), ValueError,
     "local_forward: expected x with 4 dimensions"),
    (lambda: ops.local_forward(_f32(1, 3, 6, 6), _f32(3, 3, 3, 4), padding=1), ValueError,
     "local_forward: expected weight with 6 dimensions"),
    (lambda: ops.local_forward(_f32(1, 3, 6, 6), _f32(4, 4, 3, 3, 3, 4), padding=1), ValueError,
     r"local_forward: expected weight of shape \(h_out, w_out, c_in/groups, kh, kw, c_out\) = \(6, 6, 3, 3, 3, 4\)"),
    (lambda: ops.local_forward(_f32(1, 3, 6, 6), _f32(6, 6, 2, 3, 3, 4), padding=1), ValueError,
     "local_forward: expected weight of shape"),  # c_in/groups mismatch
    (lambda: ops.local_forward(_f32(1, 4, 6, 6), _f32(6, 6, 2, 3, 3, 3), padding=1, groups=2), ValueError,
     "local_forward: groups=2 does not divide the 3 output channels"),
    (lambda: ops.local_forward(_f32(1, 3, 6, 6), _f32(6, 6, 3, 3, 3, 4), _f32(4), padding=1), ValueError,
     r"local_forward: expected bias of shape \(4, 6, 6\)"),
    (lambda: ops.local_forward(_f32(1, 3, 6, 6), _f32(6, 6, 3, 3, 3, 4), padding=-1), ValueError,
     "local_forward: padding must be >= 0"),
    (lambda: ops.local_forward(_f32(1, 3, 6, 6), _f32(6, 6, 3, 3, 3, 4), stride=0), ValueError,
     "local_forward: stride must be >= 1"),
    (lambda: ops.local_forward(_f32(1, 3, 2, 2), _f32(1, 1, 3, 3, 3, 4)), ValueError,
     "local_forward: the weight's 3x3 kernel is larger than the input"),
    (lambda: ops.local_forward(_f32(1, 1, 2, 2), _f32(2, 2, 1, 1, 1, 1), stride=5), ValueError,
     "local_forward: stride=5 puts the last 1x1 window .* wholly outside the 2x2 padded input"),
    (lambda: ops.local_forward(np.zeros((1, 3, 6, 6)), _f32(6, 6, 3, 3, 3, 4), padding=1), TypeError,
     "local_forward: expected x of dtype float32"),
    (lambda: ops.local_forward(_f32(1, 3, 6, 6), _f32(6, 6, 3, 3, 3, 4), padding=1, activation="gelu"), ValueError,
     "local_forward: activation"),
    (lambda: ops.local_backward(_f32(1, 3, 6, 6), _f32(6, 6, 3, 3, 3, 4), _f32(1, 4, 5, 5), padding=1), ValueError,
     r"local_backward: expected dy of shape \(1, 4, 6, 6\)"),
    (lambda: ops.local_backward(_f32(1, 3, 6, 6), _f32(6, 6, 3, 3, 3, 4), np.zeros((1, 4, 6, 6), np.int32),
                                padding=1), TypeError, "local_backward: expected dy of dtype float32"),
])
def test_bad_input_raises_naming_the_op(call, error, match):
    with pytest.raises(error, match=match):
        call()
