"""Train AlexNet: ``python -m alexnet_cuda.train`` (``--help`` for the flags).

With no arguments it trains a small AlexNet (``alexnet-small``, 32x32 inputs) on the built-in synthetic dataset (no
download), on the GPUs when there are any and on the CPU otherwise, and shows the loss falling and the validation
accuracy rising well above chance within a few minutes on a 2-core CPU: 10 epochs of 2,560 images, about 40 s each
when the two cores are free; observed validation top-1 accuracy (chance 10 %) about 45 % after epoch 2, 80 % after
epoch 6, 92 % after epoch 10. With ``--data DIR`` it trains on an image folder, ImageNet, CIFAR-10 or Tiny ImageNet
(detected from the directory).

The recipe is the paper's (Krizhevsky, Sutskever, Hinton 2012):

* Section 4.1: random ``crop x crop`` patches of the ``S x S`` images (S = 256, crop = 227 for the full network) and
  their horizontal reflections; the RGB PCA colour augmentation with standard deviation 0.1. The training-set mean
  image is subtracted (Section 2). Validation uses the centre patch (``alexnet_cuda.evaluate`` adds the 10-patch
  average).
* Section 5: SGD with batch 128, momentum 0.9, weight decay 0.0005, learning rate 0.01 divided by 10 when the
  validation error stops improving (``--lr-schedule plateau``; the paper did this by hand, three times), weights
  initialized N(0, 0.01^2) and some biases 1. ``alexnet-small`` departs from it to learn in minutes: batch 32,
  weights N(0, 0.03^2), biases 0.1 and scaled inputs (see ``RECIPES``).

Everything the run needs to continue is saved in ``--out``: ``last.npz`` (every epoch, and on Ctrl-C), ``best.npz``
(the best validation top-1 so far), ``metrics.jsonl`` (one line per epoch), ``steps.jsonl`` (one line per step),
``mean.npy`` and ``pca.npz`` (the cached input statistics). ``--resume`` continues exactly: on the CPU the resumed
run's per-step losses are identical to an uninterrupted run's.

The core is :func:`train` (a :class:`TrainConfig` in, a summary dict out), which the tests call in-process.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import signal
import sys
import textwrap
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import build_info, visible_gpus
from . import checkpoint as ckpt_io

PROG = "python -m alexnet_cuda.train"
DATASETS = ("synthetic", "folder", "imagenet", "cifar10", "tinyimagenet")
ARCHS = ("alexnet", "alexnet-small")
SCHEDULES = ("plateau", "step", "none")

# Defaults that depend on the data. Synthetic / CIFAR-10: the small network on random 32x32 crops of 36x36 images
# (the paper's 227-of-256 crop, scaled down). Tiny ImageNet: 64x64 crops of 72x72. Image folders and ImageNet: the
# paper's network, 227x227 crops of 256x256.
SMALL_DATA_IMAGE_SIZE = {32: 36, 64: 72}
DEFAULT_EPOCHS = {"synthetic": 10, "cifar10": 40, "tinyimagenet": 40, "folder": 90, "imagenet": 90}
# Per-architecture defaults of the settings left at None.
# alexnet: the paper's recipe (Section 5): batch 128, learning rate 0.01, weights N(0, 0.01^2), biases 1 in conv2,
#   conv4, conv5, fc6, fc7, raw 0..255 pixels minus the mean image.
# alexnet-small: a recipe for short runs on small images (minutes on a CPU). With the paper's initialization the
#   input signal shrinks about a thousandfold on its way through the seven weight layers before fc8 (std 0.01 times
#   sqrt(fan-in) is 0.3..0.5 per layer), so the network starts out predicting a constant and needs many epochs
#   before the loss moves. Weights N(0, 0.03^2) are close to He et al.'s sqrt(2 / fan-in) for conv2..fc8; the
#   inputs are scaled so that conv1's responses start at unit standard deviation (input_scale 'auto', see
#   auto_input_scale); biases 0.1 (as in Caffe's AlexNet) instead of 1, which with these weights saturates the
#   softmax at the start. Tuned on the synthetic dataset on a 2-core CPU.
RECIPES = {
    "alexnet": {"batch_size": 128, "lr": 0.01, "weight_std": 0.01, "bias_init": 1.0, "input_scale": 1.0},
    "alexnet-small": {"batch_size": 32, "lr": 0.01, "weight_std": 0.03, "bias_init": 0.1, "input_scale": "auto"},
}
# The built-in synthetic dataset: 10 classes, this many training / validation images.
SYNTHETIC_TRAIN_IMAGES = 2560
SYNTHETIC_VAL_IMAGES = 500


class ConfigError(ValueError):
    """A setting or the data cannot be used (a bad --data path, an unknown dataset, ...). Reported as one line."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite. The message names the step; the last good checkpoint is kept."""


