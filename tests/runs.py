"""Training runs for the tests: a few-second config for the stand-in network, a narrow real network's config, and the comparison that makes "resume is exact"
checkable (bit-identical losses, logs and checkpoints). Shared by the trainer's tests and the variants' tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda.train.config import TrainConfig

TIMING_KEYS = ("time", "images_per_s")


def tiny(tmp_path, name="run", **kw) -> TrainConfig:
    """A few-second run: 96 synthetic 36x36 training images, batches of 16 (6 steps per epoch), dropout on."""
    base = dict(out=str(tmp_path / name), epochs=2, batch_size=16, synthetic_images=96, lr=0.05, workers=0,
                progress=False, stats_images=64)
    base.update(kw)
    return TrainConfig(**base)


# A narrow alexnet-small (same layers, fewer channels) keeps the real-network tests to seconds on two cores.
NARROW = {"conv": [16, 32, 48, 48, 32], "fc": [64, 64]}


def real(tmp_path, name="run", **kw) -> TrainConfig:
    base = dict(out=str(tmp_path / name), epochs=2, batch_size=16, synthetic_images=64, lr=0.01, workers=0,
                progress=False, stats_images=64, device="cpu", widths=NARROW)
    base.update(kw)
    return TrainConfig(**base)


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in records]


def assert_same_run(a: dict, b_runs: list[dict]) -> None:
    losses = [x for r in b_runs for x in r["step_losses"]]
    assert losses == a["step_losses"]  # bit-identical, not approximately equal
    out_a, out_b = Path(a["out"]), Path(b_runs[-1]["out"])
    assert records(out_a / "steps.jsonl") == records(out_b / "steps.jsonl")
    assert without_timing(records(out_a / "metrics.jsonl")) == without_timing(records(out_b / "metrics.jsonl"))
    ca, cb = ckpt_io.load(out_a / "last.npz"), ckpt_io.load(out_b / "last.npz")
    assert set(ca.params) == set(cb.params) and set(ca.momentum) == set(cb.momentum)
    for k in ca.params:  # parameters and BatchNorm running statistics
        np.testing.assert_array_equal(ca.params[k], cb.params[k])
    for k in ca.momentum:  # the optimizer's state (SGD momentum; Adam's exp_avg and exp_avg_sq)
        np.testing.assert_array_equal(ca.momentum[k], cb.momentum[k])
