"""Checks of Python scalar arguments on their way into C++ (the ops, ``AlexNet``).

pybind11 converts an int that does not fit the C type, or a float where an int is expected, into a TypeError that
dumps the whole signature; a Python float above the float32 maximum silently becomes inf. These helpers check that a
value can be represented at all and raise TypeError/ValueError naming the op and the argument (``conv2d_forward:
stride must be an int, got 1.5``). What the value means (stride >= 1, ...) is checked once, in C++ (csrc/ops.cpp).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

INT32_MAX = 2**31 - 1
UINT64_MAX = 2**64 - 1
FLOAT32_MAX = float(np.finfo(np.float32).max)


def is_int(v: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def is_real(v: Any) -> bool:
    """A Python or NumPy int or float, not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def int_arg(op: str, name: str, v: Any, lo: int = -INT32_MAX - 1, hi: int = INT32_MAX) -> int:
    """``v`` as an int in [lo, hi] (by default the C int range)."""
    if not is_int(v):
        raise TypeError(f"{op}: {name} must be an int, got {v!r} ({type(v).__name__})")
    if not lo <= v <= hi:
        raise ValueError(f"{op}: {name} must be in [{lo}, {hi}], got {name}={v}")
    return int(v)


def float_arg(op: str, name: str, v: Any) -> float:
    """``v`` as a float that float32 represents as a finite number (what the C++ side receives)."""
    if not is_real(v):
        raise TypeError(f"{op}: {name} must be a number, got {v!r} ({type(v).__name__})")
    try:
        f = float(v)
    except OverflowError:  # an int beyond the float64 range
        f = math.inf
    if not math.isfinite(f) or abs(f) > FLOAT32_MAX:
        raise ValueError(f"{op}: {name} must be a finite float32 (|{name}| <= {FLOAT32_MAX:.4g}), got {name}={v!r}")
    return f


def channel_scale_arg(op: str, name: str, v: Any) -> list[float]:
    """The input scale as three float32 numbers (R, G, B): one number (the paper's single scale) is repeated; a
    sequence or array of three is one per channel (torchvision's ``1 / (255 * std)``)."""
    if is_real(v):
        return [float_arg(op, name, v)] * 3
    values = np.asarray(v) if isinstance(v, (list, tuple, np.ndarray)) else None
    if values is None or values.shape != (3,) or values.dtype.kind not in "iuf":
        raise TypeError(f"{op}: {name} must be a number or three numbers (one per channel R, G, B), got {v!r}")
    return [float_arg(op, f"{name}[{i}]", values[i].item()) for i in range(3)]


def bool_arg(op: str, name: str, v: Any) -> bool:
    if not isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be True or False, got {v!r}")
    return bool(v)


def pair_arg(op: str, name: str, v: Any) -> tuple[int, int]:
    """A (height, width) pair of C ints."""
    if not isinstance(v, (tuple, list)) or len(v) != 2:
        raise TypeError(f"{op}: {name} must be a pair (height, width) of ints, got {v!r}")
    return int_arg(op, f"{name}[0]", v[0]), int_arg(op, f"{name}[1]", v[1])


def float32_array(where: str, name: str, a: np.ndarray) -> np.ndarray:
    """A float array as a C-contiguous float32 array, refused (ValueError naming ``name``) when it holds NaN or inf,
    or a value beyond float32's range: ``np.float32(1e39)`` is inf without a word, and a weight of inf or NaN poisons
    every output downstream of it (issue 21). Checked on the source array, so the message shows the value given."""
    finite = np.isfinite(a)
    if not finite.all():
        at = np.unravel_index(int(np.argmin(finite)), a.shape)
        index = tuple(int(i) for i in at)
        raise ValueError(f"{where}: {name} contains {a[at].item()} at index {index} (weights must be finite)")
    if a.dtype.itemsize > 4 and a.size:
        big = np.abs(a) > FLOAT32_MAX
        if big.any():
            at = np.unravel_index(int(np.argmax(big)), a.shape)
            index = tuple(int(i) for i in at)
            raise ValueError(f"{where}: {name} holds {a[at].item()!r} at index {index}, beyond float32's range "
                             f"(|value| <= {FLOAT32_MAX:.4g}): it would become inf")
    return np.ascontiguousarray(a, np.float32)
