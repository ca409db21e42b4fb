"""Training described networks (issue 19): ``--net FILE``, cuda-convnet's ``--net layers.cfg --net-params
params.cfg`` and the built-in ``--arch`` names; their settings, checkpoints (evaluate, predict, report, summary and
--resume rebuild the network from the recorded description), the learning-rate multiplier and the schedules.

The tests that train need the engine that builds any description (``AlexNet.from_description``); the rest check the
settings and the errors, which come before any network is built."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeAlexNet
from PIL import Image
from runs import assert_same_run

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda.cli import ConfigError
from alexnet_cuda.nets.builtin import convnet_files
from alexnet_cuda.nets.file_format import parse_net
from alexnet_cuda.train.config import TrainConfig, resolve
from alexnet_cuda.train.run import train
from alexnet_cuda.train.schedule import LRSchedule

try:
    from alexnet_cuda import AlexNet
except ImportError:  # only while the network is not part of the build yet
    AlexNet = None
requires_engine = pytest.mark.skipif(not hasattr(AlexNet, "from_description"),
                                     reason="the engine that builds any description (AlexNet.from_description) is "
                                            "not in this build")

# A user's own small network: conv -> pool -> conv -> linear, with one layer's own learning rate.
TINY_NET = """
[net]
name = tiny
input = 3x24x24
towers = 1
classes = 10

[conv1]
type = conv
filters = 8
size = 5
padding = 2
init_std = 0.01

[pool1]
type = maxpool
size = 3
stride = 2

[conv2]
type = conv
filters = 8
size = 3
padding = 1
init_std = 0.05
lr_weight = 0.5

