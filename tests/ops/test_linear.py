"""Fully connected layers (paper Section 3.5): the float64 reference against finite differences, every backend op
against the reference, and bad input at the op boundary."""

from __future__ import annotations

import numpy as np
import pytest

from alexnet_cuda import ops
from alexnet_cuda.reference import linear as ref
from conftest import assert_grad_close, numerical_grad

# Backend (float32) vs reference (float64): max |backend - reference| <= RTOL * max |reference|. Sums run over up
# to 1000 float32 terms here; the CPU backend's observed error is at most ~1.3e-6.
RTOL = 1e-5

# (n, in, out): odd sizes, batch 1, a single unit, reductions longer than one cache block (in > 256), more
# outputs than one column block (out > 4096), a batch taller than one row block (n > 144).
CASES = [
    pytest.param((1, 1, 1), id="1x1x1"),
    pytest.param((1, 37, 5), id="batch1"),
    pytest.param((5, 7, 3), id="odd-small"),
    pytest.param((3, 300, 17), id="long-reduction"),
    pytest.param((7, 513, 33), id="odd-long-reduction"),
    pytest.param((2, 20, 4100), id="wide-output"),
    pytest.param((150, 130, 70), id="tall-batch"),
    pytest.param((64, 1000, 200), id="threaded-gemm"),  # big enough to thread each product
]


def _random_case(rng, case):
    n, n_in, n_out = case
    x = rng.standard_normal((n, n_in)).astype(np.float32)
    weight = (rng.standard_normal((n_out, n_in)) / np.sqrt(n_in)).astype(np.float32)
    bias = rng.standard_normal(n_out).astype(np.float32)
    dy = rng.standard_normal((n, n_out)).astype(np.float32)
    return x, weight, bias, dy


def assert_matches(actual, expected, rtol=RTOL):
    assert actual.dtype == np.float32 and actual.shape == expected.shape
    scale = max(np.abs(expected).max(initial=0.0), 1e-6)
    err = np.abs(actual.astype(np.float64) - expected).max(initial=0.0)
    assert err <= rtol * scale, f"max abs error {err:.3e} vs scale {scale:.3e} (rtol {rtol})"


# ---- the reference against central finite differences (float64, rtol 1e-6 of the largest gradient) ----------
@pytest.mark.parametrize("case", [(1, 4, 3), (3, 5, 7), (4, 9, 2)], ids=str)
def test_reference_gradients_match_finite_differences(rng, case):
    x, weight, bias, dy = (a.astype(np.float64) for a in _random_case(rng, case))
    numeric_dx = numerical_grad(lambda v: ref.linear_forward(v, weight, bias), x, dy)
    assert_grad_close(ref.linear_backward_input(dy, weight), numeric_dx, rtol=1e-6)
    numeric_dw = numerical_grad(lambda v: ref.linear_forward(x, v, bias), weight, dy)
    assert_grad_close(ref.linear_backward_weight(x, dy), numeric_dw, rtol=1e-6)
    numeric_db = numerical_grad(lambda v: ref.linear_forward(x, weight, v), bias, dy)
    assert_grad_close(ref.bias_backward(dy), numeric_db, rtol=1e-6)


def test_reference_forward_matches_matmul(rng):
    x, weight, bias, _ = _random_case(rng, (4, 6, 5))
    expected = np.tanh(x.astype(np.float64) @ weight.astype(np.float64).T + bias)
    np.testing.assert_allclose(ref.linear_forward(x, weight, bias, "tanh"), expected, rtol=1e-12)


# ---- every backend op against the reference -------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("activation", [None, "relu", "tanh"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_forward(device, rng, case, activation, with_bias):
    x, weight, bias, _ = _random_case(rng, case)
    b = bias if with_bias else None
    y = ops.linear_forward(x, weight, b, activation=activation, device=device)
    assert_matches(y, ref.linear_forward(x, weight, b, activation))


@pytest.mark.parametrize("case", CASES)
def test_backward_input(device, rng, case):
    x, weight, _, dy = _random_case(rng, case)
    assert_matches(ops.linear_backward_input(dy, weight, device=device), ref.linear_backward_input(dy, weight))


