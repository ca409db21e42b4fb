"""Shared fixtures: the device parametrization and finite-difference gradient checks.

Op tests take the ``device`` fixture and run once per backend: 'cpu' always, 'cuda' when a GPU is visible and
skipped (with the reason shown by ``pytest -ra``) when none is.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import alexnet_cuda

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "imagenette-mini"


def _cuda_skip_reason() -> str | None:
    info = alexnet_cuda.build_info()
    if not info["cuda"]:
        return "alexnet_cuda was built without the CUDA backend"
    if not info["gpus"]:
        return "no GPU visible (CUDA backend built, but no device/driver on this machine)"
    return None


CUDA_SKIP = _cuda_skip_reason()
requires_cuda = pytest.mark.skipif(CUDA_SKIP is not None, reason=CUDA_SKIP or "")

DEVICES = ["cpu", pytest.param("cuda", marks=requires_cuda)]


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    """'cpu' or 'cuda' (the latter skipped with a reason when no GPU is visible)."""
    return request.param


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def numerical_grad(f, x: np.ndarray, dy: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central finite differences of sum(f(x) * dy) with respect to x (float64)."""
    x = x.astype(np.float64).copy()
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        plus = np.sum(f(x) * dy)
        flat[i] = orig - eps
        minus = np.sum(f(x) * dy)
        flat[i] = orig
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def assert_grad_close(analytic: np.ndarray, numeric: np.ndarray, rtol: float = 1e-6, atol: float = 1e-8) -> None:
    """Gradient-check tolerance: |a - n| <= atol + rtol * max|n| elementwise (float64 central differences)."""
    analytic, numeric = np.asarray(analytic, np.float64), np.asarray(numeric, np.float64)
    assert analytic.shape == numeric.shape
    scale = max(np.abs(numeric).max(), 1e-12)
    err = np.abs(analytic - numeric).max()
    assert err <= atol + rtol * scale, f"max abs error {err:.3e} vs scale {scale:.3e} (rtol {rtol}, atol {atol})"


def pytest_report_header(config):
    info = alexnet_cuda.build_info()
    return (f"alexnet_cuda {alexnet_cuda.__file__}: cuda backend={info['cuda']}, gpus={info['gpus']}, "
            f"omp threads={info['openmp_threads']}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
