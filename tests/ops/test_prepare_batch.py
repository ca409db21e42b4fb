"""prepare_batch, the trainer's input op: crops, mirrors (Section 4.1), mean subtraction (per pixel or per
channel), the per-image PCA colour shift (Section 4.1) and scale, on every backend against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

from alexnet_cuda import ops
from alexnet_cuda.reference import prepare_batch as ref


def _batch(rng, n, h, w, crop, per_pixel_mean, flips=None):
    images = rng.integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)
    mean_shape = (3, h, w) if per_pixel_mean else (3,)
    mean = (100.0 + 30.0 * rng.standard_normal(mean_shape)).astype(np.float32)
    crop_y = rng.integers(0, h - crop + 1, size=n).astype(np.int32)
    crop_x = rng.integers(0, w - crop + 1, size=n).astype(np.int32)
    flip = (rng.integers(0, 2, size=n) if flips is None else np.asarray(flips)).astype(np.int32)
    rgb_shift = (5.0 * rng.standard_normal((n, 3))).astype(np.float32)
    return images, mean, crop_y, crop_x, flip, rgb_shift


def _check(device, args, crop, scale):
    out = ops.prepare_batch(*args, crop, scale, device=device)
    expected = ref.prepare_batch(*args, crop, scale)
    assert out.shape == expected.shape and out.dtype == np.float32
    # float32 (pixel - mean + shift) * scale with |values| <~ 300: a few float32 ulps
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-4 * np.max(scale))
    return out


@pytest.mark.parametrize("per_pixel_mean", [True, False])
@pytest.mark.parametrize("n, h, w, crop", [(1, 1, 1, 1), (1, 5, 7, 3), (3, 9, 6, 6), (4, 17, 19, 11), (2, 40, 40, 33)])
def test_matches_reference(device, rng, per_pixel_mean, n, h, w, crop):
    _check(device, _batch(rng, n, h, w, crop, per_pixel_mean), crop, scale=1.0 / 64)


@pytest.mark.parametrize("per_pixel_mean", [True, False])
def test_flips_and_edge_offsets(device, rng, per_pixel_mean):
    n, h, w, crop = 8, 10, 12, 7
    images, mean, _, _, _, rgb_shift = _batch(rng, n, h, w, crop, per_pixel_mean)
    # every corner of the valid offset range, mirrored and not
    crop_y = np.array([0, 0, h - crop, h - crop, 0, 0, h - crop, h - crop], dtype=np.int32)
    crop_x = np.array([0, w - crop, 0, w - crop, 0, w - crop, 0, w - crop], dtype=np.int32)
    flip = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=np.int32)
    out = _check(device, (images, mean, crop_y, crop_x, flip, rgb_shift), crop, scale=1.0)
    # a mirrored crop is the unmirrored one reversed along x: with a per-channel mean and no shift, exactly
    zero_shift = np.zeros((n, 3), np.float32)
    channel_mean = np.array([1.0, 2.0, 3.0], np.float32)
    plain = ops.prepare_batch(images, channel_mean, crop_y, crop_x, np.zeros(n, np.int32), zero_shift, crop,
                              device=device)
    mirrored = ops.prepare_batch(images, channel_mean, crop_y, crop_x, np.ones(n, np.int32), zero_shift, crop,
                                 device=device)
    np.testing.assert_array_equal(mirrored, plain[..., ::-1])
    # image 5 is mirrored at the right edge: its last output column is input column w - crop
    i, sx = 5, w - crop
    column_mean = mean[:, :crop, sx] if per_pixel_mean else mean[:, None]
    expected = images[i, :crop, sx, :].T.astype(np.float64) - column_mean + rgb_shift[i][:, None]
    np.testing.assert_allclose(out[i, :, :, -1], expected, rtol=1e-6, atol=1e-4)


def test_nonzero_flip_values_mirror(device, rng):
    args = list(_batch(rng, 3, 6, 6, 4, False, flips=[0, 1, 7]))
    out = _check(device, args, 4, 1.0)
    np.testing.assert_array_equal(out[2], ops.prepare_batch(*args[:4], np.ones(3, np.int32), args[5], 4,
                                                            device=device)[2])


def test_full_size_crop_is_nhwc_to_nchw(device, rng):
    images = rng.integers(0, 256, size=(2, 5, 5, 3), dtype=np.uint8)
    zeros = np.zeros(2, np.int32)
    out = ops.prepare_batch(images, np.zeros(3, np.float32), zeros, zeros, zeros, np.zeros((2, 3), np.float32), 5,
                            device=device)
    np.testing.assert_array_equal(out, images.transpose(0, 3, 1, 2).astype(np.float32))


@pytest.mark.parametrize("crop_y, crop_x", [(-1, 0), (0, -1), (4, 0), (0, 5), (100, 100)])
def test_bad_crop_offsets(device, rng, crop_y, crop_x):
    images, mean, cy, cx, flip, rgb_shift = _batch(rng, 2, 8, 9, 5, True)
    cy[1], cx[1] = crop_y, crop_x
    with pytest.raises(ValueError, match=r"prepare_batch: crop offset .* of image 1 puts a 5x5 crop outside"):
        ops.prepare_batch(images, mean, cy, cx, flip, rgb_shift, 5, device=device)
    with pytest.raises(ValueError, match="prepare_batch: crop offset"):
        ref.prepare_batch(images, mean, cy, cx, flip, rgb_shift, 5)


def test_bad_arguments(device, rng):
    images, mean, cy, cx, flip, rgb_shift = _batch(rng, 2, 8, 8, 5, True)
    with pytest.raises(TypeError, match="prepare_batch: expected images of dtype uint8"):
        ops.prepare_batch(images.astype(np.float32), mean, cy, cx, flip, rgb_shift, 5, device=device)
    with pytest.raises(TypeError, match="prepare_batch: expected uint8 images"):
        ref.prepare_batch(images.astype(np.float32), mean, cy, cx, flip, rgb_shift, 5)
    with pytest.raises(ValueError, match=r"prepare_batch: crop 9 must be in \[1, min\(h, w\)\]"):
        ops.prepare_batch(images, mean, cy, cx, flip, rgb_shift, 9, device=device)
    with pytest.raises(ValueError, match=r"prepare_batch: expected mean of shape \(3, 8, 8\)"):
        ops.prepare_batch(images, np.ascontiguousarray(mean[:, :4]), cy, cx, flip, rgb_shift, 5, device=device)
    with pytest.raises(ValueError, match=r"prepare_batch: expected rgb_shift of shape \(2, 3\)"):
        ops.prepare_batch(images, mean, cy, cx, flip, rgb_shift[:1], 5, device=device)
    with pytest.raises(ValueError, match=r"prepare_batch: expected images of shape \(n, h, w, 3\)"):
        ops.prepare_batch(images[..., :2].copy(), mean, cy, cx, flip, rgb_shift, 5, device=device)
    with pytest.raises(TypeError, match="prepare_batch: expected crop_y of dtype int32"):
        ops.prepare_batch(images, mean, cy.astype(np.int64), cx, flip, rgb_shift, 5, device=device)


@pytest.mark.parametrize("per_pixel_mean", [True, False])
def test_per_channel_scale(device, rng, per_pixel_mean):
    """One scale per channel (torchvision's 1 / (255 std)): each output channel is scaled by its own number, and the
    same number three times is the scalar form exactly."""
    args = _batch(rng, 3, 9, 11, 7, per_pixel_mean)
    scale = np.array([1 / (255 * 0.229), 1 / (255 * 0.224), 1 / (255 * 0.225)], np.float32)
    out = _check(device, args, 7, scale)
    np.testing.assert_allclose(out, ref.prepare_batch(*args, 7, scale.astype(np.float64)), rtol=1e-6, atol=1e-6)
    for c in range(3):
        single = ops.prepare_batch(*args, 7, float(scale[c]), device=device)
        np.testing.assert_array_equal(out[:, c], single[:, c])
    np.testing.assert_array_equal(ops.prepare_batch(*args, 7, [0.5, 0.5, 0.5], device=device),
                                  ops.prepare_batch(*args, 7, 0.5, device=device))


def test_bad_channel_scale(device, rng):
    args = _batch(rng, 2, 8, 8, 5, False)
    with pytest.raises(TypeError, match=r"prepare_batch: scale must be a number or three numbers"):
        ops.prepare_batch(*args, 5, [1.0, 2.0], device=device)
    with pytest.raises(ValueError, match=r"prepare_batch: scale\[1\] must be a finite float32"):
        ops.prepare_batch(*args, 5, [1.0, float("nan"), 1.0], device=device)
