"""Training checkpoints: one ``.npz`` file, no pickle, written atomically.

A checkpoint holds everything needed to continue a run exactly where it stopped:

* ``param/<name>``     the network's parameters and BatchNorm running statistics (``model.state_dict()``),
* ``momentum/<name>``  the optimizer's state (``model.optimizer_state_dict()``): SGD's momentum buffer under the
                       parameter's name; Adam's ``<name>.exp_avg`` and ``<name>.exp_avg_sq`` (its step count is the
                       model's ``step``, in ``meta``),
* ``array/<name>``     other arrays: the training-set mean image, the RGB PCA (eigenvalues, eigenvectors), and any
                       array found inside the Augmenter's or Loader's state,
* ``meta``             a JSON document stored as a uint8 array: format and version, the model configuration (arch,
                       number of classes, ablation options, the variant: norm, head, optimizer), class ids and names, epoch, step, learning rate, the
                       scheduler's state, the RNG states and the running metrics of a half-finished epoch.

Why this format: ``numpy.load(..., allow_pickle=False)`` can only ever produce plain arrays, so opening a checkpoint
never executes code from the file (unlike ``torch.load`` or ``pickle``). Every value is either a numeric array or
JSON.

Why atomic: a checkpoint is first written to a temporary file in the same directory, flushed and fsync'ed, then
renamed over the target with :func:`os.replace` (atomic on POSIX and Windows), and the directory is fsync'ed so the
rename itself survives a power cut. A crash at any point leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import files
from .arguments import float32_array
from .cli import ConfigError
from .runtime import resolve_devices

FORMAT = "alexnet_cuda.checkpoint"
VERSION = 1

_PARAM, _MOMENTUM, _ARRAY, _META = "param/", "momentum/", "array/", "meta"
_ARRAY_REF = "__array__"  # marks, inside the JSON metadata, a value stored as an array of the npz


class CheckpointError(ValueError):
    """A checkpoint file is missing, truncated, corrupt, or not an alexnet_cuda checkpoint. The message names it."""


@dataclass
class Checkpoint:
    """The contents of one checkpoint file.

    ``meta`` is plain JSON-compatible data; ``arrays`` holds the other named arrays (``mean``, ``pca_eigvals``, ...).
    Use :func:`pack_state` / :func:`unpack_state` to store a state dict that mixes arrays and plain values (the
    Augmenter's or Loader's RNG state) in ``meta`` + ``arrays``.
    """

    params: dict[str, np.ndarray] = field(default_factory=dict)
    momentum: dict[str, np.ndarray] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None  # where it was loaded from (for messages)

    # Convenience views of the metadata written by alexnet_cuda.train.
    @property
    def model_config(self) -> dict[str, Any]:
        return dict(self.meta.get("model", {}))

    @property
    def classes(self) -> list[str]:
        return list(self.meta.get("classes", []))

    @property
    def class_ids(self) -> list[str]:
        return list(self.meta.get("class_ids", []))


# --------------------------------------------------------------------------------------------------------------------
# States that mix arrays and plain values (RNG states)
# --------------------------------------------------------------------------------------------------------------------

def pack_state(state: Any, arrays: dict[str, np.ndarray], prefix: str) -> Any:
    """Returns a JSON-compatible copy of ``state``; every NumPy array in it is moved into ``arrays`` under a key
    starting with ``prefix`` and replaced by a reference. NumPy scalars become Python numbers (JSON has no int64 or
    128-bit limit in Python, so e.g. a PCG64 state round-trips exactly)."""
    if isinstance(state, np.ndarray):
        key = f"{prefix}{len([k for k in arrays if k.startswith(prefix)])}"
        arrays[key] = np.ascontiguousarray(state)
        return {_ARRAY_REF: key}
    if isinstance(state, np.generic):
        return state.item()
    if isinstance(state, dict):
        out = {}
        for k, v in state.items():
            if not isinstance(k, str):
                raise TypeError(f"checkpoint: state keys must be strings, got {k!r} ({type(k).__name__})")
            out[k] = pack_state(v, arrays, prefix)
        return out
    if isinstance(state, (list, tuple)):
        return [pack_state(v, arrays, prefix) for v in state]
    if state is None or isinstance(state, (bool, int, float, str)):
        return state
    raise TypeError(f"checkpoint: cannot store a value of type {type(state).__name__} without pickle")


def unpack_state(state: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`pack_state`."""
    if isinstance(state, dict):
        if set(state) == {_ARRAY_REF}:
            return arrays[state[_ARRAY_REF]].copy()
        return {k: unpack_state(v, arrays) for k, v in state.items()}
    if isinstance(state, list):
        return [unpack_state(v, arrays) for v in state]
    return state


# --------------------------------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------------------------------

