"""Pixel augmentation (alexnet_cuda/data/jitter.py): brightness, contrast, saturation jitter and Gaussian noise.

Each jitter against a direct float64 NumPy computation of its formula, statistical sanity checks, the draws (off
draws nothing; the same seed gives the same images), exact resume of a training run with all four on, and the
flags."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fakes import FakeAlexNet

from alexnet_cuda.train import run as train_mod
from alexnet_cuda.data import Augmenter, PixelJitter
from alexnet_cuda.train.config import TrainConfig
from alexnet_cuda.train.run import train

LUMA = np.array([0.299, 0.587, 0.114])


def _images(n=4, s=12, seed=0, lo=0, hi=256):
    return np.random.default_rng(seed).integers(lo, hi, size=(n, s, s, 3), dtype=np.uint8)


def _finish(x):
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _assert_close_uint8(got, want):
    # float32 in the implementation, float64 here: a value at .5 may round either way.
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    assert np.mean(got != want) < 0.01


@pytest.mark.parametrize("name", ["brightness", "contrast", "saturation"])
def test_each_jitter_against_its_formula(name):
    images = _images()
    jitter = PixelJitter(**{name: 0.4})
    params = jitter.draw(np.random.default_rng(1), len(images))
    assert set(params) == {name} and params[name].shape == (4,)
    got = jitter.apply(images, params)
    for k, f in enumerate(params[name].astype(np.float64)):
        x = images[k].astype(np.float64)
        if name == "brightness":
            want = f * x
        elif name == "contrast":
            m = (x @ LUMA).mean()
            want = f * (x - m) + m
        else:
            g = (x @ LUMA)[..., None]
            want = f * (x - g) + g
        _assert_close_uint8(got[k], _finish(want))


def test_noise_against_its_formula_and_all_four_in_order():
    images = _images()
    jitter = PixelJitter(brightness=0.3, contrast=0.3, saturation=0.3, noise=0.05)
    params = jitter.draw(np.random.default_rng(2), len(images))
    assert list(params) == ["brightness", "contrast", "saturation", "noise_seed"]
    got = jitter.apply(images, params)
    for k in range(len(images)):
        x = images[k].astype(np.float64) * params["brightness"][k]
        m = (x @ LUMA).mean()
        x = params["contrast"][k] * (x - m) + m
        g = (x @ LUMA)[..., None]
        x = params["saturation"][k] * (x - g) + g
        z = np.random.Generator(np.random.PCG64(int(params["noise_seed"][k]))).standard_normal(x.shape, np.float32)
        _assert_close_uint8(got[k], _finish(x + 255 * 0.05 * z.astype(np.float64)))


def test_statistics():
    rng = np.random.default_rng(3)
    mid = _images(n=64, s=16, lo=60, hi=190)  # no clipping at these strengths
    # Brightness s moves each image's mean by at most a factor 1 +- s, and the factors cover that range.
    s = 0.2
    p = PixelJitter(brightness=s).draw(rng, 64)
    out = PixelJitter(brightness=s).apply(mid, p)
    ratio = out.reshape(64, -1).mean(1) / mid.reshape(64, -1).mean(1)
    assert np.all(np.abs(ratio - 1) <= s + 1e-3)
    assert p["brightness"].min() < 1 - s / 2 and p["brightness"].max() > 1 + s / 2
    # Contrast keeps each image's mean gray level; saturation keeps each pixel's gray level.
    out = PixelJitter(contrast=0.5).apply(mid, PixelJitter(contrast=0.5).draw(rng, 64))
    np.testing.assert_allclose((out @ LUMA).reshape(64, -1).mean(1), (mid @ LUMA).reshape(64, -1).mean(1), atol=0.5)
    out = PixelJitter(saturation=0.5).apply(mid, PixelJitter(saturation=0.5).draw(rng, 64))
    assert np.abs(out @ LUMA - mid @ LUMA).max() <= 1.0
    # Noise of strength s has standard deviation 255 s and mean 0.
    out = PixelJitter(noise=0.04).apply(mid, PixelJitter(noise=0.04).draw(rng, 64))
    diff = out.astype(np.float64) - mid
    assert abs(diff.std() - 255 * 0.04) < 0.3 and abs(diff.mean()) < 0.1
    # Saturation 1 (factor 0 possible) turns an image gray; the output is always uint8 in range.
    gray = PixelJitter(saturation=1.0).apply(mid[:1], {"saturation": np.zeros(1, np.float32)})[0].astype(int)
    assert np.abs(gray - gray[..., :1]).max() <= 1


def test_off_draws_nothing_and_changes_nothing():
    plain, jittered = Augmenter(16, 12, seed=5), Augmenter(16, 12, seed=5, jitter=PixelJitter())
    a, b = plain.draw(8), jittered.draw(8)
    assert set(b) == {"crops", "flips", "rgb_shift"}
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    images = _images(n=8, s=16)
    assert jittered.jitter_pixels(images, b) is images
    # With the jitter on, the paper's draws come first and are the same as without it.
    on = Augmenter(16, 12, seed=5, jitter=PixelJitter(brightness=0.1, noise=0.1)).draw(8)
    np.testing.assert_array_equal(on["crops"], Augmenter(16, 12, seed=5).draw(8)["crops"])


def test_same_seed_same_images_and_exact_state_resume():
    images = _images(n=6, s=16)
    jitter = PixelJitter(brightness=0.2, contrast=0.2, saturation=0.2, noise=0.02)
    a, b = Augmenter(16, 12, seed=9, jitter=jitter), Augmenter(16, 12, seed=9, jitter=jitter)
    np.testing.assert_array_equal(a.jitter_pixels(images, a.draw(6)), b.jitter_pixels(images, b.draw(6)))
    state = a.state_dict()
    c = Augmenter(16, 12, seed=0, jitter=jitter)
    c.load_state_dict(state)
    np.testing.assert_array_equal(a.jitter_pixels(images, a.draw(6)), c.jitter_pixels(images, c.draw(6)))
    other = Augmenter(16, 12, seed=10, jitter=jitter)
    assert not np.array_equal(b.jitter_pixels(images, b.draw(6)), other.jitter_pixels(images, other.draw(6)))


def test_bad_strengths_and_images_are_refused():
    with pytest.raises(ValueError, match="brightness must be a number in"):
        PixelJitter(brightness=-0.1)
    with pytest.raises(ValueError, match="noise must be a number in"):
        PixelJitter(noise=float("nan"))
    with pytest.raises(ValueError, match="must be uint8"):
        PixelJitter(noise=0.1).apply(np.zeros((1, 4, 4, 3), np.float32), {"noise_seed": np.zeros(1, np.uint64)})


def test_training_resume_is_exact_with_pixel_augmentation(tmp_path):
    def config(name, epochs):
        return TrainConfig(out=str(tmp_path / name), epochs=epochs, batch_size=16, synthetic_images=64, lr=0.05,
                           workers=0, progress=False, stats_images=32, brightness=0.3, contrast=0.3,
                           saturation=0.3, noise=0.05)

    whole = train(config("whole", 2), model_class=FakeAlexNet)
    part1 = train(config("parts", 1), model_class=FakeAlexNet)
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, epochs=2, workers=0, progress=False),
                  model_class=FakeAlexNet)
    assert part1["step_losses"] + part2["step_losses"] == whole["step_losses"]
    plain = train(TrainConfig(**{**vars(config("plain", 1)), "brightness": 0.0, "contrast": 0.0, "saturation": 0.0,
                                 "noise": 0.0}), model_class=FakeAlexNet)
    assert plain["step_losses"] != part1["step_losses"]  # the jitter reached the network
    assert (Path(whole["out"]) / "last.npz").exists()


@pytest.mark.parametrize("flag", ["--brightness", "--contrast", "--saturation", "--noise"])
@pytest.mark.parametrize("value", ["-0.1", "1", "x"])
def test_bad_jitter_flags_name_the_flag(flag, value, capsys):
    with pytest.raises(SystemExit) as info:
        train_mod.main([flag, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and f"argument {flag}:" in err[-1]
