"""Pixel augmentation beside the paper's: brightness, contrast and saturation jitter, and additive Gaussian noise.

The paper's own colour augmentation is the PCA shift of Section 4.1 (:mod:`alexnet_cuda.data.augment`); these four
are the ones later reproductions add (the definitions are torchvision's ``ColorJitter``, so a strength means what
it means there). Each has a strength, 0 (the default) turning it off; with all four off nothing is drawn and the
paper's recipe, and its random stream, are unchanged.

Where: on the host, on the uint8 ``(n, S, S, 3)`` batch, before it is handed to the network. Both backends then
receive the same uint8 images, so the CPU and the CUDA paths compute the same thing without a kernel change, and the
crop, flip, mean subtraction and PCA shift (the ``prepare_batch`` op) follow exactly as before.

Order of operations, per image (``x`` the image in float32, 0..255; ``gray(x) = 0.299 R + 0.587 G + 0.114 B``, the
ITU-R 601 luma that PIL and torchvision use; each factor ``f`` drawn uniform in ``[max(0, 1 - s), 1 + s]``):

1. brightness: ``x = f_b * x``
2. contrast:   ``x = f_c * (x - m) + m`` with ``m`` the mean of ``gray(x)`` over the whole S x S image
3. saturation: ``x = f_s * (x - g) + g`` with ``g = gray(x)`` per pixel (0: grayscale, 1: unchanged)
4. noise:      ``x = x + 255 * s_n * z`` with ``z`` standard normal per pixel and channel
5. round to the nearest integer and clip to 0..255, once, at the end.

They act on the whole S x S image, before the random crop is taken from it. The factors and a per-image noise seed
come from the augmenter's seeded stream (drawn after the crop, flip and PCA parameters), so a resumed run draws the
same ones; the noise itself is generated from its image's seed.
"""

from __future__ import annotations

import dataclasses

import numpy as np

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # ITU-R BT.601, as PIL's convert('L')
NAMES = ("brightness", "contrast", "saturation", "noise")


@dataclasses.dataclass(frozen=True)
class PixelJitter:
    """The four strengths (0 = off). brightness, contrast, saturation: the factor's half-range, in [0, 1];
    noise: the standard deviation as a fraction of the 0..255 range, in [0, 1]."""
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    noise: float = 0.0

    def __post_init__(self) -> None:
        for name in NAMES:
            v = getattr(self, name)
            if not isinstance(v, (int, float, np.floating, np.integer)) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"PixelJitter: {name} must be a number in [0, 1], got {v!r}")
            object.__setattr__(self, name, float(v))

    @property
    def enabled(self) -> bool:
        return any(getattr(self, name) > 0 for name in NAMES)

    def draw(self, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """The per-image parameters of ``n`` images: a factor (float32 (n,)) for each jitter that is on, and
        ``noise_seed`` (uint64 (n,)) when noise is on. Nothing is drawn for a jitter that is off."""
        params: dict[str, np.ndarray] = {}
        for name in NAMES[:3]:
            s = getattr(self, name)
            if s > 0:
                params[name] = rng.uniform(max(0.0, 1.0 - s), 1.0 + s, size=n).astype(np.float32)
        if self.noise > 0:
            params["noise_seed"] = rng.integers(0, 2**63, size=n, dtype=np.uint64)
        return params

    def apply(self, images: np.ndarray, params: dict[str, np.ndarray]) -> np.ndarray:
        """The jittered copy of uint8 ``images`` (n, S, S, 3) with the parameters from :meth:`draw`."""
        if not self.enabled:
            return images
        images = np.asarray(images)
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"PixelJitter.apply: images must be uint8 (n, S, S, 3), got {images.dtype} "
                             f"{images.shape}")
        out = np.empty_like(images)
        for k in range(images.shape[0]):  # one image at a time keeps the float32 copy small
            out[k] = self._one_image(images[k], {name: v[k] for name, v in params.items()})
        return out

    def _one_image(self, image: np.ndarray, p: dict[str, np.generic]) -> np.ndarray:
        x = image.astype(np.float32)
        if "brightness" in p:
            x *= p["brightness"]
        if "contrast" in p:
            m = np.float32((x @ LUMA).mean())
            x = (x - m) * p["contrast"] + m
        if "saturation" in p:
            g = (x @ LUMA)[..., None]
            x = (x - g) * p["saturation"] + g
        if "noise_seed" in p:
            z = np.random.Generator(np.random.PCG64(int(p["noise_seed"]))).standard_normal(x.shape, np.float32)
            x += np.float32(255.0 * self.noise) * z
        return np.clip(np.rint(x), 0, 255).astype(np.uint8)