def save(path: str | os.PathLike, ckpt: Checkpoint) -> Path:
    """Writes ``ckpt`` to ``path`` atomically (see the module docstring) and returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = dict(ckpt.meta)
    meta["format"], meta["version"] = FORMAT, VERSION
    entries: dict[str, np.ndarray] = {}
    for prefix, group in ((_PARAM, ckpt.params), (_MOMENTUM, ckpt.momentum), (_ARRAY, ckpt.arrays)):
        for name, value in group.items():
            a = np.asarray(value)
            if a.dtype == object:
                raise TypeError(f"checkpoint: {prefix}{name} is an object array, which cannot be stored without pickle")
            entries[prefix + name] = np.ascontiguousarray(a)
    entries[_META] = np.frombuffer(json.dumps(meta, allow_nan=True).encode("utf-8"), dtype=np.uint8)

    files.atomic_write(path, lambda f: np.savez(f, **entries))
    return path


# --------------------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------------------

def load(path: str | os.PathLike) -> Checkpoint:
    """Reads a checkpoint written by :func:`save`. Never unpickles anything.

    Raises :class:`CheckpointError` (a ValueError) naming the file when it is missing, truncated, corrupt, or not an
    alexnet_cuda checkpoint (e.g. some other ``.npz``), and naming the entry when a parameter or optimizer state holds
    NaN, inf, or a value beyond float32's range.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: no such file")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path}: is a directory, expected a .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise CheckpointError(f"checkpoint {path}: not an alexnet_cuda checkpoint (a plain .npy array, "
                                  f"expected a .npz archive)")
        with loaded as z:
            if _META not in z.files:
                raise CheckpointError(f"checkpoint {path}: not an alexnet_cuda checkpoint (no '{_META}' entry)")
            raw = z[_META]
            if raw.dtype != np.uint8 or raw.ndim != 1:
                raise CheckpointError(f"checkpoint {path}: bad '{_META}' entry ({raw.dtype}, shape {raw.shape})")
            try:
                meta = json.loads(raw.tobytes().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise CheckpointError(f"checkpoint {path}: corrupt metadata ({exc})") from None
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise CheckpointError(f"checkpoint {path}: not an alexnet_cuda checkpoint (format "
                                      f"{meta.get('format') if isinstance(meta, dict) else None!r})")
            if not isinstance(meta.get("version"), int) or meta["version"] > VERSION:
                raise CheckpointError(f"checkpoint {path}: format version {meta.get('version')!r} is newer than "
                                      f"this alexnet_cuda understands ({VERSION}); upgrade alexnet_cuda")
            ckpt = Checkpoint(meta=meta, path=path)
            for key in z.files:
                if key == _META:
                    continue
                for prefix, group in ((_PARAM, ckpt.params), (_MOMENTUM, ckpt.momentum), (_ARRAY, ckpt.arrays)):
                    if key.startswith(prefix):
                        group[key[len(prefix):]] = z[key]
                        break
                else:
                    raise CheckpointError(f"checkpoint {path}: unexpected entry {key!r}")
            _check_weights(ckpt)
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, zipfile.BadZipFile, KeyError, NotImplementedError, struct.error,
            zlib.error) as exc:
        # ValueError covers numpy's "Cannot load file containing pickled data" and "not a zip file" cases; zipfile
        # raises NotImplementedError, struct.error or zlib.error for some corrupt headers.
        raise CheckpointError(f"checkpoint {path}: cannot be read, it is truncated or corrupt, or not a .npz file "
                              f"({type(exc).__name__}: {exc})") from None
    return ckpt


def _check_weights(ckpt: Checkpoint) -> None:
    """Parameters and optimizer state must be finite and within float32's range (what the network holds): a NaN
    written by a diverged run, or a float64 value that float32 cannot hold, is refused here naming the entry rather
    than loaded as NaN or inf (issue 21)."""
    for prefix, group in ((_PARAM, ckpt.params), (_MOMENTUM, ckpt.momentum)):
        for name, a in group.items():
            if a.dtype.kind == "f":
                try:
                    float32_array(f"checkpoint {ckpt.path}", prefix + name, a)
                except ValueError as exc:
                    raise CheckpointError(str(exc)) from None


# A described network's model configuration (``meta["model"]``) holds its description, the text of its network file
# (nets/file_format.format_net), and the other arguments of AlexNet.from_description; the alexnet family's (and every
# checkpoint written before descriptions) holds AlexNet's constructor arguments.
DESCRIPTION = "description"
FROM_DESCRIPTION_ARGS = ("seed", "optimizer", "adam_betas", "adam_eps")


