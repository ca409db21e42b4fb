"""The shared pieces of the kernel benchmark (kernels.py, variant_kernels.py): one tower's shapes in the paper's
network, the Case record of one op call to time, and the helpers that make its inputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

F4 = 4  # bytes per float32


# ---- the network's shapes -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Conv:
    name: str
    c_in: int
    c_out: int
    k: int
    stride: int
    pad: int
    h_in: int

    @property
    def h_out(self) -> int:
        return (self.h_in + 2 * self.pad - self.k) // self.stride + 1


@dataclass(frozen=True)
class Net:
    """One tower's shapes. Every derived shape (LRN, pooling, fc inputs, parameter counts) follows from these."""

    convs: tuple[Conv, ...]
    fc: int          # fc6/fc7 outputs per tower
    classes: int     # fc8 outputs over both towers
    image: int       # stored image side (uint8)
    crop: int        # network input side

    def conv(self, name: str) -> Conv:
        return next(c for c in self.convs if c.name == name)

    @staticmethod
    def pooled(h: int) -> int:
        return (h - 3) // 2 + 1

    @property
    def fc6_in(self) -> int:  # both towers' pooled conv5 maps
        c5 = self.conv("conv5")
        return 2 * c5.c_out * self.pooled(c5.h_out) ** 2

    def fcs(self) -> list[tuple[str, int, int, str]]:
        return [("fc6", self.fc6_in, self.fc, "relu"), ("fc7", 2 * self.fc, self.fc, "relu"),
                ("fc8", 2 * self.fc, self.classes // 2, "none")]


def paper_net() -> Net:
    conv1 = Conv("conv1", 3, 48, 11, 4, 0, 227)
    conv2 = Conv("conv2", 48, 128, 5, 1, 2, Net.pooled(conv1.h_out))
    conv3 = Conv("conv3", 256, 192, 3, 1, 1, Net.pooled(conv2.h_out))
    conv4 = Conv("conv4", 192, 192, 3, 1, 1, conv3.h_out)
    conv5 = Conv("conv5", 192, 128, 3, 1, 1, conv4.h_out)
    return Net((conv1, conv2, conv3, conv4, conv5), fc=2048, classes=1000, image=256, crop=227)


def small_net() -> Net:
    """alexnet-small at 32x32 (csrc/network_layers.cpp): the default training run's network."""
    conv1 = Conv("conv1", 3, 48, 5, 1, 2, 32)
    conv2 = Conv("conv2", 48, 128, 5, 1, 2, Net.pooled(conv1.h_out))
    conv3 = Conv("conv3", 256, 192, 3, 1, 1, Net.pooled(conv2.h_out))
    conv4 = Conv("conv4", 192, 192, 3, 1, 1, conv3.h_out)
    conv5 = Conv("conv5", 192, 128, 3, 1, 1, conv4.h_out)
    return Net((conv1, conv2, conv3, conv4, conv5), fc=512, classes=10, image=36, crop=32)


def tiny_net() -> Net:
    """Same structure, a few channels and small images: for the smoke test only."""
    conv1 = Conv("conv1", 3, 4, 11, 4, 0, 67)
    conv2 = Conv("conv2", 4, 8, 5, 1, 2, Net.pooled(conv1.h_out))
    conv3 = Conv("conv3", 16, 6, 3, 1, 1, Net.pooled(conv2.h_out))
    conv4 = Conv("conv4", 6, 6, 3, 1, 1, conv3.h_out)
    conv5 = Conv("conv5", 6, 4, 3, 1, 1, conv4.h_out)
    return Net((conv1, conv2, conv3, conv4, conv5), fc=16, classes=10, image=72, crop=67)


Thunk = Callable[[], Any]


@dataclass
class Case:
    """One op call to time. ``ours(device)`` sets up inputs and returns the call; ``theirs(torch, device)`` does the
    same through PyTorch. ``baseline`` (optional) is a second call timed alongside: the reported time is then
    median(ours) - median(baseline), used for the cost of a fused ReLU."""

    name: str
    group: str
    layer: str
    pass_: str
    shape: str
    ours: Callable[[str], Thunk]
    flops: float | None = None
    bytes: float | None = None
    target: str | None = None  # "cudnn", "bandwidth", "fma" or None
    theirs: Callable[[Any, str], Thunk] | None = None
    theirs_what: str = ""
    baseline: Callable[[str], Thunk] | None = None
    note: str = ""
    result: dict = field(default_factory=dict)


def f32(rng: np.random.Generator, *shape: int, scale: float = 1.0) -> np.ndarray:
    return (rng.standard_normal(shape, dtype=np.float32) * np.float32(scale))


def tensors(device: str, *arrays: np.ndarray):
    """Device copies of the inputs, made once at set-up so no host copy is timed (any of the three dtypes)."""
    from alexnet_cuda import Tensor

    return [Tensor.from_numpy(np.ascontiguousarray(a), device, "benchmark input") for a in arrays]


def torch_tensors(torch: Any, device: str, *arrays: np.ndarray, grad: bool = False):
    out = []
    for a in arrays:
        t = torch.from_numpy(np.ascontiguousarray(a)).to(device)
        out.append(t.requires_grad_(grad) if grad and t.is_floating_point() else t)
    return out


def layer_parameter_counts(net: Net) -> list[tuple[str, int]]:
    """(layer, weights + biases) per tower: what each optimizer step updates."""
    params = [(cv.name, cv.c_out * cv.c_in * cv.k * cv.k + cv.c_out) for cv in net.convs]
    return params + [(name, fin * fout + fout) for name, fin, fout, _ in net.fcs()]
