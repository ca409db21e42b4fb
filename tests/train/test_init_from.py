"""``train --init-from FILE`` (alexnet_cuda/train/init_from.py): fine-tuning starts from FILE's weights and
normalization, replaces the last layer (and says so) when the class count differs, and refuses another
architecture, naming what differs. Tiny nets on the synthetic data; torchvision's AlexNet once the engine builds
descriptions."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from runs import real

from alexnet_cuda import AlexNet
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import weights as weights_mod
from alexnet_cuda.cli import ConfigError
from alexnet_cuda.train.run import train

# A learning rate so small that one epoch leaves every weight where it started (within 1e-8).
FROZEN = dict(lr=1e-12, epochs=1)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A tiny alexnet-small trained one epoch on 4 synthetic classes."""
    tmp = tmp_path_factory.mktemp("source")
    summary = train(real(tmp, "src", epochs=1, synthetic_classes=4, seed=5))
    return ckpt_io.load(summary["last_checkpoint"])


def _assert_started_from(final: ckpt_io.Checkpoint, source: ckpt_io.Checkpoint, except_prefix: str | None):
    for name, a in source.params.items():
        if except_prefix and name.startswith(except_prefix):
            continue
        np.testing.assert_allclose(final.params[name], a, rtol=0, atol=1e-8, err_msg=name)


def test_other_classes_replace_the_last_layer_and_say_so(tmp_path, source, capsys):
    summary = train(real(tmp_path, "ft", synthetic_classes=3, init_from=str(source.path), **FROZEN))
    out = capsys.readouterr().out
    assert (f"--init-from {source.path}: its 4 classes are not this run's 3: the last layer (classifier.6) is "
            f"replaced by a freshly initialized one") in out
    final = ckpt_io.load(summary["last_checkpoint"])
    _assert_started_from(final, source, "classifier.6.")
    assert final.params["classifier.6.tower0.weight"].shape[0] + final.params["classifier.6.tower1.weight"].shape[0] \
        == 3
    fresh = AlexNet(devices="cpu", **final.model_config).state_dict()  # the run's seed: its own initialization
    np.testing.assert_allclose(final.params["classifier.6.tower0.weight"], fresh["classifier.6.tower0.weight"],
                               rtol=0, atol=1e-8)
    # the file's normalization (mean and scale) is the run's
    np.testing.assert_array_equal(final.arrays["mean"], source.arrays["mean"])
    assert final.meta["normalization_scale"] == source.meta["normalization_scale"]


def test_the_same_classes_keep_every_layer(tmp_path, source, capsys):
    summary = train(real(tmp_path, "ft", synthetic_classes=4, init_from=str(source.path), **FROZEN))
    assert "every layer starts from the file's weights (alexnet-small, 4 classes)" in capsys.readouterr().out
    _assert_started_from(ckpt_io.load(summary["last_checkpoint"]), source, None)


def test_exported_weights_start_a_run_too(tmp_path, source):
    weights_mod.export_safetensors(source, tmp_path / "src.safetensors")
    summary = train(real(tmp_path, "ft", synthetic_classes=4, init_from=str(tmp_path / "src.safetensors"), **FROZEN))
    _assert_started_from(ckpt_io.load(summary["last_checkpoint"]), source, None)


@pytest.mark.parametrize("options, message", [
    (dict(towers=1), r"its network is not this run's \(towers 2 \(file\) vs 1 \(run\)\)"),
    (dict(arch="alexnet"), r"holds a alexnet-small network, but --arch is alexnet"),
    (dict(norm="batchnorm"), r"norm 'lrn' \(file\) vs 'batchnorm' \(run\)"),
    (dict(widths={"conv": [8, 8, 8, 8, 8], "fc": [16, 16]}), r"widths .* \(file\) vs .* \(run\)"),
])
def test_another_architecture_is_refused(tmp_path, source, options, message):
    with pytest.raises(ConfigError, match=message):
        train(real(tmp_path, "ft", synthetic_classes=2, init_from=str(source.path), **FROZEN, **options))
    assert not (tmp_path / "ft" / "last.npz").exists()


