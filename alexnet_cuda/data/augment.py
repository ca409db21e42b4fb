"""The paper's data augmentation (Section 4.1) and the dataset statistics it needs.

Training (Section 4.1, first form): "extracting random 224 x 224 patches (and their horizontal reflections) from
the 256 x 256 images". Second form: "perform PCA on the set of RGB pixel values throughout the ImageNet training
set. To each training image, we add multiples of the found principal components, with magnitudes proportional
to the corresponding eigenvalues times a random variable drawn from a Gaussian with mean zero and standard
deviation 0.1": each pixel gets ``[p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T``, with one draw of ``a`` per image and
presentation. Test time: "the network makes a prediction by extracting five 224 x 224 patches (the four corner
patches and the center patch) as well as their horizontal reflections ... and averaging the predictions".
Section 2: the only other preprocessing is "subtracting the mean activity over the training set from each pixel".

Beside the paper's: brightness, contrast and saturation jitter and Gaussian noise (:mod:`.jitter`, off by default),
applied to the uint8 images before the steps below; :meth:`Augmenter.draw` draws their parameters too.

This module only *draws* the per-image parameters (crop offsets, flips, RGB shifts) so that the crop, flip, mean
subtraction and colour shift can be applied wherever the batch lives (on the GPU by the model's input op, or by
:func:`apply_augmentation` in NumPy). Parameters come from a seeded NumPy Generator whose exact state is saved.

Units of the colour shift: :func:`compute_pca` measures pixels in 0..255, so its eigenvalues are in 0..255^2.
The paper's formula is not scale-free (``a * l`` grows with the square of the pixel unit) and its common
reproductions (e.g. fb.resnet.torch) evaluate it with pixels in 0..1; we do the same and express the result in
0..255 units: ``rgb_shift = 255 * eigvecs @ (a * eigvals / 255^2) = eigvecs @ (a * eigvals) / 255``. For
ImageNet (largest eigenvalue ~1.4e4 in 0..255^2 units) and std 0.1 this is a shift of ~5 intensity levels.
"""

from __future__ import annotations

import json

import numpy as np

from .base import Dataset, Subset
from .jitter import PixelJitter


def _check_geometry(image_size: int, crop: int, where: str) -> tuple[int, int]:
    image_size, crop = int(image_size), int(crop)
    if not 1 <= crop <= image_size:
        raise ValueError(f"{where}: crop must be in 1..image_size ({image_size}), got {crop}")
    return image_size, crop


