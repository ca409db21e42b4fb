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
from .model import AlexNet  # noqa: E402
from .runtime import (Tensor, build_info, cuda_available, empty_cache, from_dlpack, memory_stats,  # noqa: E402
                      reset_peak_memory, synchronize, tensor, visible_gpus)

__version__ = "0.1.0"

__all__ = ["AlexNet", "Tensor", "build_info", "cuda_available", "visible_gpus", "empty_cache", "from_dlpack",
           "memory_stats", "ops", "reference", "reset_peak_memory", "synchronize", "tensor"]
