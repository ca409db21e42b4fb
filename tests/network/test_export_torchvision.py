"""ONNX export of a torchvision-alexnet checkpoint (``python -m alexnet_cuda.export``): written from its description
and weights (alexnet_cuda.export.description_to_onnx, no network built), torchvision's preprocessing (centre 224 crop
of the 256x256 image, ImageNet mean and std per channel) inside the graph; ONNX Runtime's probabilities equal the
NumPy reference of the description on the same inputs, within 1e-4, on random and real images."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import SHARED_DATA
from subprocesses import run_module
from test_torchvision_weights import write_state_pth
from torchvision_alexnet import random_state_dict, reference_params

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import export as export_mod
from alexnet_cuda import weights as weights_mod
from alexnet_cuda.nets import torchvision as tv
from alexnet_cuda.nets.description import Layer
from alexnet_cuda.reference import described
from alexnet_cuda.reference import prepare_batch as ref_prepare

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CLASSES = 7
TOLERANCE = 1e-4  # the bound on |ONNX Runtime - predict| per probability


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tv")
    # weights scaled up (x2 per layer) so that the softmax is neither uniform (x1: 0.14 to 0.145 for every class)
    # nor saturated (x3) on these inputs
    state = {k: (v * 2).astype(np.float32) for k, v in random_state_dict(CLASSES, seed=7).items()}
    ckpt_io.save(tmp / "a.npz", weights_mod.import_weights(write_state_pth(tmp / "alexnet.pth", state)))
    r = run_module("alexnet_cuda.export", "a.npz", "--onnx", "a.onnx", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert "uint8 images (N, 256, 256, 3) -> probabilities (N, 7)" in r.stdout
    return tmp / "a.onnx", state


def _reference(state, images: np.ndarray) -> np.ndarray:
    """The probabilities of the description's NumPy forward on torchvision's preprocessing of ``images``."""
    n = len(images)
    mean, scale = tv.normalization()
    x = ref_prepare.prepare_batch(images, mean, np.full(n, 16), np.full(n, 16), np.zeros(n, np.int32),
                                  np.zeros((n, 3)), 224, scale.astype(np.float64))
    desc = tv.torchvision_alexnet(CLASSES)
    _, logits, _ = described.forward_backward(desc, reference_params(desc, state), x, np.zeros(n, np.int64),
                                              training=False, backward=False)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _run(path, images):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["probabilities"], {"images": images})[0]


def test_the_model_checks_and_matches_the_reference_on_random_images(exported):
    path, state = exported
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert [p.key for p in proto.metadata_props][:2] == ["class.0", "class.1"]
    assert "times (0.0171248, 0.017507, 0.0174292)" in proto.doc_string
    images = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    got, want = _run(path, images), _reference(state, images)
    assert 0.3 < want.max() < 0.9 and want.min() < 0.05  # neither uniform nor saturated
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)


def test_real_images(exported):
    from alexnet_cuda.data import load_image_file

    files = sorted(SHARED_DATA.glob("val/*/*.JPEG"))[::7][:4]
    if not files:
        pytest.skip(f"{SHARED_DATA} is not present")
    path, state = exported
    images = np.stack([load_image_file(f, 256) for f in files])
    np.testing.assert_allclose(_run(path, images), _reference(state, images), rtol=0, atol=TOLERANCE)


def test_layers_without_an_export_are_named():
    desc = tv.torchvision_alexnet(3)
    desc.layers.insert(1, Layer("norm1", "lrn", {"size": "4"}))
    with pytest.raises(export_mod.ExportError, match=r"layer 'norm1' \(lrn\) of 'torchvision-alexnet': LRN of even"):
        export_mod.description_to_onnx(desc, {})


@pytest.mark.skipif(not hasattr(__import__("alexnet_cuda").AlexNet, "from_description"),
                    reason="needs AlexNet.from_description (the engine that builds any description)")
def test_onnx_runtime_equals_predict(exported, tmp_path):
    """The issue's check: ONNX Runtime's probabilities equal AlexNet.predict's (the C++ network built from the same
    checkpoint, centre crop) within 1e-4."""
    from alexnet_cuda.predict import predict_arrays

    path, _ = exported
    model = ckpt_io.build_model(ckpt_io.load(path.parent / "a.npz"), devices="cpu")
    images = np.random.default_rng(3).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    np.testing.assert_allclose(_run(path, images), predict_arrays(model, images), rtol=0, atol=TOLERANCE)
