#!/usr/bin/env python3
"""Parity run against PyTorch (issue 20, part 4): alexnet-small and the paper's four-layer CIFAR-10 net
(conv-local-13pct, Section 3.3) trained here and in PyTorch CPU, side by side, from the same initial weights, on the
same batches with the same augmentation draws and the same dropout masks.

It is the end-to-end check that the op-level gradient checks cannot give: a whole training run (forward, loss,
backward, the update, the input pipeline) compared step by step against an independent implementation.

- alexnet-small's PyTorch net (``TorchTwin``) is the dense form of our two towers
  (``alexnet_cuda/reference/network.py``): own-tower convs are grouped convolutions (groups = towers), conv3 and the fc layers read both towers, LRN is applied to each tower's
  block of channels on its own (its window stops at the tower boundary), max pooling 3/2, dropout on fc6 and fc7.
  Its weights are copied from ours (``state_dict`` + ``reference.network.merge_towers``). The four-layer net's
  (``benchmarks/torch_described.py``, ``DescribedTwin``) is built from its description, as ours is, layer by layer
  from PyTorch operators (the local layers as unfold + einsum), with each layer's own rates, momenta and decay.
- Inputs: ours gets the uint8 batch with the step's crops, flips and PCA colour shift (as the trainer feeds it);
  PyTorch gets the float32 tensor our input op makes of them (``ops.prepare_batch``: crop, flip, mean subtraction,
  colour shift, scale), so both see the same floats.
- Dropout: PyTorch multiplies by our masks, drawn from the same Philox streams (``reference.dropout.dropout_mask``
  at ``reference.network.dropout_offset(step, layer, tower)``, one block of neurons per tower), instead of
  ``torch.nn.Dropout``'s own.
- SGD: ours is the paper's (Section 5) ``v <- m v - wd lr w - lr g; w <- w + v`` with no decay on biases. PyTorch's
  ``torch.optim.SGD(momentum=m, weight_decay=wd)`` keeps ``b <- m b + (g + wd w); w <- w - lr b`` (dampening 0,
  first step b = g + wd w, which is the same formula with b = 0). Put v = -lr b: then
  ``v <- m v - lr g - lr wd w`` and ``w <- w + v``, the paper's update, as long as lr is the same at every step
  (a changing lr would rescale the stored b). So a constant lr, weight_decay=wd on weights and 0 on biases.

Precision: the twin runs in float64 by default (``--torch-dtype``). Measured on one batch against the float64
reference network, PyTorch 2.13 float32 CPU gradients of conv4 and below are ~1e-3 off (the backward through conv5,
with mkldnn on or off), so a float32 twin drifts from step 4; PyTorch float64 equals the reference to 1e-15. See
docs/benchmarks.md ("Parity with PyTorch") for what ran and what was found.

Data: CIFAR-10 from a folder of JPEGs (``--data``), prepared as ``python -m alexnet_cuda.train`` prepares it
(``train/run.py`` ``_prepare_run``), the training-set mean image (and PCA) from 10,000 images:
- alexnet-small: images resampled to 36x36, random 32x32 crops, flips, the RGB PCA colour shift (std 0.1), input
  scale 'auto'; its recipe from ``train/config.py`` RECIPES (batch 32, lr 0.01, weights N(0, 0.03^2), biases 0.1),
  momentum 0.9, weight decay 5e-4.
- conv-local-13pct: cuda-convnet's (``train/described.py``): random 24x24 crops of the 32x32 images, flips, no
  colour noise, pixels on the 0-255 scale minus the mean image, batch 128, the file's per-layer rates (lr x1).

    python benchmarks/parity.py --data ../shared/data/cifar10                          # one epoch of alexnet-small
    python benchmarks/parity.py --arch conv-local-13pct --data ../shared/data/cifar10  # one epoch of the 4-layer net
    python benchmarks/parity.py --data ../shared/data/cifar10 --steps 300 --val-images 2000

Checks: the first ``--check-steps`` (10) losses agree within 1e-4 relative; then both are evaluated on the
validation split's centre crops. Writes ``benchmarks/results/parity_<arch>.json`` (per-step losses, errors,
command, times) and ``.png`` (the two loss curves).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import datetime, timezone
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from alexnet_cuda import AlexNet, data, ops  # noqa: E402
from alexnet_cuda.data.resize import at_size  # noqa: E402
from alexnet_cuda.nets.builtin import builtin  # noqa: E402
from alexnet_cuda.reference.dropout import dropout_mask  # noqa: E402
from alexnet_cuda.reference.network import CONV_LAYERS, GROUPED, LRN_AFTER, POOL_AFTER, dropout_offset  # noqa: E402
from alexnet_cuda.reference.network import merge_towers  # noqa: E402
from alexnet_cuda.train.config import RECIPES, SMALL_DATA_IMAGE_SIZE  # noqa: E402
from alexnet_cuda.train.described import DEFAULT_MOMENTUM, DESCRIBED_BATCH_SIZE  # noqa: E402
from benchmarks import torch_described as twin_ops  # noqa: E402
from benchmarks.torch_described import DescribedTwin  # noqa: E402

ARCHS = ("alexnet-small", "conv-local-13pct")
RESULTS = Path(__file__).resolve().parent / "results"
REL_TOL = 1e-4  # issue 20: the first 10 losses agree within 1e-4 relative


# ---- the PyTorch twin ----------------------------------------------------------------------------------------------
class TorchTwin:
    """The dense PyTorch form of one of our networks (relu/tanh, LRN, hidden fc layers with dropout), with our
    weights and the SGD that equals ours (module docstring)."""

    def __init__(self, torch: Any, model: AlexNet, lr: float, momentum: float, weight_decay: float,
                 dtype: str = "float64", seed: int = 0):
        self.torch, self.F, self.seed = torch, torch.nn.functional, seed
        self.dtype = getattr(torch, dtype)
        self.c = model.config
        if self.c["norm"] not in ("lrn", "none") or self.c["gap_head"]:
            raise ValueError("TorchTwin: only the LRN / no-normalization nets with fc heads are mirrored")
        dense = merge_towers(model.state_dict(), self.c["towers"])
        self.p = {k: torch.tensor(v, dtype=self.dtype, requires_grad=True) for k, v in dense.items()}
        weights = [v for k, v in self.p.items() if k.endswith(".weight")]
        biases = [v for k, v in self.p.items() if k.endswith(".bias")]
        self.opt = torch.optim.SGD([{"params": weights, "weight_decay": weight_decay},
                                    {"params": biases, "weight_decay": 0.0}], lr=lr, momentum=momentum)
        self.act = torch.relu if self.c["activation"] == "relu" else torch.tanh

    def forward(self, x, step: int | None):
        """Logits; ``step`` is the training step whose dropout masks to apply (None: evaluation, no dropout)."""
        F, c, p, towers = self.F, self.c, self.p, self.c["towers"]
        masks = None if step is None else dropout_scales(self.torch, c, self.seed, step, x.shape[0], self.dtype)
        for i, layer in enumerate(CONV_LAYERS):
            x = F.conv2d(x, p[f"{layer}.weight"], p[f"{layer}.bias"], c["conv_stride"][i], c["conv_pad"][i],
                         groups=towers if layer in GROUPED else 1)
            x = self.act(x)
            if layer in LRN_AFTER and c["norm"] == "lrn":  # each tower normalizes its own maps
                blocks = x.chunk(towers, dim=1)
                x = self.torch.cat([F.local_response_norm(b, c["lrn_size"], c["lrn_alpha"], c["lrn_beta"],
                                                          c["lrn_k"]) for b in blocks], dim=1)
            if layer in POOL_AFTER:
                x = F.max_pool2d(x, c["pool_kernel"], c["pool_stride"])
        x = x.flatten(1)
        hidden = len(c["fc_width"])
        for k in range(hidden + 1):
            x = F.linear(x, p[f"fc{6 + k}.weight"], p[f"fc{6 + k}.bias"])
            if k < hidden:
                x = self.act(x)
                if masks is not None:
                    x = x * masks[k]
        return x

    def train_step(self, x: np.ndarray, labels: np.ndarray, step: int) -> float:
        return twin_ops.train_step(self, x, labels, step)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return twin_ops.predict(self, x)


def dropout_scales(torch: Any, config: dict, seed: int, step: int, n: int, dtype: Any = None) -> list | None:
    """Our inverted-dropout multipliers (keep / (1 - p), else 0) of each hidden fc layer at ``step``: each tower's
    block of neurons from its own Philox stream (reference/network.py)."""
    p, towers, widths = float(config["dropout"]), config["towers"], config["fc_width"]
    if p == 0.0:
        return None
    out = []
    for k, width in enumerate(widths):
        keep = np.concatenate([dropout_mask((n, width // towers), p, seed,
                                            dropout_offset(step, k, t, len(widths))) for t in range(towers)], axis=1)
        out.append(torch.from_numpy(np.where(keep, np.float32(1.0 / (1.0 - p)), np.float32(0.0))).to(dtype))
    return out


# ---- the two nets and their inputs -------------------------------------------------------------------------------
@dataclass
class Pair:
    """Our net and its PyTorch twin from the same weights, with the inputs and the update both use."""
    arch: str
    model: AlexNet
    twin: Any
    mean: np.ndarray
    scale: float
    augmenter: Any
    batch: int
    lr: float
    momentum: float
    weight_decay: float
    recipe: dict


def image_side(arch: str) -> int:
    """The side the images are stored at: alexnet-small's 36 (32x32 crops), the CIFAR nets' native 32."""
    return SMALL_DATA_IMAGE_SIZE[32] if arch == "alexnet-small" else 32


def make_pair(torch: Any, arch: str, train_set, seed: int = 0, dtype: str = "float64",
              stats_images: int | None = 10000) -> Pair:
    """The trainer's setup of ``arch`` (module docstring), on ``train_set``'s mean image (and PCA)."""
    mean = np.ascontiguousarray(data.compute_mean(train_set, max_images=stats_images, progress=False), np.float32)
    side = int(train_set.image_size)
    if arch != "alexnet-small":
        desc = builtin(arch)
        model = AlexNet.from_description(desc, "cpu", seed=seed)
        model.set_normalization(mean, 1.0)  # cuda-convnet's: 0-255 pixels minus the mean image
        augmenter = data.Augmenter(side, desc.input_size, pca_std=0.0, flip=True, seed=seed + 1)
        twin = DescribedTwin(torch, desc, model, 1.0, DEFAULT_MOMENTUM, 0.0, dtype, seed)
        return Pair(arch, model, twin, mean, 1.0, augmenter, DESCRIBED_BATCH_SIZE, 1.0, DEFAULT_MOMENTUM, 0.0,
                    {"lr": "x1 of each layer's own", "batch_size": DESCRIBED_BATCH_SIZE, "input_scale": 1.0,
                     "crop": desc.input_size, "pca_std": 0.0})
    recipe, momentum, weight_decay = RECIPES[arch], 0.9, 5e-4
    eigvals, eigvecs = data.compute_pca(train_set, max_images=stats_images, progress=False)
    eigvals, eigvecs = np.asarray(eigvals, np.float32), np.asarray(eigvecs, np.float32)
    pixel_std = max(math.sqrt(float(np.sum(eigvals)) / 3.0), 1.0)
    scale = 1.0 / (pixel_std * recipe["weight_std"] * math.sqrt(3 * 5 * 5))  # input scale 'auto'; conv1 is 5x5
    augmenter = data.Augmenter(side, 32, eigvals=eigvals, eigvecs=eigvecs, pca_std=0.1, flip=True, seed=seed + 1)
    model = AlexNet(num_classes=10, arch=arch, weight_std=recipe["weight_std"], bias_init=recipe["bias_init"],
                    seed=seed)
    model.set_normalization(mean, scale)
    twin = TorchTwin(torch, model, recipe["lr"], momentum, weight_decay, dtype, seed)
    return Pair(arch, model, twin, mean, scale, augmenter, recipe["batch_size"], recipe["lr"], momentum,
                weight_decay, {**recipe, "input_scale": scale, "momentum": momentum, "weight_decay": weight_decay,
                               "crop": 32, "pca_std": 0.1})


def float_inputs(images, mean, scale: float, crop: int, aug: dict) -> np.ndarray:
    """The float32 NCHW tensor our network computes from the uint8 batch (its input op)."""
    crops = np.asarray(aug["crops"], np.int32)
    out = ops.prepare_batch(np.ascontiguousarray(images), mean, np.ascontiguousarray(crops[:, 0]),
                            np.ascontiguousarray(crops[:, 1]), np.asarray(aug["flips"], np.int32),
                            np.asarray(aug["rgb_shift"], np.float32), crop, scale)
    return np.ascontiguousarray(out, np.float32)


def train_pair(pair: Pair, loader, steps: int, log=None, max_seconds: float | None = None) -> dict:
    """``steps`` steps of both on the same batches; per-step losses and times."""
    model, twin, augmenter = pair.model, pair.twin, pair.augmenter
    crop = model.input_size
    ours, theirs, t_ours, t_theirs = [], [], [], []
    epoch = 0
    started = time.time()
    while len(ours) < steps and not (max_seconds and time.time() - started > max_seconds):
        loader.set_epoch(epoch)
        for images, labels in loader:
            if len(ours) >= steps or (max_seconds and time.time() - started > max_seconds):
                break
            aug = augmenter.draw(len(labels))
            x = float_inputs(images, pair.mean, pair.scale, crop, aug)
            step = model.step
            t0 = time.perf_counter()
            r = model.train_step(images, labels, pair.lr, pair.momentum, pair.weight_decay, crops=aug["crops"],
                                 flips=aug["flips"], rgb_shift=aug["rgb_shift"])
            t1 = time.perf_counter()
            theirs.append(twin.train_step(x, np.asarray(labels), step))
            t_theirs.append(time.perf_counter() - t1)
            ours.append(float(r.loss))
            t_ours.append(t1 - t0)
            if log and (len(ours) <= 10 or len(ours) % 50 == 0):
                log(f"step {len(ours)}: loss ours {ours[-1]:.6f} torch {theirs[-1]:.6f} "
                    f"({t_ours[-1]:.2f} s / {t_theirs[-1]:.2f} s)")
        epoch += 1
    return {"loss_ours": ours, "loss_torch": theirs, "step_s_ours": t_ours, "step_s_torch": t_theirs}


def relative_gaps(a, b) -> list[float]:
    return [abs(x - y) / max(abs(y), 1e-12) for x, y in zip(a, b)]


def evaluate_pair(pair: Pair, val_set, max_images: int | None, batch: int = 100) -> dict:
    """Top-1 error of both on the centre crops of the validation images (the trainer's validation)."""
    model, twin = pair.model, pair.twin
    n = len(val_set) if max_images is None else min(len(val_set), max_images)
    crop, s = model.input_size, int(val_set.image_size)
    wrong_ours = wrong_torch = seen = 0
    loader = data.Loader(val_set, batch, shuffle=False, drop_last=False, workers=1)
    for images, labels in loader:
        if seen >= n:
            break
        images, labels = images[:n - seen], np.asarray(labels[:n - seen])
        count = len(labels)
        view = data.center_crop(s, crop, count)
        r = model.evaluate(images, labels, crops=view["crops"], flips=view["flips"])
        wrong_ours += count - round(r.top1 * count)
        logits = twin.predict(float_inputs(images, pair.mean, pair.scale, crop, view))
        wrong_torch += int((logits.argmax(1) != labels).sum())
        seen += count
    loader.close()
    return {"val_images": n, "error_ours": wrong_ours / n, "error_torch": wrong_torch / n}


def plot(path: Path, result: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5))
    steps = np.arange(1, len(result["loss_ours"]) + 1)
    ax.plot(steps, result["loss_torch"], label="PyTorch CPU", color="tab:orange", lw=2.5, alpha=0.6)
    ax.plot(steps, result["loss_ours"], label="alexnet_cuda (CPU backend)", color="tab:blue", lw=0.8)
    ax.set_xlabel(f"step (batch of {result['recipe']['batch_size']})")
    ax.set_ylabel("training loss (softmax cross-entropy)")
    e = result.get("eval") or {}
    title = f"{result['arch']} on CIFAR-10 (JPEG copies), same weights, batches, augmentation and dropout"
    if e:
        title += f"\nvalidation error after {len(steps)} steps: ours {100 * e['error_ours']:.2f}%, " \
                 f"PyTorch {100 * e['error_torch']:.2f}% ({e['val_images']} centre crops)"
    ax.set_title(title, fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", choices=ARCHS, default="alexnet-small", help="the network (default alexnet-small)")
    ap.add_argument("--data", default="../shared/data/cifar10", help="CIFAR-10 folder (train/ and val/)")
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps (default: one epoch, the training images / the batch)")
    ap.add_argument("--check-steps", type=int, default=10, help="steps whose losses must agree within 1e-4")
    ap.add_argument("--val-images", type=int, default=None, help="validation images (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--torch-dtype", choices=("float64", "float32"), default="float64",
                    help="the PyTorch twin's precision (default float64: see the module docstring)")
    ap.add_argument("--max-train-s", type=float, default=None, help="stop training after this many seconds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    t_start = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t_start:7.1f} s] {msg}", flush=True)

    size = image_side(args.arch)
    train_set = at_size(data.open_dataset(args.data, kind="auto", split="train", image_size=size), size)
    val_set = at_size(data.open_dataset(args.data, kind="auto", split="val", image_size=size), size)
    log(f"train {len(train_set)} / val {len(val_set)} images at {size}x{size}; computing the mean and PCA")
    pair = make_pair(torch, args.arch, train_set, args.seed, args.torch_dtype)
    steps = args.steps or len(train_set) // pair.batch
    loader = data.Loader(train_set, pair.batch, shuffle=True, drop_last=True, seed=args.seed, workers=1)
    log(f"{args.arch}: input scale {pair.scale:.5f}; training {steps} steps of {pair.batch}")
    t0 = time.time()
    result = train_pair(pair, loader, steps, log, args.max_train_s)
    train_s = time.time() - t0
    loader.close()
    gaps = relative_gaps(result["loss_ours"], result["loss_torch"])
    check = gaps[:args.check_steps]
    log(f"first {len(check)} losses: max relative gap {max(check):.2e} (tolerance {REL_TOL:g})")
    t0 = time.time()
    result["eval"] = evaluate_pair(pair, val_set, args.val_images)
    eval_s = time.time() - t0
    e = result["eval"]
    log(f"validation error ({e['val_images']} centre crops): ours {100 * e['error_ours']:.2f}%, "
        f"PyTorch {100 * e['error_torch']:.2f}%")
    payload = {
        "benchmark": "parity", "arch": args.arch, "data": str(args.data),
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:])),
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "load_average_end": os.getloadavg(), "threads": args.threads, "torch": torch.__version__,
        "recipe": {**pair.recipe, "image_size": size, "seed": args.seed},
        "steps_asked": steps, "steps": len(result["loss_ours"]), "torch_dtype": args.torch_dtype,
        "check_steps": args.check_steps, "rel_tol": REL_TOL,
        "max_rel_gap_check": max(check), "check_passed": max(check) <= REL_TOL,
        "max_rel_gap_all": max(gaps), "rel_gap_last": gaps[-1],
        "train_wall_s": train_s, "eval_wall_s": eval_s, "total_wall_s": time.time() - t_start,
        "median_step_s_ours": float(np.median(result["step_s_ours"])),
        "median_step_s_torch": float(np.median(result["step_s_torch"])),
        **result,
    }
    try:
        with open("/proc/cpuinfo") as f:
            payload["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"parity_{args.arch}"
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    plot(stem.with_suffix(".png"), payload)
    log(f"wrote {stem}.json and .png")
    return payload


if __name__ == "__main__":
    main()