@dataclass
class TrainConfig:
    """Every setting of a training run. ``None`` means "the default for this dataset / device" (see :func:`resolve`).

    The command-line flags map one to one onto these fields (``--batch-size`` -> ``batch_size``).
    """

    # data
    data: str | None = None                # a dataset directory; None: the built-in synthetic dataset
    dataset: str | None = None             # synthetic|folder|imagenet|cifar10|tinyimagenet; None: detected
    image_size: int | None = None          # stored image side S (random crops are taken from S x S images)
    synthetic_classes: int = 10
    synthetic_images: int | None = None    # synthetic training images (validation: about a fifth)
    stats_images: int | None = 10000       # images used for the mean image and the RGB PCA (None: all)
    workers: int | None = None             # data-loading workers (None: the loader's default)
    # model
    arch: str | None = None                # alexnet|alexnet-small; None: by dataset
    input_size: int | None = None          # network input (crop) side; None: 227 (alexnet), 32 or 64 (small)
    lrn: bool = True
    overlapping_pool: bool = True
    activation: str = "relu"
    dropout: float = 0.5
    towers: int = 2
    weight_std: float | None = None        # None: the arch's recipe (RECIPES)
    bias_init: float | None = None
    input_scale: float | None = None       # (pixel - mean) * input_scale; None: the arch's recipe
    widths: dict | None = None             # layer-width override of AlexNet (tiny nets in tests); no flag
    # optimisation (paper Section 5)
    epochs: int | None = None
    batch_size: int | None = None          # None: 128 (the paper) for alexnet, see RECIPES
    lr: float | None = None
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "plateau"
    lr_patience: int = 2                   # plateau: epochs without a better validation error before dividing
    lr_step_epochs: int = 30               # step: divide the learning rate by 10 every this many epochs
    lr_drops: int = 3                      # divide at most this many times (the paper: three times)
    pca_std: float = 0.1                   # Section 4.1's colour augmentation (0 turns it off)
    # run
    device: str = "auto"                   # auto|cpu|cuda
    gpus: list[int] | None = None          # GPU ids, e.g. [0, 1]; the towers are spread over them
    seed: int = 0
    out: str | None = None                 # run directory; None: runs/<dataset>-<arch>-<time>
    resume: bool = False
    eval_every: int = 1
    save_every: int = 0                    # also save last.npz every this many steps (0: only at epoch ends)
    train_batches: int | None = None       # cap on training batches per epoch (smoke tests)
    val_batches: int | None = None         # cap on validation batches (smoke tests)
    progress: bool = True


# Settings a resumed run may change; every other setting comes from the checkpoint, so the run continues exactly.
RESUME_OVERRIDES = ("device", "gpus", "workers", "progress", "out", "resume")
RESUME_OVERRIDES_IF_SET = ("epochs",)


# --------------------------------------------------------------------------------------------------------------------
# Resolving defaults
# --------------------------------------------------------------------------------------------------------------------

def detect_dataset(path: Path) -> str:
    """Which kind of dataset directory ``path`` is (for choosing the defaults); 'folder' when unrecognised (opening
    it then fails with the data package's explanation)."""
    try:
        from .data.datasets import _detect  # the data package's own detector: one set of rules
    except ImportError:  # pragma: no cover - a data package without it
        _detect = None
    if _detect is not None:
        kind = _detect(str(path.resolve()), "train")
        return kind if kind in DATASETS else "folder"
    names = {p.name for p in path.iterdir()}  # pragma: no cover
    if names & {"cifar-10-batches-py", "cifar-10-batches-bin", "data_batch_1"}:  # pragma: no cover
        return "cifar10"
    if "wnids.txt" in names:  # pragma: no cover
        return "tinyimagenet"
    return "folder"  # pragma: no cover


def resolve(config: TrainConfig) -> TrainConfig:
    """Fills in the settings left at None from the dataset and checks the combination. Raises ConfigError."""
    c = dataclasses.replace(config)
    if c.data is None:
        if c.dataset not in (None, "synthetic"):
            raise ConfigError(f"--dataset {c.dataset} needs --data DIR (only the synthetic dataset is built in)")
        c.dataset = "synthetic"
    else:
        path = Path(c.data).expanduser()
        if not path.exists():
            raise ConfigError(f"--data {c.data}: no such directory")
        if not path.is_dir():
            raise ConfigError(f"--data {c.data}: not a directory")
        c.data = str(path.resolve())  # checkpoints record where the data was, for evaluate and --resume
        if c.dataset is None or c.dataset == "auto":
            c.dataset = detect_dataset(path)
    if c.dataset not in DATASETS:
        raise ConfigError(f"unknown dataset {c.dataset!r} (choose from {', '.join(DATASETS)})")
    small_data = c.dataset in ("synthetic", "cifar10", "tinyimagenet")
    if c.arch is None:
        c.arch = "alexnet-small" if small_data else "alexnet"
    if c.arch not in ARCHS:
        raise ConfigError(f"unknown arch {c.arch!r} (choose from {', '.join(ARCHS)})")
    if c.input_size is None:
        c.input_size = 227 if c.arch == "alexnet" else (64 if c.dataset == "tinyimagenet" else 32)
    if c.image_size is None:
        c.image_size = 256 if c.arch == "alexnet" else SMALL_DATA_IMAGE_SIZE.get(c.input_size, c.input_size + 8)
    if c.image_size < c.input_size:
        raise ConfigError(f"--image-size {c.image_size} is smaller than the network input {c.input_size}")
    if c.epochs is None:
        c.epochs = DEFAULT_EPOCHS[c.dataset]
    for key, value in RECIPES[c.arch].items():
        if getattr(c, key) is None and value != "auto":
            setattr(c, key, value)
    if c.dataset == "synthetic" and c.synthetic_images is None:
        c.synthetic_images = SYNTHETIC_TRAIN_IMAGES
    if c.lr_schedule not in SCHEDULES:
        raise ConfigError(f"unknown --lr-schedule {c.lr_schedule!r} (choose from {', '.join(SCHEDULES)})")
    if c.out is None:
        c.out = str(Path("runs") / f"{c.dataset}-{c.arch}-{time.strftime('%Y%m%d-%H%M%S')}")
    return c


