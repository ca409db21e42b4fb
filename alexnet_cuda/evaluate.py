"""Evaluate a checkpoint: ``python -m alexnet_cuda.evaluate --checkpoint runs/.../best.npz [--data DIR]``.

Prints the top-1 and top-5 error rates on the validation set two ways (paper Section 4.1, "at test time"):

* centre crop: the single central ``crop x crop`` patch of each ``S x S`` image;
* 10 crops: the four corner patches and the centre patch, and their horizontal reflections, with the network's
  softmax outputs averaged over the ten before ranking the classes.

Without ``--data`` it evaluates on the data the checkpoint was trained with (the built-in synthetic dataset is
regenerated); for a folder without ``train/`` and ``val/``, ``--split val`` and ``--split test`` are the splits the
run made of it, read from the run directory's ``splits/`` (``--split test``: images the run never trained or
validated on). Without ``--checkpoint`` it takes the newest ``runs/*/best.npz``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import checkpoint as ckpt_io
from . import cli
from .cli import ConfigError
from .reference.softmax_xent import label_rank

PROG = "python -m alexnet_cuda.evaluate"


def topk_correct(probs: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N,): whether the true class is among the ``k`` highest scores. The rule of ``ops.topk_correct``
    (fewer than k other classes score at least as high; ties and NaN count against the label)."""
    return label_rank(probs, labels) < k


def _summarize(probs_sum_loss: float, correct1: int, correct5: int, n: int) -> dict[str, float]:
    return {"top1_error": 1.0 - correct1 / n, "top5_error": 1.0 - correct5 / n, "loss": probs_sum_loss / n}


def predictions(model, dataset, *, batch_size: int = 128, ten_crop: bool = True, workers: int | None = None,
                max_images: int | None = None, progress: bool = False) -> Iterator[tuple[np.ndarray, dict]]:
    """Yields, batch by batch, the labels and the softmax outputs (float64) of ``model`` on ``dataset``:
    ``(labels, {"center": probs, "ten_crop": probs})`` (``ten_crop`` only when asked). The one place that runs a
    model over a dataset: :func:`evaluate` and the run report's confusion matrix both read it."""
    from .data import Loader, Subset, center_crop, ten_crops

    if max_images is not None and max_images < len(dataset):
        dataset = Subset(dataset, np.arange(max_images))
    s, crop = int(dataset.image_size), int(model.input_size)
    if s < crop:
        raise ValueError(f"evaluate: the images are {s}x{s}, smaller than the network input {crop}")
    bar = None
    if progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=len(dataset), desc="evaluating", unit="img", leave=False, file=sys.stderr)
        except ImportError:  # pragma: no cover
            bar = None
    try:
        with Loader(dataset, batch_size, shuffle=False, drop_last=False, workers=workers) as loader:
            for images, labels in loader:
                k = len(labels)
                view = center_crop(s, crop, k)
                p_center = np.asarray(model.predict(images, crops=view["crops"], flips=view["flips"]), np.float64)
                probs = {"center": p_center}
                if ten_crop:
                    p_avg = np.zeros_like(p_center)
                    for v in ten_crops(s, crop, k):
                        p_avg += np.asarray(model.predict(images, crops=v["crops"], flips=v["flips"]), np.float64)
                    probs["ten_crop"] = p_avg / 10.0
                yield np.asarray(labels), probs
                if bar is not None:
                    bar.update(k)
    finally:
        if bar is not None:
            bar.close()


def evaluate(model, dataset, *, batch_size: int = 128, ten_crop: bool = True, workers: int | None = None,
             max_images: int | None = None, progress: bool = False) -> dict[str, Any]:
    """Top-1 / top-5 error (fractions) and mean cross-entropy of ``model`` on ``dataset``, with the centre crop and,
    when ``ten_crop``, with the 10-patch average. Returns ``{"images": n, "center": {...}, "ten_crop": {...}}``."""
    sums = {"center": [0.0, 0, 0], "ten_crop": [0.0, 0, 0]}
    n = 0
    for labels, probs in predictions(model, dataset, batch_size=batch_size, ten_crop=ten_crop, workers=workers,
                                     max_images=max_images, progress=progress):
        k = len(labels)
        for name, p in probs.items():
            acc = sums[name]
            acc[0] += float(-np.log(np.maximum(p[np.arange(k), labels], 1e-30)).sum())
            acc[1] += int(topk_correct(p, labels, 1).sum())
            acc[2] += int(topk_correct(p, labels, 5).sum())
        n += k
    if n == 0:
        raise ValueError("evaluate: the dataset is empty")
    out: dict[str, Any] = {"images": n, "center": _summarize(*sums["center"], n)}
    if ten_crop:
        out["ten_crop"] = _summarize(*sums["ten_crop"], n)
    return out


