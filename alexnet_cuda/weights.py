"""Weights in and out: ``python -m alexnet_cuda.weights export|import``.

* ``export CHECKPOINT --safetensors FILE`` writes the checkpoint's network as a safetensors file: every parameter and
  BatchNorm running statistic as float32 under this project's names (``features.0.tower0.weight``, ...; see
  alexnet_cuda.model), the training-set mean as ``normalization.mean``, and in the metadata what is needed to
  rebuild the network: ``format`` (``alexnet_cuda.weights``), ``version``, ``model`` (the constructor's options),
  ``classes``, ``class_ids``, ``image_size``, ``normalization_scale``, ``epoch``, each a JSON text. The optimizer's
  state is not exported: the file is for inference and fine-tuning, not for resuming a run.
* ``import FILE --out model.npz`` makes a checkpoint from such a file, for ``evaluate`` and ``predict`` (it has no
  optimizer state nor run history, so it does not resume a run). ``FILE`` is a
  ``.safetensors`` file or a PyTorch ``.pth`` state dict (read by alexnet_cuda.pth, which runs nothing in the file).
  A file without this project's metadata (any ``.pth``, a safetensors file from elsewhere) takes the network, the
  classes and the mean from ``--like CHECKPOINT``, a checkpoint of the same network.

Exporting and importing gives back every array bit for bit. Every value is checked on the way in (finite, within
float32's range, the shapes of the network it describes), and the error names the tensor.

torchvision's AlexNet: a file with torchvision's names (``features.0.weight`` ... ``classifier.6.bias``, a
``torchvision.models.alexnet`` state dict, as ``.pth`` or ``.safetensors``) imports as a ``torchvision-alexnet``
network (alexnet_cuda/nets/torchvision.py) whose classes are as many as ``classifier.6.weight``'s rows, with
torchvision's preprocessing recorded in the checkpoint (images resized to 256, the centre 224x224 crop, ImageNet's
per-channel mean and standard deviation), which ``evaluate`` and ``predict`` apply. Exporting a ``torchvision-alexnet``
checkpoint writes torchvision's names, so ``torchvision.models.alexnet().load_state_dict`` takes the file (beside
``normalization.mean``, which it does not know: pass ``strict=False`` or drop it).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import checkpoint as ckpt_io
from . import cli, pth
from . import safetensors as st
from .cli import ConfigError
from .arguments import float32_array
from .model import AlexNet
from .nets import torchvision as tv
from .nets.file_format import format_net
from .summary import describe, totals

PROG = "python -m alexnet_cuda.weights"
FORMAT = "alexnet_cuda.weights"
VERSION = 1
MEAN = "normalization.mean"
# The checkpoint metadata a weights file carries (each as a JSON text in the safetensors metadata).
_META_KEYS = ("model", "classes", "class_ids", "image_size", "normalization_scale", "preprocessing", "epoch")
_SIZE_SLACK = 1 << 20
_TORCHVISION_NAME = re.compile(r"(features|classifier)\.\d+\.(weight|bias)")
_LAST = "classifier.6.weight"  # its rows are torchvision-alexnet's classes


def export_safetensors(ckpt: ckpt_io.Checkpoint, path: str | Path) -> Path:
    """Writes the network of ``ckpt`` (parameters, running statistics, mean, and its description) to ``path``."""
    if not ckpt.model_config:
        raise ckpt_io.CheckpointError(f"checkpoint {ckpt.path}: has no model configuration (was it written by "
                                      f"alexnet_cuda.train?)")
    tensors = {name: np.ascontiguousarray(a, np.float32) for name, a in ckpt.params.items()}
    if ckpt.model_config.get("arch") == tv.NAME:
        tensors = tv.to_torchvision(tensors)  # torchvision's own names: its AlexNet loads them
    if "mean" in ckpt.arrays:
        tensors[MEAN] = np.ascontiguousarray(ckpt.arrays["mean"], np.float32)
    metadata = {"format": FORMAT, "version": str(VERSION)}
    metadata.update({k: json.dumps(ckpt.meta[k]) for k in _META_KEYS if k in ckpt.meta})
    return st.save(path, tensors, metadata)


def read_tensors(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and metadata of a .safetensors file, or the state dict of a .pth file (no metadata)."""
    if not path.exists():
        raise ConfigError(f"{path}: no such file")
    if path.suffix.lower() in (".pth", ".pt", ".bin") or (path.is_file() and zipfile.is_zipfile(path)):
        return pth.load(path), {}
    return st.load(path)


