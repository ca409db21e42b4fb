"""The state of a training run, and its checkpoints: what ``last.npz`` / ``best.npz`` hold, saving them (never a
network with NaN or inf in it), and resuming from one so that the resumed run continues exactly (the same batches,
the same augmentation draws, the same learning rate)."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import checkpoint as ckpt_io
from ..cli import ConfigError
from . import distributed
from .config import RESUME_OVERRIDES, RESUME_OVERRIDES_IF_SET, TrainConfig
from .log import truncate_jsonl
from .schedule import LRSchedule


class TrainingDiverged(RuntimeError):
    """The loss or the parameters became NaN or infinite. The message names the step; the last good checkpoint is
    kept."""


def new_running() -> dict[str, float]:
    """The sums of the current epoch's training batches (their means go to metrics.jsonl)."""
    return {"loss": 0.0, "top1": 0.0, "top5": 0.0, "batches": 0, "seconds": 0.0}


@dataclasses.dataclass
class Progress:
    """Where the run is: ``epoch`` epochs finished, ``batch_in_epoch`` batches of the next one, ``step`` steps in
    all."""
    epoch: int = 0
    batch_in_epoch: int = 0
    step: int = 0
    running: dict[str, float] = dataclasses.field(default_factory=new_running)
    best_val_top1: float | None = None


@dataclasses.dataclass
class Run:
    """Everything one training run works with; a checkpoint saves the parts that change."""
    config: TrainConfig
    out: Path
    model: Any
    model_cfg: dict[str, Any]
    classes: list[str]
    class_ids: list[str]
    image_size: int
    crop: int
    input_scale: float
    mean: np.ndarray
    eigvals: np.ndarray
    eigvecs: np.ndarray
    augmenter: Any
    train_loader: Any
    val_loader: Any
    schedule: LRSchedule
    batches_per_epoch: int
    progress: Progress = dataclasses.field(default_factory=Progress)
    have_checkpoint: bool = False
    saved_epoch: int = 0                   # where last.npz stands (for the message when a later write fails)
    saved_step: int = 0
    # The MPI ranks training this model data-parallel (distributed.py); one process: SingleProcess.
    world: distributed.SingleProcess = dataclasses.field(default_factory=distributed.SingleProcess)

    @property
    def last_path(self) -> Path:
        return self.out / "last.npz"

    @property
    def best_path(self) -> Path:
        return self.out / "best.npz"


# --------------------------------------------------------------------------------------------------------------------
# Resuming
# --------------------------------------------------------------------------------------------------------------------

def resume_config(config: TrainConfig) -> tuple[TrainConfig, ckpt_io.Checkpoint | None]:
    """With ``--resume``: the settings saved in ``OUT/last.npz`` (but for the few a resume may change) and that
    checkpoint. Without: ``config`` unchanged and None."""
    if not config.resume:
        return config, None
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
    return TrainConfig(**merged), resumed


