"""A reader of cuda-convnet's layer definition files (``layers-*.cfg`` + ``layer-params-*.cfg``): parsing and
validation only, no network building (issue 19).

cuda-convnet (Alex Krizhevsky's, read at github.com/dnouri/cuda-convnet, commit e4ac0c1) describes a network as two
INI files read with Python's ConfigParser (``layer.py``, ``LayerParser.parse_layers``): in the layers file each
section is one layer, in file order, with ``type=`` and ``inputs=`` (earlier layers' names, comma-separated); the
params file has one section per layer that needs learning settings (``epsW``...) or normalization constants
(``scale``, ``pow``), re-read on every resume so a schedule is an edit of that file. Option names are
case-insensitive there (ConfigParser lowercases them); this reader matches them the same way and reports them in
cuda-convnet's spelling. Where a field takes one value per input (``initW=0.0001,0.0001`` for two inputs), the
reader keeps a list.

What the reader accepts is what this project builds: two ``data`` layers (images ``dataIdx=0``, labels
``dataIdx=1``), single-input ``conv``, ``local``, ``fc``, ``pool`` (max, avg), ``rnorm``, ``cmrnorm``, ``neuron``,
one ``softmax`` and one ``cost.logreg`` taking (labels, softmax). Everything else is one :class:`ConfigError`
naming the file, the layer and the field. Unlike cuda-convnet, which ignores options it does not read, a field this
reader does not know is refused too, so a misspelling or a field put in the wrong file cannot pass silently. The
exact lists are ``_FIELDS``, ``_REFUSED_TYPES``, ``_REFUSED_FIELDS`` and ``NEURONS`` below. ``partialSum`` is
accepted and has no effect: in cuda-convnet it only says how many output positions the conv weight-gradient kernel
sums per partial result (src/cudaconv2/weight_acts.cu: the partial sums, numModules/partialSum of them, are added
afterwards), a speed/memory trade-off, not what is computed.

The conventions the translation needs are plain functions here, each citing the cuda-convnet source it follows:
:func:`conv_modules_x`, :func:`pool_outputs_x`, :func:`norm_alpha`, :func:`convnet_update` (the per-layer update),
:func:`crop_mean` (the CIFAR-10 input), :func:`training_crop` and :func:`multiview_crops`; :func:`output_shapes`
applies the size rules to a read network.
"""

from __future__ import annotations

import configparser
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cli import ConfigError

REQUIRED = object()  # a field's default when the file must give it

# cuda-convnet's layer types (layer.py, layer_parsers) that this project does not build, with why.
_REFUSED_TYPES = {
    "cnorm": "contrast normalization (cnorm) is not a layer of this project; use rnorm or cmrnorm",
    "cost.sum2": "only the cost.logreg cost is supported (the frame is softmax + cost.logreg)",
    "eltsum": "element-wise sum layers are not supported", "eltmax": "element-wise max layers are not supported",
    "nailbed": "bed-of-nails layers are not supported", "blur": "Gaussian blur layers are not supported",
    "resize": "resize layers are not supported", "rgb2yuv": "colour transform layers are not supported",
    "rgb2lab": "colour transform layers are not supported", "rscale": "random scale layers are not supported",
}
# Fields cuda-convnet reads that this project cannot honour, with why.
_REFUSED_FIELDS = {
    "initWFunc": "weight initialization by a Python function is not supported; give initW",
    "initBFunc": "bias initialization by a Python function is not supported; give initB",
    "initCFunc": "connectivity from a Python function goes with randSparse, which is not supported",
    "weightSource": "weight sharing between layers is not supported",
    "filterChannels": "filterChannels goes with randSparse=1 (random sparse groups), which is not supported",
    "crossMap": "this cuda-convnet has no crossMap option: normalization across maps is type=cmrnorm",
}


@dataclass(frozen=True)
class _Field:
    kind: type            # int, float, bool or str
    default: Any          # REQUIRED, or the value cuda-convnet uses when the field is absent
    per_input: bool = False
    params: bool = False  # read from the params file (else from the layers file)
    lo: float | None = None  # smallest value allowed