def _description(path: Path, metadata: dict[str, str], like: str | None) -> tuple[dict[str, Any], Any]:
    """The checkpoint metadata for the imported weights, and the mean from ``--like`` (or None)."""
    if like is not None:
        other = ckpt_io.load(like)
        if not other.model_config:
            raise ckpt_io.CheckpointError(f"checkpoint {like}: has no model configuration")
        return {k: other.meta[k] for k in _META_KEYS if k in other.meta}, other.arrays.get("mean")
    if metadata.get("format") != FORMAT:
        raise ConfigError(f"{path}: does not say which network it holds (no {FORMAT} metadata, as in any .pth file); "
                          f"pass --like CHECKPOINT, a checkpoint of the same network")
    if not str(metadata.get("version", "")).isdigit() or int(metadata["version"]) > VERSION:
        raise st.SafetensorsError(f"safetensors {path}: {FORMAT} version {metadata.get('version')!r} is newer than "
                                  f"this alexnet_cuda understands ({VERSION}); upgrade alexnet_cuda")
    meta = {}
    for k in _META_KEYS:
        if k in metadata:
            try:
                meta[k] = json.loads(metadata[k])
            except json.JSONDecodeError:
                raise st.SafetensorsError(f"safetensors {path}: metadata {k!r} is not JSON") from None
    if not isinstance(meta.get("model"), dict):
        raise st.SafetensorsError(f"safetensors {path}: metadata 'model' must describe the network (a JSON object)")
    return meta, None


def _check_size(config: dict[str, Any], tensors: dict[str, np.ndarray]) -> None:
    """Refuses a description of a network much bigger than the weights at hand before building it: a small file must
    not make this process allocate a huge network (its parameters are counted from the layer table, not allocated).
    Up to a million parameters more are let through, so that a missing or misshapen tensor is named by
    load_state_dict instead."""
    wanted = {k: v for k, v in config.items() if k in inspect.signature(describe).parameters}
    need = totals(describe(**wanted))["parameters"]
    have = sum(a.size for a in tensors.values())
    if need > have + _SIZE_SLACK:
        raise ValueError(f"it describes a network of {need:,} parameters but holds {have:,} values")


def import_weights(path: str | Path, like: str | None = None) -> ckpt_io.Checkpoint:
    """A checkpoint (not yet saved) holding the weights of ``path``, checked by rebuilding its network on the CPU."""
    path = Path(path)
    tensors, metadata = read_tensors(path)
    if any(_TORCHVISION_NAME.fullmatch(k) for k in tensors):
        return _import_torchvision(path, tensors, metadata, like)
    meta, mean = _description(path, metadata, like)
    if MEAN in tensors:
        mean = tensors.pop(MEAN)
    # The network checks every name, shape and value (finite, within float32) and the mean, naming what is wrong.
    try:
        _check_size(meta["model"], tensors)
        model = AlexNet(devices="cpu", **meta["model"])
        model.load_state_dict(tensors)  # float64 is rounded to float32; values beyond its range are refused
        if mean is not None:
            model.set_normalization(mean, ckpt_io.normalization_scale(meta))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: does not fit the network it describes ({str(exc).splitlines()[0]})") from None
    params = {k: np.ascontiguousarray(a, np.float32) for k, a in tensors.items()}  # checked just above: exact
    arrays = {} if mean is None else {"mean": np.ascontiguousarray(mean, np.float32)}
    return ckpt_io.Checkpoint(params=params, arrays=arrays, meta=dict(meta, imported_from=str(path)))


def torchvision_meta(num_classes: int) -> tuple[dict[str, Any], np.ndarray]:
    """The checkpoint metadata and mean of a torchvision-alexnet network with torchvision's preprocessing (the
    ImageNet weights' transforms: shorter side 256, centre crop 224, ImageNet mean and standard deviation). Its
    classes are numbered (torchvision's state dict holds no class names)."""
    mean, scale = tv.normalization()
    names = [str(i) for i in range(num_classes)]
    model = {ckpt_io.DESCRIPTION: format_net(tv.torchvision_alexnet(num_classes)), "arch": tv.NAME,
             "num_classes": num_classes, "input_size": tv.INPUT_SIZE, "towers": 1}  # checkpoint.model_from_config
    return {"model": model,
            "classes": names, "class_ids": names, "image_size": tv.RESIZE,
            "normalization_scale": [float(x) for x in scale], "preprocessing": "torchvision"}, mean