class Augmenter:
    """Draws per-batch augmentation parameters (random crop, horizontal flip, PCA colour shift, and the pixel
    jitter's when ``jitter`` turns any on)."""

    def __init__(self, image_size: int, crop: int, eigvals=None, eigvecs=None, pca_std: float = 0.1,
                 flip: bool = True, seed: int = 0, jitter: PixelJitter | None = None, random_crops: bool = True):
        self.image_size, self.crop = _check_geometry(image_size, crop, "Augmenter")
        if (eigvals is None) != (eigvecs is None):
            raise ValueError("Augmenter: give both eigvals (3,) and eigvecs (3, 3), or neither")
        self.eigvals = None if eigvals is None else np.asarray(eigvals, dtype=np.float64).reshape(3)
        self.eigvecs = None if eigvecs is None else np.asarray(eigvecs, dtype=np.float64).reshape(3, 3)
        if pca_std < 0:
            raise ValueError(f"Augmenter: pca_std must be >= 0, got {pca_std}")
        self.pca_std, self.flip, self.seed = float(pca_std), bool(flip), int(seed)
        self.random_crops = bool(random_crops)  # False: every image's centre crop (fixed patches)
        self.jitter = jitter if jitter is not None else PixelJitter()
        self.rng = np.random.Generator(np.random.PCG64(self.seed))

    def draw(self, n: int) -> dict:
        """Parameters for ``n`` images: crops int32 (n, 2) (y, x) uniform in [0, image_size - crop]; flips int32
        (n,) 0/1; rgb_shift float32 (n, 3) to add to every pixel of the (mean-subtracted) image, 0..255 units;
        then the pixel jitter's parameters (:meth:`PixelJitter.draw`), drawn last so that with the jitter off the
        stream is the paper recipe's alone."""
        n = int(n)
        hi = self.image_size - self.crop
        crops = self.rng.integers(0, hi + 1, size=(n, 2)).astype(np.int32)  # drawn either way: the same stream
        if not self.random_crops:
            crops[:] = hi // 2
        flips = (self.rng.integers(0, 2, size=n) if self.flip else np.zeros(n)).astype(np.int32)
        if self.eigvals is not None and self.pca_std > 0:
            alpha = self.rng.normal(0.0, self.pca_std, size=(n, 3))
            shift = (alpha * self.eigvals) @ self.eigvecs.T / 255.0  # row k: eigvecs @ (alpha_k * eigvals) / 255
        else:
            shift = np.zeros((n, 3))
        params = {"crops": crops, "flips": flips, "rgb_shift": shift.astype(np.float32)}
        if self.jitter.enabled:
            params.update(self.jitter.draw(self.rng, n))
        return params

    def jitter_pixels(self, images: np.ndarray, params: dict) -> np.ndarray:
        """``images`` (uint8 (n, S, S, 3)) with the pixel jitter of ``params`` applied; unchanged when it is off."""
        return self.jitter.apply(images, params)

    def state_dict(self) -> dict:
        """The exact generator state (as a JSON string: PCG64's 128-bit integers survive any container)."""
        return {"seed": self.seed, "rng": json.dumps(self.rng.bit_generator.state)}

    def load_state_dict(self, state: dict) -> None:
        rng_state = state["rng"]
        if isinstance(rng_state, (bytes, np.ndarray)):
            rng_state = rng_state.tobytes().decode() if isinstance(rng_state, np.ndarray) else rng_state.decode()
        if isinstance(rng_state, str):
            rng_state = json.loads(rng_state)
        self.seed = int(state.get("seed", self.seed))
        self.rng.bit_generator.state = rng_state


def center_crop(image_size: int, crop: int, n: int) -> dict:
    """The central ``crop`` x ``crop`` patch, no flip, no colour shift (validation with one patch)."""
    image_size, crop = _check_geometry(image_size, crop, "center_crop")
    c = (image_size - crop) // 2
    n = int(n)
    return {"crops": np.full((n, 2), c, dtype=np.int32), "flips": np.zeros(n, dtype=np.int32),
            "rgb_shift": np.zeros((n, 3), dtype=np.float32)}


def ten_crops(image_size: int, crop: int, n: int) -> list[dict]:
    """The paper's 10 test patches: top-left, top-right, bottom-left, bottom-right, centre, then the same five
    reflected. Each dict covers the ``n`` images of a batch; average the network's softmax over the ten."""
    image_size, crop = _check_geometry(image_size, crop, "ten_crops")
    m, c, n = image_size - crop, (image_size - crop) // 2, int(n)
    corners = [(0, 0), (0, m), (m, 0), (m, m), (c, c)]  # (y, x)
    out = []
    for flip in (0, 1):
        for y, x in corners:
            out.append({"crops": np.tile(np.array([[y, x]], dtype=np.int32), (n, 1)),
                        "flips": np.full(n, flip, dtype=np.int32), "rgb_shift": np.zeros((n, 3), dtype=np.float32)})
    return out


