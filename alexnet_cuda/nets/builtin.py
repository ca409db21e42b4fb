"""The built-in network files (``alexnet_cuda/nets/builtin/*.ini``): the authors' CIFAR-10 networks, translated from
cuda-convnet's published layer files so that no file is needed (``--arch layers-18pct``)."""

from __future__ import annotations

from pathlib import Path

from .description import NetDescription
from .file_format import read_net

FOLDER = Path(__file__).resolve().parent / "builtin"
BUILTIN = tuple(sorted(p.stem for p in FOLDER.glob("*.ini")))


def builtin(name: str) -> NetDescription:
    if name not in BUILTIN:
        raise ValueError(f"no built-in network '{name}' (built in: {', '.join(BUILTIN)})")
    return read_net(FOLDER / f"{name}.ini")
