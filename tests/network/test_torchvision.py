"""torchvision's AlexNet (``--arch torchvision-alexnet``, alexnet_cuda/nets/torchvision.py): its description has
torchvision's layers, sizes and parameter names; its forward (the NumPy reference of the description) equals a
PyTorch forward of torchvision's module on the same random weights; per-channel input scales reach the network."""

from __future__ import annotations

import numpy as np
import pytest
from subprocesses import run_module
from torchvision_alexnet import TORCHVISION_KEYS, random_state_dict, reference_params, torch_alexnet

from alexnet_cuda import AlexNet
from alexnet_cuda.nets import torchvision as tv
from alexnet_cuda.nets.builtin import builtin
from alexnet_cuda.nets.description import DescriptionError, layer_table
from alexnet_cuda.nets.file_format import format_net, parse_net
from alexnet_cuda.nets.table import totals
from alexnet_cuda.reference import described
from alexnet_cuda.reference import prepare_batch as ref_prepare



def test_the_description_is_torchvisions_alexnet():
    desc = builtin("torchvision-alexnet")
    # torchvision.models.alexnet(): 61,100,840 parameters (its documentation's "num_params")
    assert totals(layer_table(desc))["parameters"] == 61_100_840
    rows = {r["name"]: r for r in layer_table(desc)}
    assert rows["pool5"]["output"] == [256, 6, 6]  # the adaptive 6x6 average pooling is the identity here
    kinds = [(x.name, x.kind) for x in desc.layers if x.kind in ("dropout", "linear")]
    assert kinds == [("dropout6", "dropout"), ("fc6", "linear"), ("dropout7", "dropout"), ("fc7", "linear"),
                     ("fc8", "linear")]  # torchvision's classifier: Dropout before each hidden Linear
    assert list(tv.to_torchvision(tv.parameter_shapes(desc))) == TORCHVISION_KEYS
    assert tv.parameter_shapes(tv.torchvision_alexnet(2))["classifier.6.tower0.weight"] == (2, 4096)
    assert tv.from_torchvision(tv.to_torchvision({"features.0.tower0.weight": 1})) == {"features.0.tower0.weight": 1}


def test_other_input_sizes_are_refused():
    with pytest.raises(DescriptionError, match=r"'torchvision-alexnet': takes 224x224 inputs only, got 227x227"):
        tv.torchvision_alexnet(1000, input_size=227)


def test_the_network_file_keeps_the_module_names():
    desc = tv.torchvision_alexnet(10)
    text = format_net(desc)
    assert "module = features.10" in text and "module = classifier.6" in text
    again = parse_net(text)
    assert [x.module for x in again.layers] == [x.module for x in desc.layers]
    assert layer_table(again) == layer_table(desc)


def test_summary_arch_and_num_classes(tmp_path):
    r = run_module("alexnet_cuda.summary", "--arch", "torchvision-alexnet", "--num-classes", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "fc8" in r.stdout and "57,012,034" in r.stdout  # 61,100,840 - 4,097,000 + 2 * 4097


def test_normalization_is_torchvisions():
    mean, scale = tv.normalization()
    pixels = np.array([0.0, 128.0, 255.0])
    for c in range(3):
        np.testing.assert_allclose((pixels - mean[c]) * scale[c],
                                   (pixels / 255 - tv.IMAGENET_MEAN[c]) / tv.IMAGENET_STD[c], rtol=1e-6)


def test_per_channel_scale_reaches_the_network(rng, device):
    """set_normalization with a (3,) scale: predict on uint8 images equals predict on the float input prepared by
    the reference op with the same per-channel mean and scale."""
    model = AlexNet(3, arch="alexnet-small", devices=device, towers=1,
                    widths={"conv": [4, 4, 4, 4, 4], "fc": [8, 8]})
    mean, scale = tv.normalization()
    model.set_normalization(mean, scale)
    images = rng.integers(0, 256, (2, 36, 36, 3), dtype=np.uint8)
    zeros = np.zeros(2, np.int32)
    crops = np.full((2, 2), 2, np.int32)
    want = ref_prepare.prepare_batch(images, mean, crops[:, 0], crops[:, 1], zeros, np.zeros((2, 3)), 32, scale)
    np.testing.assert_allclose(model.predict(images, crops=crops), model.predict(want.astype(np.float32)),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match=r"AlexNet.set_normalization: scale must be a number or three numbers"):
        model.set_normalization(mean, [1.0, 2.0])


# ---- against PyTorch ------------------------------------------------------------------------------------------------

def test_the_reference_forward_equals_pytorchs():
    """The description's forward (the NumPy reference, float64) equals torchvision's module in PyTorch (float64) on
    the same random torchvision-format weights and images: within 1e-5 of the largest logit."""
    torch = pytest.importorskip("torch")
    num_classes = 10
    state = random_state_dict(num_classes, seed=1)
    module = torch_alexnet(num_classes).double().eval()
    module.load_state_dict({k: torch.from_numpy(v.astype(np.float64)) for k, v in state.items()})
    assert list(module.state_dict()) == TORCHVISION_KEYS
    rng = np.random.default_rng(2)
    images = rng.normal(0, 1, (2, 3, 224, 224))
    with torch.no_grad():
        want = module(torch.from_numpy(images)).numpy()
    desc = tv.torchvision_alexnet(num_classes)
    _, got, _ = described.forward_backward(desc, reference_params(desc, state), images, np.zeros(2, np.int64),
                                           training=False, backward=False)
    assert np.abs(want).max() > 1e-3  # the logits are not all zero
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
