"""The training loop: epochs of SGD steps on augmented batches, validation on centre patches, the schedule's
learning-rate drops, and a checkpoint and a metrics line at the end of every epoch. Ctrl-C stops it cleanly after
the current step (:class:`StopRequest`); a NaN or infinite loss stops it without saving (:class:`TrainingDiverged`).
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import threading
import time
from typing import Any, TextIO

from .. import console
from ..cli import ConfigError
from ..data import center_crop
from . import distributed
from . import log as train_log
from .config import PROG
from .state import Run, TrainingDiverged, check_parameters, kept_checkpoint, new_running, save, writing

STEPS = "steps.jsonl"  # one line per step, in the run directory


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


def validate(model, loader, image_size: int, crop: int, max_batches: int | None = None,
             stop: StopRequest | None = None, world: distributed.SingleProcess | None = None
             ) -> dict[str, float] | None:
    """Loss, top-1 and top-5 accuracy on the centre patches of ``loader``'s images (dropout off, no update).
    Returns None when a Ctrl-C interrupted it. Data-parallel (``world``): each rank evaluates its share of every
    batch (a sharded loader) and the sums are added over the ranks."""
    world = world or distributed.SingleProcess()

    # The validation loader does not shuffle, so every epoch number gives the same order; a new number always starts
    # at the first batch (the same number would continue where a capped pass stopped).
    loader.set_epoch(loader.epoch + 1)
    n = 0
    loss = top1 = top5 = 0.0
    for b, (images, labels) in enumerate(loader):
        if max_batches is not None and b >= max_batches:
            break
        k = len(labels)
        if k:  # a rank's share of a small last batch may be empty
            view = center_crop(image_size, crop, k)
            r = model.evaluate(images, labels, crops=view["crops"], flips=view["flips"])
            loss += float(r.loss) * k
            top1 += float(r.top1) * k
            top5 += float(r.top5) * k
            n += k
        if stop is not None and stop.requested:
            return None
    loss, top1, top5, n = world.sum([loss, top1, top5, n])  # distributed: the ranks' shares added
    if n == 0:
        raise ConfigError("the validation set produced no batches")
    return {"loss": loss / n, "top1": top1 / n, "top5": top5 / n, "images": int(n)}


def train_step(run: Run, images, labels, lr: float, stop: distributed.AgreedStop):
    """One SGD step on the batch with this step's augmentation draw (paper Section 4.1 and 5, and the pixel jitter
    when it is on); refuses a batch the network refuses, and stops on a non-finite loss. Data-parallel: ``images``
    are this rank's share of the global batch, which draws the whole batch's augmentation and keeps its share."""
    c, p, world = run.config, run.progress, run.world
    lo, hi = world.shard(c.batch_size)
    aug = {k: v[lo:hi] for k, v in run.augmenter.draw(c.batch_size).items()}
    images = run.augmenter.jitter_pixels(images, aug)
    try:
        r, stopping = world.train_step(run.model, images, labels, lr, c.momentum, c.weight_decay,
                                       crops=aug["crops"], flips=aug["flips"], rgb_shift=aug["rgb_shift"],
                                       stop_requested=stop.local_requested, first_sample=lo)
        stop.agree(stopping)
    except ValueError as exc:  # e.g. a batch with NaN in it: say which batch
        raise ConfigError(f"step {p.step + 1} (epoch {p.epoch + 1}, batch {p.batch_in_epoch + 1}) "
                          f"refused: {exc}") from None
    loss = float(r.loss)
    if not math.isfinite(loss):
        raise TrainingDiverged(
            f"training diverged: the loss is {loss} at step {p.step + 1} (epoch {p.epoch + 1}, "
            f"batch {p.batch_in_epoch + 1}) with learning rate {lr:g}; stopped without saving, "
            f"{kept_checkpoint(run)}. Try a lower --lr.")
    return r


def train_batches(run: Run, lr: float, bar: Any, stop: distributed.AgreedStop, steps_file: TextIO,
                  step_losses: list[float]) -> None:
    """The rest of the current epoch's batches (all of them, or until Ctrl-C); ``--save-every`` checkpoints."""
    c, p = run.config, run.progress
    t_last = time.perf_counter()
    if p.batch_in_epoch >= run.batches_per_epoch:
        return
    for images, labels in run.train_loader:
        r = train_step(run, images, labels, lr, stop)
        loss = float(r.loss)
        p.step += 1
        p.batch_in_epoch += 1
        now = time.perf_counter()
        p.running["seconds"] += now - t_last
        t_last = now
        p.running["loss"] += loss
        p.running["top1"] += float(r.top1)
        p.running["top5"] += float(r.top5)
        p.running["batches"] += 1
        step_losses.append(loss)
        with writing(run, run.out / STEPS):
            steps_file.write(train_log.step_line(p.step, p.epoch + 1, p.batch_in_epoch, loss, float(r.top1), lr))
        if bar is not None:
            train_log.update_bar(bar, p.running, p.batch_in_epoch, run.batches_per_epoch, p.epoch, c.epochs,
                                 c.batch_size)
        if stop.requested or p.batch_in_epoch >= run.batches_per_epoch:
            break
        if c.save_every and p.step % c.save_every == 0:
            with writing(run, run.out / STEPS):
                steps_file.flush()
            save(run, run.last_path)


