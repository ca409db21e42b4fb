"""The trainer's input op: uint8 NHWC images -> float NCHW network inputs.

    out[i, c, y, x] = (img[i, sy, sx, c] - mean[c(, sy, sx)] + rgb_shift[i, c]) * scale[c]
    sy = crop_y[i] + y,   sx = crop_x[i] + (crop - 1 - x if flip[i] else x)

Random crops and horizontal reflections are the paper's first data augmentation (Section 4.1: random 224x224
patches of the 256x256 images, and their mirror images); the mean is the training set's mean image (Section 2:
"subtracting the mean activity over the training set from each pixel"), or a per-channel mean; rgb_shift is the
paper's second augmentation, the PCA colour noise (Section 4.1), one RGB offset per image, computed by the caller.
``scale`` is one number (the paper's nets) or one per channel (torchvision's ImageNet preprocessing divides each
channel by its own standard deviation, transforms.Normalize).
"""

from __future__ import annotations

import numpy as np


def prepare_batch(images, mean, crop_y, crop_x, flip, rgb_shift, crop: int, scale: float = 1.0) -> np.ndarray:
    """images (n, h, w, 3) uint8; mean (3, h, w) or (3,); crop_y, crop_x, flip (n,); rgb_shift (n, 3); scale a
    number or (3,). Returns (n, 3, crop, crop) float64."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"prepare_batch: expected uint8 images, got {images.dtype}")
    n, h, w, channels = images.shape
    mean = np.asarray(mean, dtype=np.float64)
    rgb_shift = np.asarray(rgb_shift, dtype=np.float64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,))[:, None, None]
    out = np.empty((n, 3, crop, crop), dtype=np.float64)
    steps = np.arange(crop)
    for i in range(n):
        top, left = int(crop_y[i]), int(crop_x[i])
        if not (0 <= top and top + crop <= h and 0 <= left and left + crop <= w):
            raise ValueError(f"prepare_batch: crop offset ({top}, {left}) of image {i} puts a {crop}x{crop} crop "
                             f"outside the {h}x{w} image")
        rows = top + steps
        cols = left + (steps[::-1] if flip[i] else steps)  # mirrored: output column x reads crop - 1 - x
        patch = images[i][np.ix_(rows, cols)].astype(np.float64).transpose(2, 0, 1)  # (3, crop, crop)
        if mean.ndim == 3:
            patch_mean = mean[:, rows[:, None], cols[None, :]]
        else:
            patch_mean = mean[:, None, None]
        out[i] = (patch - patch_mean + rgb_shift[i][:, None, None]) * scale
    return out
