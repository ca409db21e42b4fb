"""A checked network description (:mod:`alexnet_cuda.nets`) as the C++ network's ``_C.NetSpec``: each layer's
settings resolved (defaults filled in, pooling's output count computed by its rule, ``outputs = classes`` made a
number, the input named by its index), so the C++ side builds exactly what :func:`~alexnet_cuda.nets.description.
layer_table` describes. Also the ``AlexNet.config`` dictionary of an AlexNet-family description."""

from __future__ import annotations

from typing import Any

from . import _C
from .nets.description import DATA, NetDescription, layer_table, resolved_settings


def native_spec(desc: NetDescription, *, seed: int, optimizer: str) -> Any:
    """``_C.NetSpec`` of ``desc``; raises DescriptionError (a ValueError naming the layer) first if it cannot be
    built."""
    rows = layer_table(desc)
    side = {r["name"]: r["output"] for r in rows if r["tower"] == 0}
    index = {DATA: -1}
    spec = _C.NetSpec()
    spec.name, spec.input_size, spec.in_channels = desc.name, int(desc.input_size), int(desc.input_channels)
    spec.classes, spec.towers, spec.seed, spec.optimizer = int(desc.classes), int(desc.towers), int(seed), optimizer
    layers = []
    previous = DATA
    for i, layer in enumerate(desc.layers):
        s = resolved_settings(layer)
        d = _C.LayerDef()
        d.name, d.kind, d.module = layer.name, layer.kind, layer.module or ""
        d.input = index[layer.input or previous]
        d.sees_all = (layer.sees or ("all" if layer.kind == "linear" else "own")) == "all"
        if layer.kind in ("conv", "local"):
            d.outputs, d.size, d.stride, d.pad = s["filters"], s["size"], s["stride"], s["padding"]
        elif layer.kind == "linear":
            d.outputs = desc.classes if s["outputs"] == "classes" else int(s["outputs"])
        elif layer.kind in ("maxpool", "avgpool"):
            d.size, d.stride, d.start, d.outputs = s["size"], s["stride"], s["start"], side[layer.name][1]
        elif layer.kind in ("lrn", "spatial_lrn"):
            d.lrn = (s["size"], s["alpha"], s["beta"], s["k"])
        elif layer.kind == "batchnorm":
            d.bn_momentum, d.bn_eps = s["momentum"], s["eps"]
        elif layer.kind == "dropout":
            d.dropout = s["p"]
        if "activation" in s:
            d.activation = s["activation"]
        if "bias" in s:
            d.bias, d.init_std, d.init_bias = s["bias"], s["init_std"], s["init_bias"]
        layers.append(d)
        index[layer.name] = i
        previous = layer.name
    spec.layers = layers
    return spec


def learning_settings(desc: NetDescription) -> dict[str, dict[str, float | None]]:
    """Each trained parameter's own learning settings from its layer's (cuda-convnet's epsW/epsB as lr scales,
    momW/momB, wc), for ``AlexNet.set_learning``; parameters of layers that set none are left out."""
    out = {}
    towers = range(desc.towers)
    for layer in desc.layers:
        s = resolved_settings(layer)
        if "lr_weight" not in s or all(s[k] is None for k in ("lr_weight", "lr_bias", "momentum_weight",
                                                               "momentum_bias", "weight_decay")):
            continue
        prefix = layer.module or layer.name
        for t in towers:
            out[f"{prefix}.tower{t}.weight"] = {"lr_scale": 1.0 if s["lr_weight"] is None else s["lr_weight"],
                                               "momentum": s["momentum_weight"], "weight_decay": s["weight_decay"]}
            if s["bias"]:
                out[f"{prefix}.tower{t}.bias"] = {"lr_scale": 1.0 if s["lr_bias"] is None else s["lr_bias"],
                                                 "momentum": s["momentum_bias"], "weight_decay": None}
    return out


def alexnet_config(desc: NetDescription, options: dict[str, Any]) -> dict[str, Any]:
    """``AlexNet.config`` of an AlexNet-family description built from ``options`` (the constructor's, checked):
    the widths, kernels, spatial sizes (conv_out, block_out, fc6_inputs) and the variant options."""
    by_name = {layer.name: resolved_settings(layer) for layer in desc.layers}
    rows = {r["name"]: r for r in layer_table(desc) if r["tower"] == 0}
    convs = [f"conv{i}" for i in range(1, 6)]
    block_out = []
    for i, name in enumerate(convs):
        pool = rows.get(f"pool{i + 1}")
        block_out.append(pool["output"][1] if pool else rows[name]["output"][1])
    first_linear = next(layer.name for layer in desc.layers if layer.kind == "linear")
    pool = next(by_name[layer.name] for layer in desc.layers if layer.kind == "maxpool")
    lrn = next((by_name[layer.name] for layer in desc.layers if layer.kind == "lrn"), {"size": 5, "alpha": 1e-4,
                                                                                       "beta": 0.75, "k": 2.0})
    head = options["head"]
    return {
        "arch": desc.name, "input_size": desc.input_size, "num_classes": desc.classes, "towers": desc.towers,
        "conv_channels": [by_name[c]["filters"] for c in convs], "conv_kernel": [by_name[c]["size"] for c in convs],
        "conv_stride": [by_name[c]["stride"] for c in convs], "conv_pad": [by_name[c]["padding"] for c in convs],
        "fc_width": [] if head == "gap" else [int(layer.settings["outputs"]) for layer in desc.layers
                                              if layer.kind == "linear" and layer.settings["outputs"] != "classes"],
        "gap_head": head == "gap", "norm": options["norm"],
        "lrn": options["norm"] == "lrn", "bn_position": options["bn_position"], "bn_momentum": 0.1, "bn_eps": 1e-5,
        "lrn_size": lrn["size"], "lrn_alpha": lrn["alpha"], "lrn_beta": lrn["beta"], "lrn_k": lrn["k"],
        "pool_kernel": pool["size"], "pool_stride": pool["stride"], "activation": options["activation"],
        "dropout": options["dropout"], "conv_out": [rows[c]["output"][1] for c in convs], "block_out": block_out,
        "fc6_inputs": rows[first_linear]["input"][0],  # every tower's conv5 block (or pooled) outputs
    }
