"""``python -m alexnet_cuda.export``: the ONNX graph of every AlexNet variant passes ``onnx.checker``, and ONNX
Runtime's probabilities equal ``AlexNet.predict``'s within 1e-4 on random and real uint8 images (issue 21, part 2).

Skipped when the optional extra ``.[onnx]`` (onnx, onnxruntime) is not installed.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from conftest import SHARED_DATA

from alexnet_cuda import AlexNet
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import export as export_mod

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4  # the bound on |ONNX Runtime - predict| per probability
WIDTHS = {"conv": [4, 8, 8, 8, 6], "fc": [16, 12]}  # tiny: conv widths divisible by both tower counts
NUM_CLASSES = 5  # odd: fc8 splits 3 / 2 between the towers
# Every network AlexNet builds, as constructor options (on top of the tiny alexnet-small at 32x32).
VARIANTS = {
    "two_towers": {},
    "one_tower": {"towers": 1},
    "batchnorm": {"norm": "batchnorm"},
    "batchnorm_after_pool": {"norm": "batchnorm", "bn_position": "after_pool", "towers": 1},
    "gap_head": {"head": "gap"},
    "tanh": {"activation": "tanh"},
    "no_lrn": {"lrn": False},
    "non_overlapping_pool": {"overlapping_pool": False},
    "small_64": {"input_size": 64},
    "no_hidden_fc": {"head": []},
}
MARGIN = 8  # the uint8 images are this much larger than the net's input: the graph must centre-crop them


def _randomize(net: AlexNet, rng: np.random.Generator) -> None:
    """Weights with fan-in scaling (activations stay O(1)-O(10), so the softmax is not saturated and LRN matters),
    and BatchNorm statistics far from the identity."""
    state = {}
    output_layer = max((k for k in net.state_dict() if k.startswith("classifier.")),
                       key=lambda k: int(k.split(".")[1])).split(".tower")[0]
    for name, value in net.state_dict().items():
        shape = value.shape
        if name.endswith("running_var"):
            state[name] = rng.uniform(0.5, 2.0, shape)
        elif name.endswith("running_mean") or name.endswith("bias"):
            state[name] = 0.3 * rng.standard_normal(shape)
        elif len(shape) == 1 and name.endswith("weight"):
            state[name] = 1.0 + 0.3 * rng.standard_normal(shape)  # BatchNorm's scale
        else:
            fan_in = int(np.prod(shape[1:]))
            # conv1 large (LRN's sum of squares counts), the output layer small (logits of a few units)
            gain = 40.0 if name.startswith("features.0.") else 0.01 if name.startswith(output_layer) else 2.0
            state[name] = rng.standard_normal(shape) * np.sqrt(gain / fan_in)
    net.load_state_dict({k: v.astype(np.float32) for k, v in state.items()})


def _net(options: dict, seed: int = 3) -> tuple[AlexNet, np.ndarray, float]:
    """A tiny net of ``options`` with random weights and a per-pixel mean; returns (net, mean, scale)."""
    widths = dict(WIDTHS)
    if "head" in options:
        widths.pop("fc")
    net = AlexNet(NUM_CLASSES, "cpu", arch="alexnet-small", widths=widths, seed=seed, **options)
    rng = np.random.default_rng(seed)
    _randomize(net, rng)
    side = net.input_size + MARGIN
    mean = rng.uniform(90.0, 150.0, (3, side, side)).astype(np.float32)
    scale = 1.0 / 58.0
    net.set_normalization(mean, scale)
    return net, mean, scale


def _session(proto) -> ort.InferenceSession:
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def _assert_agrees(net: AlexNet, proto, images: np.ndarray) -> None:
    want = net.predict(images)
    got = _session(proto).run(None, {export_mod.INPUT_NAME: images})[0]
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def _real_images(side: int, count: int = 6) -> np.ndarray | None:
    """``count`` images of ../shared/data/imagenette-mini, prepared as predict prepares them (None if absent)."""
    from alexnet_cuda.data import load_image_file

    files = sorted(SHARED_DATA.glob("val/*/*.JPEG"))[:: 7][:count]
    if not files:
        return None
    return np.stack([load_image_file(p, side) for p in files])


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_onnx_runtime_agrees_with_predict_on_random_images(variant):
    net, mean, scale = _net(VARIANTS[variant])
    proto = export_mod.to_onnx(net, mean=mean, scale=scale)
    onnx.checker.check_model(proto, full_check=True)
    side = net.input_size + MARGIN
    images = np.random.default_rng(1).integers(0, 256, (5, side, side, 3), dtype=np.uint8)
    _assert_agrees(net, proto, images)
    # Not a vacuous comparison: some probabilities are neither saturated nor uniform.
    probs = net.predict(images)
    assert ((probs > 0.02) & (probs < 0.98)).sum() >= 3, probs


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_onnx_runtime_agrees_with_predict_on_real_images(variant):
    net, mean, scale = _net(VARIANTS[variant])
    images = _real_images(net.input_size + MARGIN)
    if images is None:
        pytest.skip(f"{SHARED_DATA} is not present")
    _assert_agrees(net, export_mod.to_onnx(net, mean=mean, scale=scale), images)


def test_per_channel_mean_and_no_mean():
    net, _, _ = _net({})
    images = np.random.default_rng(2).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    channel_mean = np.array([120.5, 115.25, 100.0], np.float32)
    net.set_normalization(channel_mean, 0.02)
    _assert_agrees(net, export_mod.to_onnx(net, image_size=40, mean=channel_mean, scale=0.02), images)
    # The input is the whole image when it is the net's input size (no crop node).
    _assert_agrees(net, export_mod.to_onnx(net, mean=channel_mean, scale=0.02), images[:, 4:36, 4:36].copy())


def test_lrn_is_per_tower():
    """Two towers normalize their own channels: the graph splits the channels around LRN (one LRN over all of
    them would let the window cross the tower boundary)."""
    net, mean, scale = _net({})
    ops = [n.op_type for n in export_mod.to_onnx(net, mean=mean, scale=scale).graph.node]
    assert ops.count("Split") == 2 and ops.count("LRN") == 4
    one, mean, scale = _net({"towers": 1})
    ops = [n.op_type for n in export_mod.to_onnx(one, mean=mean, scale=scale).graph.node]
    assert "Split" not in ops and ops.count("LRN") == 2


def test_the_paper_net_at_227():
    """The full two-tower net of the paper (227x227 crops of 256x256 images, a mean image), 10 classes."""
    net = AlexNet(10, "cpu", seed=5)
    _randomize(net, np.random.default_rng(5))
    mean = np.random.default_rng(6).uniform(90.0, 150.0, (3, 256, 256)).astype(np.float32)
    net.set_normalization(mean, 1.0 / 58.0)
    proto = export_mod.to_onnx(net, mean=mean, scale=1.0 / 58.0)
    assert [d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim[1:]] == [256, 256, 3]
    images = _real_images(256, 2)
    if images is None:
        images = np.random.default_rng(7).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    _assert_agrees(net, proto, images)


def test_uneven_export_is_refused():
    class Even:  # a net whose LRN window ONNX cannot express
        config = dict(_net({})[0].config, lrn_size=4)

    with pytest.raises(export_mod.ExportError, match="LRN of even size 4"):
        export_mod.to_onnx(Even())
    net, mean, _ = _net({})
    with pytest.raises(export_mod.ExportError, match="mean image is 40x40 but the images are 48x48"):
        export_mod.to_onnx(net, image_size=48, mean=mean)


# ---- the command ---------------------------------------------------------------------------------------------------
def _checkpoint(tmp_path, with_mean=True, **options):
    net, mean, scale = _net(options)
    config = {"num_classes": NUM_CLASSES, "arch": "alexnet-small", "seed": 3, "widths": dict(WIDTHS), **options}
    ckpt = ckpt_io.Checkpoint(params=net.state_dict(), arrays={"mean": mean} if with_mean else {},
                              meta={"model": config, "classes": list("vwxyz"), "image_size": net.input_size + MARGIN,
                                    "normalization_scale": scale})
    path = ckpt_io.save(tmp_path / "model.npz", ckpt)
    return path, net


@pytest.mark.parametrize("variant", ["two_towers", "batchnorm"])
def test_command_writes_a_model_that_agrees_with_predict(tmp_path, capsys, variant):
    path, net = _checkpoint(tmp_path, **VARIANTS[variant])
    assert export_mod.main([str(path), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert "uint8 images (N, 40, 40, 3) -> probabilities (N, 5)" in capsys.readouterr().out
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto)
    assert {p.key: p.value for p in proto.metadata_props}["class.4"] == "z"
    loaded, _ = ckpt_io.load_model(path, devices="cpu")
    images = np.random.default_rng(4).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    _assert_agrees(loaded, proto, images)


def test_a_checkpoint_without_a_mean_is_not_normalized(tmp_path):
    """As build_model: no mean in the checkpoint, no normalization at all (its scale is not applied either)."""
    path, _ = _checkpoint(tmp_path, with_mean=False)
    assert export_mod.main([str(path), "--onnx", str(tmp_path / "m.onnx")]) == 0
    proto = onnx.load(str(tmp_path / "m.onnx"))
    assert not {"Sub", "Mul"} & {n.op_type for n in proto.graph.node}
    loaded, _ = ckpt_io.load_model(path, devices="cpu")
    _assert_agrees(loaded, proto, np.random.default_rng(9).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8))


def test_command_errors_are_one_line(tmp_path, capsys, monkeypatch):
    assert export_mod.main([str(tmp_path / "none.npz"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{export_mod.PROG}: error:") and "no such checkpoint" in err and err.count("\n") == 1
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    assert export_mod.main([str(tmp_path / "bad.npz"), "--onnx", str(tmp_path / "m.onnx")]) == 1
    assert capsys.readouterr().err.count("\n") == 1
    path, _ = _checkpoint(tmp_path)
    monkeypatch.setitem(sys.modules, "onnx", None)  # the extra is not installed
    assert export_mod.main([str(path), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert "pip install 'alexnet_cuda[onnx]'" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()


def test_help_says_what_the_model_takes(capsys):
    with pytest.raises(SystemExit) as exc:
        export_mod.main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--onnx" in out and "uint8" in out


def test_a_trained_checkpoint_agrees_with_the_predict_command(tmp_path):
    """End to end: a real (tiny) training run's checkpoint, with its mean image, exported by the command; the
    images prepared as the predict command prepares files."""
    from subprocesses import run_module

    from alexnet_cuda.predict import predict_arrays

    r = run_module("alexnet_cuda.train", "--synthetic-images", "40", "--batch-size", "8", "--stats-images", "16",
                   "--workers", "0", "--device", "cpu", "--no-progress", "--epochs", "1", "--out", str(tmp_path),
                   cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert export_mod.main([str(tmp_path / "best.npz"), "--onnx", str(tmp_path / "m.onnx")]) == 0
    model, ckpt = ckpt_io.load_model(tmp_path / "best.npz", devices="cpu")
    side = int(ckpt.meta["image_size"])
    images = _real_images(side)
    if images is None:
        images = np.random.default_rng(8).integers(0, 256, (6, side, side, 3), dtype=np.uint8)
    got = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {export_mod.INPUT_NAME: images})[0]
    np.testing.assert_allclose(got, predict_arrays(model, images), rtol=0, atol=TOLERANCE)
