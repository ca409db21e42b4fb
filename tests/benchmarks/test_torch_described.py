"""The parity run's PyTorch twin of a described network (benchmarks/torch_described.py) computes, with PyTorch's
operators and autograd, exactly what our float64 NumPy reference of that description computes (loss and every
gradient), for the authors' CIFAR-10 networks and a two-tower file with every layer kind it mirrors. Skips when
PyTorch is absent (it is never a dependency of the package)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from alexnet_cuda.model import AlexNet
from alexnet_cuda.nets.builtin import builtin
from alexnet_cuda.nets.file_format import parse_net
from alexnet_cuda.reference import described

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))

EVERY_KIND = """
[net]
name = every-kind
input = 3x15x15
towers = 2
classes = 4

[conv1]
type = conv
filters = 6
size = 5
stride = 2
padding = 2
activation = tanh

[norm1]
type = lrn
size = 3
alpha = 0.5
k = 1

[pool1]
type = avgpool
size = 3
stride = 2
outputs = ceil
activation = relu

[rnorm1]
type = spatial_lrn
size = 4
alpha = 0.3

[conv2]
type = conv
filters = 8
size = 3
padding = 1
sees = all

[pool2]
type = maxpool
size = 2
stride = 2
start = -1
outputs = ceil

[local3]
type = local
filters = 4
size = 2
stride = 2
padding = 1

[fc4]
type = linear
outputs = 8
activation = relu
sees = own

[drop4]
type = dropout
p = 0.25

[fc5]
type = linear
outputs = classes
"""


@pytest.mark.parametrize("name", ["layers-18pct", "conv-local-11pct", "conv-local-13pct", "every-kind"])
def test_the_twin_computes_the_reference(name):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from benchmarks.torch_described import DescribedTwin

    desc = parse_net(EVERY_KIND) if name == "every-kind" else builtin(name)
    model = AlexNet.from_description(desc, "cpu", seed=5)
    rng = np.random.default_rng(1)
    x = rng.normal(0, 30, (3, desc.input_channels, desc.input_size, desc.input_size))
    labels = rng.integers(0, desc.classes, 3).astype(np.int32)
    twin = DescribedTwin(torch, desc, model, lr=0.01, momentum=0.9, weight_decay=5e-4, seed=7)
    loss, grads = twin.loss_and_grads(x, labels, step=4)
    want_loss, _, want = described.forward_backward(desc, described.dense_params(model.state_dict(), desc), x,
                                                    labels, seed=7, step=4)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    assert set(grads) == set(want)
    for key, g in want.items():
        np.testing.assert_allclose(grads[key], g, rtol=1e-9, atol=1e-12 * max(np.abs(g).max(), 1.0), err_msg=key)


def test_the_twin_updates_with_each_layers_own_settings():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from benchmarks.torch_described import DescribedTwin

    desc = builtin("conv-local-13pct")
    model = AlexNet.from_description(desc, "cpu", seed=0)
    twin = DescribedTwin(torch, desc, model, lr=2.0, momentum=0.9, weight_decay=5e-4)
    modules = {layer.name: layer.module or layer.name for layer in desc.layers}
    assert len(twin.opt.param_groups) == len(twin.p)
    for (key, tensor), group in zip(twin.p.items(), twin.opt.param_groups):
        layer, kind = key.rsplit(".", 1)
        own = model.learning(f"{modules[layer]}.tower0.{kind}")
        assert group["params"][0] is tensor
        assert group["lr"] == pytest.approx(2.0 * own["lr_scale"]) and group["momentum"] == own["momentum"]
        assert group["weight_decay"] == (own["weight_decay"] if kind == "weight" else 0.0)