def _weight_layer(**fields: _Field) -> dict[str, _Field]:
    """conv/local/fc: their settings, initW/initB and the learning settings of WeightLayerParser.add_params."""
    out = dict(fields)
    out.update(initB=_Field(float, 0.0), neuron=_Field(str, ""),
               epsW=_Field(float, REQUIRED, True, True, 0), epsB=_Field(float, REQUIRED, False, True, 0),
               momW=_Field(float, REQUIRED, True, True, 0), momB=_Field(float, REQUIRED, False, True, 0),
               wc=_Field(float, REQUIRED, True, True, 0), dropout=_Field(float, 0.0, False, True, 0))
    return out


_LOCAL = dict(channels=_Field(int, REQUIRED, True, lo=1), filters=_Field(int, REQUIRED, True, lo=1),
              filterSize=_Field(int, REQUIRED, True, lo=1), padding=_Field(int, 0, True, lo=0),
              stride=_Field(int, 1, True, lo=1), groups=_Field(int, 1, True, lo=1),
              randSparse=_Field(bool, False, True), initW=_Field(float, REQUIRED, True, lo=0))
_NORM = dict(channels=_Field(int, REQUIRED, lo=1), size=_Field(int, REQUIRED, lo=1), blocked=_Field(bool, False),
             neuron=_Field(str, ""), scale=_Field(float, REQUIRED, params=True, lo=0),
             pow=_Field(float, REQUIRED, params=True), dropout=_Field(float, 0.0, params=True, lo=0))

# Every supported type's fields (layer.py: the *LayerParser.parse and add_params of each type).
_FIELDS: dict[str, dict[str, _Field]] = {
    "data": dict(dataIdx=_Field(int, REQUIRED)),
    # partialSum: a performance hint (module docstring); cuda-convnet requires it on conv, 0 means "all positions".
    "conv": _weight_layer(**_LOCAL, partialSum=_Field(int, 0, lo=0), sharedBiases=_Field(bool, True)),
    "local": _weight_layer(**_LOCAL),
    "fc": _weight_layer(outputs=_Field(int, REQUIRED, lo=1), initW=_Field(float, 0.01, True, lo=0)),
    "pool": dict(pool=_Field(str, REQUIRED), channels=_Field(int, REQUIRED, lo=1), sizeX=_Field(int, REQUIRED, lo=1),
                 start=_Field(int, 0), stride=_Field(int, REQUIRED, lo=1), outputsX=_Field(int, 0, lo=0),
                 neuron=_Field(str, ""), dropout=_Field(float, 0.0, params=True, lo=0)),
    "rnorm": _NORM,
    "cmrnorm": _NORM,
    "neuron": dict(neuron=_Field(str, REQUIRED), dropout=_Field(float, 0.0, params=True, lo=0)),
    "softmax": {},
    "cost.logreg": dict(coeff=_Field(float, REQUIRED, params=True)),
}
SUPPORTED_TYPES = tuple(_FIELDS)
# The neurons of layer.py's neuron_parsers this project has, by their name here ('ident' is no activation).
NEURONS = {"": "none", "ident": "none", "relu": "relu", "tanh[1,1]": "tanh"}
_CUDA_CONVNET_NEURONS = ("logistic", "abs", "softrelu", "square", "sqrt", "tanh", "brelu", "linear", "abstanh")


@dataclass
class ConvnetLayer:
    """One section of a layers file, with its params-file section merged into ``settings``.

    ``settings`` holds every field of the type (the file's value, else cuda-convnet's default) under cuda-convnet's
    spelling, typed: ints, floats, bools, strings; a per-input field (``initW``, ``epsW``, ``momW``, ``wc`` and the
    conv/local geometry) is a list with one value per input. ``neuron`` is the project's activation name ('relu',
    'tanh' or 'none')."""
    name: str
    type: str
    inputs: list[str] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)


def _fail(path: Path, layer: str | None, message: str) -> ConfigError:
    where = f"{path}: layer '{layer}'" if layer is not None else str(path)
    return ConfigError(f"cuda-convnet file {where}: {message}")


def _read_ini(path: str | Path) -> tuple[Path, configparser.ConfigParser]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"cuda-convnet file {path}: does not exist")
    # No interpolation and no DEFAULT section: a [DEFAULT] section is then an ordinary section, refused as naming
    # no layer (in cuda-convnet it would silently give its values to every layer). Duplicate sections or options
    # are refused (strict), where Python 2's ConfigParser let the last one win.
    ini = configparser.ConfigParser(interpolation=None, strict=True, default_section="\0no default section")
    ini.optionxform = str  # keep the file's spelling for messages; names are matched case-insensitively below
    try:
        with open(path, encoding="utf-8") as f:
            ini.read_file(f, str(path))
    except (configparser.Error, UnicodeDecodeError) as e:
        raise ConfigError(f"cuda-convnet file {path}: cannot be read as an INI file: {e}") from None
    return path, ini


