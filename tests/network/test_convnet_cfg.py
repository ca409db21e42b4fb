"""The cuda-convnet layer file reader (alexnet_cuda/nets/convnet_cfg.py): the published files load as the layer lists
they describe, each refusal is one clear error naming the file, the layer and the field, and the conventions'
functions give cuda-convnet's numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alexnet_cuda.cli import ConfigError
from alexnet_cuda.nets.builtin import CONVNET_FILES
from alexnet_cuda.nets.convnet_cfg import (ConvnetLayer, conv_modules_x, convnet_update, crop_mean, multiview_crops,
                                           norm_alpha, output_shapes, pool_outputs_x, read_cuda_convnet,
                                           training_crop)
from alexnet_cuda.reference.maxpool import convnet_pool_outputs

PUBLISHED = CONVNET_FILES


def published(name: str) -> list[ConvnetLayer]:
    return read_cuda_convnet(PUBLISHED / f"layers-{name}.cfg", PUBLISHED / f"layer-params-{name}.cfg")


def by_name(layers: list[ConvnetLayer]) -> dict[str, ConvnetLayer]:
    return {x.name: x for x in layers}


FRAME = [("data", "data"), ("labels", "data")]
TAIL = [("fc10", "fc"), ("probs", "softmax"), ("logprob", "cost.logreg")]


@pytest.mark.parametrize("name, middle", [
    ("18pct", ["conv1 conv", "pool1 pool", "rnorm1 rnorm", "conv2 conv", "pool2 pool", "rnorm2 rnorm", "conv3 conv",
               "pool3 pool"]),
    ("19pct", ["conv1 conv", "pool1 pool", "conv2 conv", "pool2 pool", "conv3 conv", "pool3 pool"]),
    ("80sec", ["conv1 conv", "pool1 pool", "conv2 conv", "pool2 pool", "conv3 conv", "pool3 pool", "fc64 fc"]),
    ("conv-local-11pct", ["conv1 conv", "pool1 pool", "rnorm1 cmrnorm", "conv2 conv", "rnorm2 cmrnorm",
                          "pool2 pool", "local3 local", "local4 local"]),
    ("conv-local-13pct", ["conv1 conv", "pool1 pool", "conv2 conv", "pool2 pool", "local3 local", "local4 local"]),
])
def test_every_published_pair_loads_in_file_order(name, middle):
    layers = published(name)
    assert [(x.name, x.type) for x in layers] == FRAME + [tuple(m.split()) for m in middle] + TAIL
    d = by_name(layers)
    assert d["data"].settings == {"dataIdx": 0} and d["labels"].settings == {"dataIdx": 1}
    assert d["logprob"].inputs == ["labels", "probs"] and d["logprob"].settings == {"coeff": 1.0}
    assert d["probs"].inputs == ["fc10"]
    conv1 = d["conv1"].settings
    assert (conv1["channels"], conv1["padding"], conv1["stride"], conv1["filterSize"], conv1["initW"]) == \
        ([3], [2], [1], [5], [0.0001])
    assert conv1["sharedBiases"] is True and conv1["epsW"] == [0.001] and conv1["epsB"] == 0.002
    assert conv1["momW"] == [0.9] and conv1["momB"] == 0.9 and conv1["initB"] == 0.0
    assert d["fc10"].settings["outputs"] == 10


def test_18pct_settings():
    d = by_name(published("18pct"))
    assert d["conv1"].settings["filters"] == [32] and d["conv1"].settings["partialSum"] == 4
    assert d["conv1"].settings["neuron"] == "none" and d["conv1"].settings["wc"] == [0.004]
    # neuron= on a pool layer (cuda-convnet applies it after the pooling)
    assert d["pool1"].settings == {"pool": "max", "start": 0, "sizeX": 3, "stride": 2, "outputsX": 0,
                                   "channels": 32, "neuron": "relu", "dropout": 0.0}
    assert d["pool2"].settings["pool"] == "avg" and d["pool3"].settings["channels"] == 64
    assert d["rnorm1"].settings == {"channels": 32, "size": 3, "scale": 0.00005, "pow": 0.75, "blocked": False,
                                    "neuron": "none", "dropout": 0.0}
    assert d["conv3"].settings["filters"] == [64] and d["conv3"].settings["neuron"] == "relu"
    assert d["fc10"].settings["wc"] == [1.0] and d["fc10"].settings["initW"] == [0.01]
    assert output_shapes(published("18pct"), 32) == {
        "data": (3, 32, 32), "conv1": (32, 32, 32), "pool1": (32, 16, 16), "rnorm1": (32, 16, 16),
        "conv2": (32, 16, 16), "pool2": (32, 8, 8), "rnorm2": (32, 8, 8), "conv3": (64, 8, 8),
        "pool3": (64, 4, 4), "fc10": (10,), "probs": (10,)}


def test_conv_local_settings():
    d11, d13 = by_name(published("conv-local-11pct")), by_name(published("conv-local-13pct"))
    assert d11["rnorm1"].settings["size"] == 9 and d11["rnorm1"].settings["scale"] == 0.001
    assert d11["local3"].settings["filters"] == [64] and d13["local3"].settings["filters"] == [32]
    assert d11["local4"].settings["channels"] == [64] and d13["local4"].settings["channels"] == [32]
    assert d13["local3"].settings["padding"] == [1] and d13["local3"].settings["filterSize"] == [3]
    assert d13["local3"].settings["initW"] == [0.04] and d13["local3"].settings["wc"] == [0.004]
    assert d13["conv1"].settings["wc"] == [0.0] and d13["conv2"].settings["partialSum"] == 8
    assert d13["fc10"].settings["neuron"] == "none"  # neuron=ident
    assert d11["fc10"].settings["wc"] == [0.01] and d13["fc10"].settings["wc"] == [0.004]
    for name in ("conv-local-11pct", "conv-local-13pct"):
        shapes = output_shapes(published(name), 24)
        assert shapes["pool1"] == (64, 12, 12) and shapes["pool2"] == (64, 6, 6) and shapes["fc10"] == (10,)
        assert shapes["local4"] == (32, 6, 6)


# ---- refusals, on small files written on the fly ----------------------------------------------------------------

def base_net() -> tuple[dict, dict]:
    layers = {
        "data": {"type": "data", "dataIdx": "0"},
        "labels": {"type": "data", "dataIdx": "1"},
        "conv1": {"type": "conv", "inputs": "data", "channels": "3", "filters": "16", "padding": "2", "stride": "1",
                  "filterSize": "5", "initW": "0.0001", "partialSum": "4", "sharedBiases": "1", "neuron": "relu"},
        "pool1": {"type": "pool", "pool": "max", "inputs": "conv1", "start": "0", "sizeX": "3", "stride": "2",
                  "outputsX": "0", "channels": "16"},
        "rnorm1": {"type": "rnorm", "inputs": "pool1", "channels": "16", "size": "3"},
        "fc10": {"type": "fc", "outputs": "10", "inputs": "rnorm1", "initW": "0.01"},
        "probs": {"type": "softmax", "inputs": "fc10"},
        "logprob": {"type": "cost.logreg", "inputs": "labels,probs"},
    }
    weights = {"epsW": "0.001", "epsB": "0.002", "momW": "0.9", "momB": "0.9", "wc": "0.004"}
    params = {"conv1": dict(weights), "fc10": dict(weights), "rnorm1": {"scale": "0.00005", "pow": ".75"},
              "logprob": {"coeff": "1"}}
    return layers, params


def ini(sections: dict) -> str:
    return "".join(f"[{name}]\n" + "".join(f"{k}={v}\n" for k, v in fields.items()) + "\n"
                   for name, fields in sections.items())


def write(tmp_path: Path, layers: dict, params: dict) -> tuple[Path, Path]:
    lp, pp = tmp_path / "layers.cfg", tmp_path / "params.cfg"
    lp.write_text(ini(layers))
    pp.write_text(ini(params))
    return lp, pp


def test_the_base_net_loads(tmp_path):
    layers = read_cuda_convnet(*write(tmp_path, *base_net()))
    assert [x.name for x in layers] == ["data", "labels", "conv1", "pool1", "rnorm1", "fc10", "probs", "logprob"]
    assert output_shapes(layers, 32)["fc10"] == (10,)


# Each case: (edit of the base net's (layers, params) in place, the file named, the layer named, a fragment).
REFUSALS = {
    "cnorm": (lambda L, P: L["rnorm1"].update(type="cnorm"), "layers", "rnorm1", "cnorm"),
    "blocks (unknown type)": (lambda L, P: L["rnorm1"].update(type="blocks"), "layers", "rnorm1", "type 'blocks'"),
    "unknown type": (lambda L, P: L["pool1"].update(type="maxout"), "layers", "pool1", "unknown"),
    "another cost": (lambda L, P: L["logprob"].update(type="cost.sum2"), "layers", "logprob", "cost.logreg"),
    "third data layer": (lambda L, P: (L.update(extra={"type": "data", "dataIdx": "0"})), "layers", None,
                         "'extra' is a third"),
    "dataIdx 2": (lambda L, P: L["labels"].update(dataIdx="2"), "layers", "labels", "dataIdx"),
    "two image layers": (lambda L, P: L["labels"].update(dataIdx="0"), "layers", "labels", "dataIdx"),
    "sharedBiases=0": (lambda L, P: L["conv1"].update(sharedBiases="0"), "layers", "conv1", "sharedBiases"),
    "blocked=1 on cmrnorm": (lambda L, P: L["rnorm1"].update(type="cmrnorm", blocked="1"), "layers", "rnorm1",
                             "blocked"),
    "randSparse=1": (lambda L, P: L["conv1"].update(randSparse="1"), "layers", "conv1", "randSparse"),
    "filterChannels": (lambda L, P: L["conv1"].update(filterChannels="3"), "layers", "conv1", "filterChannels"),
    "initWFunc": (lambda L, P: L["fc10"].update(initWFunc="mod.f"), "layers", "fc10", "initWFunc"),
    "weightSource": (lambda L, P: L["fc10"].update(weightSource="conv1"), "layers", "fc10", "weightSource"),
    "crossMap": (lambda L, P: L["rnorm1"].update(crossMap="1"), "layers", "rnorm1", "cmrnorm"),
    "missing required field": (lambda L, P: L["conv1"].pop("filterSize"), "layers", "conv1", "'filterSize'"),
    "missing type": (lambda L, P: L["pool1"].pop("type"), "layers", "pool1", "'type'"),
    "missing inputs": (lambda L, P: L["pool1"].pop("inputs"), "layers", "pool1", "'inputs'"),
    "missing input": (lambda L, P: L["pool1"].update(inputs="conv9"), "layers", "pool1", "'conv9'"),
    "input defined later": (lambda L, P: L["pool1"].update(inputs="fc10"), "layers", "pool1", "comes later"),
    "several inputs": (lambda L, P: L["fc10"].update(inputs="rnorm1,pool1"), "layers", "fc10", "several inputs"),
    "per-input list too long": (lambda L, P: L["conv1"].update(initW="0.1,0.1"), "layers", "conv1",
                                "'initW' gives 2 values for 1 input"),
    "not an integer": (lambda L, P: L["conv1"].update(filters="sixteen"), "layers", "conv1", "'filters'"),
    "number with an underscore": (lambda L, P: L["fc10"].update(outputs="1_0"), "layers", "fc10", "'outputs'"),
    "negative padding": (lambda L, P: L["conv1"].update(padding="-2"), "layers", "conv1", "'padding'"),
    "unknown field": (lambda L, P: L["pool1"].update(poolSize="3"), "layers", "pool1", "'poolSize'"),
    "params field in the layers file": (lambda L, P: L["rnorm1"].update(scale="0.001"), "layers", "rnorm1",
                                        "belongs in the params file"),
    "layers field in the params file": (lambda L, P: P["conv1"].update(filters="16"), "params", "conv1",
                                        "belongs in the layers file"),
    "logistic neuron": (lambda L, P: L["conv1"].update(neuron="logistic"), "layers", "conv1", "logistic"),
    "scaled tanh": (lambda L, P: L["conv1"].update(neuron="tanh[1.7159,0.6666]"), "layers", "conv1", "tanh[1,1]"),
    "pool kind": (lambda L, P: L["pool1"].update(pool="l2"), "layers", "pool1", "max or avg"),
    "pool stride > sizeX": (lambda L, P: L["pool1"].update(stride="4"), "layers", "pool1", "'stride'"),
    "cost as an input": (lambda L, P: L.update(after={"type": "softmax", "inputs": "logprob"}), "layers", "after",
                         "is the cost"),
    "unused layer": (lambda L, P: L.update(spare={"type": "pool", "pool": "max", "inputs": "conv1", "sizeX": "3",
                                                  "stride": "2", "channels": "16"}), "layers", "spare", "unused"),
    "labels into a layer": (lambda L, P: L["probs"].update(inputs="labels"), "layers", "probs", "labels"),
    "cost inputs swapped": (lambda L, P: L["logprob"].update(inputs="probs,labels"), "layers", "logprob",
                            "first input"),
    "cost not on a softmax": (lambda L, P: L["logprob"].update(inputs="labels,fc10"), "layers", "logprob",
                              "softmax"),
    "params section naming no layer": (lambda L, P: P.update(conv9={"epsW": "0.1"}), "params", "conv9",
                                       "names no layer"),
    "DEFAULT section": (lambda L, P: P.update(DEFAULT={"epsW": "0.1"}), "params", "DEFAULT", "names no layer"),
    "no params for a weight layer": (lambda L, P: P.pop("conv1"), "params", "conv1", "needs a section [conv1]"),
    "no params for a norm layer": (lambda L, P: P.pop("rnorm1"), "params", "rnorm1", "scale, pow"),
    "no coeff": (lambda L, P: P.pop("logprob"), "params", "logprob", "coeff"),
    "missing epsB": (lambda L, P: P["fc10"].pop("epsB"), "params", "fc10", "'epsB' is missing"),
    "negative epsW": (lambda L, P: P["fc10"].update(epsW="-0.1"), "params", "fc10", "'epsW'"),
    "dropout 1": (lambda L, P: P["fc10"].update(dropout="1"), "params", "fc10", "'dropout'"),
    "same field twice": (lambda L, P: P["fc10"].update(EPSB="0.1"), "params", "fc10", "same field"),
    "unknown params field": (lambda L, P: P["fc10"].update(lr="0.1"), "params", "fc10", "'lr'"),
    "params for a softmax": (lambda L, P: P.update(probs={"epsW": "0.1"}), "params", "probs", "'epsW'"),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_each_refusal_is_one_clear_error(tmp_path, case):
    fn, which, layer, fragment = REFUSALS[case]
    layers, params = base_net()
    fn(layers, params)
    lp, pp = write(tmp_path, layers, params)
    with pytest.raises(ConfigError) as info:
        read_cuda_convnet(lp, pp)
    msg = str(info.value)
    assert str(lp if which == "layers" else pp) in msg, msg
    if layer is not None:
        assert f"layer '{layer}'" in msg, msg
    assert fragment in msg, msg
    assert isinstance(info.value, ValueError)


def test_unreadable_files_are_named(tmp_path):
    lp, pp = write(tmp_path, *base_net())
    with pytest.raises(ConfigError, match="nothing.cfg: does not exist"):
        read_cuda_convnet(tmp_path / "nothing.cfg", pp)
    lp.write_text(lp.read_text() + "[conv1]\ntype=conv\n")
    with pytest.raises(ConfigError, match="cannot be read as an INI file"):
        read_cuda_convnet(lp, pp)


def test_accepted_spellings(tmp_path):
    """Option names are case-insensitive (as ConfigParser makes them in cuda-convnet); bools take true/false;
    tanh[1,1] is the project's tanh; ident is no activation; partialSum and dropout are accepted."""
    layers, params = base_net()
    layers["conv1"].update(neuron="tanh[1.0, 1]", sharedBiases="true", partialSum="0")
    layers["conv1"]["Type"] = layers["conv1"].pop("type")
    del layers["conv1"]["filterSize"]
    layers["conv1"]["FILTERSIZE"] = "5"
    layers["fc10"]["neuron"] = "ident"
    params["fc10"]["dropout"] = "0.5"
    params["fc10"]["EPSW"] = params["fc10"].pop("epsW")
    d = by_name(read_cuda_convnet(*write(tmp_path, layers, params)))
    assert d["conv1"].settings["neuron"] == "tanh" and d["conv1"].settings["filterSize"] == [5]
    assert d["fc10"].settings["neuron"] == "none" and d["fc10"].settings["dropout"] == 0.5
    assert d["fc10"].settings["epsW"] == [0.001]


