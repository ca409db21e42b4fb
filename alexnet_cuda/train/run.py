"""Train AlexNet: ``python -m alexnet_cuda.train`` (``--help`` for the flags).

With no arguments it trains a small AlexNet (``alexnet-small``, 32x32 inputs) on the built-in synthetic dataset (no
download), on the GPUs when there are any and on the CPU otherwise, and shows the loss falling and the validation
accuracy rising well above chance within about 2.5 minutes on a 2-core CPU: 5 epochs of 2,560 images in batches of
16, not mirrored (the synthetic classes are not mirror-invariant); observed validation top-1 accuracy (chance 10 %)
39 %, 77 %, 87 %, 87 %, 91 % after epochs 1-5 with 2 threads. With ``--data DIR`` it trains on an image folder,
ImageNet, CIFAR-10 or Tiny ImageNet (detected from the directory).

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

``--net FILE``, ``--net layers.cfg --net-params params.cfg`` and the built-in ``--arch`` names train a described
network instead (``described.py``; docs/training.md, "Training a described network"): its checkpoints record the
description, from which ``--resume``, evaluate, predict and report rebuild it.

The core is :func:`train` (a :class:`TrainConfig` in, a summary dict out), which the tests call in-process.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint as ckpt_io
from .. import cli, data
from ..cli import ConfigError
from ..console import log, set_quiet
from ..data.sources import open_datasets
from ..model import AlexNet
from ..nets import torchvision as tv
from ..nets.torchvision import NAME as TORCHVISION_ALEXNET
from ..network_options import variant_model_config, variant_summary
from ..runtime import build_info, resolve_devices
from . import described, distributed
from .config import PROG, TrainConfig, build_parser, config_from_args, resolve
from .init_from import initialize
from .inputs import input_statistics, make_loaders
from .log import read_history
from .lock import RunLock
from .loop import StopRequest, run_epochs
from .schedule import LRSchedule
from .state import Run, restore, resume_config, resumed_statistics


def _model_config(c: TrainConfig, num_classes: int) -> dict[str, Any]:
    """The constructor arguments of the network (stored in checkpoints; evaluate/predict rebuild it from them)."""
    return {"num_classes": int(num_classes), "arch": c.arch, "input_size": c.input_size, "lrn": c.lrn,
            "overlapping_pool": c.overlapping_pool, "activation": c.activation, "dropout": c.dropout,
            "towers": c.towers, "bias_init": c.bias_init, "weight_std": c.weight_std, "seed": c.seed,
            **variant_model_config(c), **({"widths": c.widths} if c.widths is not None else {})}


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


def build_network(c: TrainConfig, num_classes: int, devices: list[str], model_class: Any = None):
    """The network of a resolved config and its model configuration (stored in checkpoints: AlexNet's constructor
    arguments, or a described network's description; checkpoint.model_from_config builds either)."""
    model_cfg = (described.network_config(c, num_classes) if c.description is not None
                 else _model_config(c, num_classes))
    try:
        model = ckpt_io.model_from_config(model_cfg, devices, model_class or AlexNet)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot build the network: {exc}") from None
    model_cfg["input_size"] = int(model.input_size)
    return model, model_cfg


def _start_message(run: Run, devices: list[str], resuming: bool, train_images: int, val_images: int) -> str:
    c, model, s, crop = run.config, run.model, run.image_size, run.crop
    n_params = model.num_parameters() if hasattr(model, "num_parameters") else None
    where = " and ".join(dict.fromkeys(devices))
    if any(d.startswith("cuda") for d in devices) and build_info().get("cuda_emulated"):
        where += " (emulated CUDA devices, running on the CPU)"
    if run.world.size > 1:
        where += f", data-parallel over {run.world.size} MPI ranks (global batch {c.batch_size})"
    options = (described.learning_summary(c) + f", {c.optimizer}" if c.description is not None
               else variant_summary(c))
    return (f"{'resuming' if resuming else 'training'} {c.arch} ({crop}x{crop} crops of {s}x{s} images"
            f"{f', {n_params:,} parameters' if n_params else ''}; {options}) on {where}: "
            f"{c.dataset} data, {train_images} training / {val_images} validation images"
            f"{' (the same ones: --val-on-train)' if c.val_on_train else ''}, {len(run.classes)} "
            f"classes; epoch {run.progress.epoch + 1} of {c.epochs}; run directory {run.out}")


# --------------------------------------------------------------------------------------------------------------------
# Training
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
    world = distributed.setup()  # distributed: SingleProcess without an MPI launcher (mpi4py not imported)
    lock = None
    try:
        if world.is_root and config.resume and config.out is not None and Path(config.out).is_dir():
            lock = RunLock(config.out, log=log).acquire()  # before the checkpoint to resume is read
        config, resumed = resume_config(config)
        c = resolve(config)
        if world.size > 1:  # distributed: rank 0's run directory (a default one is named by the time), a global batch
            c = dataclasses.replace(c, out=world.broadcast(c.out))
            if c.stop_train_error is not None:  # each rank's running error is its own shard's: no agreed epoch
                raise ConfigError("--stop-at-train-error is for one process: the ranks' running errors differ")
            if c.batch_size % world.size:
                raise ConfigError(f"--batch-size {c.batch_size} is the global batch: it must be a multiple of the "
                                  f"{world.size} ranks")
        if world.is_root and lock is None:  # distributed: rank 0 holds it for the job
            lock = RunLock(c.out, log=log).acquire()  # before anything in the run directory is read or written
        return _train(c, resumed, world, model_class)
    finally:
        if lock is not None:
            lock.release()


def _train(c: TrainConfig, resumed, world: distributed.SingleProcess, model_class: Any) -> dict[str, Any]:
    out = Path(c.out)
    if not c.resume and (out / "last.npz").exists():
        raise ConfigError(f"--out {out} already holds a run (last.npz): pass --resume to continue it, or choose "
                          f"another --out")
    devices = distributed.place_devices(resolve_devices(c.device, c.gpus, c.towers), c.gpus, world)
    set_quiet(not world.is_root)  # distributed: only rank 0 writes files and the log
    # (every rank splits an unsplit folder by the same seed; rank 0 records and, resuming, checks the split)
    train_set, val_set = open_datasets(c, out if world.is_root else None)
    if world.is_root:
        out.mkdir(parents=True, exist_ok=True)
    run = _prepare_run(c, out, train_set, val_set, devices, resumed, model_class, world)
    history = read_history(out)
    if run.progress.epoch < c.epochs and world.is_root:
        log(_start_message(run, devices, resumed is not None, len(train_set), len(val_set)))
    # distributed: a Ctrl-C on any rank stops every rank at the same step
    status, step_losses = run_epochs(run, distributed.AgreedStop(StopRequest(), world), history)
    world.barrier()  # distributed: rank 0's files are complete when train() returns on any rank
    p = run.progress
    return {"status": status, "out": str(out), "epochs_done": p.epoch, "batch_in_epoch": p.batch_in_epoch,
            "step": p.step, "step_losses": step_losses, "history": history, "best_val_top1": p.best_val_top1,
            "last_checkpoint": str(run.last_path),
            "best_checkpoint": str(run.best_path) if run.best_path.exists() else None,
            "config": dataclasses.asdict(c)}


def _initialize_from(model, model_cfg: dict[str, Any], path: str, mean: np.ndarray, scale, side: int):
    """--init-from: the file's weights (the last layer replaced when the classes differ) and its normalization,
    unless its mean image is of another size than this data's images (then this data's mean, the file's scale)."""
    source_mean, source_scale = initialize(model, model_cfg, path)
    if source_mean is None:
        return mean, source_scale
    if source_mean.ndim == 3 and source_mean.shape[1:] != (side, side):
        log(f"--init-from {path}: its mean image is {source_mean.shape[1]}x{source_mean.shape[2]}, these images "
            f"{side}x{side}: subtracting this data's mean image instead")
        return mean, source_scale
    return np.ascontiguousarray(source_mean, np.float32), source_scale


def _prepare_run(c: TrainConfig, out: Path, train_set, val_set, devices: list[str], resumed, model_class,
                 world: distributed.SingleProcess) -> Run:
    """The network with its input normalization, the augmentation stream, the loaders and the schedule, put back
    where the checkpoint left them when resuming; data-parallel, every rank then holds rank 0's model."""
    s = int(train_set.image_size)
    if s < c.input_size:
        raise ConfigError(f"the dataset's images are {s}x{s}, smaller than the network input {c.input_size}")
    if resumed is not None:
        mean, eigvals, eigvecs = resumed_statistics(resumed)
    else:  # distributed: rank 0 computes (and caches) them, the others receive them
        mean, eigvals, eigvecs = world.broadcast(input_statistics(c, train_set, out) if world.is_root else None)
    model, model_cfg = build_network(c, len(train_set.classes), devices, model_class)
    crop = int(model.input_size)
    if resumed is not None:
        input_scale = ckpt_io.normalization_scale(resumed.meta)
    elif c.arch == TORCHVISION_ALEXNET:  # torchvision's preprocessing: ImageNet's mean and std per channel
        mean, scale = tv.normalization()
        input_scale = [float(x) for x in scale]  # as checkpoints store it (JSON)
    elif c.input_scale is not None:
        input_scale = float(c.input_scale)
    else:
        input_scale = auto_input_scale(model, c, eigvals)
    if c.init_from is not None and resumed is None:
        mean, input_scale = _initialize_from(model, model_cfg, c.init_from, mean, input_scale, s)
    model.set_normalization(mean, input_scale)
    jitter = data.PixelJitter(brightness=c.brightness, contrast=c.contrast, saturation=c.saturation, noise=c.noise)
    augmenter = data.Augmenter(s, crop, eigvals=eigvals, eigvecs=eigvecs, pca_std=c.pca_std,
                               flip=c.flip and getattr(train_set, "mirror_invariant", True),
                               random_crops=c.crops == "random", seed=c.seed + 1, jitter=jitter)
    train_loader, val_loader = make_loaders(c, train_set, val_set, shard=(world.rank, world.size))
    batches_per_epoch = len(train_loader)
    if c.train_batches is not None:
        batches_per_epoch = min(batches_per_epoch, c.train_batches)
    run = Run(config=c, out=out, model=model, model_cfg=model_cfg, classes=list(train_set.classes),
              class_ids=list(train_set.class_ids), image_size=s, crop=crop, input_scale=input_scale, mean=mean,
              eigvals=eigvals, eigvecs=eigvecs, augmenter=augmenter, train_loader=train_loader,
              val_loader=val_loader, batches_per_epoch=batches_per_epoch,
              schedule=LRSchedule(c.lr_schedule, c.lr, c.lr_patience, c.lr_step_epochs, c.lr_drops,
                                  drop_at=c.lr_drop_at, total_epochs=c.epochs),
              have_checkpoint=(out / "last.npz").exists(), world=world)
    if resumed is not None:
        restore(run, resumed)
    world.broadcast_model(model)  # distributed: every rank starts from rank 0's parameters, momentum and step
    world.choose_gradient_path(model, devices)  # distributed: NCCL on GPUs when every rank has it, else MPI
    return run


# --------------------------------------------------------------------------------------------------------------------
# Command line (the flags: config.build_parser)
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
    code = cli.run(PROG, args, lambda: _run(args))
    world = distributed.setup()
    if code not in (0, cli.EXIT_INTERRUPTED) and world.size > 1:
        # distributed: this rank failed (its error is printed above); the others may wait for it in a collective
        world.abort(f"{PROG} failed with exit status {code}", code)
    return code


def _run(args) -> int:
    try:
        summary = train(config_from_args(args))
    except KeyboardInterrupt:
        print(f"{PROG}: aborted (no checkpoint saved for the current epoch)", file=sys.stderr)
        # distributed: a second Ctrl-C on this rank alone; the others must not wait for it
        distributed.setup().abort("aborted by Ctrl-C", cli.EXIT_INTERRUPTED)
        return cli.EXIT_INTERRUPTED
    out = summary["out"]
    if not distributed.setup().is_root:  # distributed: rank 0 says how the run ended
        return cli.EXIT_INTERRUPTED if summary["status"] == "interrupted" else 0
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
