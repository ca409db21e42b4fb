"""Train AlexNet: ``python -m alexnet_cuda.train`` (``--help`` for the flags).

With no arguments it trains a small AlexNet (``alexnet-small``, 32x32 inputs) on the built-in synthetic dataset (no
download), on the GPUs when there are any and on the CPU otherwise, and shows the loss falling and the validation
accuracy rising well above chance within about 2.5 minutes on a 2-core CPU: 5 epochs of 2,560 images in batches of
16, not mirrored (the synthetic classes are not mirror-invariant); observed validation top-1 accuracy (chance 10 %)
39 %, 77 %, 87 %, 87 %, 91 % after epochs 1-5 with 2 threads. With ``--data DIR`` it trains on an image folder, ImageNet, CIFAR-10 or
Tiny ImageNet (detected from the directory).

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

import dataclasses
import json
import math
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import build_info
from . import checkpoint as ckpt_io
from . import cli
from .cli import ConfigError
# The settings live in train_config; they are re-exported because callers know them as alexnet_cuda.train's.
from .train_config import (  # noqa: F401
    ARCHS, DATASETS, DEFAULT_EPOCHS, PROG, RECIPES, RESUME_OVERRIDES, RESUME_OVERRIDES_IF_SET, SCHEDULES,
    SMALL_DATA_IMAGE_SIZE, SYNTHETIC_TRAIN_IMAGES, SYNTHETIC_VAL_IMAGES, TrainConfig, build_parser, config_from_args,
    detect_dataset, resolve, resolve_devices)


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became NaN or infinite. The message names the step; the last good checkpoint is
    kept."""


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
    if len(train_set.classes) < 2:
        raise ConfigError(f"--data {c.data}: found {len(train_set.classes)} class ({', '.join(train_set.classes)}); "
                          f"a classifier needs at least 2")
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
            if cached.shape == (3, s, s) and cached.dtype == np.float32 and np.isfinite(cached).all():
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
                if (z["eigvals"].shape == (3,) and z["eigvecs"].shape == (3, 3)
                        and np.isfinite(z["eigvals"]).all() and np.isfinite(z["eigvecs"]).all()):
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
    augmenter = data.Augmenter(s, crop, eigvals=eigvals, eigvecs=eigvecs, pca_std=c.pca_std,
                               flip=getattr(train_set, "mirror_invariant", True), seed=c.seed + 1)
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

    def check_parameters(params: dict[str, np.ndarray], what: str) -> None:
        """A NaN or inf weight can hide from the loss (ReLU turns conv1's NaNs into zeros), so the parameters
        themselves are checked before every validation and every save: a broken network is never saved."""
        bad = [n for n, a in params.items() if not np.isfinite(a).all()]
        if bad:
            kept = (f"the last good checkpoint is {last_path}" if have_checkpoint
                    else "no checkpoint had been saved yet")
            names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
            raise TrainingDiverged(
                f"training diverged: {len(bad)} parameter tensors ({names}) hold NaN or inf after step {step}; "
                f"stopped before {what}, {kept}. Try a lower --lr or --weight-decay.")

    def save(path: Path, extra: dict[str, Any] | None = None) -> None:
        params = model.state_dict()
        check_parameters(params, f"saving {path.name}")
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
        ckpt_io.save(path, ckpt_io.Checkpoint(params=params, momentum=model.optimizer_state_dict(),
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
                        try:
                            r = model.train_step(images, labels, lr, c.momentum, c.weight_decay, crops=aug["crops"],
                                                 flips=aug["flips"], rgb_shift=aug["rgb_shift"])
                        except ValueError as exc:  # e.g. a batch with NaN in it: say which batch
                            raise ConfigError(f"step {step + 1} (epoch {epoch + 1}, batch {batch_in_epoch + 1}) "
                                              f"refused: {exc}") from None
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
                    check_parameters(model.state_dict(), "validating")
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
# Command line (the flags: train_config.build_parser)
# --------------------------------------------------------------------------------------------------------------------

def report_hint(out: str) -> str:
    """Where the pictures of a run come from (the report module is not imported: it needs matplotlib)."""
    return (f"pictures (curves, conv1 kernels, confusion matrix): python -m alexnet_cuda.report {out} -> "
            f"{Path(out) / 'report.md'}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and args.out is None:
        parser.error("--resume needs --out DIR (the run directory to continue)")
    return cli.run(PROG, args, lambda: _run(args))


def _run(args) -> int:
    try:
        summary = train(config_from_args(args))
    except KeyboardInterrupt:
        print(f"{PROG}: aborted (no checkpoint saved for the current epoch)", file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    out = summary["out"]
    if summary["status"] == "interrupted":
        print(f"stopped at step {summary['step']} (epoch {summary['epochs_done'] + 1}, batch "
              f"{summary['batch_in_epoch']}); saved {summary['last_checkpoint']}. Continue with: "
              f"{PROG} --resume --out {out}", file=sys.stderr)
        print(report_hint(out), file=sys.stderr)
        return cli.EXIT_INTERRUPTED
    best = summary["best_val_top1"]
    print(f"done: {summary['epochs_done']} epochs, {summary['step']} steps"
          f"{f', best validation top-1 accuracy {100 * best:.1f}%' if best is not None else ''}. "
          f"Checkpoints in {out}; evaluate with: python -m alexnet_cuda.evaluate --checkpoint "
          f"{summary['best_checkpoint'] or summary['last_checkpoint']}")
    print(report_hint(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
