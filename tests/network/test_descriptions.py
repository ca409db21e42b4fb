"""Networks as data (alexnet_cuda/nets/): the paper's net in numbers; network files round-trip; the built-in CIFAR-10 networks have the expected sizes; and every mistake in a
description is one error naming the layer and the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
from subprocesses import run_module

from alexnet_cuda.nets.alexnet import alexnet
from alexnet_cuda.nets.builtin import BUILTIN, builtin, convnet_files
from alexnet_cuda.nets.description import DescriptionError, Layer, NetDescription, layer_table
from alexnet_cuda.nets.file_format import format_net, parse_net, read_net
from alexnet_cuda.nets.table import totals


def _numbers(rows):
    return [(r["name"], r["tower"], list(r["input"]), list(r["output"]), int(r["parameters"]), int(r["mult_adds"]))
            for r in rows]


def test_the_papers_network_in_numbers():
    t = totals(layer_table(alexnet()))
    assert t == {"parameters": 60_965_224, "mult_adds": 724_406_816}


@pytest.mark.parametrize("desc", [alexnet(), alexnet("alexnet-small", 32, 10, norm="batchnorm", head="gap"),
                                  *[builtin(n) for n in BUILTIN]], ids=lambda d: d.name)
def test_network_files_round_trip(desc):
    again = parse_net(format_net(desc))
    assert layer_table(again) == layer_table(desc)
    assert format_net(again) == format_net(desc)


def test_the_authors_cifar_networks():
    """Parameters at the sizes they were trained at: 32x32 for layers-18pct, 24x24 crops for the conv-local pair
    (local layers: a weight set and a bias per output position, as cuda-convnet's)."""
    sizes = {n: totals(layer_table(builtin(n))) for n in BUILTIN}
    assert sizes["layers-18pct"] == {"parameters": 89_578, "mult_adds": 12_298_240}
    assert sizes["conv-local-11pct"] == {"parameters": 2_112_970, "mult_adds": 19_512_576}
    assert sizes["conv-local-13pct"] == {"parameters": 1_116_490, "mult_adds": 18_517_248}
    rows = {r["name"]: r for r in layer_table(builtin("layers-18pct"))}
    assert rows["pool1"]["output"] == [32, 16, 16]  # cuda-convnet's ceil rule: 16 windows on 32, not 15
    assert [r["name"] for r in layer_table(builtin("conv-local-11pct"))] == [
        "conv1", "pool1", "rnorm1", "conv2", "rnorm2", "pool2", "local3", "local4", "fc10"]
    fc10 = builtin("layers-18pct").layers[-1].settings
    assert (fc10["lr_weight"], fc10["lr_bias"], fc10["momentum_weight"], fc10["weight_decay"]) == (0.001, 0.002, 0.9,
                                                                                                    1.0)


def test_summary_prints_descriptions(tmp_path):
    r = run_module("alexnet_cuda.summary", "--arch", "layers-18pct", cwd=tmp_path)
    assert r.returncode == 0 and "89,578" in r.stdout and "pool1" in r.stdout
    (tmp_path / "mine.ini").write_text(format_net(alexnet("alexnet-small", 32, 10)))
    r = run_module("alexnet_cuda.summary", "--net", "mine.ini", "--json", cwd=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["totals"]["parameters"] == 5_726_602
    layers_cfg, params_cfg = convnet_files("conv-local-11pct")
    r = run_module("alexnet_cuda.summary", "--net", str(layers_cfg), "--net-params", str(params_cfg), "--input-size",
                   "24", cwd=tmp_path)
    assert r.returncode == 0 and "2,112,970" in r.stdout and "local3" in r.stdout
    (tmp_path / "bad.ini").write_text("[net]\ninput = 3x32x32\n\n[c1]\ntype = conv\nsize = 5\n")
    r = run_module("alexnet_cuda.summary", "--net", "bad.ini", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == (
        "python -m alexnet_cuda.summary: error: network description: layer 'c1', filters: missing (required)")


def _net(*layers: Layer, **kw) -> NetDescription:
    return NetDescription("test", list(layers), **kw)


CONV = {"filters": 8, "size": 3}


@pytest.mark.parametrize("desc, message", [
    (_net(Layer("c1", "convolution", CONV)), "layer 'c1', type: unknown kind 'convolution'"),
    (_net(Layer("c1", "conv", {**CONV, "kernel": 3})), "layer 'c1', kernel: not a setting of a conv layer"),
    (_net(Layer("c1", "conv", {"size": 3})), "layer 'c1', filters: missing (required)"),
    (_net(Layer("c1", "conv", {**CONV, "size": "five"})), "layer 'c1', size: expected an integer, got 'five'"),
    (_net(Layer("c1", "conv", {**CONV, "size": 40})), "layer 'c1', size: a 40x40 kernel (padding 0) does not fit"),
    (_net(Layer("c1", "conv", {**CONV, "activation": "sigmoid"})), "layer 'c1', activation: must be one of"),
    (_net(Layer("c1", "conv", {**CONV, "filters": 7}), towers=2), "layer 'c1', filters: 7 filters do not split"),
    (_net(Layer("c1", "conv", CONV), Layer("p1", "maxpool", {}, sees="all")),
     "layer 'p1', sees: a maxpool layer reads its own tower's maps only"),
    (_net(Layer("c1", "conv", CONV), Layer("c2", "conv", CONV, input="c9")),
     "layer 'c2', input: 'c9' is not a layer defined before it"),
    (_net(Layer("c1", "conv", CONV), Layer("c1", "conv", CONV)), "layer 'c1': a second layer of this name"),
    (_net(Layer("f1", "linear", {"outputs": 5}), Layer("p1", "maxpool", {})),
     "layer 'p1', input: pooling needs maps"),
    (_net(Layer("c1", "conv", CONV), Layer("p1", "avgpool", {"outputs": 40})),
     "layer 'p1', outputs: 40 windows of 3 every 2 from 0 leave the last one outside the 30x30 maps"),
    (_net(Layer("d1", "dropout", {"p": 1.0})), "layer 'd1', p: must be in [0, 1)"),
])
def test_every_mistake_names_the_layer_and_the_field(desc, message):
    with pytest.raises(DescriptionError, match="network description: " + message.replace("(", r"\(").replace(
            ")", r"\)").replace("[", r"\[")):
        layer_table(desc)


def test_file_mistakes_name_the_file(tmp_path):
    with pytest.raises(DescriptionError, match="missing.ini: cannot be read"):
        read_net(tmp_path / "missing.ini")
    with pytest.raises(DescriptionError, match=r"x.ini: no \[net\] section"):
        parse_net("[c1]\ntype = conv\n", "x.ini")
    with pytest.raises(DescriptionError, match=r"x.ini: \[net\] input: expected CHANNELSxSIDExSIDE"):
        parse_net("[net]\ninput = 3x32x30\n", "x.ini")
    with pytest.raises(DescriptionError, match="x.ini: layer 'c1', type: missing"):
        parse_net("[net]\n[c1]\nfilters = 3\n", "x.ini")
    with pytest.raises(DescriptionError, match="x.ini: not a network file"):
        parse_net("[net]\n[c1]\ntype = conv\n[c1]\ntype = conv\n", "x.ini")


# ---- the NumPy reference network builds from descriptions --------------------------------------------------------

def _random_dense_params(desc, rng):
    """Dense parameters for the reference: each weighted layer's (out, in/groups, k, k) or (out, in) weight."""
    from alexnet_cuda.nets.description import resolved_settings

    rows = layer_table(desc)
    params = {}
    for layer in desc.layers:
        mine = [r for r in rows if r["name"] == layer.name]
        s = resolved_settings(layer)
        out = sum(r["output"][0] for r in mine)
        if layer.kind == "conv":
            c_in = mine[0]["input"][0]
            params[f"{layer.name}.weight"] = rng.normal(0, 0.1, (out, c_in, s["size"], s["size"]))
        elif layer.kind == "local":
            _, side, _ = mine[0]["output"]
            params[f"{layer.name}.weight"] = rng.normal(0, 0.1, (side, side, mine[0]["input"][0], s["size"],
                                                                 s["size"], out))
            params[f"{layer.name}.bias"] = rng.normal(0, 0.1, (out, side, side))
        elif layer.kind == "linear":
            params[f"{layer.name}.weight"] = rng.normal(0, 0.1, (out, mine[0]["input"][0]))
        elif layer.kind == "batchnorm":
            params.update({f"{layer.name}.weight": rng.uniform(0.5, 1.5, out), f"{layer.name}.running_mean":
                           rng.normal(0, 0.1, out), f"{layer.name}.running_var": rng.uniform(0.5, 1.5, out)})
        if layer.kind in ("conv", "linear", "batchnorm") and s.get("bias", True):
            params[f"{layer.name}.bias"] = rng.normal(0, 0.1, out)
    return params


@pytest.mark.parametrize("options", [
    dict(towers=2), dict(towers=1, norm="batchnorm", head="gap"), dict(towers=2, norm="batchnorm",
    bn_position="after_pool", activation="tanh", head=[12, 10]), dict(towers=2, norm="none", overlapping_pool=False)],
    ids=["paper", "bn-gap-1tower", "bn-after-pool-tanh", "no-norm-2x2"])
def test_the_reference_of_a_description_is_the_reference_network(options):
    """alexnet-small (narrow) through the description-driven reference equals the AlexNet reference network:
    loss, logits and every gradient, in training mode with dropout."""
    from alexnet_cuda.reference import described, network as refnet

    rng = np.random.default_rng(0)
    desc = alexnet("alexnet-small", 32, 5, conv_channels=[8, 8, 12, 12, 8], head=options.pop("head", [16, 12]),
                   **options)
    params = _random_dense_params(desc, rng)
    config = {"towers": desc.towers, "conv_stride": [1] * 5, "conv_pad": [2, 2, 1, 1, 1],
              "norm": options.get("norm", "lrn"), "lrn": options.get("norm", "lrn") == "lrn", "lrn_size": 5, "lrn_alpha": 1e-4, "lrn_beta": 0.75, "lrn_k": 2.0,
              "bn_position": options.get("bn_position", "before_pool"), "bn_momentum": 0.1, "bn_eps": 1e-5,
              "pool_kernel": 3 if options.get("overlapping_pool", True) else 2, "pool_stride": 2,
              "activation": options.get("activation", "relu"), "dropout": 0.5,
              "fc_width": [x.settings["outputs"] for x in desc.layers if x.kind == "linear"][:-1],
              "gap_head": any(x.kind == "global_avgpool" for x in desc.layers)}
    images, labels = rng.normal(0, 1, (3, 3, 32, 32)), np.array([0, 4, 2])
    want = refnet.forward_backward(params, config, images, labels, seed=3, step=2)
    got = described.forward_backward(desc, params, images, labels, seed=3, step=2)
    assert got[0] == want[0]
    np.testing.assert_array_equal(got[1], want[1])
    assert set(got[2]) == set(want[2])
    for k in want[2]:
        np.testing.assert_array_equal(got[2][k], want[2][k], err_msg=k)


@pytest.mark.parametrize("name", ["layers-18pct", "conv-local-11pct"])
def test_the_reference_of_the_cifar_networks_has_the_right_gradient(name):
    """The whole chain (cuda-convnet's ceil pooling, relu on a pool, within-map and cross-map normalization, local
    layers): the gradient along a random direction of every parameter equals the loss's central difference."""
    from alexnet_cuda.reference import described

    rng = np.random.default_rng(1)
    desc = builtin(name)
    side = desc.input_size
    params = _random_dense_params(desc, rng)
    images, labels = rng.normal(0, 1, (2, 3, side, side)), np.array([3, 7])
    _, _, grads = described.forward_backward(desc, params, images, labels)
    direction = {k: rng.normal(0, 1, v.shape) for k, v in params.items()}
    eps = 1e-6

    def loss_at(sign):
        moved = {k: v + sign * eps * direction[k] for k, v in params.items()}
        return described.forward_backward(desc, moved, images, labels, backward=False)[0]

    numeric = (loss_at(1) - loss_at(-1)) / (2 * eps)
    analytic = sum(float(np.sum(grads[k] * direction[k])) for k in params)
    # 1e-3: a max-pool window whose two largest inputs are closer than the step changes its argmax (a kink), which
    # moves the difference by about 1e-4 here; a wrong gradient anywhere moves it by far more.
    assert numeric == pytest.approx(analytic, rel=1e-3)
