"""ONNX export of cuda-convnet's CIFAR-10 nets (issue 21, part 2): ``layers-18pct``, ``layers-19pct`` and
``layers-80sec`` (max and average pooling with cuda-convnet's ceil geometry, a pooling layer's own activation,
rnorm composed from ONNX operators), checkpoints saved as the trainer saves them, exported with ``python -m
alexnet_cuda.export``; ONNX Runtime's probabilities equal ``AlexNet.predict``'s within 1e-4 on random uint8 images.
The conv-local nets' locally connected layers have no ONNX operator: composed (a one-hot Conv and a MatMul per
output position) and checked the same way."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from alexnet_cuda import AlexNet
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import export as export_mod
from alexnet_cuda.nets.builtin import builtin
from alexnet_cuda.nets.description import Layer
from alexnet_cuda.nets.file_format import format_net
from alexnet_cuda.reference.avgpool import avgpool_forward
from alexnet_cuda.reference.maxpool import maxpool_forward
from alexnet_cuda.reference.spatial_lrn import spatial_lrn_forward

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOLERANCE = 1e-4  # the bound on |ONNX Runtime - predict| per probability
IMAGE_SIDE = 32   # CIFAR-10's images, as the checkpoints record them
CIFAR_NETS = ("layers-18pct", "layers-19pct", "layers-80sec")


def _run(proto, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {export_mod.INPUT_NAME: images})[0]


def _randomize(model: AlexNet, rng: np.random.Generator) -> None:
    """Fan-in scaled weights (the nets' own init_std gives a uniform softmax), conv1 large so that rnorm's sum of
    squares matters, the output layer small so that the softmax is not saturated; biases of either sign."""
    state = model.state_dict()
    last = [k for k in state if k.endswith(".weight")][-1]
    out = {}
    for name, value in state.items():
        if name.endswith(".running_var"):
            out[name] = rng.uniform(0.5, 2.0, value.shape)
        elif name.endswith(".bias") or name.endswith(".running_mean"):
            out[name] = 0.3 * rng.standard_normal(value.shape)
        else:
            gain = 60.0 if name.startswith("conv1.") else 0.02 if name == last else 2.0
            out[name] = rng.standard_normal(value.shape) * np.sqrt(gain / np.prod(value.shape[1:]))
    model.load_state_dict({k: v.astype(np.float32) for k, v in out.items()})


def _unsaturate(model: AlexNet, images: np.ndarray) -> np.ndarray:
    """Scales the output layer until the softmax on ``images`` is neither saturated nor uniform (the activations'
    scale differs between the nets: raw pixels, scale 1, with or without rnorm); returns predict's probabilities."""
    last = [k for k in model.state_dict() if k.endswith(".weight")][-1].rsplit(".", 1)[0]
    for _ in range(20):
        want = model.predict(images)
        if 0.3 < want.max() < 0.98:
            break
        factor = 1 / 3 if want.max() >= 0.98 else 2.5
        state = model.state_dict()
        model.load_state_dict({**state, f"{last}.weight": state[f"{last}.weight"] * factor,
                               f"{last}.bias": state[f"{last}.bias"] * factor})
    assert 0.3 < want.max() < 0.98  # neither uniform nor saturated: the layers count
    return want


def _checkpoint(tmp_path, desc, images: np.ndarray, seed: int = 5):
    """A randomly initialized model of ``desc`` with a training-set mean image (scale 1, as these nets train),
    saved as the trainer saves a described network (train/described.network_config, train/state.py)."""
    model = AlexNet.from_description(desc, "cpu", seed=seed)
    rng = np.random.default_rng(seed)
    _randomize(model, rng)
    mean = rng.uniform(100.0, 140.0, (3, IMAGE_SIDE, IMAGE_SIDE)).astype(np.float32)
    model.set_normalization(mean, 1.0)
    want = _unsaturate(model, images)
    config = {"description": format_net(desc), "arch": desc.name, "num_classes": desc.classes,
              "input_size": desc.input_size, "towers": desc.towers, "seed": seed, "optimizer": "sgd",
              "adam_betas": [0.9, 0.999], "adam_eps": 1e-8}
    ckpt = ckpt_io.Checkpoint(params=model.state_dict(), arrays={"mean": mean},
                              meta={"model": config, "classes": [f"c{i}" for i in range(desc.classes)],
                                    "image_size": IMAGE_SIDE, "normalization_scale": 1.0})
    return ckpt_io.save(tmp_path / "model.npz", ckpt), want


def _export_and_compare(tmp_path, desc, capsys):
    images = np.random.default_rng(11).integers(0, 256, (6, IMAGE_SIDE, IMAGE_SIDE, 3), dtype=np.uint8)
    path, want = _checkpoint(tmp_path, desc, images)
    assert export_mod.main([str(path), "--onnx", str(tmp_path / "m.onnx")]) == 0
    assert f"uint8 images (N, 32, 32, 3) -> probabilities (N, {desc.classes})" in capsys.readouterr().out
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    got = _run(proto, images)
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
    return proto


@pytest.mark.parametrize("name", CIFAR_NETS)
def test_cifar_net_agrees_with_predict(tmp_path, capsys, name):
    proto = _export_and_compare(tmp_path, builtin(name), capsys)
    ops = {n.op_type for n in proto.graph.node}
    assert {"MaxPool", "AveragePool", "Conv", "Gemm"} <= ops
    if name == "layers-18pct":  # rnorm, composed
        assert {"Pow", "Mul", "Add"} <= ops


@pytest.mark.parametrize("name", ["conv-local-11pct", "conv-local-13pct"])
def test_conv_local_nets_with_the_composed_local_layer(tmp_path, capsys, name):
    """The locally connected layers (no ONNX operator) composed; 11pct's cross-map LRN; the 24x24 centre crop of
    the 32x32 images."""
    proto = _export_and_compare(tmp_path, builtin(name), capsys)
    ops = {n.op_type for n in proto.graph.node}
    assert "MatMul" in ops and ("LRN" in ops) == (name == "conv-local-11pct")  # 13pct has no rnorm
    assert "centre 24x24 crop" in proto.doc_string


def test_two_towers_are_refused():
    desc = dataclasses.replace(builtin("layers-19pct"), towers=2)
    with pytest.raises(export_mod.ExportError, match="has 2 towers; described networks export with one"):
        export_mod.description_to_onnx(desc, {})


def test_even_cross_map_lrn_is_refused():
    desc = builtin("layers-19pct")
    desc.layers.insert(2, Layer("norm", "lrn", {"size": "4"}))
    with pytest.raises(export_mod.ExportError, match=r"layer 'norm' \(lrn\).*even size 4"):
        export_mod.description_to_onnx(desc, {})


# ---- the composed layers against the NumPy references, on geometries the nets do not reach ---------------------
def _single(build, x: np.ndarray) -> np.ndarray:
    """ONNX Runtime's result of the graph ``build(g, 'x')`` makes on the float32 NCHW ``x``."""
    _, helper, numpy_helper = export_mod._import_onnx()
    g = export_mod._Graph(helper, numpy_helper)
    y = build(g, "x")
    float_value = onnx.TensorProto.FLOAT
    graph = helper.make_graph(g.nodes, "t", [helper.make_tensor_value_info("x", float_value, x.shape)],
                              [helper.make_tensor_value_info(y, float_value, ["n", "c", "h", "w"])], g.initializers)
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", export_mod.OPSET)])
    onnx.checker.check_model(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


# (side, size, stride, start, outputs): the ceil rule's clipped last window, a negative start (windows hanging over
# the near edge), a positive start (rows before the first window), fewer windows than fit, non-overlapping windows
POOL_GEOMETRIES = [(16, 3, 2, 0, 8), (32, 3, 2, 0, 16), (9, 3, 2, 0, 4), (8, 3, 2, -1, 4), (10, 4, 3, -2, 4),
                   (11, 3, 2, 1, 5), (12, 3, 2, 2, 3), (7, 2, 2, 0, 4), (6, 3, 3, 0, 2), (8, 5, 1, -2, 8)]


@pytest.mark.parametrize("kind", ["maxpool", "avgpool"])
@pytest.mark.parametrize("geometry", POOL_GEOMETRIES)
def test_pooling_geometry_matches_the_reference(kind, geometry):
    side, size, stride, start, outputs = geometry
    x = np.random.default_rng(side + size).standard_normal((2, 3, side, side)).astype(np.float32)
    layer = Layer("pool", kind, {})
    s = {"size": size, "stride": stride, "start": start}
    got = _single(lambda g, v: export_mod._pool(g, v, layer, s, side, outputs), x)
    reference = maxpool_forward if kind == "maxpool" else avgpool_forward
    np.testing.assert_allclose(got, reference(x, size, stride, start, outputs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_spatial_lrn_matches_the_reference(size):
    x = (30 * np.random.default_rng(size).standard_normal((2, 3, 7, 7))).astype(np.float32)
    s = {"size": size, "alpha": 0.05, "beta": 0.75, "k": 1.5}
    got = _single(lambda g, v: export_mod._spatial_lrn(g, v, "rnorm", s), x)
    want, _ = spatial_lrn_forward(x, size, 0.05, 0.75, 1.5)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


# (side, size, stride, padding): the nets' own, a stride that leaves the ceil rule's last window past the padding
LOCAL_GEOMETRIES = [(6, 3, 1, 1), (7, 3, 2, 0), (8, 3, 3, 1), (5, 2, 2, 0), (6, 1, 1, 0)]


@pytest.mark.parametrize("geometry", LOCAL_GEOMETRIES)
def test_local_layer_matches_the_reference(geometry):
    from alexnet_cuda.reference.local import local_forward, output_size

    side, size, stride, pad = geometry
    rng = np.random.default_rng(side * size + stride)
    out, channels, filters = output_size(side, size, stride, pad), 3, 4
    x = rng.standard_normal((2, channels, side, side)).astype(np.float32)
    w = rng.standard_normal((out, out, channels, size, size, filters)).astype(np.float32)
    bias = rng.standard_normal((filters, out, out)).astype(np.float32)
    s = {"stride": stride, "padding": pad}
    got = _single(lambda g, v: export_mod._local(g, v, "local", s, side, w, g.const("local.bias", bias)), x)
    np.testing.assert_allclose(got, local_forward(x, w, bias, stride, pad), rtol=1e-5, atol=1e-5)


def test_a_missing_parameter_is_named():
    with pytest.raises(export_mod.ExportError, match=r"layer 'conv1' \(conv\): the checkpoint has no parameter "
                                                     r"'conv1.tower0.weight'"):
        export_mod.description_to_onnx(builtin("layers-19pct"), {})
