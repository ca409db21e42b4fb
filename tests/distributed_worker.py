"""The rank side of tests/train/test_distributed.py: ``mpiexec -n 2 python tests/distributed_worker.py SCENARIO OUT``.

``single`` (without mpiexec): the one-process run of the same training. ``checks``: several checks in one launch
(each launch costs seconds); rank 0 writes their results to OUT/result.json for the test to assert on.
``emulated-cuda``: the equivalence check with each rank on its own emulated GPU. ``raise`` / ``die``: rank 1 fails
mid-training (an exception / killed outright), and the job must end on every rank instead of hanging.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np

from alexnet_cuda import AlexNet
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import files
from alexnet_cuda import data
from alexnet_cuda.train import distributed
from alexnet_cuda.train import run as train_mod
from alexnet_cuda.train.config import TrainConfig

NARROW = {"conv": [16, 32, 48, 48, 32], "fc": [64, 64]}  # a tiny AlexNet: a few ms a step


def tiny_net(device: str = "cpu") -> AlexNet:
    net = AlexNet(num_classes=10, arch="alexnet-small", input_size=32, devices=[device, device], seed=5,
                  widths=NARROW, dropout=0.5)
    net.set_normalization(np.full(3, 120, np.float32), 0.02)
    return net


def digest(arrays: dict) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        h.update(k.encode())
        h.update(np.ascontiguousarray(arrays[k]).tobytes())
    return h.hexdigest()


def equivalence(world, device: str = "cpu") -> dict:
    """2 ranks x batch 4 against 1 process x batch 8 (on the CPU), three steps with momentum, weight decay, dropout,
    augmentation. ``device``: where each rank's towers are (cuda: the gradients go through the host)."""
    rng = np.random.default_rng(7)
    net = tiny_net(device)
    world.broadcast_model(net)
    path = world.choose_gradient_path(net, [device, device])
    single = tiny_net() if world.is_root else None
    aug = data.Augmenter(36, 32, eigvals=np.array([5.0, 1.0, 0.2], np.float32), eigvecs=np.eye(3, dtype=np.float32),
                         pca_std=0.1, seed=3)
    losses = []
    for _ in range(3):
        images = rng.integers(0, 256, (8, 36, 36, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, 8).astype(np.int32)
        draw = aug.draw(8)
        lo, hi = world.shard(8)
        r, _ = world.train_step(net, images[lo:hi], labels[lo:hi], 0.05, 0.9, 5e-4, crops=draw["crops"][lo:hi],
                                flips=draw["flips"][lo:hi], rgb_shift=draw["rgb_shift"][lo:hi], stop_requested=False,
                                first_sample=lo)
        if single is not None:
            s = single.train_step(images, labels, 0.05, 0.9, 5e-4, crops=draw["crops"], flips=draw["flips"],
                                  rgb_shift=draw["rgb_shift"])
            losses.append((float(r.loss), float(s.loss)))
    state, momentum = net.state_dict(), net.optimizer_state_dict()
    digests = world.comm.gather(digest(state) + digest(momentum), root=0)
    if not world.is_root:
        return {}

    def worst(a: dict, b: dict) -> float:
        return max(float(np.abs(a[k] - b[k]).max() / (np.abs(b[k]).max() + 1e-12)) for k in a)

    return {"ranks_identical": len(set(digests)) == 1, "param_rel_err": worst(state, single.state_dict()),
            "momentum_rel_err": worst(momentum, single.optimizer_state_dict()), "losses": losses,
            "step": [net.step, single.step], "gradient_path": path, "devices": net.devices}


def union_of_shards(world) -> dict:
    """The ranks' loaded samples and augmentation draws, concatenated in rank order, against one process's."""
    ds = data.synthetic_dataset("train", num_classes=10, num_images=40, image_size=36, seed=0)
    mine = data.Loader(ds, 8, shuffle=True, drop_last=True, seed=4, workers=0, shard=(world.rank, world.size))
    aug = data.Augmenter(36, 32, seed=9)
    got = []
    for images, labels in mine:
        lo, hi = world.shard(8)
        draw = {k: v[lo:hi] for k, v in aug.draw(8).items()}
        got.append((images, labels, draw))
    gathered = world.comm.gather(got, root=0)
    if not world.is_root:
        return {}
    whole = data.Loader(ds, 8, shuffle=True, drop_last=True, seed=4, workers=0)
    single_aug = data.Augmenter(36, 32, seed=9)
    same = True
    for b, (images, labels) in enumerate(whole):
        draw = single_aug.draw(8)
        parts = [g[b] for g in gathered]
        same &= np.array_equal(np.concatenate([p[0] for p in parts]), images)
        same &= np.array_equal(np.concatenate([p[1] for p in parts]), labels)
        for k in draw:
            same &= np.array_equal(np.concatenate([p[2][k] for p in parts]), draw[k])
    # Validation: a last batch smaller than the ranks' count is still covered exactly once.
    val = data.Loader(ds, 24, shuffle=False, drop_last=False, workers=0)
    sizes = [[len(shard_labels) for _, shard_labels in data.Loader(ds, 24, shuffle=False, drop_last=False, workers=0,
                                                                   shard=(r, 3))] for r in range(3)]
    return {"same": bool(same), "batches": len(got), "val_shard_sizes": sizes, "val_batches": len(val)}


def train_config(out: Path, **kw):
    base = dict(out=str(out), epochs=2, batch_size=8, synthetic_images=32, lr=0.05, workers=0, progress=False,
                stats_images=32, device="cpu", widths=NARROW, seed=1)
    base.update(kw)
    return TrainConfig(**base)


def record_writes(out: Path) -> list[str]:
    """Paths under ``out`` this process opens for writing (the test: only rank 0 writes)."""
    written: list[str] = []
    real_open, real_atomic = builtins.open, files.atomic_write

    def open_(file, mode="r", *a, **kw):
        if any(c in mode for c in "wax+") and str(file).startswith(str(out)):
            written.append(str(file))
        return real_open(file, mode, *a, **kw)

    def atomic(path, *a, **kw):
        if str(path).startswith(str(out)):
            written.append(str(path))
        return real_atomic(path, *a, **kw)

    builtins.open = open_
    files.atomic_write = atomic  # every writer (checkpoints, statistics, splits) calls it through the module
    return written


def resume_and_stop(world, root: Path) -> dict:
    """An uninterrupted 2-epoch run; a run stopped by a Ctrl-C on rank 1 only, then resumed: the same weights."""
    written = record_writes(root)
    whole = train_mod.train(train_config(root / "whole"))
    # Rank 1 alone gets a SIGINT during step 3: both ranks must stop after it and rank 0 saves.
    real_step, calls = world.train_step, [0]

    def step_with_signal(*a, **kw):
        calls[0] += 1
        if world.rank == 1 and calls[0] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*a, **kw)

    world.train_step = step_with_signal
    stopped = train_mod.train(train_config(root / "split"))
    world.train_step = real_step
    resumed = train_mod.train(train_config(root / "split", resume=True))
    a = ckpt_io.load(root / "whole" / "last.npz")
    b = ckpt_io.load(root / "split" / "last.npz")
    all_written = world.comm.gather(written, root=0)
    if not world.is_root:
        return {}
    return {"stopped_status": stopped["status"], "stopped_step": stopped["step"], "whole_step": whole["step"],
            "resumed_step": resumed["step"], "params_equal": digest(a.params) == digest(b.params),
            "momentum_equal": digest(a.momentum) == digest(b.momentum),
            "losses_equal": whole["step_losses"] == stopped["step_losses"] + resumed["step_losses"],
            "writes_by_rank": [len(w) for w in all_written]}


