"""Reading what ``alexnet_cuda.train`` writes into a run directory, for the report and the study.

The files may belong to a run that is still going (its last line half written) or that was resumed (train then cuts
the lines after the checkpoint it resumes from and writes them again), so a torn line is skipped and, should an
epoch or step appear twice, the later record wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import read_jsonl


@dataclass
class RunLogs:
    """metrics.jsonl (one record per epoch: epoch, step, lr, train_loss/top1/top5, val_loss/top1/top5 (None when
    not validated), time, images_per_s) and steps.jsonl (one per step: step, epoch, batch, loss, top1, lr)."""

    run_dir: Path
    epochs: list[dict[str, Any]]
    steps: list[dict[str, Any]]

    def best_validation(self) -> dict[str, Any] | None:
        """The epoch record with the lowest validation top-1 error (the first of equals), or None."""
        validated = [r for r in self.epochs if r.get("val_top1") is not None]
        return max(validated, key=lambda r: (r["val_top1"], -r["epoch"])) if validated else None


def read_run(run_dir: str | Path) -> RunLogs:
    run_dir = Path(run_dir)
    return RunLogs(run_dir, read_jsonl(run_dir / "metrics.jsonl", "epoch"), read_jsonl(run_dir / "steps.jsonl",
                                                                                        "step"))