def dataset_for(ckpt: ckpt_io.Checkpoint, data: str | None, kind: str | None, split: str):
    """The evaluation set: ``data`` when given, else the one the checkpoint was trained on."""
    from . import data as data_mod
    from .data.resize import at_size
    from .data.sources import DataSettings, open_split

    image_size = int(ckpt.meta.get("image_size", 0)) or None
    if data is None:
        saved = ckpt.meta.get("config")
        if not isinstance(saved, dict):
            raise ConfigError(f"{ckpt.path}: does not say which data it was trained on; pass --data")
        config = DataSettings.of(saved)
        if config.dataset != "synthetic" and (config.data is None or not Path(config.data).is_dir()):
            raise ConfigError(f"the training data of {ckpt.path} ({config.data}) is not available here; pass --data")
        # The run directory holds the checkpoint and, for a folder the run split itself, the file list of each split.
        return open_split(config, Path(ckpt.path).parent, split)
    path = Path(data).expanduser()
    if not path.is_dir():
        raise ConfigError(f"--data {data}: no such directory")
    _warn_if_unsplit(path, ckpt)
    try:
        dataset = data_mod.open_dataset(path, kind=kind or "auto", split=split, image_size=image_size or 256)
        return at_size(dataset, image_size)  # the side the network was trained at (CIFAR-10 and Tiny ImageNet too)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--data {data}: {str(exc).splitlines()[0]}") from None


def _warn_if_unsplit(path: Path, ckpt: ckpt_io.Checkpoint) -> None:
    """A folder without train/ and val/ is read whole: say so when it is the folder the checkpoint was trained on,
    since its training images are then among those scored."""
    from .data.datasets import is_unsplit_folder

    saved = ckpt.meta.get("config") if isinstance(ckpt.meta.get("config"), dict) else {}
    if is_unsplit_folder(path) and saved.get("data") == str(path.resolve()):
        print(f"{PROG}: note: --data {path} is the folder {ckpt.path} was trained on and has no train/ and val/: "
              f"all its images are scored, the training ones included. Without --data, --split test scores the "
              f"images the run held out.", file=sys.stderr)


def check_classes(ckpt: ckpt_io.Checkpoint, dataset) -> None:
    """The dataset's labels must mean what the network's outputs mean."""
    want, got = ckpt.class_ids, list(dataset.class_ids)
    if want and got != want:
        raise ConfigError(f"the data has {len(got)} classes ({', '.join(got[:3])}, ...) but {ckpt.path} was trained "
                          f"on {len(want)} different ones ({', '.join(want[:3])}, ...)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Top-1 and top-5 error of a trained checkpoint on a validation set, with the centre crop and "
                    "with the paper's 10-crop average (four corners + centre, and their reflections; the softmax "
                    "outputs are averaged).")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="a checkpoint written by alexnet_cuda.train (default: the newest runs/*/best.npz)")
    p.add_argument("--data", metavar="PATH", help="dataset directory (default: the checkpoint's training data)")
    p.add_argument("--dataset", choices=("folder", "imagenet", "cifar10", "tinyimagenet"),
                   help="dataset kind (default: detected)")
    p.add_argument("--split", choices=("val", "train", "test"), default="val",
                   help="default val; test: the held-out split that train made of a folder without train/ and val/ "
                        "(read from the run directory's splits/), or a dataset's own test split")
    p.add_argument("--batch-size", type=cli.int_at_least(1), default=128, metavar="N", help="default 128")
    p.add_argument("--max-images", type=cli.int_at_least(1), metavar="N", help="evaluate on the first N images only")
    p.add_argument("--no-ten-crop", dest="ten_crop", action="store_false", help="centre crop only (faster)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    p.add_argument("--gpus", type=cli.gpu_list, metavar="IDS", help="GPU ids, e.g. 0,1")
    p.add_argument("--workers", type=cli.int_at_least(0), help="data-loading workers")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    cli.add_debug_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.command(PROG, build_parser(), _run, argv)


def _run(args) -> int:
    path, ckpt, model = ckpt_io.load_for_inference(args.checkpoint, args.device, args.gpus)
    dataset = dataset_for(ckpt, args.data, args.dataset, args.split)
    check_classes(ckpt, dataset)
    result = evaluate(model, dataset, batch_size=args.batch_size, ten_crop=args.ten_crop, workers=args.workers,
                      max_images=args.max_images, progress=args.progress)
    result["checkpoint"] = str(path)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    meta = ckpt.meta
    print(f"{path}: {meta.get('model', {}).get('arch')} after {meta.get('epoch')} epochs, "
          f"{result['images']} {args.split} images")
    for name, label in (("center", "centre crop"), ("ten_crop", "10-crop average")):
        if name in result:
            r = result[name]
            print(f"  {label:16s} top-1 error {100 * r['top1_error']:6.2f}%   top-5 error "
                  f"{100 * r['top5_error']:6.2f}%   loss {r['loss']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