def _parse_one(kind: type, text: str) -> Any:
    text = text.strip()
    if kind is bool:  # ConfigParser.getboolean's words (safe_get_bool)
        low = text.lower()
        if low in ("1", "yes", "true", "on"):
            return True
        if low in ("0", "no", "false", "off"):
            return False
        raise ValueError("expected a boolean (1/0, true/false)")
    if kind is str:
        return text
    if "_" in text:  # Python 3 reads 1_000 as a number; cuda-convnet's Python 2 did not
        raise ValueError("underscore in a number")
    return kind(text)


def _value(path: Path, layer: str, name: str, spec: _Field, text: str, n_inputs: int) -> Any:
    parts = [p for p in text.split(",")] if spec.per_input else [text]
    kind_name = {int: "an integer", float: "a number", bool: "a boolean", str: "a string"}[spec.kind]
    try:
        values = [_parse_one(spec.kind, p) for p in parts]
    except ValueError:
        raise _fail(path, layer, f"field '{name}' must be {kind_name}"
                    f"{' per input (comma-separated)' if spec.per_input else ''}, got {text!r}") from None
    for v in values:
        if spec.kind is float and not math.isfinite(v):
            raise _fail(path, layer, f"field '{name}' must be finite, got {text!r}")
        if spec.lo is not None and v < spec.lo:
            raise _fail(path, layer, f"field '{name}' must be >= {spec.lo}, got {text!r}")
    if not spec.per_input:
        return values[0]
    if len(values) != n_inputs:
        raise _fail(path, layer, f"field '{name}' gives {len(values)} values for {n_inputs} input(s): {text!r}")
    return values


def _neuron(path: Path, layer: str, text: str) -> str:
    key = "".join(text.split()).lower()
    if key.startswith("tanh[") and key.endswith("]"):  # tanh[a,b] with a = b = 1 however written (1.0, 1e0)
        try:
            if [float(v) for v in key[5:-1].split(",")] == [1.0, 1.0]:
                key = "tanh[1,1]"
        except ValueError:
            pass
    if key in NEURONS:
        return NEURONS[key]
    base = key.split("[")[0]
    if base == "tanh":
        hint = "; cuda-convnet's tanh[a,b] is a*tanh(b*x): only tanh[1,1] is the project's tanh"
    elif base in _CUDA_CONVNET_NEURONS:
        hint = f"; cuda-convnet's {base} neuron is not an activation of this project"
    else:
        hint = "; it is not a cuda-convnet neuron either"
    raise _fail(path, layer, f"field 'neuron' is {text!r}: supported are relu, ident (none) and tanh[1,1]{hint}")


def _fields_of(path: Path, layer: str, ltype: str, section: configparser.SectionProxy, from_params: bool,
               n_inputs: int) -> dict[str, Any]:
    """The typed values of one section's fields, refusing fields the type does not have or the wrong file holds."""
    specs = _FIELDS[ltype]
    by_lower = {k.lower(): k for k in specs}
    refused = {k.lower(): k for k in _REFUSED_FIELDS}
    out = {}
    spelled: dict[str, str] = {}
    for raw, text in section.items():
        if raw.lower() in spelled:  # ConfigParser (cuda-convnet) treats these as one option
            raise _fail(path, layer, f"fields '{spelled[raw.lower()]}' and '{raw}' are the same field (names are "
                                     "case-insensitive)")
        spelled[raw.lower()] = raw
        if raw.lower() in ("type", "inputs") and not from_params:
            continue
        if raw.lower() in refused:
            known_name = refused[raw.lower()]
            raise _fail(path, layer, f"field '{known_name}': {_REFUSED_FIELDS[known_name]}")
        name = by_lower.get(raw.lower())
        if name is None:
            known = ", ".join(k for k in specs if specs[k].params == from_params) or "none"
            raise _fail(path, layer, f"field '{raw}' is not a field of type {ltype}"
                        f"{' in the params file' if from_params else ''} (known: {known})")
        if specs[name].params != from_params:
            other = "params file" if specs[name].params else "layers file"
            raise _fail(path, layer, f"field '{name}' belongs in the {other}")
        out[name] = _value(path, layer, name, specs[name], text, n_inputs)
    return out


