"""What a training run tells its user and writes down: the console lines, the progress bar, ``steps.jsonl`` (one
line per step) and ``metrics.jsonl`` (one line per epoch). Nothing here changes what the network learns."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Callable

from .. import files


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def progress_bar(total: int, initial: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a dependency, but a missing progress bar must not stop training
        return None
    return tqdm(total=total, initial=initial, desc=desc, unit="img", unit_scale=True, dynamic_ncols=True,
                leave=False, file=sys.stderr)


def update_bar(bar: Any, running: dict[str, float], batch_in_epoch: int, batches_per_epoch: int, epoch: int,
               epochs: int, images: int) -> None:
    """The bar shows this epoch's time left; 'run_left' estimates the whole run's training time."""
    steps_left = batches_per_epoch - batch_in_epoch + (epochs - epoch - 1) * batches_per_epoch
    bar.set_postfix({
        "loss": f"{running['loss'] / running['batches']:.3f}",
        "top1": f"{100 * running['top1'] / running['batches']:.1f}%",
        "run_left": fmt_time(steps_left * running["seconds"] / running["batches"])},
        refresh=False)
    bar.update(images)


def truncate_jsonl(path: Path, keep: Callable[[dict], bool]) -> None:
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
    files.atomic_write(path, lambda f: f.write("".join(x + "\n" for x in lines).encode()))


def read_history(out: Path) -> list[dict[str, Any]]:
    """The epoch records already in the run directory (a resumed run continues its history)."""
    return files.read_jsonl(out / "metrics.jsonl")  # a line torn by a crash is skipped


def append_metrics(out: Path, record: dict[str, Any]) -> None:
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def step_line(step: int, epoch: int, batch: int, loss: float, top1: float, lr: float) -> str:
    """One line of steps.jsonl (``epoch`` and ``batch`` count from 1)."""
    return json.dumps({"step": step, "epoch": epoch, "batch": batch, "loss": loss, "top1": top1, "lr": lr}) + "\n"


def epoch_record(epoch: int, step: int, lr: float, running: dict[str, float], val: dict[str, float] | None,
                 batch_size: int, skipped: int) -> dict[str, Any]:
    """One line of metrics.jsonl: the epoch's mean training loss/accuracy and its validation result."""
    nb = max(1, running["batches"])
    record = {"epoch": epoch, "step": step, "lr": lr,
              "train_loss": running["loss"] / nb, "train_top1": running["top1"] / nb,
              "train_top5": running["top5"] / nb,
              "val_loss": val["loss"] if val else None, "val_top1": val["top1"] if val else None,
              "val_top5": val["top5"] if val else None,
              "time": running["seconds"],
              "images_per_s": running["batches"] * batch_size / max(running["seconds"], 1e-9)}
    if skipped:
        record["skipped_images"] = int(skipped)
    return record


def epoch_message(record: dict[str, Any], epochs: int, next_lr: float) -> str:
    """The console line of a finished epoch."""
    lr = record["lr"]
    msg = (f"epoch {record['epoch']}/{epochs}  train loss {record['train_loss']:.4f}  "
           f"top-1 {100 * record['train_top1']:.1f}%  top-5 {100 * record['train_top5']:.1f}%")
    if record["val_top1"] is not None:
        msg += (f" | val loss {record['val_loss']:.4f}  top-1 {100 * record['val_top1']:.1f}%  "
                f"top-5 {100 * record['val_top5']:.1f}%")
    msg += (f" | lr {lr:g}{f' -> {next_lr:g}' if next_lr != lr else ''}  "
            f"{fmt_time(record['time'])}  {record['images_per_s']:.0f} img/s")
    if record.get("skipped_images"):
        msg += f"  ({record['skipped_images']} unreadable images skipped)"
    return msg
