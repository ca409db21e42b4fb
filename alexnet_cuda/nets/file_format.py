"""The project's network file: INI, read with the standard library's configparser (as cuda-convnet's layers.cfg).

A ``[net]`` section with the input and the towers, then one section per layer, in forward order; the section name is
the layer's name. docs/network_format.md documents every kind and setting::

    [net]
    input = 3x32x32        ; channels x side x side of the crops the network takes
    towers = 1             ; 1 or 2 (the paper's Figure 2)
    classes = 10           ; what outputs = classes means

    [conv1]
    type = conv
    filters = 32
    size = 5
    padding = 2
    activation = relu

    [pool1]
    type = maxpool
    size = 3
    stride = 2

    [fc10]
    type = linear
    outputs = classes
    activation = none
"""

from __future__ import annotations

import configparser
import os
import re
from pathlib import Path

from .description import DescriptionError, Layer, NetDescription

NET = "net"
LAYER_KEYS = ("type", "input", "sees", "module")  # the rest of a layer's keys are its settings


def parse_net(text: str, source: str = "<text>") -> NetDescription:
    """A description from the text of a network file; DescriptionError names ``source``, the layer and the field."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None, default_section="\0")
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise DescriptionError(f"{source}: not a network file ({exc.message.splitlines()[0]})") from None
    if NET not in parser:
        raise DescriptionError(f"{source}: no [{NET}] section (the input, towers and classes)")
    net = parser[NET]
    unknown = sorted(set(net) - {"name", "input", "towers", "classes"})
    if unknown:
        raise DescriptionError(f"{source}: [{NET}] {unknown[0]}: not a setting of the net (name, input, towers, "
                               f"classes)")
    match = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*", net.get("input", "3x32x32"))
    if not match or match.group(2) != match.group(3):
        raise DescriptionError(f"{source}: [{NET}] input: expected CHANNELSxSIDExSIDE (square), got "
                               f"'{net.get('input')}'")
    layers = []
    for name in parser.sections():
        if name == NET:
            continue
        section = dict(parser[name])
        if "type" not in section:
            raise DescriptionError(f"{source}: layer '{name}', type: missing (required)")
        settings = {k: v for k, v in section.items() if k not in LAYER_KEYS}
        layers.append(Layer(name, section["type"], settings, input=section.get("input"), sees=section.get("sees"),
                            module=section.get("module")))
    try:
        return NetDescription(net.get("name", Path(source).stem), layers, input_size=int(match.group(2)),
                              input_channels=int(match.group(1)), towers=int(net.get("towers", "1")),
                              classes=int(net.get("classes", "10")))
    except ValueError as exc:
        raise DescriptionError(f"{source}: [{NET}] towers and classes must be integers ({exc})") from None


def read_net(path: str | os.PathLike) -> NetDescription:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise DescriptionError(f"--net {path}: cannot be read ({exc.strerror or exc})") from None
    return parse_net(text, str(path))


def format_net(desc: NetDescription) -> str:
    """The network file of ``desc`` (parse_net of it gives ``desc`` back)."""
    lines = [f"[{NET}]", f"name = {desc.name}", f"input = {desc.input_channels}x{desc.input_size}x{desc.input_size}",
             f"towers = {desc.towers}", f"classes = {desc.classes}"]
    for layer in desc.layers:
        lines += ["", f"[{layer.name}]", f"type = {layer.kind}"]
        if layer.input is not None:
            lines.append(f"input = {layer.input}")
        if layer.sees is not None:
            lines.append(f"sees = {layer.sees}")
        if layer.module is not None:
            lines.append(f"module = {layer.module}")
        lines += [f"{k} = {_text(v)}" for k, v in layer.settings.items()]
    return "\n".join(lines) + "\n"


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    return str(value)
