"""cuda-convnet's layer files as this project's network description (docs/cuda_convnet.md says why each rule).

:func:`read_convnet` reads a ``layers-*.cfg`` + ``layer-params-*.cfg`` pair (``convnet_cfg`` checks them) and
translates each layer into a description layer, one to one:

- ``conv`` / ``local`` -> ``conv`` / ``local`` (``filterSize`` -> size, ``initW`` -> init_std, ``initB`` ->
  init_bias, ``neuron`` -> activation); ``fc`` -> ``linear``;
- ``pool`` -> ``maxpool`` / ``avgpool`` with cuda-convnet's geometry (``start``, ``sizeX``, ``stride``, and
  ``outputsX``, 0 meaning its ceil rule); a ``neuron`` on a pool layer acts after the pooling;
- ``rnorm`` -> ``spatial_lrn`` and ``cmrnorm`` -> ``lrn``, both with k = 1 and alpha = ``scale`` (the ops divide by
  size^2 and size as cuda-convnet's parser does);
- the learning settings ``epsW``, ``epsB``, ``momW``, ``momB``, ``wc`` -> ``lr_weight``, ``lr_bias``,
  ``momentum_weight``, ``momentum_bias``, ``weight_decay``; a ``dropout`` on a layer -> a dropout layer after it;
- the frame (the two data layers, ``softmax``, ``cost.logreg``) is the network's input and its loss.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..cli import ConfigError
from .convnet_cfg import ConvnetLayer, output_shapes, read_cuda_convnet
from .description import Layer, NetDescription, layer_table

FRAME = ("data", "softmax", "cost.logreg")


def _weighted(layer: ConvnetLayer) -> dict:
    s = layer.settings
    return {"activation": s["neuron"], "init_std": s["initW"][0], "init_bias": s["initB"],
            "lr_weight": s["epsW"][0], "lr_bias": s["epsB"], "momentum_weight": s["momW"][0],
            "momentum_bias": s["momB"], "weight_decay": s["wc"][0]}


def _translate(layer: ConvnetLayer, source: str) -> Layer:
    s, t = layer.settings, layer.type
    if t in ("conv", "local"):
        if s["groups"][0] != 1:
            raise ConfigError(f"{source}: layer '{layer.name}', groups: {s['groups'][0]} groups are not supported "
                              f"(one group; the project's towers are its grouping)")
        return Layer(layer.name, t, {"filters": s["filters"][0], "size": s["filterSize"][0], "stride": s["stride"][0],
                                     "padding": s["padding"][0], **_weighted(layer)})
    if t == "fc":
        return Layer(layer.name, "linear", {"outputs": s["outputs"], **_weighted(layer)})
    if t == "pool":
        return Layer(layer.name, "maxpool" if s["pool"] == "max" else "avgpool",
                     {"size": s["sizeX"], "stride": s["stride"], "start": s["start"],
                      "outputs": s["outputsX"] if s["outputsX"] > 0 else "ceil", "activation": s["neuron"]})
    if t in ("rnorm", "cmrnorm"):
        if s["neuron"] != "none":
            raise ConfigError(f"{source}: layer '{layer.name}', neuron: a neuron on a normalization layer is not "
                              f"supported")
        return Layer(layer.name, "spatial_lrn" if t == "rnorm" else "lrn",
                     {"size": s["size"], "alpha": s["scale"], "beta": s["pow"], "k": 1.0})
    raise ConfigError(f"{source}: layer '{layer.name}', type: a {t} layer is not translated (neuron layers: put "
                      f"neuron= on the layer before)")


def translate(layers: list[ConvnetLayer], name: str, input_size: int, source: str = "<cuda-convnet>"
              ) -> NetDescription:
    """The description of a read layer list, for ``input_size`` x ``input_size`` inputs (the data provider's crops:
    cuda-convnet's files do not say it)."""
    out: list[Layer] = []
    channels = 3
    for layer in layers:
        if layer.type in FRAME:
            continue
        if not out and layer.type in ("conv", "local"):
            channels = layer.settings["channels"][0]
        out.append(_translate(layer, source))
        if layer.settings.get("dropout", 0.0) > 0:
            out.append(Layer(f"{layer.name}_dropout", "dropout", {"p": layer.settings["dropout"]}))
    desc = _described(out, name, input_size, channels, source)
    _check_sizes(layers, desc, source)
    return desc


def _described(out: list[Layer], name: str, input_size: int, channels: int, source: str) -> NetDescription:
    last = [x for x in out if x.kind == "linear"]
    if not last:
        raise ConfigError(f"{source}: no fc layer before the softmax: the network has no class scores")
    classes = int(last[-1].settings["outputs"])
    last[-1].settings["outputs"] = "classes"
    return NetDescription(name, out, input_size=input_size, input_channels=channels, towers=1, classes=classes)


def _check_sizes(layers: list[ConvnetLayer], desc: NetDescription, source: str) -> None:
    """cuda-convnet's sizes (convnet_cfg.output_shapes) against the description's: a strided convolution whose
    last window cuda-convnet's ceil rule places past the padding has no counterpart here."""
    try:
        theirs = output_shapes(layers, desc.input_size, desc.input_channels)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc} (at {desc.input_size}x{desc.input_size} inputs)") from None
    for row in layer_table(desc):
        want = theirs.get(row["name"])
        if want is not None and tuple(row["output"]) != tuple(want):
            raise ConfigError(f"{source}: layer '{row['name']}': cuda-convnet gives it {want} outputs at "
                              f"{desc.input_size}x{desc.input_size} inputs, this project {tuple(row['output'])}: its "
                              f"output-size rule (rounding up) has no counterpart here")


def read_convnet(layers_path: str | os.PathLike, params_path: str | os.PathLike, input_size: int = 32,
                 name: str | None = None) -> NetDescription:
    layers_path = Path(layers_path)
    stem = layers_path.stem.removeprefix("layers-")
    return translate(read_cuda_convnet(layers_path, params_path), name or stem, input_size, str(layers_path))