def test_output_shapes_refuse_channels_that_do_not_match(tmp_path):
    layers, params = base_net()
    layers["pool1"]["channels"] = "32"
    with pytest.raises(ValueError, match="layer 'pool1': field 'channels' is 32, but its input 'conv1' gives 16"):
        output_shapes(read_cuda_convnet(*write(tmp_path, layers, params)), 32)
    layers, params = base_net()
    layers["conv1"]["filterSize"] = "9"
    layers["conv1"]["padding"] = "0"
    with pytest.raises(ValueError, match="layer 'conv1': filterSize 9 is larger than the padded image"):
        output_shapes(read_cuda_convnet(*write(tmp_path, layers, params)), 8)
    layers, params = base_net()
    layers["rnorm1"]["size"] = "9"
    with pytest.raises(ValueError, match="layer 'rnorm1': field 'size' \\(9\\) is larger than the image \\(8\\)"):
        output_shapes(read_cuda_convnet(*write(tmp_path, layers, params)), 16)


# ---- the conventions' functions ---------------------------------------------------------------------------------

def test_conv_modules_x_uses_ceil_and_the_files_padding():
    assert conv_modules_x(32, 5, 2, 1) == 32  # 18pct conv1
    assert conv_modules_x(6, 3, 1, 1) == 6    # conv-local local3
    assert conv_modules_x(224, 11, 0, 4) == 1 + 54  # ceil(213 / 4) = 54 (floor-based rules give 54 too here)
    assert conv_modules_x(10, 3, 0, 4) == 3   # ceil(7 / 4) = 2, so 3 positions; floor would give 2
    with pytest.raises(ValueError):
        conv_modules_x(4, 9, 2, 1)