def _check_supported(layers_path: Path, params_path: Path, layer: ConvnetLayer) -> None:
    """The values this project cannot build, refused by name (each in the file that holds the field)."""
    s, name = layer.settings, layer.name
    path = layers_path
    if layer.type == "conv" and not s["sharedBiases"]:
        raise _fail(path, name, "field 'sharedBiases' is 0: one bias per output position is not supported "
                                "(the published files use sharedBiases=1, one bias per filter)")
    if layer.type in ("conv", "local"):
        if any(s["randSparse"]):
            raise _fail(path, name, "field 'randSparse' is 1: random sparse filter groups are not supported")
        for c, g in zip(s["channels"], s["groups"]):
            if c % g:
                raise _fail(path, name, f"field 'groups' ({g}) must divide channels ({c})")
    if layer.type in ("rnorm", "cmrnorm") and s["blocked"]:
        raise _fail(path, name, "field 'blocked' is 1: blocked (non-overlapping) normalization groups are not "
                                "supported")
    if layer.type == "cmrnorm" and s["size"] > s["channels"]:
        raise _fail(path, name, f"field 'size' ({s['size']}) must be <= channels ({s['channels']})")
    if layer.type == "pool":
        if s["pool"] not in ("max", "avg"):
            raise _fail(path, name, f"field 'pool' must be max or avg, got {s['pool']!r}")
        if s["stride"] > s["sizeX"]:  # PoolLayerParser: stride in [1, sizeX]
            raise _fail(path, name, f"field 'stride' ({s['stride']}) must be <= sizeX ({s['sizeX']})")
        if s["start"] + s["sizeX"] < 1:
            raise _fail(path, name, f"field 'start' ({s['start']}) leaves the first window outside the image")
    if "dropout" in s and not s["dropout"] < 1:
        raise _fail(params_path, name, f"field 'dropout' must be < 1, got {s['dropout']}")
    if layer.type == "cost.logreg" and not s["coeff"] > 0:
        raise _fail(params_path, name, f"field 'coeff' must be > 0, got {s['coeff']}")
    if layer.type == "data" and s["dataIdx"] not in (0, 1):
        raise _fail(path, name, f"field 'dataIdx' is {s['dataIdx']}: only the images (0) and the labels (1) are "
                                "provided")


def _read_layers(path: Path, ini: configparser.ConfigParser) -> list[ConvnetLayer]:
    layers: list[ConvnetLayer] = []
    seen: dict[str, ConvnetLayer] = {}
    for name in ini.sections():
        section = {k.lower(): v for k, v in ini[name].items()}  # type= and inputs= in any case
        ltype = section.get("type")
        if ltype is None:
            raise _fail(path, name, "field 'type' is missing")
        ltype = ltype.strip()
        if ltype in _REFUSED_TYPES:
            raise _fail(path, name, f"type '{ltype}': {_REFUSED_TYPES[ltype]}")
        if ltype not in _FIELDS:
            raise _fail(path, name, f"type '{ltype}' is unknown (supported: {', '.join(SUPPORTED_TYPES)})")
        inputs: list[str] = []
        if ltype == "data":
            if "inputs" in section:
                raise _fail(path, name, "field 'inputs': a data layer has no inputs")
        else:
            if "inputs" not in section:
                raise _fail(path, name, "field 'inputs' is missing")
            inputs = [i.strip() for i in section["inputs"].split(",")]
            for i in inputs:  # LayerWithInputParser.parse: inputs are layers defined earlier in the file
                if i not in seen:
                    later = " (it comes later in the file; inputs must come first)" if i in ini.sections() else ""
                    raise _fail(path, name, f"field 'inputs': input layer '{i}' is not defined{later}")
                if seen[i].type == "cost.logreg":
                    raise _fail(path, name, f"field 'inputs': '{i}' is the cost; no layer can take it as input")
            wanted = 2 if ltype == "cost.logreg" else 1
            if len(inputs) != wanted:
                raise _fail(path, name, f"field 'inputs' names {len(inputs)} layer(s), type {ltype} takes "
                                        f"{wanted}" + ("" if wanted == 2 else " (several inputs are not supported)"))
        layer = ConvnetLayer(name, ltype, inputs, _fields_of(path, name, ltype, ini[name], False, len(inputs)))
        layers.append(layer)
        seen[name] = layer
    return layers