def _import_torchvision(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str],
                        like: str | None) -> ckpt_io.Checkpoint:
    """A torchvision AlexNet state dict (torchvision's names) as a torchvision-alexnet checkpoint: its classes come
    from classifier.6's rows; the classes, image size and normalization from the file's alexnet_cuda metadata or
    ``--like`` when there are any, else torchvision's preprocessing and numbered classes."""
    mean = tensors.pop(MEAN, None)
    if _LAST not in tensors or tensors[_LAST].ndim != 2:
        raise ValueError(f"{path}: holds torchvision's AlexNet names but no 2-d {_LAST!r} (the last layer, whose rows "
                         f"are the classes)")
    num_classes = int(tensors[_LAST].shape[0])
    if metadata.get("format") == FORMAT or like is not None:
        meta, like_mean = _description(path, metadata, like)
        mean = like_mean if mean is None else mean
        if meta["model"].get("arch") != tv.NAME or int(meta["model"].get("num_classes", -1)) != num_classes:
            raise ValueError(f"{path}: holds torchvision-alexnet weights of {num_classes} classes, but "
                             f"{'--like ' + like if like else 'its metadata'} describes {meta['model'].get('arch')} "
                             f"of {meta['model'].get('num_classes')} classes")
    else:
        meta, mean = torchvision_meta(num_classes)
    shapes = tv.parameter_shapes(tv.torchvision_alexnet(num_classes))
    try:
        params = tv.from_torchvision(tensors)
    except ValueError as exc:
        raise ValueError(f"{path}: is not torchvision's AlexNet ({exc})") from None
    missing = [tv.torchvision_name(n) for n in shapes if n not in params]
    unexpected = [tv.torchvision_name(n) for n in params if n not in shapes]
    if missing or unexpected:
        raise ValueError(f"{path}: is not torchvision's AlexNet: missing {missing[:4]}, unexpected {unexpected[:4]}"
                         f"{' (a BatchNorm or other variant?)' if unexpected else ''}")
    checked = {}
    for name, shape in shapes.items():
        a, key = params[name], tv.torchvision_name(name)
        if a.dtype.kind != "f" or a.shape != shape:
            raise ValueError(f"{path}: {key} is {a.dtype} {a.shape}, expected float {shape} (torchvision's AlexNet "
                             f"of {num_classes} classes)")
        checked[name] = float32_array(str(path), key, a)
    if mean is not None:
        if mean.dtype.kind != "f" or mean.shape != (3,) and not (mean.ndim == 3 and mean.shape[0] == 3):
            raise ValueError(f"{path}: {MEAN} must be a float (3,) or (3, H, W) array, got {mean.dtype} {mean.shape}")
        mean = float32_array(str(path), MEAN, mean)
    arrays = {} if mean is None else {"mean": mean}
    return ckpt_io.Checkpoint(params=checked, arrays=arrays, meta=dict(meta, imported_from=str(path)))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Weights in and out of alexnet_cuda checkpoints. 'export' writes a checkpoint's network as a "
                    "safetensors file (this project's names, torchvision's for torchvision-alexnet; the network's "
                    "description in the metadata); 'import' "
                    "makes a checkpoint from a safetensors file or a PyTorch .pth state dict (read without running "
                    "anything in it). Export then import gives back every weight bit for bit.")
    commands = p.add_subparsers(dest="command", required=True, metavar="{export,import}")
    e = commands.add_parser("export", help="a checkpoint's weights -> a safetensors file",
                            description="Write the network of CHECKPOINT (parameters, BatchNorm statistics, the "
                                        "training-set mean as 'normalization.mean', and its description in the "
                                        "metadata) to a safetensors file. The optimizer's state is not exported.")
    e.add_argument("checkpoint", metavar="CHECKPOINT", help="a checkpoint written by alexnet_cuda.train")
    e.add_argument("--safetensors", metavar="FILE", required=True, help="the safetensors file to write")
    cli.add_debug_flag(e)
    i = commands.add_parser("import", help="a safetensors or .pth file -> a checkpoint",
                            description="Make a checkpoint for evaluate, predict and train --init-from from FILE: a "
                                        "safetensors file written by 'export', or one with this project's tensor "
                                        "names and --like, or a PyTorch .pth state dict with this project's names "
                                        "and --like, or torchvision's AlexNet state dict (.pth or .safetensors, "
                                        "torchvision's names: features.0.weight, ...), which becomes a "
                                        "torchvision-alexnet network with torchvision's preprocessing (resize 256, "
                                        "centre crop 224, ImageNet mean and std), its classes numbered 0..K-1.")
    i.add_argument("file", metavar="FILE", help="a .safetensors file or a torch.save .pth state dict")
    i.add_argument("--out", metavar="PATH", required=True, help="the checkpoint (.npz) to write")
    i.add_argument("--like", metavar="CHECKPOINT",
                   help="take the network's description, classes and mean from this checkpoint (needed when FILE "
                        "has no alexnet_cuda metadata, e.g. any .pth)")
    cli.add_debug_flag(i)
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.command(PROG, build_parser(), _run, argv)


def _run(args) -> int:
    if args.command == "export":
        ckpt = ckpt_io.load(args.checkpoint)
        out = export_safetensors(ckpt, args.safetensors)
        print(f"wrote {out}: {len(ckpt.params)} tensors of {ckpt.model_config.get('arch')} "
              f"({ckpt.model_config.get('num_classes')} classes)")
        return 0
    ckpt = import_weights(args.file, args.like)
    out = ckpt_io.save(args.out, ckpt)
    print(f"wrote {out}: {len(ckpt.params)} tensors of {ckpt.model_config.get('arch')} "
          f"({ckpt.model_config.get('num_classes')} classes) from {args.file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