def end_epoch(run: Run, lr: float, val: dict[str, float] | None, steps_file: TextIO,
              history: list[dict[str, Any]]) -> None:
    """After an epoch's batches and validation: the schedule, last.npz (and best.npz when validation improved),
    metrics.jsonl and the console line."""
    c, p = run.config, run.progress
    epochs_done = p.epoch + 1
    record = train_log.epoch_record(epochs_done, p.step, lr, p.running, val, c.batch_size,
                                    getattr(run.train_loader, "skipped", 0))
    improved = val is not None and (p.best_val_top1 is None or val["top1"] > p.best_val_top1)
    if improved:
        p.best_val_top1 = val["top1"]
    run.schedule.epoch_end(epochs_done, 1.0 - val["top1"] if val else None)
    p.epoch, p.batch_in_epoch = epochs_done, 0
    p.running = new_running()
    with writing(run, run.out / STEPS):
        steps_file.flush()
    save(run, run.last_path, {"metrics": record})
    if improved:
        save(run, run.best_path, {"metrics": record})
    history.append(record)
    if run.world.is_root:  # distributed: only rank 0 writes files
        with writing(run, run.out / "metrics.jsonl"):
            train_log.append_metrics(run.out, record)
    console.log(train_log.epoch_message(record, c.epochs, run.schedule.lr))


def reached_train_error(c, history: list[dict[str, Any]]) -> bool:
    """--stop-at-train-error: the last finished epoch's running training error is at most the target."""
    return c.stop_train_error is not None and bool(history) and 1.0 - history[-1]["train_top1"] <= c.stop_train_error


def run_epochs(run: Run, stop: distributed.AgreedStop, history: list[dict[str, Any]]) -> tuple[str, list[float]]:
    """Trains from where ``run.progress`` stands to ``--epochs``. Returns the status ('completed' or
    'interrupted') and the losses of the steps it ran. ``stop`` is a Ctrl-C handler agreed by every rank."""
    c, p = run.config, run.progress
    step_losses: list[float] = []
    status = "completed"
    stop.install()
    # line-buffered: follow it with tail -f. distributed: only rank 0 writes files, the progress bar and the log.
    with writing(run, run.out / STEPS):
        steps_file = open(run.out / STEPS if run.world.is_root else os.devnull, "a", buffering=1)
    try:
        while p.epoch < c.epochs and not reached_train_error(c, history):
            if p.batch_in_epoch == 0:
                run.train_loader.set_epoch(p.epoch)
                p.running = new_running()
            lr = run.schedule.lr
            bar = train_log.progress_bar(run.batches_per_epoch * c.batch_size, p.batch_in_epoch * c.batch_size,
                                         f"epoch {p.epoch + 1}/{c.epochs}", c.progress and run.world.is_root)
            try:
                train_batches(run, lr, bar, stop, steps_file, step_losses)
                if stop.requested:
                    status = "interrupted"
                    break
                epochs_done = p.epoch + 1
                val = None
                if epochs_done % max(1, c.eval_every) == 0 or epochs_done == c.epochs:
                    check_parameters(run, run.model.state_dict(), "validating")
                    if bar is not None:
                        bar.set_description(f"epoch {epochs_done}/{c.epochs} validating")
                    val = validate(run.model, run.val_loader, run.image_size, run.crop, c.val_batches, stop,
                                   run.world)
                    if val is None:
                        status = "interrupted"
                        break
            finally:
                if bar is not None:
                    bar.close()
            end_epoch(run, lr, val, steps_file, history)
        if status == "interrupted":
            with writing(run, run.out / STEPS):
                steps_file.flush()
            save(run, run.last_path)
    finally:
        stop.uninstall()
        with contextlib.suppress(OSError):  # a failed write has been reported already; closing cannot lose more
            steps_file.close()
        for loader in (run.train_loader, run.val_loader):
            close = getattr(loader, "close", None)
            if close is not None:
                close()
    return status, step_losses