def _merge_params(layers: list[ConvnetLayer], layers_path: Path, path: Path,
                  ini: configparser.ConfigParser) -> None:
    by_name = {layer.name: layer for layer in layers}
    for name in ini.sections():
        if name not in by_name:
            raise _fail(path, name, f"section [{name}] names no layer of {layers_path}")
    for layer in layers:
        if layer.name in ini:
            layer.settings.update(_fields_of(path, layer.name, layer.type, ini[layer.name], True,
                                             len(layer.inputs)))
        specs = _FIELDS[layer.type]
        missing = [k for k, f in specs.items() if f.default is REQUIRED and k not in layer.settings]
        if missing:
            where = path if specs[missing[0]].params else layers_path
            if layer.name not in ini and specs[missing[0]].params:
                raise _fail(path, layer.name, f"type {layer.type} needs a section [{layer.name}] in the params "
                                              f"file, with {', '.join(missing)}")
            raise _fail(where, layer.name, f"field '{missing[0]}' is missing (type {layer.type} requires it)")
        for k, f in specs.items():
            if k not in layer.settings:
                layer.settings[k] = [f.default] * len(layer.inputs) if f.per_input else f.default
        if "neuron" in specs:
            layer.settings["neuron"] = _neuron(layers_path, layer.name, layer.settings["neuron"])
        _check_supported(layers_path, path, layer)


def _check_frame(path: Path, layers: list[ConvnetLayer]) -> None:
    """Two data layers (images dataIdx=0, labels dataIdx=1), softmax, cost.logreg(labels, softmax); all used."""
    data = [x for x in layers if x.type == "data"]
    if len(data) != 2:
        extra = f" ('{data[2].name}' is a third)" if len(data) > 2 else ""
        raise _fail(path, None, f"expected two data layers (images dataIdx=0, labels dataIdx=1), found "
                                f"{len(data)}{extra}")
    if {x.settings["dataIdx"] for x in data} != {0, 1}:
        raise _fail(path, data[1].name, "field 'dataIdx': the two data layers must be dataIdx=0 (images) and "
                                        "dataIdx=1 (labels)")
    by_name = {x.name: x for x in layers}
    costs = [x for x in layers if x.type == "cost.logreg"]
    if len(costs) != 1:
        raise _fail(path, None, f"expected one cost.logreg layer, found {len(costs)}")
    labels, probs = (by_name[i] for i in costs[0].inputs)
    if labels.type != "data" or labels.settings["dataIdx"] != 1:
        raise _fail(path, costs[0].name, f"field 'inputs': the first input must be the labels data layer "
                                         f"(dataIdx=1), got '{labels.name}'")
    if probs.type != "softmax":
        raise _fail(path, costs[0].name, f"field 'inputs': the second input must be a softmax layer, got "
                                         f"'{probs.name}' ({probs.type})")
    for x in layers:
        if x.type != "cost.logreg" and labels.name in x.inputs:
            raise _fail(path, x.name, f"field 'inputs': '{labels.name}' is the labels; only cost.logreg reads them")
    used = {i for x in layers for i in x.inputs}
    for x in layers:  # LayerParser.parse_layers: "Layer '%s' of type '%s' is unused"
        if x.type != "cost.logreg" and x.name not in used:
            raise _fail(path, x.name, f"the {x.type} layer is unused (no layer takes it as input)")


def read_cuda_convnet(layers_path: str | Path, params_path: str | Path) -> list[ConvnetLayer]:
    """The layers of a cuda-convnet layers file, in file order, with the params file's values merged in.

    Raises ConfigError (a ValueError) naming the file, the layer and the field for anything this project does not
    build (module docstring)."""
    lpath, lini = _read_ini(layers_path)
    ppath, pini = _read_ini(params_path)
    layers = _read_layers(lpath, lini)
    _merge_params(layers, lpath, ppath, pini)
    _check_frame(lpath, layers)
    return layers


# ---- cuda-convnet's conventions, each from the source it follows ------------------------------------------------