def resolve_devices(device: str, gpus: list[int] | None, towers: int = 2) -> list[str]:
    """The devices of the network's two towers (AlexNet always takes two; a one-tower network uses the first):
    ['cpu', 'cpu'] on the CPU, ['cuda:0', 'cuda:1'] with two GPUs, both towers on one GPU when there is only one
    (or --gpus names one). 'auto' never picks an emulated device."""
    info = build_info()
    count = visible_gpus()
    if device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"unknown --device {device!r} (choose from auto, cpu, cuda)")
    if device == "cpu" or (device == "auto" and visible_gpus(emulated=False) == 0):
        if gpus:
            raise ConfigError("--gpus was given but the run is on the CPU (no GPU visible, or --device cpu)")
        return ["cpu", "cpu"]
    if count == 0:
        why = "alexnet_cuda was built without CUDA" if not info.get("cuda") else "no GPU is visible"
        raise ConfigError(f"--device cuda: {why}; use --device cpu")
    ids = list(gpus) if gpus else list(range(min(2, count)))
    if len(ids) > 2:
        raise ConfigError(f"--gpus: the network has two towers, give at most two GPU ids, got {len(ids)}")
    for g in ids:
        if not 0 <= g < count:
            raise ConfigError(f"--gpus: GPU {g} does not exist ({count} visible: 0..{count - 1})")
    if towers == 1:
        ids = ids[:1]
    return [f"cuda:{ids[0]}", f"cuda:{ids[-1]}"]


# --------------------------------------------------------------------------------------------------------------------
# Learning-rate schedule (paper Section 5)
# --------------------------------------------------------------------------------------------------------------------

class LRSchedule:
    """``plateau``: divide the learning rate by 10 when the validation error has not improved for ``patience``
    evaluations (the paper's heuristic), at most ``max_drops`` times. ``step``: divide by 10 every ``step_epochs``
    epochs. ``none``: constant."""

    def __init__(self, kind: str, lr: float, patience: int = 2, step_epochs: int = 30, max_drops: int = 3,
                 threshold: float = 1e-4):
        self.kind, self.lr, self.base_lr = kind, float(lr), float(lr)
        self.patience, self.step_epochs, self.max_drops, self.threshold = patience, step_epochs, max_drops, threshold
        self.best_error: float | None = None
        self.bad_evals = 0
        self.drops = 0

    def epoch_end(self, epochs_done: int, val_error: float | None) -> float:
        """Called after each epoch (``val_error`` None when it was not evaluated). Returns the next learning rate."""
        if self.kind == "step":
            drops = min(epochs_done // max(1, self.step_epochs), self.max_drops)
            self.drops = drops
            self.lr = self.base_lr * 0.1 ** drops
        elif self.kind == "plateau" and val_error is not None:
            if self.best_error is None or val_error < self.best_error - self.threshold:
                self.best_error, self.bad_evals = val_error, 0
            else:
                self.bad_evals += 1
                if self.bad_evals >= self.patience and self.drops < self.max_drops:
                    self.lr *= 0.1
                    self.drops += 1
                    self.bad_evals = 0
        return self.lr

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lr": self.lr, "base_lr": self.base_lr, "best_error": self.best_error,
                "bad_evals": self.bad_evals, "drops": self.drops, "patience": self.patience,
                "step_epochs": self.step_epochs, "max_drops": self.max_drops, "threshold": self.threshold}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        for k in ("kind", "lr", "base_lr", "best_error", "bad_evals", "drops", "patience", "step_epochs",
                  "max_drops", "threshold"):
            setattr(self, k, d[k])


# --------------------------------------------------------------------------------------------------------------------
# Ctrl-C
# --------------------------------------------------------------------------------------------------------------------

class StopRequest:
    """SIGINT handler: the first Ctrl-C asks the loop to stop after the current step (it then saves a checkpoint);
    a second one aborts at once with KeyboardInterrupt."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None
        self._installed = False

    def __call__(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{PROG}: interrupted: finishing the current step and saving a checkpoint "
              f"(Ctrl-C again to quit without saving)", file=sys.stderr, flush=True)

    def install(self) -> None:
        # Python only lets the main thread set signal handlers; train() called from another thread keeps the default.
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self)
            self._installed = True

    def uninstall(self) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, self._previous)
            self._installed = False


# --------------------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------------------

def _truncate_jsonl(path: Path, keep: Callable[[dict], bool]) -> None:
    """Drops the lines a resumed run will write again (those after the checkpoint it resumes from)."""
    if not path.exists():
        return
    lines = []
    for line in path.read_text().splitlines():
        try:
            if keep(json.loads(line)):
                lines.append(line)
        except json.JSONDecodeError:  # a line torn by a crash
            continue
    ckpt_io.atomic_write(path, lambda f: f.write("".join(x + "\n" for x in lines).encode()))


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _model_config(c: TrainConfig, num_classes: int) -> dict[str, Any]:
    """The constructor arguments of the network (stored in checkpoints; evaluate/predict rebuild it from them)."""
    return {"num_classes": int(num_classes), "arch": c.arch, "input_size": c.input_size, "lrn": c.lrn,
            "overlapping_pool": c.overlapping_pool, "activation": c.activation, "dropout": c.dropout,
            "towers": c.towers, "bias_init": c.bias_init, "weight_std": c.weight_std, "seed": c.seed,
            **({"widths": c.widths} if c.widths is not None else {})}


def auto_input_scale(model, c: TrainConfig, eigvals: np.ndarray) -> float:
    """--input-scale 'auto': the factor that gives conv1's responses unit standard deviation at initialization,
    ``1 / (pixel std * weight_std * sqrt(conv1 fan-in))``. The pixel standard deviation comes from the RGB
    covariance's eigenvalues (their sum is the total variance of the three channels)."""
    kernel = 11 if c.arch == "alexnet" else 5
    config = getattr(model, "config", None)
    if isinstance(config, dict) and config.get("conv_kernel"):
        kernel = int(config["conv_kernel"][0])
    pixel_std = max(math.sqrt(float(np.sum(eigvals)) / 3.0), 1.0)
    return 1.0 / (pixel_std * float(c.weight_std) * math.sqrt(3 * kernel * kernel))