def test_a_missing_or_bad_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"--init-from .*nothing.npz: no such file"):
        train(real(tmp_path, "ft", init_from=str(tmp_path / "nothing.npz"), **FROZEN))
    (tmp_path / "junk.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=r"--init-from .*junk.npz: checkpoint .* cannot be read"):
        train(real(tmp_path, "ft2", init_from=str(tmp_path / "junk.npz"), **FROZEN))


needs_engine = pytest.mark.skipif(not hasattr(AlexNet, "from_description"),
                                  reason="needs AlexNet.from_description (the engine that builds any description)")


def _two_class_folder(root, rng):
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


@needs_engine
def test_training_torchvision_alexnet_from_scratch_uses_its_preprocessing(tmp_path):
    from alexnet_cuda.nets import torchvision as tv

    folder = _two_class_folder(tmp_path / "pets", np.random.default_rng(1))
    summary = train(real(tmp_path, "scratch", data=str(folder), arch="torchvision-alexnet", widths=None,
                         batch_size=4, epochs=1, train_batches=1, val_batches=1))
    final = ckpt_io.load(summary["last_checkpoint"])
    assert final.model_config["arch"] == "torchvision-alexnet" and final.model_config["num_classes"] == 2
    mean, scale = tv.normalization()
    np.testing.assert_array_equal(final.arrays["mean"], mean)
    assert final.meta["normalization_scale"] == [float(x) for x in scale] and final.meta["image_size"] == 256


@needs_engine
def test_fine_tuning_torchvision_weights_on_a_two_class_folder(tmp_path, capsys):
    """torchvision-format weights (random, 1000 classes) fine-tuned on a folder of two classes: the last layer is
    replaced, the run uses torchvision's preprocessing, and evaluate takes the result."""
    from torchvision_alexnet import random_state_dict

    from alexnet_cuda import safetensors as st
    from alexnet_cuda.nets import torchvision as tv

    st.save(tmp_path / "alexnet.safetensors", random_state_dict(1000, seed=0))  # torchvision's names
    _two_class_folder(tmp_path / "pets", np.random.default_rng(0))
    summary = train(real(tmp_path, "ft", data=str(tmp_path / "pets"), widths=None, batch_size=4, epochs=1,
                         lr=0.001, train_batches=2, init_from=str(tmp_path / "alexnet.safetensors")))
    assert "its 1000 classes are not this run's 2" in capsys.readouterr().out
    final = ckpt_io.load(summary["last_checkpoint"])
    assert final.model_config["arch"] == "torchvision-alexnet" and final.meta["image_size"] == 256
    mean, scale = tv.normalization()
    np.testing.assert_array_equal(final.arrays["mean"], mean)
    assert final.meta["normalization_scale"] == [float(x) for x in scale]


def test_a_fine_tuning_run_resumes_without_the_file(tmp_path, source):
    """--resume continues from the run's own checkpoint: the --init-from file is neither read nor needed."""
    import shutil

    from alexnet_cuda.train.config import TrainConfig

    copy = tmp_path / "src.npz"
    shutil.copy(source.path, copy)
    train(real(tmp_path, "ft", synthetic_classes=3, init_from=str(copy), epochs=1))
    copy.unlink()
    summary = train(TrainConfig(out=str(tmp_path / "ft"), resume=True, epochs=2, progress=False, device="cpu"))
    assert summary["epochs_done"] == 2


NET = """
[net]
name = mine
input = 3x32x32
classes = 4

[conv1]
type = conv
filters = 8
size = 5
padding = 2
init_std = 0.05

[pool1]
type = maxpool

[fc]
type = linear
outputs = classes
init_std = 0.05
activation = none
"""


@needs_engine
def test_a_described_network_fine_tunes_and_another_description_is_refused(tmp_path, capsys):
    """--net runs: the file's description is the run's; the last layer ('fc') is replaced for other classes; a run
    that names another network is refused."""
    (tmp_path / "mine.ini").write_text(NET)
    first = train(real(tmp_path, "src", widths=None, net=str(tmp_path / "mine.ini"), synthetic_classes=4))
    source = ckpt_io.load(first["last_checkpoint"])
    summary = train(real(tmp_path, "ft", widths=None, synthetic_classes=3, init_from=str(source.path), **FROZEN))
    assert "the last layer (fc) is replaced by a freshly initialized one" in capsys.readouterr().out
    final = ckpt_io.load(summary["last_checkpoint"])
    assert final.model_config["arch"] == "mine" and final.params["fc.tower0.weight"].shape[0] == 3
    _assert_started_from(final, source, "fc.")
    with pytest.raises(ConfigError, match=r"drop --net"):
        train(real(tmp_path, "ft2", widths=None, net=str(tmp_path / "mine.ini"), init_from=str(source.path)))
    with pytest.raises(ConfigError, match=r"holds a mine network, but --arch is alexnet-small"):
        train(real(tmp_path, "ft3", widths=None, arch="alexnet-small", init_from=str(source.path)))