def conv_modules_x(img_size: int, filter_size: int, padding: int, stride: int) -> int:
    """Output positions per side of a conv or local layer (layer.py, LocalLayerParser.parse, line 890):
    ``modulesX = 1 + ceil((2 * padding + imgSize - filterSize) / stride)``.

    ``padding`` is the file's value: zero pixels added on each side, >= 0. cuda-convnet then stores its negative
    (``dic['padding'][i] = -dic['padding'][i]``, line 927): its kernels take the offset of the first filter
    position (paddingStart), so -2 means "starts 2 pixels before the image". Note the ceil: the last window may
    run past the padded image by up to stride - 1 pixels (those taps read zeros), unlike floor-based conv output
    sizes; at stride 1 the two agree."""
    if filter_size > 2 * padding + img_size:  # line 910: "filter size greater than image size + 2 * padding"
        raise ValueError(f"filterSize {filter_size} is larger than the padded image ({img_size} + 2*{padding})")
    return 1 + math.ceil((2 * padding + img_size - filter_size) / stride)


def pool_outputs_x(img_size: int, size_x: int, stride: int, start: int = 0, outputs_x: int = 0) -> int:
    """Output positions per side of a pool layer (layer.py, PoolLayerParser.parse, line 1023): a given
    ``outputsX`` > 0 is kept, 0 means ``ceil((imgSize - start - sizeX) / stride) + 1``.

    Window o covers [start + o*stride, start + o*stride + sizeX) clipped to the image (kLocalPool,
    include/cudaconv2/conv_util.cuh); avg divides by the clipped window's pixel count (AvgPooler::output's
    regionSize), so edge windows average fewer pixels. ``neuron=`` on a pool layer acts after the pooling (layer.py
    detach_neuron_layers puts a neuron layer after it)."""
    if outputs_x > 0:
        return outputs_x
    return math.ceil((img_size - start - size_x) / stride) + 1


def norm_alpha(layer_type: str, scale: float, size: int) -> float:
    """The coefficient on the sum of squares in a normalization layer's denominator, from the file's ``scale``
    (layer.py, NormLayerParser.add_params, line 1043: ``scale /= size`` for cmrnorm, ``size**2`` otherwise):

    - ``rnorm`` (within a map): ``denom = 1 + scale/size^2 * sum of x^2 over the size x size window`` starting at
      -size/2 around the pixel, clipped to the map (kCNorm_* in src/cudaconv2/conv_util.cu);
    - ``cmrnorm`` (across maps): ``denom = 1 + scale/size * sum of x^2 over maps [c - size/2, c - size/2 + size)``,
      clipped to [0, channels) (kFCNorm, blocked=0);
    - both output ``x * denom ** -pow`` (k = 1, beta = pow). The divisor stays size^2 / size where the window is
      clipped. The paper's LRN (Section 3.3, alpha = 1e-4 on the sum) is cmrnorm with scale = alpha * size."""
    if layer_type == "cmrnorm":
        return scale / size
    if layer_type == "rnorm":
        return scale / size**2
    raise ValueError(f"norm_alpha: layer_type must be rnorm or cmrnorm, got {layer_type!r}")


def convnet_update(w, inc, grad_sum, batch: int, eps: float, mom: float, wc: float = 0.0):
    """One step of cuda-convnet's update, returning (w, inc) (include/weights.cuh, Weights::update, with the
    gradient scaled by eps/numCases in src/layer.cu's bpropWeights/bpropBiases)::

        inc = mom * inc - (eps / batch) * grad_sum - wc * eps * w
        w   = w + inc

    ``grad_sum`` is the gradient of the summed loss over the batch (sum of dLoss/dw over the cases), ``batch`` the
    number of cases. Weights use (epsW, momW, wc) per input; biases use (epsB, momB) with no weight decay (their
    Weights object is built with wc = 0, src/layer.cu WeightLayer::WeightLayer). A weight matrix with eps = 0 is
    frozen (update() does nothing). Works on floats or arrays alike."""
    if eps <= 0:
        return w, inc
    inc = mom * inc - (eps / batch) * grad_sum
    if wc > 0:
        inc = inc - (wc * eps) * w
    return w + inc, inc