def resumed_statistics(resumed: ckpt_io.Checkpoint) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The mean image and colour PCA the run started with (not recomputed: a resume must see the same inputs)."""
    try:
        return resumed.arrays["mean"], resumed.arrays["pca_eigvals"], resumed.arrays["pca_eigvecs"]
    except KeyError as exc:
        raise ckpt_io.CheckpointError(f"checkpoint {resumed.path}: has no {exc} array to resume with") from None


def restore(run: Run, resumed: ckpt_io.Checkpoint) -> None:
    """Puts the network, optimizer, schedule, augmentation stream and loader position back as they were saved, and
    drops the log lines after the checkpoint (the resumed run writes them again)."""
    p = run.progress
    try:
        run.model.load_state_dict(resumed.params)
        run.model.load_optimizer_state_dict(resumed.momentum)
        m = resumed.meta
        run.model.step = int(m["model_step"])
        p.epoch, p.batch_in_epoch, p.step = int(m["epoch"]), int(m["batch_in_epoch"]), int(m["step"])
        run.saved_epoch, run.saved_step = p.epoch, p.step
        run.schedule.load_state_dict(m["scheduler"])
        p.running = dict(m["running"])
        p.best_val_top1 = m.get("best_val_top1")
        run.augmenter.load_state_dict(ckpt_io.unpack_state(m["augmenter"], resumed.arrays))
        if p.batch_in_epoch > 0:
            run.train_loader.load_state_dict(ckpt_io.unpack_state(m["loader"], resumed.arrays))
    except (KeyError, ValueError, TypeError) as exc:
        raise ckpt_io.CheckpointError(f"checkpoint {resumed.path}: cannot resume from it "
                                      f"({type(exc).__name__}: {exc})") from None
    if run.world.is_root:  # distributed: only rank 0 writes
        truncate_jsonl(run.out / "steps.jsonl", lambda r: r.get("step", 0) <= p.step)
        truncate_jsonl(run.out / "metrics.jsonl", lambda r: r.get("epoch", 0) <= p.epoch)


# --------------------------------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------------------------------

class RunWriteFailed(OSError):
    """A checkpoint or log of the run could not be written (a full disk, a read-only one, a quota). Its message is the
    one line the command ends with: what failed, which checkpoint is intact, and how to continue."""

    def __str__(self) -> str:
        return str(self.strerror)  # the whole message, without OSError's "[Errno N]" in front


@contextlib.contextmanager
def writing(run: Run, path: Path):
    """Turns an OSError raised while writing ``path`` (a file of the run) into :class:`RunWriteFailed`."""
    try:
        yield
    except RunWriteFailed:
        raise
    except OSError as exc:
        why = exc.strerror or str(exc)
        if run.have_checkpoint:
            kept = (f"{run.last_path} is intact (saved after epoch {run.saved_epoch}, step {run.saved_step}); once "
                    f"it is fixed, continue with: python -m alexnet_cuda.train --out {run.out} --resume")
        else:
            kept = "no checkpoint had been saved yet; once it is fixed, start the run again"
        raise RunWriteFailed(exc.errno, f"writing {exc.filename or path} failed ({why}): {kept}") from exc


def kept_checkpoint(run: Run) -> str:
    """The end of a divergence message: what the user still has."""
    return (f"the last good checkpoint is {run.last_path}" if run.have_checkpoint
            else "no checkpoint had been saved yet")


def check_parameters(run: Run, params: dict[str, np.ndarray], what: str) -> None:
    """A NaN or inf weight can hide from the loss (ReLU turns conv1's NaNs into zeros), so the parameters themselves
    are checked before every validation and every save: a broken network is never saved."""
    bad = [n for n, a in params.items() if not np.isfinite(a).all()]
    if bad:
        names = ", ".join(bad[:3]) + (", ..." if len(bad) > 3 else "")
        raise TrainingDiverged(
            f"training diverged: {len(bad)} parameter tensors ({names}) hold NaN or inf after step "
            f"{run.progress.step}; stopped before {what}, {kept_checkpoint(run)}. Try a lower --lr or "
            f"--weight-decay.")


def save(run: Run, path: Path, extra: dict[str, Any] | None = None) -> None:
    """Writes a checkpoint of the run as it is now (atomically: a crash keeps the previous file)."""
    params = run.model.state_dict()
    check_parameters(run, params, f"saving {path.name}")
    if not run.world.is_root:  # distributed: the ranks hold the same parameters; rank 0 writes them
        return
    c, p = run.config, run.progress
    arrays = {"mean": run.mean, "pca_eigvals": run.eigvals, "pca_eigvecs": run.eigvecs}
    meta = {
        "config": dataclasses.asdict(c), "model": run.model_cfg, "classes": run.classes,
        "class_ids": run.class_ids, "image_size": run.image_size, "normalization_scale": run.input_scale,
        "dataset": c.dataset, "data": c.data,
        "epoch": p.epoch, "batch_in_epoch": p.batch_in_epoch, "step": p.step, "model_step": int(run.model.step),
        "lr": run.schedule.lr, "scheduler": run.schedule.state_dict(), "running": p.running,
        "best_val_top1": p.best_val_top1,
        "augmenter": ckpt_io.pack_state(run.augmenter.state_dict(), arrays, "augmenter_state_"),
        "loader": ckpt_io.pack_state(run.train_loader.state_dict(), arrays, "loader_state_"),
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if extra:
        meta.update(extra)
    with writing(run, path):
        ckpt_io.save(path, ckpt_io.Checkpoint(params=params, momentum=run.model.optimizer_state_dict(),
                                              arrays=arrays, meta=meta))
    if path == run.last_path:
        run.have_checkpoint = True
        run.saved_epoch, run.saved_step = p.epoch, p.step
