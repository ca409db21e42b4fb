"""Checks of the PNG files the report, the study and the Figure 1 preset write (shared by their tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def assert_picture(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """``path`` is a readable PNG of ``size`` (width, height) when given, and not blank (its pixels vary)."""
    from PIL import Image

    assert path.is_file(), f"{path} was not written"
    with Image.open(path) as im:
        assert im.format == "PNG", f"{path}: {im.format}, not PNG"
        if size is not None:
            assert im.size == size, f"{path}: {im.size}, expected {size}"
        pixels = np.asarray(im.convert("RGB"), np.float64)
    assert pixels.var() > 0, f"{path} is blank"
    return pixels