def model_from_config(config: dict[str, Any], devices: Any = None, model_class: Any = None):
    """The network a checkpoint's model configuration names (untrained: the caller loads the weights)."""
    if model_class is None:
        from .model import AlexNet as model_class  # noqa: N813
    if DESCRIPTION not in config:
        return model_class(devices=devices, **config)
    from .nets.description import layer_table
    from .nets.file_format import parse_net

    desc = parse_net(str(config[DESCRIPTION]), "the recorded network description")
    layer_table(desc)  # a broken description is one DescriptionError naming the layer and the field
    kwargs = {k: config[k] for k in FROM_DESCRIPTION_ARGS if k in config}
    if "adam_betas" in kwargs:
        kwargs["adam_betas"] = tuple(kwargs["adam_betas"])
    return model_class.from_description(desc, devices, **kwargs)


def network_description(config: dict[str, Any]):
    """The :class:`~alexnet_cuda.nets.description.NetDescription` of a model configuration: the recorded one, or
    for the alexnet family the description its constructor arguments name (nets/alexnet.py)."""
    from .nets.alexnet import alexnet
    from .nets.file_format import parse_net
    from .network_options import parse_head, resolve_norm

    if DESCRIPTION in config:
        return parse_net(str(config[DESCRIPTION]), "the recorded network description")
    widths = config.get("widths") or {}
    head = parse_head(widths["fc"] if widths.get("fc") is not None else config.get("head"))
    return alexnet(config.get("arch", "alexnet"), config.get("input_size"), int(config.get("num_classes", 1000)),
                   towers=int(config.get("towers", 2)), norm=resolve_norm(config.get("norm", "lrn"),
                                                                           config.get("lrn", True)),
                   bn_position=config.get("bn_position", "before_pool"),
                   overlapping_pool=bool(config.get("overlapping_pool", True)),
                   activation=config.get("activation", "relu"), dropout=float(config.get("dropout", 0.5)),
                   conv_channels=widths.get("conv"), head=head, weight_std=float(config.get("weight_std", 0.01)),
                   bias_init=float(config.get("bias_init", 1.0)))


def build_model(ckpt: Checkpoint, devices: Any = None, model_class: Any = None):
    """Rebuilds the network saved in ``ckpt`` (from its recorded description; the alexnet family's, and older
    checkpoints', from AlexNet's constructor arguments): same layers and options, trained weights, the normalization
    (training-set mean) it was trained with, and its class names. Returns the model.

    ``devices`` is passed to the constructor (None: GPUs when present, else the CPU). ``model_class`` defaults to
    :class:`alexnet_cuda.AlexNet` (tests pass a stand-in).
    """
    config = ckpt.model_config
    if not config:
        raise CheckpointError(f"checkpoint {ckpt.path or ''}: has no model configuration (was it written by "
                              f"alexnet_cuda.train?)")
    try:
        model = model_from_config(config, devices, model_class)
        model.load_state_dict(ckpt.params)
        if "mean" in ckpt.arrays:
            model.set_normalization(ckpt.arrays["mean"], float(ckpt.meta.get("normalization_scale", 1.0)))
    except (TypeError, ValueError) as exc:
        # A file that loads but whose configuration, parameters or mean do not fit together: the model's message
        # says which; the user needs to know it is the checkpoint's fault.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"checkpoint {ckpt.path or ''}: does not match the network it describes ({first})") \
            from None
    return model


def load_model(path: str | os.PathLike, devices: Any = None, model_class: Any = None):
    """Loads the checkpoint at ``path`` and rebuilds its network. Returns ``(model, checkpoint)``."""
    ckpt = load(path)
    return build_model(ckpt, devices=devices, model_class=model_class), ckpt


def find_latest(runs_dir: str | os.PathLike = "runs") -> Path | None:
    """The most recently written ``best.npz`` (else ``last.npz``) under ``runs_dir/*/``, or None: the default
    checkpoint of ``alexnet_cuda.evaluate`` and ``alexnet_cuda.predict``."""
    runs = Path(runs_dir)
    if not runs.is_dir():
        return None
    for name in ("best.npz", "last.npz"):
        found = [p for p in runs.glob(f"*/{name}") if p.is_file()]
        if found:
            return max(found, key=lambda p: p.stat().st_mtime)
    return None


def load_for_inference(path: str | os.PathLike | None, device: str = "auto", gpus: list[int] | None = None):
    """(path, checkpoint, model) for evaluate and predict: the checkpoint at ``path`` (default: the newest
    runs/*/best.npz) with its model built on the devices asked for. Raises the trainer's ConfigError when there is no
    checkpoint or the devices are unavailable, CheckpointError when the file is bad."""
    path = path or find_latest()
    if path is None:
        raise ConfigError("no checkpoint given and none found under runs/; train one with "
                          "'python -m alexnet_cuda.train' or pass --checkpoint")
    ckpt = load(path)
    devices = resolve_devices(device, gpus, int(ckpt.model_config.get("towers", 2)))
    return path, ckpt, build_model(ckpt, devices=devices)