def crop_mean(mean_image, border: int):
    """The mean that cuda-convnet subtracts from every crop (convdata.py, CroppedCIFARDataProvider, line 77): the
    centre ``(32 - 2*border)`` square of the training set's (3, 32, 32) mean image, whatever the crop's position.

    cuda-convnet's CIFAR-10 input keeps pixels on the 0-255 scale and subtracts the mean image that its CIFAR
    batches carry (``batches.meta['data_mean']``, the training images' mean): CIFARDataProvider (line 40) subtracts
    it from the whole 32x32 image, CroppedCIFARDataProvider (line 85) subtracts this centre crop of it. Nothing is
    divided, so ``initW=0.0001`` on conv1 assumes inputs of magnitude ~100."""
    inner = mean_image.shape[-1] - 2 * border
    return mean_image[..., border:border + inner, border:border + inner]


def training_crop(image_size: int = 32, border: int = 4) -> tuple[int, int]:
    """The inclusive range of a training crop's offset along each axis (convdata.py, __trim_borders, line 117):
    (y, x) drawn uniformly from [0, 2*border] each, crop size image_size - 2*border, then a left-right flip with
    probability 1/2. cuda-convnet's --crop-border defaults to 4 (convnet.py), so 24x24 crops of 32x32 images."""
    if not 0 <= 2 * border < image_size:
        raise ValueError(f"border {border} does not fit an image of {image_size}")
    return 0, 2 * border


def multiview_crops(image_size: int = 32, border: int = 4) -> list[tuple[int, int, bool]]:
    """cuda-convnet's --multiview-test views as (y, x, flipped) offsets of (image_size - 2*border)-square crops
    (convdata.py, CroppedCIFARDataProvider.__trim_borders, lines 104-111): the four corners and the centre, in the
    order (0,0), (0,2b), (b,b), (2b,0), (2b,2b), then the same five mirrored left-right. The test prediction is the
    mean of the ten softmax outputs (src/worker.cu, MultiviewTestWorker::run); a single-view test takes the centre
    crop (line 113)."""
    b = border
    training_crop(image_size, border)
    corners = [(0, 0), (0, 2 * b), (b, b), (2 * b, 0), (2 * b, 2 * b)]
    return [(y, x, False) for y, x in corners] + [(y, x, True) for y, x in corners]


def output_shapes(layers: list[ConvnetLayer], image_size: int, image_channels: int = 3) -> dict[str, tuple]:
    """Each layer's output as (channels, size, size), or (outputs,) for fc/softmax; the labels and the cost have none.

    Checks what cuda-convnet checks from the sizes (the images' channels against each layer's ``channels=``, the
    filter against the padded image, the pool window against the image), raising ValueError naming the layer and
    the field. cuda-convnet infers a layer's image size from its input's length and ``channels`` (imgSize =
    sqrt(numInputs / channels)); here the channels must match exactly."""
    shapes: dict[str, tuple] = {}
    for x in layers:
        s = x.settings
        if x.type == "data":
            if s["dataIdx"] == 0:
                shapes[x.name] = (image_channels, image_size, image_size)
            continue
        if x.type == "cost.logreg":
            continue
        inp = shapes[x.inputs[0]]
        if x.type in ("fc", "softmax", "neuron"):
            shapes[x.name] = (s["outputs"],) if x.type == "fc" else inp
            continue
        channels = s["channels"][0] if isinstance(s["channels"], list) else s["channels"]
        if len(inp) != 3 or inp[0] != channels:
            raise ValueError(f"cuda-convnet layer '{x.name}': field 'channels' is {channels}, but its input "
                             f"'{x.inputs[0]}' gives {inp[0]} {'maps' if len(inp) == 3 else 'outputs, not images'}")
        size = inp[1]
        try:
            if x.type in ("conv", "local"):
                out = conv_modules_x(size, s["filterSize"][0], s["padding"][0], s["stride"][0])
                shapes[x.name] = (s["filters"][0] * s["groups"][0], out, out)
            elif x.type == "pool":
                if s["sizeX"] > size:  # PoolLayerParser: sizeX in [1, imgSize]
                    raise ValueError(f"field 'sizeX' ({s['sizeX']}) is larger than the image ({size})")
                out = pool_outputs_x(size, s["sizeX"], s["stride"], s["start"], s["outputsX"])
                shapes[x.name] = (channels, out, out)
            else:  # rnorm, cmrnorm
                if x.type == "rnorm" and s["size"] > size:  # NormLayerParser: size in [1, imgSize]
                    raise ValueError(f"field 'size' ({s['size']}) is larger than the image ({size})")
                shapes[x.name] = inp
        except ValueError as e:
            raise ValueError(f"cuda-convnet layer '{x.name}': {e}") from None
    return shapes
