"""The C++ network built from a description (AlexNet.from_description) computes what the NumPy reference of that
description computes (alexnet_cuda/reference/described.py): loss, logits and every gradient, for the authors'
CIFAR-10 networks, a user's two-tower file, and on every placement the build offers; the description's per-layer
learning settings reach the optimizer; a description that cannot be built is one error naming the layer."""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_cuda

from alexnet_cuda.model import AlexNet
from alexnet_cuda.nets.builtin import builtin
from alexnet_cuda.nets.description import DescriptionError, Layer, NetDescription, layer_table
from alexnet_cuda.nets.file_format import parse_net
from alexnet_cuda.reference import described
from conftest import CUDA_SKIP, requires_cuda

PLACEMENTS = [
    pytest.param("cpu", id="cpu"),
    pytest.param(["cuda:0", "cuda:0"], id="cuda0,cuda0", marks=requires_cuda),
    pytest.param(["cuda:0", "cuda:1"], id="cuda0,cuda1", marks=pytest.mark.skipif(
        CUDA_SKIP is not None or len(alexnet_cuda.build_info()["gpus"]) < 2, reason=CUDA_SKIP or "needs two GPUs")),
]

TWO_TOWERS = """
[net]
name = two-towers
input = 3x12x12
towers = 2
classes = 5

[c1]
type = conv
filters = 6
size = 3
padding = 1
activation = tanh

[p1]
type = avgpool
size = 3
stride = 2
outputs = ceil
activation = relu

[n1]
type = spatial_lrn
size = 3
alpha = 0.01

[c2]
type = conv
filters = 8
size = 3
sees = all
bias = false

[b2]
type = batchnorm
activation = relu

[l3]
type = local
filters = 4
size = 2
stride = 2

[f4]
type = linear
outputs = 8
activation = relu

[d4]
type = dropout
p = 0.25

[f5]
type = linear
outputs = classes
"""


def check_against_reference(desc: NetDescription, devices="cpu", batch: int = 4, seed: int = 3):
    net = AlexNet.from_description(desc, devices, seed=seed)
    rng = np.random.default_rng(seed)
    side = desc.input_size
    images = rng.normal(0, 1, (batch, desc.input_channels, side, side)).astype(np.float32)
    labels = rng.integers(0, desc.classes, batch).astype(np.int32)
    net.step = 2
    got = net.compute_gradients(images, labels, training=True)
    params = described.dense_params(net.state_dict(), desc)
    loss, logits, grads = described.forward_backward(desc, params, images, labels, seed=seed, step=2)
    assert got.loss == pytest.approx(loss, rel=1e-4)
    np.testing.assert_allclose(net.logits(), logits, rtol=1e-3, atol=1e-4 * np.abs(logits).max())
    ours = described.dense_params(net.gradients(), desc)
    assert set(ours) == set(grads)
    for k, want in grads.items():
        np.testing.assert_allclose(ours[k], want, rtol=2e-3, atol=2e-3 * np.abs(want).max() + 1e-7, err_msg=k)
    return net


@pytest.mark.parametrize("devices", PLACEMENTS)
@pytest.mark.parametrize("name", ["layers-18pct", "conv-local-11pct", "conv-local-13pct", "layers-80sec"])
def test_the_cifar_networks_compute_their_reference(name, devices):
    desc = builtin(name)
    net = check_against_reference(desc, devices)
    assert net.num_parameters() == sum(r["parameters"] for r in layer_table(desc))
    assert net.input_size == desc.input_size and net.num_classes == 10 and net.arch == name


@pytest.mark.parametrize("devices", PLACEMENTS)
def test_a_two_tower_user_file_computes_its_reference(devices):
    """tanh conv, avg pooling with cuda-convnet's ceil rule and a relu, within-map normalization, a conv reading
    both towers (the exchange), batchnorm, a local layer, a linear layer, dropout per tower."""
    check_against_reference(parse_net(TWO_TOWERS), devices)


def test_learning_settings_come_from_the_description():
    net = AlexNet.from_description(builtin("layers-18pct"), "cpu")
    conv1 = net.learning("conv1.tower0.weight")
    assert conv1 == {"lr_scale": pytest.approx(0.001), "momentum": pytest.approx(0.9),
                     "weight_decay": pytest.approx(0.004)}
    assert net.learning("conv1.tower0.bias") == {"lr_scale": pytest.approx(0.002), "momentum": pytest.approx(0.9),
                                                "weight_decay": None}
    assert net.learning("fc10.tower0.weight")["weight_decay"] == pytest.approx(1.0)


def test_a_step_updates_as_cuda_convnet():
    """inc = mom * inc - eps * mean gradient - wc * eps * w; w += inc (Weights::update, docs/cuda_convnet.md), with
    a step's lr multiplying every layer's eps."""
    desc = builtin("layers-18pct")
    net = AlexNet.from_description(desc, "cpu", seed=1)
    rng = np.random.default_rng(0)
    images = rng.normal(0, 50, (8, 3, 32, 32)).astype(np.float32)
    labels = rng.integers(0, 10, 8).astype(np.int32)
    before = net.state_dict()
    net.compute_gradients(images, labels)
    g = net.gradients()
    net.apply_update(lr=2.0, momentum=0.5, weight_decay=0.1)  # momentum, decay: every layer sets its own
    after = net.state_dict()
    eps_w, wc = 2.0 * 0.001, 0.004
    want = before["conv1.tower0.weight"] - eps_w * g["conv1.tower0.weight"] - wc * eps_w * before["conv1.tower0.weight"]
    np.testing.assert_allclose(after["conv1.tower0.weight"], want, rtol=1e-5, atol=1e-9)
    want_b = before["conv1.tower0.bias"] - 2.0 * 0.002 * g["conv1.tower0.bias"]
    np.testing.assert_allclose(after["conv1.tower0.bias"], want_b, rtol=1e-5, atol=1e-9)


def test_train_step_on_uint8_images_and_predict():
    net = AlexNet.from_description(builtin("conv-local-13pct"), "cpu", seed=0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)  # 24x24 crops of 32x32 images
    labels = rng.integers(0, 10, 6).astype(np.int32)
    mean = images.astype(np.float32).mean(axis=0).transpose(2, 0, 1)
    net.set_normalization(mean, 1.0)
    r = net.train_step(images, labels, lr=1.0, crops=np.full((6, 2), 4, np.int32))
    assert np.isfinite(r.loss)
    p = net.predict(images)
    assert p.shape == (6, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)


@pytest.mark.parametrize("layers, message", [
    ([Layer("a", "conv", {"filters": 4, "size": 3}), Layer("b", "conv", {"filters": 4, "size": 3}, input="data"),
      Layer("c", "linear", {"outputs": "classes"})], "layer 'a': no layer reads it"),
    ([Layer("a", "conv", {"filters": 4, "size": 3}), Layer("c", "linear", {"outputs": 3})],
     "layer 'c': the last layer must output the 10 classes"),
    ([Layer("a", "conv", {"filters": 4, "size": 3}), Layer("c", "pool", {})], "layer 'c', type: unknown kind 'pool'"),
])
def test_a_description_that_cannot_be_built_names_the_layer(layers, message):
    with pytest.raises(DescriptionError, match=message):
        AlexNet.from_description(NetDescription("bad", layers, input_size=8), "cpu")
