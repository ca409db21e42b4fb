"""conv2d (paper Sections 3.1, 3.2, 3.5): the float64 reference against finite differences, every backend op against
the reference, and bad input at the op boundary."""

from __future__ import annotations

import numpy as np
import pytest

from alexnet_cuda import ops
from alexnet_cuda.reference import conv2d as ref
from conftest import assert_grad_close, numerical_grad

# Backend (float32) vs reference (float64): max |backend - reference| <= RTOL * max |reference|. The products sum
# up to a few hundred float32 terms (e.g. 3*11*11 = 363 for conv1); the CPU backend's observed error is <= 6e-7.
RTOL = 1e-5

# (n, c_in, h, w, c_out, kh, kw, stride, padding, groups)
CASES = [
    pytest.param((2, 3, 9, 7, 5, 3, 3, 1, 1, 1), id="3x3-pad1-odd-sizes"),
    pytest.param((1, 4, 8, 11, 6, 5, 5, 1, 2, 2), id="batch1-5x5-pad2-groups2"),  # conv2's geometry, small
    pytest.param((3, 2, 10, 9, 4, 3, 3, 2, 0, 1), id="stride2-not-dividing-input"),
    pytest.param((2, 3, 31, 31, 8, 11, 11, 4, 0, 1), id="conv1-11x11-stride4"),  # conv1's geometry, small input
    pytest.param((1, 3, 37, 34, 4, 11, 11, 4, 0, 1), id="11x11-stride4-not-dividing-input"),
    pytest.param((2, 6, 13, 10, 9, 4, 3, 3, 1, 3), id="4x3-kernel-stride3-pad1-groups3"),
    pytest.param((2, 6, 5, 7, 4, 1, 1, 1, 0, 2), id="1x1-groups2"),  # no im2col copy needed
    pytest.param((2, 3, 6, 5, 4, 1, 1, 2, 1, 1), id="1x1-stride2-pad1"),
    pytest.param((1, 2, 4, 5, 3, 2, 2, 1, 3, 1), id="padding-wider-than-kernel"),  # all-padding rows and columns
    pytest.param((1, 2, 3, 3, 2, 5, 5, 1, 1, 1), id="kernel-fills-padded-input"),  # a 1x1 output
    # a 1-pixel input padded by 2 under a 1x5 kernel: some taps start past the last output column (im2col once
    # wrote past its row there; found by the fuzz tests)
    pytest.param((1, 1, 1, 1, 1, 1, 5, 1, 2, 1), id="padding-wider-than-input-1x5-kernel"),
    pytest.param((1, 1, 1, 1, 1, 3, 1, 2**31 - 1, 2, 1), id="stride-2^31-1"),  # stride + padding once overflowed int
    pytest.param((1, 16, 20, 20, 32, 3, 3, 1, 1, 1), id="batch1-threaded-gemm"),  # big enough to thread each GEMM
    pytest.param((1, 64, 5, 5, 96, 3, 3, 1, 1, 1), id="batch1-threaded-gemm-split-by-rows"),  # many channels, 5x5 map
    pytest.param((4, 16, 13, 13, 24, 3, 3, 1, 1, 2), id="batch4-groups2-pairs-across-threads"),
    # 7x7 maps: images are lowered side by side in chunks (conv2d.cpp), here of 1 and 2 images (3 and 4 at 1 thread)
    pytest.param((7, 6, 7, 7, 8, 3, 3, 1, 1, 2), id="batch7-7x7-maps-image-chunks-groups2"),
    # 3x3 and 5x5 stride 1 with >= 16 channels per group on both sides: the CPU runs Winograd F(2x2, 3x3) and
    # F(2x2, 5x5) (conv2d_winograd.cpp), whose input gradient is a pass with padding R - 1 - p; odd maps have
    # half-empty tiles
    pytest.param((3, 64, 13, 13, 64, 3, 3, 1, 1, 2), id="winograd-13x13-groups2"),  # conv4's geometry, fewer maps
    pytest.param((2, 32, 6, 9, 40, 3, 3, 1, 0, 1), id="winograd-pad0-even-by-odd"),
    pytest.param((1, 40, 4, 3, 32, 3, 3, 1, 2, 1), id="winograd-pad2-tiny-map"),
    pytest.param((9, 32, 7, 7, 32, 3, 3, 1, 1, 1), id="winograd-7x7-image-chunks"),
    pytest.param((2, 32, 1, 1, 32, 3, 3, 1, 1, 1), id="winograd-1x1-map"),
    pytest.param((2, 48, 15, 15, 64, 5, 5, 1, 2, 1), id="winograd-5x5-conv2-of-alexnet-small"),
    pytest.param((2, 64, 9, 7, 64, 5, 5, 1, 1, 2), id="winograd-5x5-pad1-groups2"),
    pytest.param((1, 32, 3, 4, 32, 5, 5, 1, 4, 1), id="winograd-5x5-pad4-map-smaller-than-kernel"),
    # layers-18pct's conv3 (8x8 maps: the input gradient stays on im2col) and conv2 (16x16) with enough images for
    # several chunks: 5x5 weight gradients also run Winograd
    pytest.param((5, 32, 8, 8, 64, 5, 5, 1, 2, 1), id="winograd-5x5-layers-18pct-conv3"),
    pytest.param((9, 16, 16, 16, 16, 5, 5, 1, 2, 1), id="winograd-5x5-layers-18pct-conv2-image-chunks"),
    # strided forward folded to stride 1 (space-to-depth: c_in * stride^2 channels, ceil(k / stride) taps)
    pytest.param((2, 3, 35, 35, 16, 11, 11, 4, 0, 1), id="winograd-folded-conv1-geometry"),
    pytest.param((1, 3, 37, 34, 16, 11, 11, 4, 0, 1), id="winograd-folded-stride4-not-dividing-input"),
    pytest.param((2, 4, 15, 13, 16, 5, 5, 2, 1, 1), id="winograd-folded-5x5-stride2-pad1"),
]


