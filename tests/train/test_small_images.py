"""A folder of small images never silently trains the 227x227 network (issue 19): without --arch the trainer reads
the images' size and takes alexnet-small, saying so; with --arch alexnet it warns."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from alexnet_cuda.train.config import TrainConfig, resolve


def _folder(root, side: int, per_class: int = 3):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            d = root / split / cls
            d.mkdir(parents=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(d / f"{i}.png")
    return root


@pytest.mark.parametrize("side, arch, input_size", [(32, "alexnet-small", 32), (64, "alexnet-small", 64),
                                                    (160, "alexnet", 227)])
def test_the_network_follows_the_images_size(tmp_path, capsys, side, arch, input_size):
    c = resolve(TrainConfig(data=str(_folder(tmp_path / "data", side)), out=str(tmp_path / "run")))
    assert (c.arch, c.input_size) == (arch, input_size)
    said = capsys.readouterr().out
    if arch == "alexnet-small":
        assert f"are about {side}x{side}: training alexnet-small on {input_size}x{input_size} crops" in said
    else:
        assert said == ""


def test_the_big_network_on_small_images_is_said_loudly(tmp_path, capsys):
    c = resolve(TrainConfig(data=str(_folder(tmp_path / "data", 32)), arch="alexnet", out=str(tmp_path / "run")))
    assert c.arch == "alexnet"
    assert "WARNING: the images of --data" in capsys.readouterr().out
