"""``train --init-from FILE``: fine-tuning. The run's network starts from the weights of FILE (a checkpoint, or a
weights file that ``python -m alexnet_cuda.weights import`` takes: torchvision's AlexNet ``.pth`` / ``.safetensors``,
or an exported ``.safetensors``) instead of a random initialization.

* The architecture is FILE's: ``--arch`` and ``--input-size`` default to its own, and a run whose network differs
  (another arch, other towers, widths, normalization or head) is refused, naming what differs.
* When the class count differs (ImageNet's 1000 -> a folder's 2), the last linear layer is replaced by a freshly
  initialized one, and the log says so in one line; every other parameter (and BatchNorm statistic) is FILE's.
* The input normalization is FILE's (its mean and scale: the network learned on those inputs; for torchvision's
  weights, the ImageNet mean and standard deviation), so the run's own mean image is not used.
* The optimizer starts afresh (no momentum), at epoch 0.

The layer that is replaced is the one whose parameters come last in the network's order (``classifier.6`` in
torchvision's and the alexnet descriptions' names); any other parameter whose shape differs is an error.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint as ckpt_io
from ..cli import ConfigError
from ..console import log
from ..nets.file_format import format_net

# The model options that fix the parameters' names and shapes (besides num_classes); the others (seed, initial
# weights, dropout rate, optimizer) may differ between FILE and the run.
ARCHITECTURE = ("arch", "input_size", "towers", "lrn", "overlapping_pool", "activation", "norm", "bn_position",
                "head", "widths")


@functools.lru_cache(maxsize=1)
def _load(path: str, mtime_ns: int) -> ckpt_io.Checkpoint:
    if Path(path).suffix.lower() == ".npz":
        return ckpt_io.load(path)
    from ..weights import import_weights  # a .pth / .safetensors file

    return import_weights(path)


def load_source(path: str) -> ckpt_io.Checkpoint:
    """The checkpoint of ``--init-from`` (read once per process: the run's settings and its weights both need it)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise ConfigError(f"--init-from {path}: no such file")
    try:
        ckpt = _load(str(p.resolve()), p.stat().st_mtime_ns)
    except ValueError as exc:  # CheckpointError, SafetensorsError, PthError and the import's checks
        raise ConfigError(f"--init-from {path}: {str(exc).splitlines()[0]}") from None
    if not ckpt.model_config:
        raise ConfigError(f"--init-from {path}: has no model configuration (a checkpoint written by "
                          f"alexnet_cuda.train, or weights that 'python -m alexnet_cuda.weights import' takes)")
    return ckpt


def apply_defaults(c: Any) -> None:
    """--arch and --input-size default to FILE's network (a described network's description is FILE's); an --arch
    or --net given that differs is refused."""
    source = load_source(c.init_from).model_config
    if c.net is not None or c.net_params is not None:
        raise ConfigError(f"--init-from {c.init_from} names the network (its own); drop --net")
    if c.arch is None:
        c.arch = source.get("arch")
    elif c.arch != source.get("arch"):
        raise ConfigError(f"--init-from {c.init_from}: holds a {source.get('arch')} network, but --arch is {c.arch} "
                          f"(fine-tuning keeps the network's architecture; drop --arch)")
    if ckpt_io.DESCRIPTION in source:
        c.description = source[ckpt_io.DESCRIPTION]  # train/described.py takes the rest from it
        return
    if c.input_size is None and source.get("input_size"):
        c.input_size = int(source["input_size"])
    if c.widths is None and source.get("widths") is not None:
        c.widths = source["widths"]


def _layers(config: dict[str, Any]) -> str | None:
    """A described network's layers as text, whatever its classes (None for the alexnet family's constructor)."""
    if ckpt_io.DESCRIPTION not in config:
        return None
    return format_net(dataclasses.replace(ckpt_io.network_description(config), classes=0))


def _differences(run_config: dict[str, Any], source: dict[str, Any]) -> list[str]:
    differs = [f"{k} {source.get(k)!r} (file) vs {run_config.get(k)!r} (run)" for k in ARCHITECTURE
               if run_config.get(k) != source.get(k)]
    if _layers(run_config) != _layers(source):
        differs.append("the layers of its description")
    return differs


def last_layer(names: list[str]) -> str:
    """The module prefix of the last parameter ('classifier.6' of 'classifier.6.tower1.bias')."""
    return names[-1].split(".tower")[0]


def initialize(model: Any, run_config: dict[str, Any], path: str) -> tuple[np.ndarray | None, Any]:
    """Loads FILE's weights into ``model`` (built from ``run_config``), replacing the last layer when the class
    count differs. Returns FILE's normalization (mean or None, scale)."""
    ckpt = load_source(path)
    source = ckpt.model_config
    differs = _differences(run_config, source)
    if differs:
        raise ConfigError(f"--init-from {path}: its network is not this run's ({'; '.join(differs)}); fine-tuning "
                          f"needs the same architecture: pass the same flags (e.g. --towers "
                          f"{source.get('towers')})")
    fresh = model.state_dict()
    last = last_layer(model.parameter_names())
    replaced = int(source.get("num_classes", -1)) != int(run_config["num_classes"])
    state = {}
    for name, a in fresh.items():
        if name.startswith(last + ".") and replaced:
            state[name] = a  # the fresh initialization of the new output layer
        elif name not in ckpt.params:
            raise ConfigError(f"--init-from {path}: has no {name} (its network is not this run's)")
        elif ckpt.params[name].shape != a.shape:
            raise ConfigError(f"--init-from {path}: {name} is {ckpt.params[name].shape} there but {a.shape} in "
                              f"this run's network")
        else:
            state[name] = ckpt.params[name]
    extra = sorted(set(ckpt.params) - set(fresh))
    if extra:
        raise ConfigError(f"--init-from {path}: holds {extra[0]}, which this run's network does not have")
    model.load_state_dict(state)
    if replaced:
        log(f"--init-from {path}: its {source.get('num_classes')} classes are not this run's "
            f"{run_config['num_classes']}: the last layer ({last}) is replaced by a freshly initialized one; every "
            f"other layer starts from the file's weights")
    else:
        log(f"--init-from {path}: every layer starts from the file's weights ({source.get('arch')}, "
            f"{source.get('num_classes')} classes)")
    return ckpt.arrays.get("mean"), ckpt_io.normalization_scale(ckpt.meta)