def _random_case(rng, case):
    n, c_in, h, w, c_out, kh, kw, stride, padding, groups = case
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    weight = (rng.standard_normal((c_out, c_in // groups, kh, kw)) / np.sqrt(c_in // groups * kh * kw)).astype(
        np.float32)
    bias = rng.standard_normal(c_out).astype(np.float32)
    h_out, w_out = ref.output_size(h, kh, stride, padding), ref.output_size(w, kw, stride, padding)
    dy = rng.standard_normal((n, c_out, h_out, w_out)).astype(np.float32)
    return x, weight, bias, dy, dict(stride=stride, padding=padding, groups=groups)


def assert_matches(actual, expected, rtol=RTOL):
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-6)
    err = np.abs(actual.astype(np.float64) - expected).max(initial=0.0)
    assert err <= rtol * scale, f"max abs error {err:.3e} vs scale {scale:.3e} (rtol {rtol})"


# ---- the reference against central finite differences (float64, rtol 1e-6 of the largest gradient) ----------
GRAD_CASES = [
    pytest.param((2, 3, 5, 6, 4, 3, 3, 1, 1, 1), id="odd-sizes-pad1"),
    pytest.param((1, 4, 7, 6, 4, 3, 2, 1, 0, 2), id="groups2-3x2-kernel"),
    pytest.param((1, 2, 11, 10, 3, 3, 3, 4, 1, 1), id="stride4-pad1-not-dividing"),
    pytest.param((2, 4, 9, 9, 2, 5, 5, 4, 2, 2), id="5x5-stride4-pad2-groups2"),
]


@pytest.mark.parametrize("case", GRAD_CASES)
def test_reference_gradients_match_finite_differences(rng, case):
    x, weight, bias, dy, conv = _random_case(rng, case)
    x, weight, bias, dy = (a.astype(np.float64) for a in (x, weight, bias, dy))
    kernel = weight.shape[2:]

    numeric_dx = numerical_grad(lambda v: ref.conv2d_forward(v, weight, bias, **conv), x, dy)
    assert_grad_close(ref.conv2d_backward_input(dy, weight, x.shape[2:], **conv), numeric_dx, rtol=1e-6)
    numeric_dw = numerical_grad(lambda v: ref.conv2d_forward(x, v, bias, **conv), weight, dy)
    assert_grad_close(ref.conv2d_backward_weight(x, dy, kernel, **conv), numeric_dw, rtol=1e-6)
    numeric_db = numerical_grad(lambda v: ref.conv2d_forward(x, weight, v, **conv), bias, dy)
    assert_grad_close(ref.bias_backward(dy), numeric_db, rtol=1e-6)


def test_reference_forward_matches_a_direct_sum(rng):
    # The reference's slicing against the definition written out element by element, padding and groups included.
    x, weight, bias, _, conv = _random_case(rng, (1, 4, 6, 5, 4, 3, 2, 2, 1, 2))
    y = ref.conv2d_forward(x, weight, bias, **conv)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    for o in range(4):
        g = o // 2
        for oy in range(y.shape[2]):
            for ox in range(y.shape[3]):
                patch = xp[0, 2 * g : 2 * g + 2, 2 * oy : 2 * oy + 3, 2 * ox : 2 * ox + 2]
                assert y[0, o, oy, ox] == pytest.approx(np.sum(patch * weight[o]) + bias[o], rel=1e-12, abs=1e-12)


# ---- every backend op against the reference -------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_forward(device, rng, case, activation, with_bias):
    x, weight, bias, _, conv = _random_case(rng, case)
    b = bias if with_bias else None
    y = ops.conv2d_forward(x, weight, b, activation=activation, device=device, **conv)
    assert_matches(y, ref.conv2d_forward(x, weight, b, activation=activation, **conv))


@pytest.mark.parametrize("case", CASES)
def test_backward_input(device, rng, case):
    x, weight, _, dy, conv = _random_case(rng, case)
    dx = ops.conv2d_backward_input(dy, weight, input_size=x.shape[2:], device=device, **conv)
    assert_matches(dx, ref.conv2d_backward_input(dy, weight, x.shape[2:], **conv))


@pytest.mark.parametrize("case", CASES)
def test_backward_weight(device, rng, case):
    x, weight, _, dy, conv = _random_case(rng, case)
    dw = ops.conv2d_backward_weight(x, dy, kernel_size=weight.shape[2:], device=device, **conv)
    assert_matches(dw, ref.conv2d_backward_weight(x, dy, weight.shape[2:], **conv))


@pytest.mark.parametrize("case", [CASES[0], CASES[-2], CASES[-1]])
def test_backward_weight_is_deterministic(device, rng, case):
    # The batch sum is a fixed-order reduction (no atomics): repeated calls agree bit for bit.
    x, weight, _, dy, conv = _random_case(rng, case)
    runs = [ops.conv2d_backward_weight(x, dy, kernel_size=weight.shape[2:], device=device, **conv) for _ in range(3)]
    for dw in runs[1:]:
        np.testing.assert_array_equal(dw, runs[0])


@pytest.mark.parametrize("shape", [(2, 5, 7, 3), (1, 3, 1, 1), (3, 4, 13, 13), (1, 1, 9, 1), (4, 6), (1, 4100)],
                         ids=lambda s: "x".join(map(str, s)))
def test_bias_backward(device, rng, shape):
    dy = rng.standard_normal(shape).astype(np.float32)
    assert_matches(ops.bias_backward(dy, device=device), ref.bias_backward(dy))


def test_tensor_inputs_stay_on_device(device, rng):
    import alexnet_cuda

    x, weight, bias, _, conv = _random_case(rng, CASES[1].values[0])
    y = ops.conv2d_forward(alexnet_cuda.tensor(x, device), alexnet_cuda.tensor(weight, device),
                           alexnet_cuda.tensor(bias, device), activation="relu", **conv)
    assert isinstance(y, alexnet_cuda.Tensor) and y.device.startswith(device)
    assert_matches(y.numpy(), ref.conv2d_forward(x, weight, bias, activation="relu", **conv))


# ---- bad input: ValueError / TypeError naming the op -----------------------------------------------------------
def _f32(*shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize("call, error, op", [
    (lambda: ops.conv2d_forward(_f32(3, 8, 8), _f32(4, 3, 3, 3)), ValueError, "conv2d_forward"),  # rank
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 3, 3)), ValueError, "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 2, 3, 3)), ValueError, "conv2d_forward"),  # c_in mismatch
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 3, 3, 3), _f32(5)), ValueError, "conv2d_forward"),  # bias
    (lambda: ops.conv2d_forward(np.zeros((1, 3, 8, 8)), _f32(4, 3, 3, 3)), TypeError, "conv2d_forward"),  # float64
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), np.zeros((4, 3, 3, 3), np.int32)), TypeError, "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 8, 8, 3).transpose(0, 3, 1, 2), _f32(4, 3, 3, 3)), ValueError,
     "conv2d_forward"),  # not C-contiguous
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 1, 3, 3), groups=2), ValueError, "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 4, 8, 8), _f32(3, 2, 3, 3), groups=2), ValueError, "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 3, 3, 3), padding=-1), ValueError, "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 3, 3, 3), stride=0), ValueError, "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 3, 11, 11), padding=1), ValueError, "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 3, 3, 3), activation="sigmoid"), ValueError,
     "conv2d_forward"),
    (lambda: ops.conv2d_forward(_f32(1, 3, 8, 8), _f32(4, 3, 3, 3), device="tpu"), ValueError, "conv2d_forward"),
    (lambda: ops.conv2d_backward_input(_f32(1, 4, 6, 6), _f32(4, 3, 3, 3), input_size=(9, 8)), ValueError,
     "conv2d_backward_input"),  # dy does not match the output of a 9x8 input
    (lambda: ops.conv2d_backward_input(_f32(1, 4, 6, 6), _f32(4, 3, 3), input_size=(8, 8)), ValueError,
     "conv2d_backward_input"),
    (lambda: ops.conv2d_backward_input(_f32(1, 4, 6, 6), _f32(4, 3, 3, 3), input_size=(2, 2)), ValueError,
     "conv2d_backward_input"),  # kernel larger than the input
    (lambda: ops.conv2d_backward_input(np.zeros((1, 4, 6, 6)), _f32(4, 3, 3, 3), input_size=(8, 8)), TypeError,
     "conv2d_backward_input"),
    (lambda: ops.conv2d_backward_input(_f32(1, 4, 6, 6), _f32(4, 3, 3, 3), input_size=(8, 8), groups=3), ValueError,
     "conv2d_backward_input"),  # groups=3 does not divide the 4 output channels
    (lambda: ops.conv2d_backward_input(_f32(1, 1, 1, 1), _f32(1, 2, 1, 1), input_size=(1, 1), groups=2**31 - 1),
     ValueError, r"conv2d_backward_input: weight.shape\[1\] \* groups"),  # c_in = 2 * groups overflows int
    (lambda: ops.conv2d_backward_weight(_f32(1, 3, 8, 8), _f32(1, 4, 5, 6), kernel_size=(3, 3)), ValueError,
     "conv2d_backward_weight"),  # dy is not the output shape
    (lambda: ops.conv2d_backward_weight(_f32(1, 3, 8, 8), _f32(2, 4, 6, 6), kernel_size=(3, 3)), ValueError,
     "conv2d_backward_weight"),  # batch mismatch
    (lambda: ops.conv2d_backward_weight(_f32(1, 3, 8, 8), _f32(1, 4, 6, 6), kernel_size=(3, 3), groups=2), ValueError,
     "conv2d_backward_weight"),
    (lambda: ops.conv2d_backward_weight(_f32(1, 3, 8, 8), _f32(1, 4, 6, 6), kernel_size=(3, 3), padding=-2),
     ValueError, "conv2d_backward_weight"),
    (lambda: ops.conv2d_backward_weight(_f32(1, 3, 8, 8), np.zeros((1, 4, 6, 6), np.int64), kernel_size=(3, 3)),
     TypeError, "conv2d_backward_weight"),
    (lambda: ops.bias_backward(_f32(5)), ValueError, "bias_backward"),
    (lambda: ops.bias_backward(np.zeros((2, 3))), TypeError, "bias_backward"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_bad_input_raises_naming_the_op(call, error, op):
    with pytest.raises(error, match=op):
        call()


def test_empty_batch(device):
    x = np.zeros((0, 3, 8, 8), np.float32)
    weight = np.ones((4, 3, 3, 3), np.float32)
    dy = np.zeros((0, 4, 6, 6), np.float32)
    assert ops.conv2d_forward(x, weight, device=device).shape == (0, 4, 6, 6)
    assert ops.conv2d_backward_input(dy, weight, input_size=(8, 8), device=device).shape == (0, 3, 8, 8)
    np.testing.assert_array_equal(ops.conv2d_backward_weight(x, dy, kernel_size=(3, 3), device=device),
                                  np.zeros_like(weight))  # an empty sum
    np.testing.assert_array_equal(ops.bias_backward(dy, device=device), np.zeros(4, np.float32))
