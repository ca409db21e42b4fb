"""Augmenter draws (ranges, PCA colour shift formula, exact RNG resume), test-time crops, dataset statistics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alexnet_cuda.data import (Augmenter, Dataset, apply_augmentation, center_crop, compute_mean, compute_pca,
                               ten_crops)


def test_draw_ranges_and_dtypes():
    aug = Augmenter(256, 224, seed=1)
    p = aug.draw(4000)
    assert set(p) == {"crops", "flips", "rgb_shift"}
    assert p["crops"].dtype == np.int32 and p["crops"].shape == (4000, 2)
    assert p["flips"].dtype == np.int32 and p["flips"].shape == (4000,)
    assert p["rgb_shift"].dtype == np.float32 and p["rgb_shift"].shape == (4000, 3)
    # Uniform over [0, 32] inclusive in both coordinates, both flips, no shift without PCA.
    assert p["crops"].min() == 0 and p["crops"].max() == 32
    counts = np.bincount(p["crops"].ravel(), minlength=33)
    assert counts.min() > 150  # each of 33 values expected ~242 times
    assert set(np.unique(p["flips"])) == {0, 1} and abs(p["flips"].mean() - 0.5) < 0.05
    assert not p["rgb_shift"].any()
    assert not Augmenter(256, 224, flip=False).draw(100)["flips"].any()
    assert not Augmenter(64, 64).draw(10)["crops"].any()  # crop == image: only offset 0
    with pytest.raises(ValueError, match="crop must be in 1..image_size"):
        Augmenter(32, 40)


def test_pca_shift_formula():
    vals = np.array([900.0, 90.0, 9.0])
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    aug = Augmenter(8, 6, eigvals=vals, eigvecs=q, pca_std=0.1, seed=7)
    p = aug.draw(5)
    # Replay the generator: crops, then flips, then alpha ~ N(0, 0.1) per image and component.
    rng = np.random.Generator(np.random.PCG64(7))
    rng.integers(0, 3, size=(5, 2))
    rng.integers(0, 2, size=5)
    alpha = rng.normal(0, 0.1, size=(5, 3))
    for k in range(5):
        expected = q @ (alpha[k] * vals) / 255.0  # pixel units 0..1 in the paper's formula, see augment.py
        np.testing.assert_allclose(p["rgb_shift"][k], expected, rtol=1e-5)
    big = Augmenter(8, 6, eigvals=vals, eigvecs=q, pca_std=0.1, seed=8).draw(20000)["rgb_shift"]
    # Shift along eigenvector j has std 0.1 * eigval_j / 255.
    np.testing.assert_allclose((big @ q).std(axis=0), 0.1 * vals / 255, rtol=0.05)
    with pytest.raises(ValueError, match="both eigvals"):
        Augmenter(8, 6, eigvals=vals)


def test_state_round_trip_is_exact():
    vals, vecs = np.array([3.0, 2.0, 1.0]), np.eye(3)
    a = Augmenter(256, 224, vals, vecs, seed=11)
    a.draw(17)
    state = json.loads(json.dumps(a.state_dict()))  # JSON-able
    after = a.draw(9)
    b = Augmenter(256, 224, vals, vecs, seed=0)
    b.load_state_dict(state)
    again = b.draw(9)
    for key in after:
        np.testing.assert_array_equal(after[key], again[key])
    # Also through a NumPy container (e.g. an .npz checkpoint): the state is a plain string.
    c = Augmenter(256, 224, vals, vecs)
    c.load_state_dict({k: np.asarray(v) for k, v in state.items()} | {"rng": str(np.asarray(state["rng"]))})
    np.testing.assert_array_equal(c.draw(9)["crops"], after["crops"])


def test_center_and_ten_crops_geometry():
    c = center_crop(256, 224, 3)
    assert c["crops"].tolist() == [[16, 16]] * 3 and not c["flips"].any() and not c["rgb_shift"].any()
    assert center_crop(7, 4, 1)["crops"].tolist() == [[1, 1]]
    crops = ten_crops(256, 224, 2)
    assert len(crops) == 10
    offsets = [tuple(d["crops"][0]) for d in crops]
    assert offsets[:5] == [(0, 0), (0, 32), (32, 0), (32, 32), (16, 16)] and offsets[5:] == offsets[:5]
    assert [int(d["flips"][0]) for d in crops] == [0] * 5 + [1] * 5
    for d in crops:
        assert d["crops"].shape == (2, 2) and (d["crops"][0] == d["crops"][1]).all()
        assert d["crops"].dtype == np.int32 and not d["rgb_shift"].any()


def test_apply_augmentation_matches_the_definition():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 9, 9, 3), dtype=np.uint8)
    mean = rng.uniform(0, 255, (3, 9, 9)).astype(np.float32)
    params = {"crops": np.array([[0, 4], [3, 1]], np.int32), "flips": np.array([0, 1], np.int32),
              "rgb_shift": np.array([[1, 2, 3], [-1, 0, 5]], np.float32)}
    out = apply_augmentation(images, params, 5, mean)
    assert out.shape == (2, 3, 5, 5) and out.dtype == np.float32
    ref0 = images[0, 0:5, 4:9].transpose(2, 0, 1) - mean[:, 0:5, 4:9] + np.array([1, 2, 3])[:, None, None]
    np.testing.assert_allclose(out[0], ref0, rtol=1e-6)
    ref1 = (images[1, 3:8, 1:6].transpose(2, 0, 1) - mean[:, 3:8, 1:6])[:, :, ::-1]
    np.testing.assert_allclose(out[1], ref1 + np.array([-1, 0, 5])[:, None, None], rtol=1e-6)
    # ten_crops: the corners really are the corners, the reflections mirror them.
    ten = [apply_augmentation(images[:1], p, 5) for p in ten_crops(9, 5, 1)]
    np.testing.assert_array_equal(ten[3][0], images[0, 4:, 4:].transpose(2, 0, 1))
    np.testing.assert_array_equal(ten[8][0], ten[3][0][:, :, ::-1])
    # Same transform as the model's prepare_batch op (its NumPy reference), per-pixel and per-channel mean.
    from alexnet_cuda.reference.prepare_batch import prepare_batch

    for m in (mean, mean.mean((1, 2))):
        ref = prepare_batch(images, m, params["crops"][:, 0], params["crops"][:, 1], params["flips"],
                            params["rgb_shift"], 5)
        np.testing.assert_allclose(apply_augmentation(images, params, 5, m), ref, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="outside"):
        apply_augmentation(images, {**params, "crops": np.array([[5, 0], [0, 0]])}, 5)


class ArrayDataset(Dataset):
    def __init__(self, images):
        self.images = images
        self.image_size = images.shape[1]
        self.classes = self.class_ids = ["a"]

    def __len__(self):
        return len(self.images)

    def label(self, i):
        return 0

    def load(self, i):
        return self.images[i]


def test_compute_mean_and_pca():
    rng = np.random.default_rng(5)
    n, s = 40, 6
    direction = np.array([2.0, 1.0, 2.0]) / 3.0  # unit vector
    t = rng.normal(0, 20, (n, s, s, 1))
    side = rng.normal(0, 4, (n, s, s, 1)) * np.array([1.0, -2.0, 0.0]) / np.sqrt(5)
    images = np.clip(np.rint(120 + t * direction + side), 0, 255).astype(np.uint8)
    ds = ArrayDataset(images)
    mean = compute_mean(ds, progress=False, workers=0, batch_size=7)
    assert mean.dtype == np.float32 and mean.shape == (3, s, s)
    np.testing.assert_allclose(mean, images.mean(0).transpose(2, 0, 1), rtol=1e-5)
    sub = compute_mean(ds, max_images=4, progress=False, workers=0)
    np.testing.assert_allclose(sub, images[[0, 13, 26, 39]].mean(0).transpose(2, 0, 1), rtol=1e-5)
    vals, vecs = compute_pca(ds, progress=False, workers=2)
    px = images.reshape(-1, 3).astype(np.float64)
    ref_vals = np.linalg.eigvalsh(np.cov(px.T, bias=True))[::-1]
    np.testing.assert_allclose(vals, ref_vals, rtol=1e-4)
    assert vals[0] > 300 and vals[0] > 10 * vals[1]
    np.testing.assert_allclose(np.abs(vecs[:, 0]), direction, atol=0.02)
    np.testing.assert_allclose(vecs.T @ vecs, np.eye(3), atol=1e-5)
    assert vecs.dtype == np.float32 and vals.dtype == np.float32
