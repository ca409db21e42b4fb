"""The learning-rate schedule of a training run (paper Section 5: divide by 10 when the validation error stops
improving). Its progress is part of every checkpoint, so a resumed run drops the rate at the same epoch; its
settings (kind, base rate, patience, drop epochs...) are the run's configuration, which the checkpoint also holds."""

from __future__ import annotations

import math
from typing import Any

# What a checkpoint records: the settings (for the record) and the progress, which is all a resume restores.
_SETTINGS = ("kind", "base_lr", "patience", "step_epochs", "max_drops", "threshold", "drop_at", "total_epochs")
_PROGRESS = ("lr", "best_error", "bad_evals", "drops")


class LRSchedule:
    """``plateau``: divide the learning rate by 10 when the validation error has not improved for ``patience``
    evaluations (the paper's heuristic), at most ``max_drops`` times. ``step``: divide by 10 every ``step_epochs``
    epochs. ``epochs``: divide by 10 after each epoch listed in ``drop_at`` (cuda-convnet's files say "reduce all
    learning rates by a factor of 10 after 120 epochs, then another factor of 10 after 10 more": ``drop_at`` =
    [120, 130]). ``cosine``: after epoch e of ``total_epochs`` E, lr = base x (1 + cos(pi e / E)) / 2, from the
    base rate down towards 0 at the end of the run (Loshchilov & Hutter's SGDR without restarts, by epochs; not the
    paper's: a faster route for short runs). ``none``: constant."""

    def __init__(self, kind: str, lr: float, patience: int = 2, step_epochs: int = 30, max_drops: int = 3,
                 threshold: float = 1e-4, drop_at: list[int] | None = None, total_epochs: int | None = None):
        if kind == "cosine" and not total_epochs:
            raise ValueError("LRSchedule: the cosine schedule needs total_epochs")
        self.kind, self.lr, self.base_lr, self.total_epochs = kind, float(lr), float(lr), total_epochs
        self.patience, self.step_epochs, self.max_drops, self.threshold = patience, step_epochs, max_drops, threshold
        self.drop_at = sorted(int(e) for e in (drop_at or []))
        self.best_error: float | None = None
        self.bad_evals = 0
        self.drops = 0

    def epoch_end(self, epochs_done: int, val_error: float | None) -> float:
        """Called after each epoch (``val_error`` None when it was not evaluated). Returns the next learning rate."""
        if self.kind == "step":
            drops = min(epochs_done // max(1, self.step_epochs), self.max_drops)
            self.drops = drops
            self.lr = self.base_lr * 0.1 ** drops
        elif self.kind == "epochs":
            self.drops = sum(1 for e in self.drop_at if e <= epochs_done)
            self.lr = self.base_lr * 0.1 ** self.drops
        elif self.kind == "cosine":
            done = min(epochs_done, self.total_epochs) / self.total_epochs
            self.lr = self.base_lr * 0.5 * (1.0 + math.cos(math.pi * done))
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
        return {k: getattr(self, k) for k in (*_SETTINGS, *_PROGRESS)}

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """The saved progress; the settings stay this schedule's (built from the resumed run's configuration, so a
        checkpoint whose recorded settings were incomplete still resumes with the run's whole schedule)."""
        for k in _PROGRESS:
            setattr(self, k, d[k])
