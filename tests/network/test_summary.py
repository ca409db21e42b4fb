"""The layer summary (alexnet_cuda.summary, AlexNet.summary): it reads the C++ layer table the network's parameters
are created from, so its totals must equal num_parameters() and its weight shapes the state_dict's, for every
architecture and ablation."""

from __future__ import annotations

import json

import pytest
from subprocesses import run_module

from alexnet_cuda import AlexNet
from alexnet_cuda.nets.table import format_table, totals
from alexnet_cuda.summary import describe

# Small widths keep the networks quick to build; the full nets are checked by their totals below.
VARIANTS = [
    dict(num_classes=10, arch="alexnet-small"),
    dict(num_classes=10, arch="alexnet-small", towers=1),
    dict(num_classes=7, arch="alexnet-small", lrn=False, dropout=0.0),
    dict(num_classes=5, arch="alexnet-small", input_size=64, overlapping_pool=False, activation="tanh"),
    dict(num_classes=11, arch="alexnet", widths={"conv": [8, 8, 8, 8, 8], "fc": [16, 16]}),
    dict(num_classes=3, arch="alexnet", towers=1, widths={"conv": [4, 6, 8, 8, 10], "fc": [12, 12]}),
    # the variants of issue 10: BatchNorm (conv biases dropped where BN follows the conv; running statistics as
    # buffers), the GAP head, other hidden widths
    dict(num_classes=7, arch="alexnet-small", norm="batchnorm", head="gap"),
    dict(num_classes=7, arch="alexnet-small", norm="batchnorm", bn_position="after_pool", head=[64, 32, 16]),
]


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()))
def test_summary_matches_the_built_network(options):
    net = AlexNet(devices="cpu", **options)
    layers = describe(**options)
    assert layers == net.layers()
    assert totals(layers)["parameters"] == net.num_parameters()
    shapes = {n: a.shape for n, a in net.state_dict().items()}
    from_table = {}
    for x in layers:
        if x["module"]:
            prefix = f"{x['module']}.tower{x['tower']}"
            from_table[f"{prefix}.weight"] = tuple(x["weight"])
            if x["bias"]:
                from_table[f"{prefix}.bias"] = (x["bias"],)
            if x["buffers"]:
                from_table[f"{prefix}.running_mean"] = from_table[f"{prefix}.running_var"] = (x["buffers"],)
    assert from_table == shapes
    text = net.summary()
    assert f"{net.num_parameters():,}" in text and "conv1" in text and layers[-1]["name"] in text


def test_the_papers_net_totals():
    # Counted by hand from Figure 2: conv1 105,415,200 + conv2 223,948,800 + conv3 149,520,384 + conv4 112,140,288
    # + conv5 74,760,192 + fc6 37,748,736 + fc7 16,777,216 + fc8 4,096,000 multiply-adds.
    assert totals(describe()) == {"parameters": 60_965_224, "mult_adds": 724_406_816}
    assert totals(describe(towers=1))["parameters"] == 59_798_312  # the footnote's one-GPU net (model.py)
    no_lrn = describe(lrn=False)
    assert not any(x["kind"] == "lrn" for x in no_lrn) and totals(no_lrn) == totals(describe())
    assert not any(x["kind"] == "dropout" for x in describe(dropout=0.0))


@pytest.mark.parametrize("towers, parameters", [(2, 60_965_224), (1, 59_798_312)])
def test_full_alexnet_built_equals_its_summary(towers, parameters):
    net = AlexNet(devices="cpu", num_classes=1000, towers=towers)
    assert totals(net.layers())["parameters"] == net.num_parameters() == parameters


def test_rejected_options_raise_value_error():
    with pytest.raises(ValueError, match="input_size"):
        describe(arch="alexnet", input_size=224)


def test_format_table_rows_and_totals():
    text = format_table(describe(num_classes=10, arch="alexnet-small"))
    lines = text.splitlines()
    assert sum(line.startswith("conv1 ") for line in lines) == 2  # one row per tower
    assert any(line.startswith("total") for line in lines)


def test_command_line(tmp_path):
    r = run_module("alexnet_cuda.summary", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--towers" in r.stdout and "multiply-adds" in r.stdout.lower()
    r = run_module("alexnet_cuda.summary", cwd=tmp_path)
    assert r.returncode == 0 and "60,965,224" in r.stdout and "724,406,816" in r.stdout
    r = run_module("alexnet_cuda.summary", "--arch", "alexnet-small", "--num-classes", "10", "--no-lrn", "--json",
                   cwd=tmp_path)
    assert r.returncode == 0
    assert json.loads(r.stdout)["totals"] == totals(describe(num_classes=10, arch="alexnet-small", lrn=False))
    r = run_module("alexnet_cuda.summary", "--norm", "batchnorm", "--head", "gap", "--json", cwd=tmp_path)
    assert r.returncode == 0
    assert json.loads(r.stdout)["totals"] == totals(describe(norm="batchnorm", head="gap"))
    r = run_module("alexnet_cuda.summary", "--head", "gap,1", cwd=tmp_path)
    assert r.returncode == 2 and "head" in r.stderr and "Traceback" not in r.stderr
    r = run_module("alexnet_cuda.summary", "--input-size", "224", cwd=tmp_path)
    assert r.returncode == 2 and "error" in r.stderr and "Traceback" not in r.stderr