def fail(world, root: Path, how: str) -> None:
    real_step, calls = world.train_step, [0]

    def step_then_fail(*a, **kw):
        calls[0] += 1
        if world.rank == 1 and calls[0] == 2:
            if how == "die":
                os.kill(os.getpid(), signal.SIGKILL)
            raise RuntimeError("planted failure on rank 1")
        return real_step(*a, **kw)

    world.train_step = step_then_fail
    sys.exit(train_mod.main(["--out", str(root / "run"), "--epochs", "50", "--batch-size", "8",
                             "--synthetic-images", "32", "--workers", "0", "--no-progress", "--device", "cpu",
                             "--arch", "alexnet-small"]))


def main() -> None:
    scenario, root = sys.argv[1], Path(sys.argv[2])
    world = distributed.setup()
    if scenario == "single":  # without mpiexec: the one-process run the 2-rank run must equal
        train_mod.train(train_config(root / "one"))
        return
    assert world.size == 2, f"expected 2 ranks, got {world.size}"
    if scenario == "emulated-cuda":  # each rank on its own emulated GPU, no NCCL: the MPI host-copy path
        result = {"equivalence": equivalence(world, f"cuda:{world.local_rank}")}
        if world.is_root:
            (root / "result.json").write_text(json.dumps(result))
        return
    if scenario == "locked":  # the test holds root/run's lock: rank 0 must refuse and end the job
        sys.exit(train_mod.main(["--out", str(root / "run"), "--epochs", "1", "--batch-size", "8",
                                 "--synthetic-images", "32", "--workers", "0", "--no-progress", "--device", "cpu"]))
    if scenario != "checks":
        fail(world, root, scenario)
    result = {"world": [world.rank, world.size], "equivalence": equivalence(world),
              "union": union_of_shards(world), "resume": resume_and_stop(world, root)}
    if world.is_root:
        (root / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
