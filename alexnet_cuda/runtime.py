"""The compiled backend at run time: what was built, which devices are visible, which devices a run's towers take,
and the allocators' statistics. The package's ``__init__`` re-exports these as its public API."""

from __future__ import annotations

from . import _C
from .cli import ConfigError
from .ops import DTYPE_NAMES, to_tensor

Tensor = _C.Tensor


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
    dtype = DTYPE_NAMES.get(native, "float32")
    return to_tensor(array, device, "tensor", "array", dtype)


def from_dlpack(obj) -> Tensor:
    """A :class:`Tensor` sharing the memory of ``obj``, without a copy, through DLPack (the array API standard's
    interchange protocol): a NumPy array, a PyTorch tensor on the CPU or a CUDA device, anything with ``__dlpack__``
    and ``__dlpack_device__``, or a DLPack capsule.

    ``obj`` must be float32, int32 or uint8, C-contiguous and writable, on the CPU or a visible CUDA device
    (TypeError or ValueError otherwise). Writes through either side show in the other. The producer's memory
    stays alive as long as the Tensor (and anything sharing its storage) does, even after ``obj`` is deleted; a
    capsule is consumed (renamed ``used_dltensor``) and cannot be imported twice. The other direction is the
    standard one: ``numpy.from_dlpack(t)`` or ``torch.from_dlpack(t)`` calls ``t.__dlpack__()``.
    """
    return _C.from_dlpack(obj)


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


def resolve_devices(device: str, gpus: list[int] | None, towers: int = 2) -> list[str]:
    """The devices of the network's two towers (AlexNet always takes two; a one-tower network uses the first):
    ['cpu', 'cpu'] on the CPU, ['cuda:0', 'cuda:1'] with two GPUs, both towers on one GPU when there is only one
    (or --gpus names one). 'auto' never picks an emulated device."""
    info = build_info()
    count = visible_gpus()
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown --device {device!r} (choose from auto, cpu, cuda)")
    if device == "cpu" or (device == "auto" and visible_gpus(emulated=False) == 0):
        if gpus:
            raise ConfigError("--gpus was given but the run is on the CPU (no GPU visible, or --device cpu)")
        return ["cpu", "cpu"]
    if count == 0:
        why = "alexnet_cuda was built without CUDA" if not info.get("cuda") else "no GPU is visible"
        raise ConfigError(f"--device cuda: {why}; use --device cpu")
    ids = list(gpus) if gpus else list(range(min(2, count)))
    if len(ids) > 2:
        raise ConfigError(f"--gpus: the network has two towers, give at most two GPU ids, got {len(ids)}")
    for g in ids:
        if not 0 <= g < count:
            raise ConfigError(f"--gpus: GPU {g} does not exist ({count} visible: 0..{count - 1})")
    if towers == 1:
        ids = ids[:1]
    return [f"cuda:{ids[0]}", f"cuda:{ids[-1]}"]
