"""alexnet_cuda: AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) from scratch.

Hand-written CUDA kernels and a C++/OpenMP CPU backend behind one op API (:mod:`alexnet_cuda.ops`), a NumPy
float64 reference of every layer (:mod:`alexnet_cuda.reference`), and the paper's two-tower network.
"""

from __future__ import annotations

try:
    from . import _C
except ImportError as exc:  # pragma: no cover - only when the extension was not built
    raise ImportError(
        "alexnet_cuda's compiled extension (alexnet_cuda._C) is missing. Install the package with "
        "'pip install .' from the repository root (the build also places the module in the checkout's "
        "alexnet_cuda/), or build in place with tools/dev_build.sh."
    ) from exc

from . import ops, reference  # noqa: E402
from ._C import Tensor  # noqa: E402

__version__ = "0.1.0"


def build_info() -> dict:
    """Which backends were compiled, the CUDA versions, and the GPUs visible now.

    ``gpus`` is an empty list on a machine without a GPU or driver: that is a normal answer, not an error.
    """
    return dict(_C.build_info())


def cuda_available() -> bool:
    """True when the CUDA backend was built and at least one GPU is visible."""
    info = _C.build_info()
    return bool(info["cuda"]) and len(info["gpus"]) > 0


def tensor(array, device: str = "cpu") -> Tensor:
    """A :class:`Tensor` on ``device`` holding a copy of a NumPy array (float32, int32 or uint8, C-contiguous)."""
    import numpy as np

    native = array.dtype.newbyteorder("=") if isinstance(array, np.ndarray) else None  # big-endian is converted
    dtype = ops.DTYPE_NAMES.get(native, "float32")
    return ops.to_tensor(array, device, "tensor", "array", dtype)


def memory_stats(device: str) -> dict:
    """Bytes allocated now, the peak since the last reset, and bytes reserved, for 'cpu' or 'cuda:N'."""
    return dict(_C.memory_stats(device))


def reset_peak_memory(device: str) -> None:
    _C.reset_peak_memory(device)


def empty_cache(device: str) -> None:
    """Give the allocator's cached (unused) blocks on 'cpu' or 'cuda:N' back to the system."""
    _C.empty_cache(device)


def synchronize(device: str) -> None:
    """Wait for the work queued on ``device`` (a no-op on the CPU)."""
    _C.synchronize(device)


__all__ = ["Tensor", "build_info", "cuda_available", "empty_cache", "memory_stats", "ops", "reference", "reset_peak_memory",
           "synchronize", "tensor"]

try:  # the network and its API come with the network issue
    from .model import AlexNet  # noqa: E402,F401

    __all__.append("AlexNet")
except ImportError:  # pragma: no cover
    pass