def apply_augmentation(images: np.ndarray, params: dict, crop: int, mean: np.ndarray | None = None) -> np.ndarray:
    """NumPy version of the input transform: float32 (n, 3, crop, crop) network input from uint8 (n, S, S, 3).

    For image k: take the ``crop`` x ``crop`` window at ``params["crops"][k]`` of ``image - mean`` (``mean`` is the
    (3, S, S) per-pixel training mean, cropped at the same window), reflect it left-right when
    ``params["flips"][k]``, and add ``params["rgb_shift"][k]`` to every pixel. A (3,) ``mean`` is per channel.
    The same transform as the ``prepare_batch`` op (:func:`alexnet_cuda.ops.prepare_batch`) with scale 1.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[3] != 3 or images.shape[1] != images.shape[2]:
        raise ValueError(f"apply_augmentation: images must be (n, S, S, 3), got {images.shape}")
    n, s = images.shape[0], images.shape[1]
    mean = None if mean is None else np.asarray(mean, dtype=np.float32)
    _check_geometry(s, crop, "apply_augmentation")
    out = np.empty((n, 3, crop, crop), dtype=np.float32)
    for k in range(n):
        y, x = (int(v) for v in params["crops"][k])
        if not (0 <= y <= s - crop and 0 <= x <= s - crop):
            raise ValueError(f"apply_augmentation: crop offset ({y}, {x}) outside 0..{s - crop}")
        patch = images[k, y:y + crop, x:x + crop].transpose(2, 0, 1).astype(np.float32)
        if mean is not None:
            patch -= mean[:, y:y + crop, x:x + crop] if mean.ndim == 3 else mean.reshape(3, 1, 1)
        if params["flips"][k]:
            patch = patch[:, :, ::-1]
        out[k] = patch + np.asarray(params["rgb_shift"][k], np.float32)[:, None, None]
    return out


# ------------------------------------------------------------------------------------------ statistics


def _sample(dataset: Dataset, max_images: int | None) -> Dataset:
    n = len(dataset)
    if n == 0:
        raise ValueError("dataset statistics: the dataset is empty")
    if max_images is None or max_images >= n:
        return dataset
    if max_images < 1:
        raise ValueError(f"dataset statistics: max_images must be >= 1, got {max_images}")
    # Evenly spaced indices: covers every class of a class-sorted folder dataset, and is deterministic.
    return Subset(dataset, np.unique(np.linspace(0, n - 1, int(max_images)).round().astype(np.int64)))


def _batches(dataset: Dataset, progress: bool, what: str, workers, batch_size: int):
    from .loader import Loader

    loader = Loader(dataset, batch_size=batch_size, shuffle=False, drop_last=False, workers=workers)
    try:
        try:
            from tqdm import tqdm
        except ImportError:  # pragma: no cover
            tqdm = None
        it = iter(loader)
        if progress and tqdm is not None:
            it = tqdm(it, total=len(loader), desc=what, unit="batch", leave=False)
        for images, _ in it:
            yield images
    finally:
        loader.close()


def compute_mean(dataset: Dataset, max_images: int | None = None, progress: bool = True, *, workers=None,
                 batch_size: int = 64) -> np.ndarray:
    """float32 (3, S, S): the per-pixel mean image of the dataset (Section 2's "mean activity"), in 0..255.

    ``max_images`` takes that many evenly spaced images instead of all. Unreadable images are skipped (the
    loader replaces them, so a few images may count twice - negligible for a mean).
    """
    data = _sample(dataset, max_images)
    s = dataset.image_size
    total = np.zeros((s, s, 3), dtype=np.float64)
    count = 0
    for images in _batches(data, progress, "mean image", workers, batch_size):
        total += images.sum(axis=0, dtype=np.float64)
        count += len(images)
    return (total / count).transpose(2, 0, 1).astype(np.float32).copy()


def compute_pca(dataset: Dataset, max_images: int | None = None, progress: bool = True, *, workers=None,
                batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """PCA of the RGB pixel values (Section 4.1): (eigvals (3,), eigvecs (3, 3) with eigenvector k in column k),
    eigenvalues of the 3 x 3 covariance of all pixels, largest first, pixel values in 0..255 units."""
    data = _sample(dataset, max_images)
    n = 0
    s1 = np.zeros(3, dtype=np.float64)
    s2 = np.zeros((3, 3), dtype=np.float64)
    for images in _batches(data, progress, "RGB PCA", workers, batch_size):
        for img in images:  # one image at a time keeps the float64 copy small
            px = img.reshape(-1, 3).astype(np.float64)
            n += len(px)
            s1 += px.sum(axis=0)
            s2 += px.T @ px
    mu = s1 / n
    cov = s2 / n - np.outer(mu, mu)
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    order = np.argsort(vals)[::-1]
    vals, vecs = np.clip(vals[order], 0, None), vecs[:, order]
    # Fix each eigenvector's sign (first nonzero component positive) so results are reproducible.
    signs = np.sign(vecs[np.argmax(np.abs(vecs) > 1e-12, axis=0), np.arange(3)])
    vecs = vecs * np.where(signs == 0, 1, signs)
    return vals.astype(np.float32), vecs.astype(np.float32)


__all__ = ["Augmenter", "apply_augmentation", "center_crop", "compute_mean", "compute_pca",
           "ten_crops"]
