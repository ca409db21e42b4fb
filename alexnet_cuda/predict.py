"""Classify images: ``python -m alexnet_cuda.predict IMAGE... [--checkpoint runs/.../best.npz]``.

Each image is prepared as in training (shorter side resized to the checkpoint's image size S, central S x S square,
training mean subtracted) and classified from its centre crop, or with ``--ten-crop`` from the paper's 10-patch
average. Prints the top-5 classes (names stored in the checkpoint) with their probabilities.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from . import checkpoint as ckpt_io
from . import cli

PROG = "python -m alexnet_cuda.predict"


def predict_arrays(model, images: np.ndarray, *, ten_crop: bool = False, batch_size: int = 64) -> np.ndarray:
    """Class probabilities (N, num_classes) for uint8 (N, S, S, 3) images."""
    from .data import center_crop, ten_crops

    s, crop = int(images.shape[1]), int(model.input_size)
    out = []
    for i in range(0, len(images), batch_size):
        batch = np.ascontiguousarray(images[i:i + batch_size])
        k = len(batch)
        views = ten_crops(s, crop, k) if ten_crop else [center_crop(s, crop, k)]
        p = sum(np.asarray(model.predict(batch, crops=v["crops"], flips=v["flips"]), np.float64) for v in views)
        out.append(p / len(views))
    return np.concatenate(out) if out else np.zeros((0, model.num_classes))


def top_classes(probs: np.ndarray, classes: list[str], class_ids: list[str], k: int = 5) -> list[list[dict]]:
    """For each row of ``probs``: the ``k`` most probable classes as {"class", "id", "index", "probability"}."""
    result = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:k]
        result.append([{"class": classes[j] if j < len(classes) else str(j),
                        "id": class_ids[j] if j < len(class_ids) else str(j),
                        "index": int(j), "probability": float(row[j])} for j in order])
    return result


def predict_files(model, ckpt: ckpt_io.Checkpoint, paths: list[str], *, top: int = 5,
                  ten_crop: bool = False) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Top-``top`` predictions for each readable file, and an error message for each unreadable one."""
    from .data import BadImage, load_image_file

    s = int(ckpt.meta.get("image_size") or 0)
    if not s:
        raise ckpt_io.CheckpointError(f"checkpoint {ckpt.path}: does not record its image size")
    images, ok, errors = [], [], {}
    for p in paths:
        try:
            images.append(load_image_file(p, s))
            ok.append(p)
        except BadImage as exc:
            errors[p] = str(exc)
    preds: dict[str, list[dict]] = {}
    if images:
        probs = predict_arrays(model, np.stack(images), ten_crop=ten_crop)
        names = ckpt.classes or [str(i) for i in range(probs.shape[1])]
        ids = ckpt.class_ids or names
        for p, row in zip(ok, top_classes(probs, names, ids, top)):
            preds[p] = row
    return preds, errors


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="The most probable classes of each image, with their "
                                                       "probabilities, from a checkpoint written by "
                                                       "alexnet_cuda.train.")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (JPEG, PNG, ...)")
    p.add_argument("--checkpoint", metavar="PATH", help="default: the newest runs/*/best.npz")
    p.add_argument("--top", type=cli.int_at_least(1), default=5, metavar="K",
                   help="how many classes to show (default 5)")
    p.add_argument("--ten-crop", action="store_true",
                   help="average the softmax over the paper's 10 patches instead of the centre crop")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    cli.add_debug_flag(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return cli.command(PROG, build_parser(), _run, argv)


def _run(args) -> int:
    path, ckpt, model = ckpt_io.load_for_inference(args.checkpoint, args.device)
    preds, errors = predict_files(model, ckpt, args.images, top=args.top, ten_crop=args.ten_crop)
    for p, msg in errors.items():
        print(f"{PROG}: error: {msg}", file=sys.stderr)
    if args.json:
        print(json.dumps({"checkpoint": str(path), "predictions": preds, "errors": errors}, indent=2))
    else:
        for p in args.images:
            if p not in preds:
                continue
            print(p)
            for r in preds[p]:
                ident = f" ({r['id']})" if r["id"] != r["class"] else ""
                print(f"  {100 * r['probability']:6.2f}%  {r['class']}{ident}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
