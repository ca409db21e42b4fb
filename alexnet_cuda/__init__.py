"""alexnet_cuda: AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) from scratch.

Hand-written CUDA kernels and a C++/OpenMP CPU backend behind one op API (:mod:`alexnet_cuda.ops`), a NumPy
float64 reference of every layer (:mod:`alexnet_cuda.reference`), and the paper's two-tower network.
"""

from __future__ import annotations

import os as _os
import sys as _sys

# ALEXNET_CUDA_EMULATED=1 selects the emulated build (alexnet_cuda._C_emulated, tools/emulation_build.sh): the same
# package, with 'cuda:N' devices that run the CUDA backend on the CPU; =asan selects its AddressSanitizer build
# (_C_emulated_asan; run Python with libasan preloaded: tools/emulation_test.sh). Never chosen without being asked.
_EMULATED = _os.environ.get("ALEXNET_CUDA_EMULATED", "0")
if _EMULATED not in ("", "0"):
    import importlib as _importlib

    _name = "_C_emulated_asan" if _EMULATED == "asan" else "_C_emulated"
    try:
        _C = _importlib.import_module(f"{__name__}.{_name}")
    except ImportError as exc:
        raise ImportError(
            f"ALEXNET_CUDA_EMULATED={_EMULATED} asks for the emulated build (alexnet_cuda.{_name}), which is "
            f"missing or failed to load ({exc}): build it with {'SANITIZERS=1 ' if _name.endswith('asan') else ''}"
            "tools/emulation_build.sh, or unset ALEXNET_CUDA_EMULATED."
        ) from exc
    _sys.modules[__name__ + "._C"] = _C  # `from alexnet_cuda import _C` and `from . import _C` find it
else:
    try:
        from . import _C
    except ImportError as exc:  # pragma: no cover - only when the extension was not built
        raise ImportError(
            "alexnet_cuda's compiled extension (alexnet_cuda._C) is missing. Install the package with "
            "'pip install .' from the repository root (the build also places the module in the checkout's "
            "alexnet_cuda/), or build in place with tools/dev_build.sh."
        ) from exc

from . import ops, reference  # noqa: E402
Tensor = _C.Tensor

__version__ = "0.1.0"


def build_info() -> dict:
    """Which backends were compiled, the CUDA versions, and the GPUs visible now.

    ``gpus`` is an empty list on a machine without a GPU or driver: that is a normal answer, not an error.
    """
    return dict(_C.build_info())


def cuda_available() -> bool:
    """True when the CUDA backend was built and at least one CUDA device (a GPU, or an emulated device in the
    emulated build) is visible."""
    return visible_gpus() > 0


def visible_gpus(emulated: bool = True) -> int:
    """The number of CUDA devices visible now. Emulated devices (ALEXNET_CUDA_EMULATED=1) count only when
    ``emulated`` is true: ``devices='auto'`` and ``--device auto`` pass False, so they never pick an emulated
    device unless the user asks for 'cuda' by name."""
    info = _C.build_info()
    if not info["cuda"] or (info.get("cuda_emulated") and not emulated):
        return 0
    return len(info["gpus"])


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


__all__ = ["Tensor", "build_info", "cuda_available", "visible_gpus", "empty_cache", "memory_stats", "ops", "reference", "reset_peak_memory",
           "synchronize", "tensor"]

try:  # the network and its API come with the network issue
    from .model import AlexNet  # noqa: E402,F401

    __all__.append("AlexNet")
except ImportError:  # pragma: no cover
    pass