@pytest.mark.parametrize("size, kernel, stride, start", [(32, 3, 2, 0), (16, 3, 2, 0), (24, 3, 2, 0), (12, 3, 2, 0),
                                                         (8, 3, 2, 0), (13, 4, 4, -2), (55, 3, 2, 0)])
def test_pool_outputs_x_matches_the_reference(size, kernel, stride, start):
    assert pool_outputs_x(size, kernel, stride, start) == convnet_pool_outputs(size, kernel, stride, start)
    assert pool_outputs_x(size, kernel, stride, start, outputs_x=5) == 5


def test_pool_outputs_x_of_the_published_nets():
    assert [pool_outputs_x(s, 3, 2) for s in (32, 16, 8)] == [16, 8, 4]  # 18pct
    assert [pool_outputs_x(s, 3, 2) for s in (24, 12)] == [12, 6]        # conv-local at 24x24


def test_norm_alpha():
    assert norm_alpha("rnorm", 0.00005, 3) == pytest.approx(0.00005 / 9)
    assert norm_alpha("cmrnorm", 0.001, 9) == pytest.approx(0.001 / 9)
    with pytest.raises(ValueError):
        norm_alpha("cnorm", 1.0, 3)


def test_convnet_update():
    w, inc = np.array([1.0, -2.0]), np.array([0.5, 0.0])
    g = np.array([4.0, 8.0])  # the batch's summed gradient
    w2, inc2 = convnet_update(w, inc, g, batch=128, eps=0.001, mom=0.9, wc=0.004)
    expect_inc = 0.9 * inc - 0.001 / 128 * g - 0.004 * 0.001 * w
    np.testing.assert_allclose(inc2, expect_inc)
    np.testing.assert_allclose(w2, w + expect_inc)
    assert convnet_update(1.0, 0.25, 3.0, batch=2, eps=0.0, mom=0.9) == (1.0, 0.25)  # eps 0: frozen
    assert convnet_update(1.0, 0.0, 2.0, batch=2, eps=0.5, mom=0.9) == (0.5, -0.5)   # biases: no decay


def test_crops():
    assert training_crop(32, 4) == (0, 8)
    views = multiview_crops(32, 4)
    assert views[:5] == [(0, 0, False), (0, 8, False), (4, 4, False), (8, 0, False), (8, 8, False)]
    assert views[5:] == [(y, x, True) for y, x, _ in views[:5]]
    mean = np.arange(3 * 32 * 32, dtype=np.float64).reshape(3, 32, 32)
    np.testing.assert_array_equal(crop_mean(mean, 4), mean[:, 4:28, 4:28])
    with pytest.raises(ValueError):
        training_crop(8, 4)
