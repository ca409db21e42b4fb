"""Dropout (paper Section 4.2): the reference Philox against Random123's published answers, every backend's mask
against the reference bit for bit (so CUDA equals the CPU exactly), statistics, and the reference's gradient."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import dropout as ref

# Random123's known-answer vectors for philox4x32_10 (its tests/kat_vectors; the same lines are pasted into
# DEShawResearch/Random123-Boost libs/random/test/test_philox.cpp): counter (4 words), key (2 words) -> output.
PHILOX4X32_10_KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    ((0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF),
     (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
    ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
     (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1)),
]

# (shape, p, seed, offset): odd sizes (tail blocks of 1..3 elements), a single element, and seeds/offsets that use
# the high 32-bit words of the key and counter.
CASES = [
    ((1,), 0.5, 0, 0),
    ((3,), 0.5, 1, 0),
    ((4,), 0.25, 7, 3),
    ((7, 13), 0.5, 123, 9),
    ((2, 3, 5, 7), 0.1, 2**40 + 5, 2**33 + 1),
    ((4097,), 0.9, 2**64 - 1, 2**64 - 1),
]


@pytest.mark.parametrize("counter, key, expected", PHILOX4X32_10_KAT)
def test_reference_philox_known_answers(counter, key, expected):
    out = ref.philox4x32_10(np.array(counter, dtype=np.uint64), key)
    assert out.dtype == np.uint32
    assert [int(w) for w in out] == list(expected)


def test_reference_philox_vectorized_matches_single_calls():
    # one batched call against one call per counter
    key = (0x12345678, 0x9ABCDEF0)
    counters = np.array([[i, i * 7, 0xFFFFFFFF - i, i << 20] for i in range(9)], dtype=np.uint64)
    batched = ref.philox4x32_10(counters, key)
    for row, ctr in zip(batched, counters):
        np.testing.assert_array_equal(row, ref.philox4x32_10(ctr, key))


def test_philox_uniform_stream_layout():
    # element i is word i % 4 of block i // 4, with counter (block lo, block hi, offset lo, offset hi)
    seed, offset = 2**35 + 17, 2**32 + 3
    u = ref.philox_uniform(seed, offset, 10)
    block2 = ref.philox4x32_10(np.array([2, 0, 3, 1], dtype=np.uint64), (17, 8))
    np.testing.assert_array_equal(u[8:10], (block2[:2] >> 8).astype(np.float64) * 2.0**-24)
    assert np.all((u >= 0) & (u < 1))
    np.testing.assert_array_equal(ref.philox_uniform(seed, offset, 3), u[:3])  # a prefix of the same stream


@pytest.mark.parametrize("shape, p, seed, offset", CASES)
def test_mask_matches_reference_bit_for_bit(device, shape, p, seed, offset):
    """Forward of ones reveals the mask: kept -> exactly float32(1/(1-p)), dropped -> exactly 0. Since every backend
    must equal the reference bit for bit, CUDA equals the CPU exactly."""
    x = np.ones(shape, dtype=np.float32)
    y = ops.dropout_forward(x, p, seed, offset, device=device)
    keep = ref.dropout_mask(shape, p, seed, offset)
    np.testing.assert_array_equal(y != 0, keep)
    scale = np.float32(1.0) / (np.float32(1.0) - np.float32(p))
    np.testing.assert_array_equal(y[keep], np.full(int(keep.sum()), scale, dtype=np.float32))


@pytest.mark.parametrize("shape, p, seed, offset", CASES)
def test_forward_backward_match_reference(device, rng, shape, p, seed, offset):
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    y = ops.dropout_forward(x, p, seed, offset, device=device)
    dx = ops.dropout_backward(dy, p, seed, offset, device=device)
    # float32 x * float32(1/(1-p)) vs float64 x / (1-p): relative error ~1e-7
    np.testing.assert_allclose(y, ref.dropout_forward(x, p, seed, offset), rtol=1e-6, atol=0)
    np.testing.assert_allclose(dx, ref.dropout_backward(dy, p, seed, offset), rtol=1e-6, atol=0)
    # backward regenerates exactly the forward's mask
    np.testing.assert_array_equal(dx != 0, y != 0)


@pytest.mark.parametrize("first", [0, 1, 6, 24, 37])
def test_slice_with_first_gets_the_slice_of_the_whole_mask(device, rng, first):
    """first: a slice of a larger tensor (one rank's rows of a global batch) draws that slice of its mask, at any
    alignment (first % 4 != 0 straddles a Philox block), forward and backward, and equal to the reference."""
    whole = rng.standard_normal(120).astype(np.float32)
    part = whole[first:first + 50].copy()
    expected = ops.dropout_forward(whole, 0.5, 11, 3, device=device)[first:first + 50]
    np.testing.assert_array_equal(ops.dropout_forward(part, 0.5, 11, 3, first=first, device=device), expected)
    np.testing.assert_array_equal(ops.dropout_backward(part, 0.5, 11, 3, first=first, device=device), expected)
    np.testing.assert_array_equal(ref.dropout_mask(part.shape, 0.5, 11, 3, first), expected != 0)


def test_first_past_the_stream_end_is_refused(device):
    with pytest.raises(ValueError, match="dropout_forward: first"):
        ops.dropout_forward(np.ones(8, np.float32), 0.5, 1, 2, first=2**64 - 4, device=device)


def test_threshold_is_inclusive(device):
    """keep when uniform >= p: pick p equal to some element's uniform (an exact float32), which must be kept."""
    seed, offset, count = 31, 4, 203
    u = ref.philox_uniform(seed, offset, count)
    for k in (0, 5, 202):
        p = float(u[k])
        assert 0 < p < 1 and np.float32(p) == p
        y = ops.dropout_forward(np.ones(count, np.float32), p, seed, offset, device=device)
        np.testing.assert_array_equal(y != 0, u >= p)
        assert y[k] != 0


def test_device_equals_cpu_exactly(device, rng):
    x = rng.standard_normal((3, 1001)).astype(np.float32)
    y_cpu = ops.dropout_forward(x, 0.5, 99, 5, device="cpu")
    y_dev = ops.dropout_forward(x, 0.5, 99, 5, device=device)
    np.testing.assert_array_equal(y_dev, y_cpu)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_keep_fraction(device, p):
    count = 1 << 20
    y = ops.dropout_forward(np.ones(count, dtype=np.float32), p, 2024, 1, device=device)
    kept = np.count_nonzero(y) / count
    # binomial standard deviation sqrt(p(1-p)/count) <= 5e-4; allow 6 sigma
    assert abs(kept - (1 - p)) < 6 * np.sqrt(p * (1 - p) / count), kept
    # inverted dropout preserves the mean
    assert abs(y.mean() - 1.0) < 6 * np.sqrt(p / (1 - p) / count)


def test_different_offsets_and_seeds_give_different_masks(device):
    x = np.ones(4096, dtype=np.float32)
    base = ops.dropout_forward(x, 0.5, 7, 0, device=device) != 0
    for seed, offset in [(7, 1), (8, 0), (7, 2**32), (7 + 2**32, 0)]:
        other = ops.dropout_forward(x, 0.5, seed, offset, device=device) != 0
        agree = np.mean(base == other)
        assert 0.45 < agree < 0.55, (seed, offset, agree)  # independent masks agree on about half the elements
    again = ops.dropout_forward(x, 0.5, 7, 0, device=device) != 0
    np.testing.assert_array_equal(again, base)  # same (seed, offset): same mask


def test_not_training_is_identity(device, rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_array_equal(ops.dropout_forward(x, 0.5, 1, 2, training=False, device=device), x)
    np.testing.assert_array_equal(ops.dropout_backward(x, 0.5, 1, 2, training=False, device=device), x)
    np.testing.assert_array_equal(ref.dropout_forward(x, 0.5, 1, 2, training=False), x)


def test_p_zero_is_identity(device, rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    np.testing.assert_array_equal(ops.dropout_forward(x, 0.0, 1, 2, device=device), x)
    np.testing.assert_array_equal(ops.dropout_backward(x, 0.0, 1, 2, device=device), x)
    np.testing.assert_array_equal(ref.dropout_forward(x, 0.0, 1, 2), x)


def test_dropped_non_finite_inputs_give_zero(device):
    x = np.full(64, np.inf, dtype=np.float32)
    y = ops.dropout_forward(x, 0.5, 3, 4, device=device)
    keep = ref.dropout_mask(x.shape, 0.5, 3, 4)
    assert np.all(y[~keep] == 0) and np.all(np.isinf(y[keep]))


def test_reference_gradient():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3, 7))
    dy = rng.standard_normal((3, 7))
    p, seed, offset = 0.3, 11, 2
    numeric = numerical_grad(lambda t: ref.dropout_forward(t, p, seed, offset), x, dy)
    assert_grad_close(ref.dropout_backward(dy, p, seed, offset), numeric, rtol=1e-6)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_bad_p(device, p):
    x = np.ones(4, dtype=np.float32)
    with pytest.raises(ValueError, match=r"dropout_forward: p must be in \[0, 1\)"):
        ops.dropout_forward(x, p, 0, 0, device=device)
    with pytest.raises(ValueError, match=r"dropout_backward: p must be in \[0, 1\)"):
        ops.dropout_backward(x, p, 0, 0, device=device)


def test_bad_dtype(device):
    with pytest.raises(TypeError, match="dropout_forward: expected x of dtype float32"):
        ops.dropout_forward(np.ones(4), 0.5, 0, 0, device=device)
