"""The built-in networks by name: the authors' CIFAR-10 networks, read from cuda-convnet's published layer files that
the package ships (``alexnet_cuda/nets/cuda_convnet/``, unchanged, with their source and licence), so that no file
is needed (``--arch layers-18pct``), and torchvision's AlexNet (``--arch torchvision-alexnet``, nets/torchvision.py)."""

from __future__ import annotations

from pathlib import Path

from .description import NetDescription
from .from_convnet import read_convnet
from .torchvision import NAME as TORCHVISION_ALEXNET
from .torchvision import torchvision_alexnet

CONVNET_FILES = Path(__file__).resolve().parent / "cuda_convnet"
# name -> (the files' stem, the input side the authors trained it at: the whole 32x32 image, or 24x24 crops)
BUILTIN_FILES = {
    "layers-18pct": ("18pct", 32),             # "18% error on CIFAR-10 in 20 minutes"
    "layers-19pct": ("19pct", 32),             # the same without the response normalization layers
    "layers-80sec": ("80sec", 32),             # "26% error on CIFAR-10 in 80 seconds"
    "conv-local-11pct": ("conv-local-11pct", 24),  # Section 3.3's four-layer net with normalization (11%)
    "conv-local-13pct": ("conv-local-13pct", 24),  # ... and without (13%)
}
BUILTIN = (*BUILTIN_FILES, TORCHVISION_ALEXNET)


def convnet_files(stem: str) -> tuple[Path, Path]:
    return CONVNET_FILES / f"layers-{stem}.cfg", CONVNET_FILES / f"layer-params-{stem}.cfg"


def builtin(name: str, num_classes: int | None = None) -> NetDescription:
    """The built-in network ``name``; ``num_classes`` (torchvision-alexnet only; default 1000) sets its classes."""
    if name == TORCHVISION_ALEXNET:
        return torchvision_alexnet(1000 if num_classes is None else num_classes)
    if name not in BUILTIN_FILES:
        raise ValueError(f"no built-in network '{name}' (built in: {', '.join(BUILTIN)})")
    stem, side = BUILTIN_FILES[name]
    return read_convnet(*convnet_files(stem), input_size=side, name=name)