def open_datasets(c: TrainConfig):
    """The training and validation sets of a resolved config. Raises ConfigError with one clear line."""
    from . import data

    if c.dataset == "synthetic":
        n_train = c.synthetic_images or SYNTHETIC_TRAIN_IMAGES
        n_val = min(SYNTHETIC_VAL_IMAGES, max(n_train // 5, 1))
        train_set = data.synthetic_dataset("train", num_classes=c.synthetic_classes,
                                           num_images=c.synthetic_images, image_size=c.image_size, seed=0)
        val_set = data.synthetic_dataset("val", num_classes=c.synthetic_classes, num_images=n_val,
                                         image_size=c.image_size, seed=0)
        return train_set, val_set
    try:
        train_set = data.open_dataset(c.data, kind=c.dataset, split="train", image_size=c.image_size)
        val_set = data.open_dataset(c.data, kind=c.dataset, split="val", image_size=c.image_size)
    except (OSError, ValueError, KeyError) as exc:
        # The data package's messages go on with the supported layouts, which --help lists: keep the first line.
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--data {c.data}: {first} (--help lists the supported layouts)") from None
    if len(train_set) == 0:
        raise ConfigError(f"--data {c.data}: no training images found")
    if len(val_set) == 0:
        raise ConfigError(f"--data {c.data}: no validation images found")
    if list(train_set.classes) != list(val_set.classes):
        raise ConfigError(f"--data {c.data}: the training and validation splits have different classes")
    return train_set, val_set


def _input_statistics(c: TrainConfig, train_set, out: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The training-set mean image (paper Section 2) and the RGB PCA (Section 4.1), computed once and cached in the
    run directory as mean.npy / pca.npz."""
    from . import data

    s = int(train_set.image_size)
    mean_path, pca_path = out / "mean.npy", out / "pca.npz"
    mean = None
    if mean_path.exists():
        try:
            cached = np.load(mean_path, allow_pickle=False)
            if cached.shape == (3, s, s) and cached.dtype == np.float32:
                mean = cached
        except (OSError, ValueError):
            mean = None
    if mean is None:
        mean = np.ascontiguousarray(data.compute_mean(train_set, max_images=c.stats_images, progress=c.progress),
                                    dtype=np.float32)
        ckpt_io.atomic_write(mean_path, lambda f: np.save(f, mean, allow_pickle=False))
    eigvals = eigvecs = None
    if pca_path.exists():
        try:
            with np.load(pca_path, allow_pickle=False) as z:
                if z["eigvals"].shape == (3,) and z["eigvecs"].shape == (3, 3):
                    eigvals, eigvecs = z["eigvals"].astype(np.float32), z["eigvecs"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            eigvals = eigvecs = None
    if eigvals is None:
        ev, evec = data.compute_pca(train_set, max_images=c.stats_images, progress=c.progress)
        eigvals, eigvecs = np.asarray(ev, np.float32), np.asarray(evec, np.float32)
        ckpt_io.atomic_write(pca_path, lambda f: np.savez(f, eigvals=eigvals, eigvecs=eigvecs))
    return mean, eigvals, eigvecs


def _progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a missing progress bar must not stop training
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="img", unit_scale=True, dynamic_ncols=True,
                leave=False, file=sys.stderr)


def _log(msg: str, bar: Any = None) -> None:
    if bar is not None:
        bar.write(msg, file=sys.stdout)
    else:
        print(msg, flush=True)


def validate(model, loader, image_size: int, crop: int, max_batches: int | None = None,
             stop: StopRequest | None = None) -> dict[str, float] | None:
    """Loss, top-1 and top-5 accuracy on the centre patches of ``loader``'s images (dropout off, no update).
    Returns None when a Ctrl-C interrupted it."""
    from .data import center_crop

    # The validation loader does not shuffle, so every epoch number gives the same order; a new number always starts
    # at the first batch (the same number would continue where a capped pass stopped).
    loader.set_epoch(loader.epoch + 1)
    n = 0
    loss = top1 = top5 = 0.0
    for b, (images, labels) in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        k = len(labels)
        view = center_crop(image_size, crop, k)
        r = model.evaluate(images, labels, crops=view["crops"], flips=view["flips"])
        loss += float(r.loss) * k
        top1 += float(r.top1) * k
        top5 += float(r.top5) * k
        n += k
        if stop is not None and stop.requested:
            return None
    if n == 0:
        raise ConfigError("the validation set produced no batches")
    return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n, "images": n}


# --------------------------------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------------------------------

def train(config: TrainConfig, *, model_class: Any = None) -> dict[str, Any]:
    """Trains the network described by ``config`` and returns a summary.

    The summary has ``status`` ('completed' or 'interrupted'), ``out`` (the run directory), ``epochs_done``,
    ``step`` (training steps done in total), ``step_losses`` (the losses of the steps run by this call),
    ``history`` (the per-epoch metrics of this run directory, as in metrics.jsonl), ``best_val_top1``, and the
    paths of ``last_checkpoint`` / ``best_checkpoint``.

    Raises ConfigError (unusable settings or data), TrainingDiverged (NaN / infinite loss; the last good checkpoint
    is kept) or checkpoint.CheckpointError (--resume with a bad checkpoint). ``model_class`` replaces
    :class:`alexnet_cuda.AlexNet` (tests pass a stand-in).
    """
    from . import data

    # ---- settings: fresh, or the checkpoint's when resuming --------------------------------------------------------
    resumed = None
    if config.resume:
        if config.out is None:
            raise ConfigError("--resume needs --out DIR (the run directory to continue)")
        last = Path(config.out) / "last.npz"
        if not last.exists():
            raise ConfigError(f"--resume: {last} does not exist (nothing to resume in {config.out})")
        resumed = ckpt_io.load(last)
        saved = resumed.meta.get("config")
        if not isinstance(saved, dict):
            raise ckpt_io.CheckpointError(f"checkpoint {last}: has no training configuration to resume")
        fields = {f.name for f in dataclasses.fields(TrainConfig)}
        merged = {k: v for k, v in saved.items() if k in fields}
        for k in RESUME_OVERRIDES:
            merged[k] = getattr(config, k)
        for k in RESUME_OVERRIDES_IF_SET:
            if getattr(config, k) is not None:
                merged[k] = getattr(config, k)
        config = TrainConfig(**merged)
    c = resolve(config)
    out = Path(c.out)
    if not c.resume and (out / "last.npz").exists():
        raise ConfigError(f"--out {out} already holds a run (last.npz): pass --resume to continue it, or choose "
                          f"another --out")
    devices = resolve_devices(c.device, c.gpus, c.towers)

    # ---- data ------------------------------------------------------------------------------------------------------
    train_set, val_set = open_datasets(c)
    out.mkdir(parents=True, exist_ok=True)
    classes, class_ids = list(train_set.classes), list(train_set.class_ids)
    s = int(train_set.image_size)
    if s < c.input_size:
        raise ConfigError(f"the dataset's images are {s}x{s}, smaller than the network input {c.input_size}")
    if resumed is not None:
        try:
            mean = resumed.arrays["mean"]
            eigvals, eigvecs = resumed.arrays["pca_eigvals"], resumed.arrays["pca_eigvecs"]
        except KeyError as exc:
            raise ckpt_io.CheckpointError(f"checkpoint {resumed.path}: has no {exc} array to resume with") from None
    else:
        mean, eigvals, eigvecs = _input_statistics(c, train_set, out)

    # ---- model, augmentation, loaders ------------------------------------------------------------------------------
    if model_class is None:
        try:
            from . import AlexNet as model_class  # noqa: N813
        except ImportError:
            raise ConfigError("alexnet_cuda.AlexNet is not available in this build") from None
    model_cfg = _model_config(c, len(classes))
    try:
        model = model_class(devices=devices, **model_cfg)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot build the network: {exc}") from None
    crop = int(model.input_size)
    model_cfg["input_size"] = crop
    if resumed is not None:
        input_scale = float(resumed.meta.get("normalization_scale", 1.0))
    elif c.input_scale is not None:
        input_scale = float(c.input_scale)
    else:
        input_scale = auto_input_scale(model, c, eigvals)
    model.set_normalization(mean, input_scale)
    augmenter = data.Augmenter(s, crop, eigvals=eigvals, eigvecs=eigvecs, pca_std=c.pca_std, flip=True,
                               seed=c.seed + 1)
    if len(train_set) < c.batch_size:
        raise ConfigError(f"the training set ({len(train_set)} images) is smaller than one batch ({c.batch_size}); "
                          f"lower --batch-size")
    train_loader = data.Loader(train_set, c.batch_size, shuffle=True, drop_last=True, seed=c.seed,
                               workers=c.workers)
    val_loader = data.Loader(val_set, c.batch_size, shuffle=False, drop_last=False, seed=c.seed,
                             workers=c.workers)
    batches_per_epoch = len(train_loader)
    if c.train_batches is not None:
        batches_per_epoch = min(batches_per_epoch, c.train_batches)

    schedule = LRSchedule(c.lr_schedule, c.lr, c.lr_patience, c.lr_step_epochs, c.lr_drops)
    epoch, batch_in_epoch, step = 0, 0, 0
    running = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "batches": 0, "seconds": 0.0}
    best_val_top1: float | None = None
    if resumed is not None:
        try:
            model.load_state_dict(resumed.params)
            model.load_optimizer_state_dict(resumed.momentum)
            m = resumed.meta
            model.step = int(m["model_step"])
            epoch, batch_in_epoch, step = int(m["epoch"]), int(m["batch_in_epoch"]), int(m["step"])
            schedule.load_state_dict(m["scheduler"])
            running = dict(m["running"])
            best_val_top1 = m.get("best_val_top1")
            augmenter.load_state_dict(ckpt_io.unpack_state(m["augmenter"], resumed.arrays))
            if batch_in_epoch > 0:
                train_loader.load_state_dict(ckpt_io.unpack_state(m["loader"], resumed.arrays))
        except (KeyError, ValueError, TypeError) as exc:
            raise ckpt_io.CheckpointError(f"checkpoint {resumed.path}: cannot resume from it "
                                          f"({type(exc).__name__}: {exc})") from None
        _truncate_jsonl(out / "steps.jsonl", lambda r: r.get("step", 0) <= step)
        _truncate_jsonl(out / "metrics.jsonl", lambda r: r.get("epoch", 0) <= epoch)

    last_path, best_path = out / "last.npz", out / "best.npz"
    have_checkpoint = last_path.exists()

    def save(path: Path, extra: dict[str, Any] | None = None) -> None:
        arrays = {"mean": mean, "pca_eigvals": eigvals, "pca_eigvecs": eigvecs}
        meta = {
            "config": dataclasses.asdict(c), "model": model_cfg, "classes": classes, "class_ids": class_ids,
            "image_size": s, "normalization_scale": input_scale, "dataset": c.dataset, "data": c.data,
            "epoch": epoch, "batch_in_epoch": batch_in_epoch, "step": step, "model_step": int(model.step),
            "lr": schedule.lr, "scheduler": schedule.state_dict(), "running": running,
            "best_val_top1": best_val_top1,
            "augmenter": ckpt_io.pack_state(augmenter.state_dict(), arrays, "augmenter_state_"),
            "loader": ckpt_io.pack_state(train_loader.state_dict(), arrays, "loader_state_"),
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        if extra:
            meta.update(extra)
        ckpt_io.save(path, ckpt_io.Checkpoint(params=model.state_dict(), momentum=model.optimizer_state_dict(),
                                              arrays=arrays, meta=meta))

    history: list[dict[str, Any]] = []
    if (out / "metrics.jsonl").exists():
        history = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    step_losses: list[float] = []
    stop = StopRequest()
    status = "completed"

    n_params = model.num_parameters() if hasattr(model, "num_parameters") else None
    where = " and ".join(dict.fromkeys(devices))
    if any(d.startswith("cuda") for d in devices) and build_info().get("cuda_emulated"):
        where += " (emulated CUDA devices, running on the CPU)"
    if epoch < c.epochs:
        _log(f"{'resuming' if resumed is not None else 'training'} {c.arch} ({crop}x{crop} crops of {s}x{s} images"
             f"{f', {n_params:,} parameters' if n_params else ''}) on {where}: "
             f"{c.dataset} data, {len(train_set)} training / {len(val_set)} validation images, {len(classes)} "
             f"classes; epoch {epoch + 1} of {c.epochs}; run directory {out}")

    stop.install()
    steps_file = open(out / "steps.jsonl", "a", buffering=1)  # line-buffered: follow it with tail -f
    try:
        while epoch < c.epochs:
            # ---- one epoch of training ----------------------------------------------------------------------------
            if batch_in_epoch == 0:
                train_loader.set_epoch(epoch)
                running = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "batches": 0, "seconds": 0.0}
            lr = schedule.lr
            bar = _progress_bar(batches_per_epoch * c.batch_size, batch_in_epoch * c.batch_size,
                                f"epoch {epoch + 1}/{c.epochs}", c.progress)
            t_last = time.perf_counter()
            try:
                if batch_in_epoch < batches_per_epoch:
                    for images, labels in train_loader:
                        aug = augmenter.draw(len(labels))
                        r = model.train_step(images, labels, lr, c.momentum, c.weight_decay, crops=aug["crops"],
                                             flips=aug["flips"], rgb_shift=aug["rgb_shift"])
                        loss = float(r.loss)
                        if not math.isfinite(loss):
                            kept = (f"the last good checkpoint is {last_path}" if have_checkpoint
                                    else "no checkpoint had been saved yet")
                            raise TrainingDiverged(
                                f"training diverged: the loss is {loss} at step {step + 1} (epoch {epoch + 1}, "
                                f"batch {batch_in_epoch + 1}) with learning rate {lr:g}; stopped without saving, "
                                f"{kept}. Try a lower --lr.")
                        step += 1
                        batch_in_epoch += 1
                        now = time.perf_counter()
                        running["seconds"] += now - t_last
                        t_last = now
                        running["loss"] += loss
                        running["top1"] += float(r.top1)
                        running["top5"] += float(r.top5)
                        running["batches"] += 1
                        step_losses.append(loss)
                        steps_file.write(json.dumps({"step": step, "epoch": epoch + 1, "batch": batch_in_epoch,
                                                     "loss": loss, "top1": float(r.top1), "lr": lr}) + "\n")
                        if bar is not None:
                            # The bar shows this epoch's time left; 'run' estimates the whole run's training time.
                            steps_left = (batches_per_epoch - batch_in_epoch
                                          + (c.epochs - epoch - 1) * batches_per_epoch)
                            bar.set_postfix({
                                "loss": f"{running['loss'] / running['batches']:.3f}",
                                "top1": f"{100 * running['top1'] / running['batches']:.1f}%",
                                "run_left": _fmt_time(steps_left * running["seconds"] / running["batches"])},
                                refresh=False)
                            bar.update(len(labels))
                        if stop.requested or batch_in_epoch >= batches_per_epoch:
                            break
                        if c.save_every and step % c.save_every == 0:
                            steps_file.flush()
                            save(last_path)
                            have_checkpoint = True
                if stop.requested:
                    status = "interrupted"
                    break
                # ---- validation, schedule, checkpoints ---------------------------------------------------------------
                epochs_done = epoch + 1
                val = None
                if epochs_done % max(1, c.eval_every) == 0 or epochs_done == c.epochs:
                    if bar is not None:
                        bar.set_description(f"epoch {epochs_done}/{c.epochs} validating")
                    val = validate(model, val_loader, s, crop, c.val_batches, stop)
                    if val is None:
                        status = "interrupted"
                        break
            finally:
                if bar is not None:
                    bar.close()
            nb = max(1, running["batches"])
            record = {"epoch": epochs_done, "step": step, "lr": lr,
                      "train_loss": running["loss"] / nb, "train_top1": running["top1"] / nb,
                      "train_top5": running["top5"] / nb,
                      "val_loss": val["loss"] if val else None, "val_top1": val["top1"] if val else None,
                      "val_top5": val["top5"] if val else None,
                      "time": running["seconds"],
                      "images_per_s": running["batches"] * c.batch_size / max(running["seconds"], 1e-9)}
            skipped = getattr(train_loader, "skipped", 0)
            if skipped:
                record["skipped_images"] = int(skipped)
            improved = val is not None and (best_val_top1 is None or val["top1"] > best_val_top1)
            if improved:
                best_val_top1 = val["top1"]
            schedule.epoch_end(epochs_done, 1.0 - val["top1"] if val else None)
            epoch, batch_in_epoch = epochs_done, 0
            running = {"loss": 0.0, "top1": 0.0, "top5": 0.0, "batches": 0, "seconds": 0.0}
            steps_file.flush()
            save(last_path, {"metrics": record})
            have_checkpoint = True
            if improved:
                save(best_path, {"metrics": record})
            with open(out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")
            history.append(record)
            msg = (f"epoch {epochs_done}/{c.epochs}  train loss {record['train_loss']:.4f}  "
                   f"top-1 {100 * record['train_top1']:.1f}%  top-5 {100 * record['train_top5']:.1f}%")
            if val:
                msg += (f" | val loss {val['loss']:.4f}  top-1 {100 * val['top1']:.1f}%  "
                        f"top-5 {100 * val['top5']:.1f}%")
            msg += (f" | lr {lr:g}{f' -> {schedule.lr:g}' if schedule.lr != lr else ''}  "
                    f"{_fmt_time(record['time'])}  {record['images_per_s']:.0f} img/s")
            if skipped:
                msg += f"  ({skipped} unreadable images skipped)"
            _log(msg)
        if status == "interrupted":
            steps_file.flush()
            save(last_path)
            have_checkpoint = True
    finally:
        stop.uninstall()
        steps_file.close()
        for loader in (train_loader, val_loader):
            close = getattr(loader, "close", None)
            if close is not None:
                close()

    return {"status": status, "out": str(out), "epochs_done": epoch, "batch_in_epoch": batch_in_epoch,
            "step": step, "step_losses": step_losses, "history": history, "best_val_top1": best_val_top1,
            "last_checkpoint": str(last_path), "best_checkpoint": str(best_path) if best_path.exists() else None,
            "config": dataclasses.asdict(c)}


# --------------------------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------------------------

def _int_at_least(lo: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"must be at least {lo}, got {v}")
        return v
    return parse


def _float_in(lo: float, hi: float | None = None, lo_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v) or (v <= lo if lo_open else v < lo) or (hi is not None and v >= hi):
            rng = f"{'(' if lo_open else '['}{lo:g}, {'inf' if hi is None else f'{hi:g}'})"
            raise argparse.ArgumentTypeError(f"must be in {rng}, got {text}")
        return v
    return parse


def _gpu_list(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected GPU ids like 0,1, got {text!r}") from None
    if not ids or any(g < 0 for g in ids):
        raise argparse.ArgumentTypeError(f"expected GPU ids like 0,1, got {text!r}")
    return ids


def _recipe_default(key: str) -> str:
    big, small = RECIPES["alexnet"][key], RECIPES["alexnet-small"][key]
    if big == small:
        return f"default {big:g}"
    small = small if isinstance(small, str) else f"{small:g}"
    return f"default {big:g} for alexnet (the paper), {small} for alexnet-small"


def _layouts() -> str:
    try:
        from .data.datasets import LAYOUTS
        return str(LAYOUTS)
    except ImportError:  # pragma: no cover
        return ""


def build_parser() -> argparse.ArgumentParser:
    wrap = functools.partial(textwrap.fill, width=100)
    p = argparse.ArgumentParser(
        prog=PROG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=wrap("Train AlexNet (Krizhevsky, Sutskever, Hinton 2012). With no arguments: a small AlexNet on "
                         "the built-in synthetic dataset (no download), on the GPUs if any, else on the CPU."),
        epilog=(f"--data: {_layouts()}\n\n" if _layouts() else "") + wrap(
            "Outputs in --out: last.npz and best.npz (checkpoints), metrics.jsonl (per epoch), steps.jsonl (per "
            "step), mean.npy and pca.npz (input statistics). Ctrl-C saves a checkpoint and stops; --resume --out "
            "DIR continues exactly (only --epochs, --device, --gpus and --workers may change)."))
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="PATH", help="dataset directory (default: the built-in synthetic dataset)")
    g.add_argument("--dataset", choices=DATASETS, help="dataset kind (default: detected from --data)")
    g.add_argument("--image-size", type=_int_at_least(1), metavar="S",
                   help="stored image side; random crops of the network's input size are taken from S x S images "
                        "(default 256 for alexnet, 36 for alexnet-small at 32, 72 at 64)")
    g.add_argument("--synthetic-images", type=_int_at_least(1), metavar="N",
                   help=f"synthetic training images (default {SYNTHETIC_TRAIN_IMAGES})")
    g.add_argument("--synthetic-classes", type=_int_at_least(2), default=10, metavar="K",
                   help="synthetic classes (default 10)")
    g.add_argument("--stats-images", type=_int_at_least(1), default=10000, metavar="N",
                   help="images used for the mean image and the colour PCA (default 10000)")
    g.add_argument("--workers", type=_int_at_least(0), help="data-loading workers (default: the loader's choice)")
    g = p.add_argument_group("network (paper Section 3; the switches are the paper's ablations)")
    g.add_argument("--arch", choices=ARCHS,
                   help="alexnet: the paper's network, 227x227 inputs; alexnet-small: the same design for 32x32 or "
                        "64x64 inputs (default: alexnet-small for synthetic, cifar10 and tinyimagenet)")
    g.add_argument("--input-size", type=_int_at_least(1), metavar="N",
                   help="network input side (default 227 for alexnet; 32, or 64 for tinyimagenet, for alexnet-small)")
    g.add_argument("--no-lrn", dest="lrn", action="store_false", help="no local response normalization (3.3)")
    g.add_argument("--no-overlap-pool", dest="overlapping_pool", action="store_false",
                   help="2x2 stride-2 pooling instead of the overlapping 3x3 stride-2 (3.4)")
    g.add_argument("--activation", choices=("relu", "tanh"), default="relu", help="activation (3.1; default relu)")
    g.add_argument("--dropout", type=_float_in(0.0, 1.0), default=0.5, metavar="P",
                   help="dropout probability in the first two fully connected layers (4.2; default 0.5)")
    g.add_argument("--towers", type=int, choices=(1, 2), default=2,
                   help="2: the paper's two-GPU split with cross-tower connections only in layers 3, 6, 7, 8 "
                        "(3.2); 1: a single column (default 2)")
    g.add_argument("--weight-std", type=_float_in(0.0, lo_open=True), metavar="STD",
                   help=f"initial weight standard deviation (5; {_recipe_default('weight_std')})")
    g.add_argument("--bias-init", type=float, metavar="B",
                   help=f"initial bias of conv 2, 4, 5 and the hidden fully connected layers (5; "
                        f"{_recipe_default('bias_init')})")
    g.add_argument("--input-scale", type=_float_in(0.0, lo_open=True), metavar="X",
                   help=f"the network sees (pixel - mean image) * X ({_recipe_default('input_scale')}, 'auto' "
                        f"being the factor that gives conv1's responses unit standard deviation at the start)")
    g = p.add_argument_group("optimisation (paper Section 5)")
    g.add_argument("--epochs", type=_int_at_least(1),
                   help=f"passes over the training set (default: {DEFAULT_EPOCHS['synthetic']} for synthetic, 90 for "
                        f"ImageNet and folders, 40 for cifar10 / tinyimagenet)")
    g.add_argument("--batch-size", type=_int_at_least(1), metavar="N", help=_recipe_default("batch_size"))
    g.add_argument("--lr", type=_float_in(0.0, lo_open=True), help=f"learning rate ({_recipe_default('lr')})")
    g.add_argument("--momentum", type=_float_in(0.0, 1.0), default=0.9, help="default 0.9")
    g.add_argument("--weight-decay", type=_float_in(0.0), default=5e-4, help="default 0.0005")
    g.add_argument("--lr-schedule", choices=SCHEDULES, default="plateau",
                   help="plateau: divide the learning rate by 10 when the validation error stops improving (the "
                        "paper's rule); step: every --lr-step-epochs; none: constant (default plateau)")
    g.add_argument("--lr-patience", type=_int_at_least(1), default=2, metavar="N",
                   help="plateau: evaluations without improvement before dividing (default 2)")
    g.add_argument("--lr-step-epochs", type=_int_at_least(1), default=30, metavar="N", help="step: default 30")
    g.add_argument("--lr-drops", type=_int_at_least(0), default=3, metavar="N",
                   help="divide the learning rate at most N times (default 3, as in the paper)")
    g.add_argument("--pca-std", type=_float_in(0.0), default=0.1, metavar="STD",
                   help="colour augmentation strength (4.1; 0 turns it off; default 0.1)")
    g = p.add_argument_group("run")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the GPUs when there are any, else the CPU (default auto)")
    g.add_argument("--gpus", type=_gpu_list, metavar="IDS",
                   help="GPU ids for the towers, e.g. 0,1 (default: the first two; one GPU holds both towers)")
    g.add_argument("--seed", type=int, default=0, help="seed of the weights, shuffling and augmentation (default 0)")
    g.add_argument("--out", metavar="DIR", help="run directory (default runs/<dataset>-<arch>-<time>)")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.npz")
    g.add_argument("--eval-every", type=_int_at_least(1), default=1, metavar="N",
                   help="validate every N epochs (and after the last; default 1)")
    g.add_argument("--save-every", type=_int_at_least(0), default=0, metavar="STEPS",
                   help="also save last.npz every this many steps (default 0: at the end of each epoch)")
    g.add_argument("--train-batches", type=_int_at_least(1), metavar="N",
                   help="train on at most N batches per epoch (quick checks)")
    g.add_argument("--val-batches", type=_int_at_least(1), metavar="N",
                   help="validate on at most N batches (quick checks)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    return p


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})


def report_hint(out: str) -> str:
    """Where the pictures of a run come from (the report module is not imported: it needs matplotlib)."""
    return (f"pictures (curves, conv1 kernels, confusion matrix): python -m alexnet_cuda.report {out} -> "
            f"{Path(out) / 'report.md'}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        parser.error("--resume needs --out DIR (the run directory to continue)")
    try:
        summary = train(config_from_args(args))
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except (TrainingDiverged, ckpt_io.CheckpointError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: aborted (no checkpoint saved for the current epoch)", file=sys.stderr)
        return 130
    out = summary["out"]
    if summary["status"] == "interrupted":
        print(f"stopped at step {summary['step']} (epoch {summary['epochs_done'] + 1}, batch "
              f"{summary['batch_in_epoch']}); saved {summary['last_checkpoint']}. Continue with: "
              f"{PROG} --resume --out {out}", file=sys.stderr)
        print(report_hint(out), file=sys.stderr)
        return 130
    best = summary["best_val_top1"]
    print(f"done: {summary['epochs_done']} epochs, {summary['step']} steps"
          f"{f', best validation top-1 accuracy {100 * best:.1f}%' if best is not None else ''}. "
          f"Checkpoints in {out}; evaluate with: python -m alexnet_cuda.evaluate --checkpoint "
          f"{summary['best_checkpoint'] or summary['last_checkpoint']}")
    print(report_hint(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