[fc]
type = linear
outputs = classes
init_std = 0.05
activation = none
"""
LAYERS_18, PARAMS_18 = (str(p) for p in convnet_files("18pct"))


def _net_file(tmp_path: Path, text: str = TINY_NET, name: str = "tiny.ini") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def _run(tmp_path, name="run", **kw) -> TrainConfig:
    """Two steps of batch 8 on 40 synthetic images, on the CPU."""
    base = dict(out=str(tmp_path / name), epochs=1, batch_size=8, synthetic_images=40, train_batches=2,
                val_batches=1, workers=0, progress=False, stats_images=16, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def _folder(root: Path, side: int) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(root / split / cls /
                                                                                             f"{i}.png")
    return root


# --------------------------------------------------------------------------------------------------------------------
# Settings (no network is built)
# --------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch, side, image", [("layers-18pct", 32, 32), ("layers-19pct", 32, 32),
                                               ("layers-80sec", 32, 32), ("conv-local-11pct", 24, 32),
                                               ("conv-local-13pct", 24, 32)])
def test_builtin_names_take_cuda_convnets_inputs_and_rates(tmp_path, arch, side, image):
    c = resolve(TrainConfig(arch=arch, out=str(tmp_path / "run")))
    desc = parse_net(c.description)
    assert desc.name == arch and (c.input_size, c.image_size) == (side, image)  # conv-local: 24x24 crops of 32x32
    # cuda-convnet's input (docs/cuda_convnet.md): mean image subtracted, 0-255 pixels, no PCA colour noise; the
    # layers' epsW/epsB are the rates, so --lr is a multiplier, 1 by default
    assert (c.input_scale, c.pca_std, c.lr, c.batch_size, c.towers) == (1.0, 0.0, 1.0, 128, 1)


def test_a_users_file_keeps_the_papers_defaults(tmp_path):
    c = resolve(TrainConfig(net=_net_file(tmp_path), out=str(tmp_path / "run")))
    assert (c.arch, c.input_size, c.image_size, c.towers) == ("tiny", 24, 32, 1)
    # not every layer sets its own rate: the paper's 0.01 (conv2's lr_weight multiplies it)
    assert (c.lr, c.momentum, c.weight_decay, c.pca_std, c.input_scale) == (0.01, 0.9, 5e-4, 0.1, 1.0)


def test_cuda_convnet_files_by_path_and_input_size(tmp_path):
    c = resolve(TrainConfig(net=LAYERS_18, net_params=PARAMS_18, out=str(tmp_path / "run")))
    assert (c.arch, c.input_size, c.lr) == ("18pct", 32, 1.0)
    c = resolve(TrainConfig(net=LAYERS_18, net_params=PARAMS_18, input_size=28, out=str(tmp_path / "run")))
    assert c.input_size == 28 and parse_net(c.description).input_size == 28


def test_activation_replaces_every_relu_and_tanh(tmp_path):
    c = resolve(TrainConfig(arch="conv-local-13pct", activation="tanh", out=str(tmp_path / "run")))
    acts = [x.settings.get("activation") for x in parse_net(c.description).layers]
    assert "relu" not in acts and acts.count("tanh") >= 3


def test_lr_drop_at_is_layers_18pcts_schedule():
    s = LRSchedule("epochs", 1.0, drop_at=[120, 130])
    lrs = [s.epoch_end(e, None) for e in range(1, 141)]
    assert lrs[118] == 1.0 and lrs[119] == pytest.approx(0.1) and lrs[129] == pytest.approx(0.01)
    restored = LRSchedule("epochs", 1.0, drop_at=[120, 130])
    restored.load_state_dict(s.state_dict())
    assert restored.lr == pytest.approx(0.01) and restored.epoch_end(140, None) == pytest.approx(0.01)
    old = s.state_dict()
    del old["drop_at"]  # a checkpoint written before the epochs schedule
    LRSchedule("step", 1.0).load_state_dict(old)


@pytest.mark.parametrize("kw, message", [
    (dict(net_params=PARAMS_18), "it needs --net layers-*.cfg"),
    (dict(net=LAYERS_18, net_params=PARAMS_18, arch="layers-18pct"), "both name the network"),
    (dict(net=LAYERS_18), "needs --net-params"),
    (dict(arch="layers-18pct", towers=1), "--towers edits the paper's AlexNet"),
    (dict(arch="conv-local-11pct", norm="batchnorm"), "--norm edits the paper's AlexNet"),
    (dict(arch="layers-18pct", dropout=0.0), "--dropout edits"),
    (dict(arch="layers-18pct", lrn=False), "--no-lrn edits"),
    (dict(arch="layers-18pct", momentum=0.5), "every weight layer of layers-18pct sets its own momentum"),
    (dict(arch="layers-18pct", weight_decay=0.0), "sets its own weight_decay"),
    (dict(net="/nonexistent/net.ini"), "no such file"),
    (dict(arch="layers-18pct", lr_schedule="epochs"), "needs --lr-drop-at"),
    (dict(arch="layers-18pct", lr_drop_at=[120]), "applies to --lr-schedule epochs"),
])
def test_one_clear_error_each(tmp_path, kw, message):
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        resolve(TrainConfig(out=str(tmp_path / "run"), **kw))


@pytest.mark.parametrize("edit, message", [
    (("type = conv\nfilters = 8\nsize = 5", "type = convolution\nfilters = 8\nsize = 5"),
     "layer 'conv1', type: unknown kind 'convolution'"),
    (("size = 3\npadding = 1", "size = 30\npadding = 1"), "layer 'conv2', size"),
    (("[pool1]\ntype = maxpool", "[pool1]\ninput = nowhere\ntype = maxpool"), "layer 'pool1', input"),
    (("input = 3x24x24", "input = 1x24x24"), "1-channel inputs"),
    (("[net]", "[network]"), "no \\[net\\] section"),
])
def test_a_bad_net_file_is_one_error_naming_the_layer_and_field(tmp_path, edit, message):
    text = TINY_NET.replace(*edit)
    assert text != TINY_NET
    with pytest.raises(ConfigError, match=message):
        resolve(TrainConfig(net=_net_file(tmp_path, text), out=str(tmp_path / "run")))


def test_a_description_larger_than_the_images_is_refused(tmp_path):
    data = str(_folder(tmp_path / "data", 20))
    with pytest.raises(ConfigError, match=r"takes 24x24 inputs but the images of --data .* are 20x20.*--image-size"):
        resolve(TrainConfig(net=_net_file(tmp_path), data=data, out=str(tmp_path / "run")))
    c = resolve(TrainConfig(net=_net_file(tmp_path), data=data, image_size=27, out=str(tmp_path / "run")))
    assert (c.input_size, c.image_size) == (24, 27)  # upscaled because asked for


def test_command_line_errors_exit_2(tmp_path, capsys):
    from alexnet_cuda.train.run import main

    assert main(["--net-params", PARAMS_18, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: --net-params" in err
    assert main(["--arch", "conv-local-13pct", "--towers", "1", "--out", str(tmp_path / "run")]) == 2
    assert "--towers edits the paper's AlexNet" in capsys.readouterr().err


def test_help_says_how_described_networks_take_the_flags(capsys):
    from alexnet_cuda.train.config import build_parser

    text = " ".join(build_parser().format_help().split())
    for said in ("--net FILE", "--net-params FILE", "conv-local-13pct", "--lr-drop-at", "multiplies them",
                 "replaces every relu"):
        assert said in text


# --------------------------------------------------------------------------------------------------------------------
# The driver with the stand-in network (fakes.FakeAlexNet.from_description)
# --------------------------------------------------------------------------------------------------------------------

def test_the_driver_records_the_description_and_resumes_from_it(tmp_path, monkeypatch, capsys):
    import functools

    from alexnet_cuda.evaluate import main as evaluate_main

    net = _net_file(tmp_path)
    whole = train(_run(tmp_path, "whole", net=net, epochs=2), model_class=FakeAlexNet)
    out = Path(whole["out"])
    ckpt = ckpt_io.load(out / "last.npz")
    model_cfg = ckpt.model_config
    assert parse_net(model_cfg["description"]).classes == 10 and model_cfg["arch"] == "tiny"
    assert ckpt.meta["config"]["net"] == net and ckpt.meta["image_size"] == 32
    Path(net).unlink()  # --resume and evaluate rebuild the network from the checkpoint alone
    first = train(_run(tmp_path, "split", net=_net_file(tmp_path, name="again.ini"), epochs=1),
                  model_class=FakeAlexNet)
    (tmp_path / "again.ini").unlink()
    resumed = train(_run(tmp_path, "split", resume=True, epochs=2), model_class=FakeAlexNet)
    assert_same_run(whole, [first, resumed])
    monkeypatch.setattr(ckpt_io, "build_model", functools.partial(ckpt_io.build_model, model_class=FakeAlexNet))
    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(out / "last.npz"), "--json", "--no-progress", "--max-images", "6"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 6


def test_the_dataset_gives_the_classes(tmp_path):
    data = str(_folder(tmp_path / "data", 32))  # two classes; the file says 10 (outputs = classes)
    summary = train(_run(tmp_path, net=_net_file(tmp_path), data=data, batch_size=2), model_class=FakeAlexNet)
    assert parse_net(ckpt_io.load(Path(summary["out"]) / "last.npz").model_config["description"]).classes == 2
    fixed = TINY_NET.replace("outputs = classes", "outputs = 10")
    with pytest.raises(ConfigError, match="layer 'fc', outputs: 10 class scores, but the data has 2 classes"):
        train(_run(tmp_path, "fixed", net=_net_file(tmp_path, fixed, "fixed.ini"), data=data, batch_size=2),
              model_class=FakeAlexNet)


def test_an_old_checkpoint_without_a_description_still_loads(tmp_path):
    from runs import tiny

    summary = train(tiny(tmp_path, epochs=1), model_class=FakeAlexNet)
    ckpt = ckpt_io.load(Path(summary["out"]) / "last.npz")
    assert "description" not in ckpt.model_config  # the alexnet family: AlexNet's constructor arguments
    assert ckpt_io.build_model(ckpt, model_class=FakeAlexNet).input_size == 32
    desc = ckpt_io.network_description(ckpt.model_config)  # what summary --checkpoint and the report print
    assert desc.name == "alexnet-small" and desc.classes == 10


def test_a_checkpoint_with_a_broken_description_is_one_line(tmp_path, capsys):
    from alexnet_cuda.evaluate import main as evaluate_main

    summary = train(_run(tmp_path, net=_net_file(tmp_path)), model_class=FakeAlexNet)
    ckpt = ckpt_io.load(Path(summary["out"]) / "last.npz")
    ckpt.meta["model"]["description"] = ckpt.meta["model"]["description"].replace("type = maxpool", "type = pool")
    broken = ckpt_io.save(tmp_path / "broken.npz", ckpt)
    assert evaluate_main(["--checkpoint", str(broken), "--no-progress", "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not match the network it describes" in err and "'pool1'" in err


@requires_engine
def test_onnx_export_refuses_a_layer_it_has_no_operator_for_clearly(tmp_path):
    """A described network exports from its description (export.description_to_onnx; tests/network/
    test_export_cifar.py and test_export_torchvision.py); a layer it cannot express (here an even-size cross-map
    LRN, whose window ONNX's LRN centres differently) is one ExportError naming it."""
    pytest.importorskip("onnx")
    from alexnet_cuda.export import ExportError, export_checkpoint

    text = TINY_NET.replace("[pool1]", "[norm1]\ntype = lrn\nsize = 4\n\n[pool1]")
    summary = train(_run(tmp_path, net=_net_file(tmp_path, text)))
    with pytest.raises(ExportError, match="norm1.*LRN of even size 4"):
        export_checkpoint(Path(summary["out"]) / "last.npz", tmp_path / "net.onnx")


# --------------------------------------------------------------------------------------------------------------------
# Training (the engine)
# --------------------------------------------------------------------------------------------------------------------

@requires_engine
def test_a_users_net_trains_evaluates_predicts_and_resumes_exactly(tmp_path, capsys, device):
    """On the CPU, and with --device cuda on a GPU or the emulated device."""
    from alexnet_cuda.analysis.report import make_report
    from alexnet_cuda.evaluate import main as evaluate_main
    from alexnet_cuda.predict import main as predict_main
    from alexnet_cuda.summary import main as summary_main

    net = _net_file(tmp_path)
    whole = train(_run(tmp_path, "whole", net=net, epochs=2, device=device))
    assert whole["status"] == "completed" and whole["step"] == 4
    out = Path(whole["out"])
    ckpt = ckpt_io.load(out / "last.npz")
    recorded = parse_net(ckpt.model_config["description"])
    assert recorded.name == "tiny" and recorded.classes == 10 and ckpt.meta["image_size"] == 32
    Path(net).unlink()  # evaluate, predict and --resume rebuild it from the checkpoint alone

    first = train(_run(tmp_path, "split", net=_net_file(tmp_path, name="again.ini"), epochs=1, device=device))
    resumed = train(_run(tmp_path, "split", resume=True, epochs=2, device=device))
    assert_same_run(whole, [first, resumed])

    capsys.readouterr()
    assert evaluate_main(["--checkpoint", str(out / "last.npz"), "--json", "--no-progress", "--device", device,
                          "--max-images", "6"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 6 and {"center", "ten_crop"} <= set(result)
    image = tmp_path / "one.png"
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(image)
    assert predict_main([str(image), "--checkpoint", str(out / "last.npz"), "--device", device, "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)["predictions"][str(image)]
    assert len(preds) == 5 and abs(sum(p["probability"] for p in preds) - 1) < 0.5
    assert summary_main(["--checkpoint", str(out / "last.npz")]) == 0
    assert "tiny" in capsys.readouterr().out
    report = make_report(out, device="cpu", max_images=8)
    page = Path(report["page"]).read_text()
    assert "## The network" in page and "conv1" in page and (out / "report" / "conv1_filters.png").exists()


@requires_engine
def test_layers_18pct_from_cuda_convnets_files_trains_at_32(tmp_path):
    summary = train(_run(tmp_path, net=LAYERS_18, net_params=PARAMS_18))
    assert summary["status"] == "completed" and summary["step"] == 2
    assert all(np.isfinite(summary["step_losses"]))
    ckpt = ckpt_io.load(Path(summary["out"]) / "last.npz")
    assert ckpt.meta["image_size"] == 32 and ckpt.model_config["input_size"] == 32


@requires_engine
def test_a_conv_local_net_trains_on_24x24_crops_of_32x32(tmp_path, device):
    summary = train(_run(tmp_path, arch="conv-local-11pct", device=device))
    assert summary["status"] == "completed" and all(np.isfinite(summary["step_losses"]))
    ckpt = ckpt_io.load(Path(summary["out"]) / "last.npz")
    assert (ckpt.meta["image_size"], ckpt.model_config["input_size"]) == (32, 24)
    model = ckpt_io.build_model(ckpt, devices="cpu")
    assert model.input_size == 24


@requires_engine
def test_the_layers_rates_are_the_runs_and_lr_multiplies_them():
    """cuda-convnet's update (Weights::update): inc = momW * inc - epsW * (gradient + wc * w), with the step's
    learning rate (--lr) multiplying epsW and epsB; from a zero momentum buffer the buffer is that first inc."""
    from alexnet_cuda.train.described import read_description

    desc = read_description(TrainConfig(arch="layers-18pct"))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 4).astype(np.int32)
    name = "conv1.tower0.weight"
    for lr in (1.0, 2.0):
        model = AlexNet.from_description(desc, "cpu", seed=0)
        assert model.learning(name) == pytest.approx({"lr_scale": 0.001, "momentum": 0.9, "weight_decay": 0.004})
        assert model.learning("conv1.tower0.bias")["lr_scale"] == pytest.approx(0.002)  # the file's epsB
        weights = model.state_dict()
        model.compute_gradients(images, labels)
        grads = model.gradients()
        model.apply_update(lr, 0.5, 0.0)  # the step's momentum and decay: every layer sets its own
        inc = model.optimizer_state_dict()
        for k, g in grads.items():
            own = model.learning(k)
            decay = own["weight_decay"] or 0.0 if k.endswith(".weight") else 0.0
            want = -lr * own["lr_scale"] * (g.astype(np.float64) + decay * weights[k])
            np.testing.assert_allclose(inc[k], want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
