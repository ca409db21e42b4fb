"""Dropout (paper Section 4.2), inverted, with a counter-based Philox-4x32-10 random stream.

The paper drops each hidden unit with probability 0.5 during training and multiplies the outputs by 0.5 at test
time. Inverted dropout is the equivalent form used here: kept units are scaled by 1/(1-p) while training, so the
test-time network is the identity on these layers.

The random stream (the same one csrc/philox.h defines for the C++/CUDA backends) is written here from the
published algorithm (Salmon, Moraes, Dror, Shaw, "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011; the
Random123 library), independently of the C++ code:

    key     = (seed mod 2^32, seed div 2^32)
    counter = (block mod 2^32, block div 2^32, offset mod 2^32, offset div 2^32), block = i div 4
    element i takes output word (i mod 4) of philox4x32_10(counter, key)
    uniform(i) = (word >> 8) * 2^-24, in [0, 1)
    keep(i)    = uniform(i) >= p

Everything is vectorized over the counter blocks with uint64 NumPy arithmetic: the product of two 32-bit words
fits in 64 bits exactly, so its high and low halves are the Philox "mulhi" and "mullo".
"""

from __future__ import annotations

import numpy as np

_MASK32 = np.uint64(0xFFFFFFFF)
_SHIFT32 = np.uint64(32)
# Round multipliers and Weyl key increments of Philox-4x32 (Random123, philox.h).
_PHILOX_M0 = np.uint64(0xD2511F53)
_PHILOX_M1 = np.uint64(0xCD9E8D57)
_PHILOX_W0 = np.uint64(0x9E3779B9)
_PHILOX_W1 = np.uint64(0xBB67AE85)
_ROUNDS = 10


def philox4x32_10(counter, key) -> np.ndarray:
    """Philox-4x32-10 of a batch of counters.

    counter: array-like of shape (..., 4) of 32-bit words; key: two 32-bit words. Returns uint32 of shape (..., 4).
    """
    ctr = np.asarray(counter, dtype=np.uint64)
    if ctr.shape[-1] != 4:
        raise ValueError(f"philox4x32_10: expected counters of shape (..., 4), got {ctr.shape}")
    x0, x1, x2, x3 = (ctr[..., j] & _MASK32 for j in range(4))
    k0, k1 = (np.uint64(int(k) & 0xFFFFFFFF) for k in key)
    for r in range(_ROUNDS):
        if r > 0:  # Random123 "bumps" the key before every round but the first
            k0 = (k0 + _PHILOX_W0) & _MASK32
            k1 = (k1 + _PHILOX_W1) & _MASK32
        prod0 = _PHILOX_M0 * x0  # < 2^64: exact in uint64
        prod1 = _PHILOX_M1 * x2
        hi0, lo0 = prod0 >> _SHIFT32, prod0 & _MASK32
        hi1, lo1 = prod1 >> _SHIFT32, prod1 & _MASK32
        x0, x1, x2, x3 = hi1 ^ x1 ^ k0, lo1, hi0 ^ x3 ^ k1, lo0
    return np.stack([x0, x1, x2, x3], axis=-1).astype(np.uint32)


def philox_words(seed: int, offset: int, count: int, first: int = 0) -> np.ndarray:
    """Words ``first .. first+count-1`` of stream (seed, offset): word i comes from block i // 4, lane i % 4."""
    seed, offset, count, first = int(seed), int(offset), int(count), int(first)
    if not (0 <= seed < 2**64 and 0 <= offset < 2**64 and count >= 0 and 0 <= first <= 2**64 - count):
        raise ValueError("philox_words: seed and offset must be in [0, 2^64), count >= 0, first + count <= 2^64")
    blocks = np.arange(first // 4, (first + count + 3) // 4, dtype=np.uint64)
    counters = np.empty(blocks.shape + (4,), dtype=np.uint64)
    counters[:, 0] = blocks & _MASK32
    counters[:, 1] = blocks >> _SHIFT32
    counters[:, 2] = offset & 0xFFFFFFFF
    counters[:, 3] = offset >> 32
    words = philox4x32_10(counters, (seed & 0xFFFFFFFF, seed >> 32))
    skip = first % 4
    return words.reshape(-1)[skip:skip + count]


def philox_uniform(seed: int, offset: int, count: int, first: int = 0) -> np.ndarray:
    """Uniforms in [0, 1) of stream (seed, offset) for elements first .. first+count-1 (float64, each exactly a
    float32: the top 24 bits of the word times 2^-24)."""
    words = philox_words(seed, offset, count, first)
    return (words >> np.uint32(8)).astype(np.float64) * 2.0**-24


def dropout_mask(shape, p: float, seed: int, offset: int, first: int = 0) -> np.ndarray:
    """Boolean keep-mask of the given shape: element i (row-major) is kept when uniform(first + i) >= p (first > 0:
    the tensor is the slice starting at element ``first`` of a larger one, e.g. one rank's share of a batch).

    p is rounded to float32 first because the op receives it as a C++ float; comparing against the same value
    makes the mask bit-exact (the uniforms themselves are exact float32 values).
    """
    shape = tuple(shape)
    count = int(np.prod(shape, dtype=np.int64))
    p32 = float(np.float32(p))
    return (philox_uniform(seed, offset, count, first) >= p32).reshape(shape)


def _check_p(op: str, p: float) -> None:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{op}: p must be in [0, 1), got {p}")


def dropout_forward(x, p: float = 0.5, seed: int = 0, offset: int = 0, training: bool = True,
                    first: int = 0) -> np.ndarray:
    """y = x * keep / (1 - p) while training; the identity otherwise (inverted dropout)."""
    _check_p("dropout_forward", p)
    x = np.asarray(x, dtype=np.float64)
    if not training or p == 0.0:
        return x.copy()
    keep = dropout_mask(x.shape, p, seed, offset, first)
    return np.where(keep, x / (1.0 - p), 0.0)


def dropout_backward(dy, p: float = 0.5, seed: int = 0, offset: int = 0, training: bool = True,
                     first: int = 0) -> np.ndarray:
    """dL/dx = dy * keep / (1 - p), with the mask regenerated from (seed, offset)."""
    _check_p("dropout_backward", p)
    dy = np.asarray(dy, dtype=np.float64)
    if not training or p == 0.0:
        return dy.copy()
    keep = dropout_mask(dy.shape, p, seed, offset, first)
    return np.where(keep, dy / (1.0 - p), 0.0)