@pytest.mark.parametrize("case", CASES)
def test_backward_weight(device, rng, case):
    x, weight, _, dy = _random_case(rng, case)
    assert_matches(ops.linear_backward_weight(x, dy, device=device), ref.linear_backward_weight(x, dy))


@pytest.mark.parametrize("case", CASES)
def test_bias_backward(device, rng, case):
    _, _, _, dy = _random_case(rng, case)
    assert_matches(ops.bias_backward(dy, device=device), ref.bias_backward(dy))


def test_backward_weight_is_deterministic(device, rng):
    x, _, _, dy = _random_case(rng, CASES[-1].values[0])
    runs = [ops.linear_backward_weight(x, dy, device=device) for _ in range(3)]
    for dw in runs[1:]:
        np.testing.assert_array_equal(dw, runs[0])


# ---- bad input: ValueError / TypeError naming the op -----------------------------------------------------------
def _f32(*shape):
    return np.zeros(shape, np.float32)


@pytest.mark.parametrize("call, error, op", [
    (lambda: ops.linear_forward(_f32(8), _f32(4, 8)), ValueError, "linear_forward"),  # rank
    (lambda: ops.linear_forward(_f32(2, 8), _f32(4, 8, 1)), ValueError, "linear_forward"),
    (lambda: ops.linear_forward(_f32(2, 8), _f32(4, 7)), ValueError, "linear_forward"),  # in mismatch
    (lambda: ops.linear_forward(_f32(2, 8), _f32(4, 8), _f32(5)), ValueError, "linear_forward"),  # bias
    (lambda: ops.linear_forward(_f32(2, 8), _f32(4, 8), _f32(1, 4)), ValueError, "linear_forward"),
    (lambda: ops.linear_forward(np.zeros((2, 8)), _f32(4, 8)), TypeError, "linear_forward"),  # float64
    (lambda: ops.linear_forward(_f32(2, 8), np.zeros((4, 8), np.int32)), TypeError, "linear_forward"),
    (lambda: ops.linear_forward(_f32(8, 2).T, _f32(4, 8)), ValueError, "linear_forward"),  # not C-contiguous
    (lambda: ops.linear_forward(_f32(2, 8), _f32(4, 8), activation="gelu"), ValueError, "linear_forward"),
    (lambda: ops.linear_forward(_f32(2, 8), _f32(4, 8), device="cuda:x"), ValueError, "linear_forward"),
    (lambda: ops.linear_backward_input(_f32(2, 5), _f32(4, 8)), ValueError, "linear_backward_input"),  # out mismatch
    (lambda: ops.linear_backward_input(_f32(2, 4, 1), _f32(4, 8)), ValueError, "linear_backward_input"),
    (lambda: ops.linear_backward_input(_f32(2, 4), np.zeros((4, 8))), TypeError, "linear_backward_input"),
    (lambda: ops.linear_backward_weight(_f32(3, 8), _f32(2, 4)), ValueError, "linear_backward_weight"),  # batch
    (lambda: ops.linear_backward_weight(_f32(8), _f32(2, 4)), ValueError, "linear_backward_weight"),
    (lambda: ops.linear_backward_weight(_f32(2, 8), np.zeros((2, 4), np.uint8)), TypeError,
     "linear_backward_weight"),
    (lambda: ops.linear_backward_weight(_f32(8, 2).T, _f32(2, 4)), ValueError, "linear_backward_weight"),
], ids=lambda v: v.__name__ if isinstance(v, type) else None)
def test_bad_input_raises_naming_the_op(call, error, op):
    with pytest.raises(error, match=op):
        call()


def test_empty_batch(device):
    x = np.zeros((0, 5), np.float32)
    weight = np.ones((3, 5), np.float32)
    assert ops.linear_forward(x, weight, np.ones(3, np.float32), device=device).shape == (0, 3)
    assert ops.linear_backward_input(np.zeros((0, 3), np.float32), weight, device=device).shape == (0, 5)
    np.testing.assert_array_equal(ops.linear_backward_weight(x, np.zeros((0, 3), np.float32), device=device),
                                  np.zeros((3, 5), np.float32))  # an empty sum
