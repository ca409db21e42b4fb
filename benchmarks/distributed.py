"""The cost of one data-parallel gradient average beside one training step (alexnet_cuda/train/distributed.py):

    mpiexec -n 2 python -m mpi4py benchmarks/distributed.py --arch alexnet-small --batch-size 32

Per rank: the median time of the local step (forward + backward + update, batch / N images), of the gradient
average (MPI Reduce_scatter_block + Allgather over the fused buffers, with the host copies in and out), and of a
full data-parallel step. Rank 0 prints one line per measurement and writes them, with the raw timings, to
benchmarks/results/distributed_<arch>_<ranks>ranks.json.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from alexnet_cuda import AlexNet  # noqa: E402
from alexnet_cuda.train import distributed  # noqa: E402
from common import WallClock, command_line, cpu_name, git_commit, utc_now  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="alexnet-small")
    p.add_argument("--batch-size", type=int, default=32, help="global batch")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    a = p.parse_args()
    load_before = list(os.getloadavg())
    world = distributed.setup()
    size = 227 if a.arch == "alexnet" else 32
    net = AlexNet(num_classes=1000 if a.arch == "alexnet" else 10, arch=a.arch, devices=["cpu", "cpu"])
    net.set_normalization(np.full(3, 120, np.float32), 0.02)
    n = a.batch_size // world.size
    rng = np.random.default_rng(world.rank)
    images = rng.integers(0, 256, (n, size + 4, size + 4, 3), dtype=np.uint8)
    labels = rng.integers(0, net.num_classes, n).astype(np.int32)

    def local_step():
        net.compute_gradients(images, labels, training=True)
        net.apply_update(0.01)

    def average():
        world.barrier()
        world.average_gradients(net)

    def parallel_step():
        world.train_step(net, images, labels, 0.01, 0.9, 5e-4, crops=None, flips=None, rgb_shift=None,
                         stop_requested=False, first_sample=world.rank * len(labels))

    local_step()
    raw = {"local_step_s": WallClock().time(local_step, a.repeats, 0)}
    net.compute_gradients(images, labels, training=True)
    raw["gradient_average_s"] = WallClock().time(average, a.repeats, 0)
    net.apply_update(0.01)
    raw["data_parallel_step_s"] = WallClock().time(parallel_step, a.repeats, 0)
    t_local, t_avg, t_step = (float(np.median(raw[k])) for k in raw)
    if world.is_root:
        result = {"benchmark": "distributed", "host": socket.gethostname(), "cpu": cpu_name(),
                  "cpus": os.cpu_count(), "load_average_before": load_before, "commit": git_commit(),
                  "date": utc_now(), "command": f"mpiexec -n {world.size} "
                  + command_line(__file__, sys.argv[1:]).replace(" ", " -m mpi4py ", 1),
                  "arch": a.arch, "parameters": net.num_parameters(), "ranks": world.size,
                  "global_batch": a.batch_size, "median_s": {k: float(np.median(v)) for k, v in raw.items()},
                  "raw_s": raw}
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"distributed_{a.arch}_{world.size}ranks.json").write_text(json.dumps(result, indent=1) + "\n")
        mb = net.num_parameters() * 4 / 2**20
        print(f"{a.arch}: {net.num_parameters():,} parameters ({mb:.1f} MiB of gradients), {world.size} ranks, "
              f"global batch {a.batch_size} ({n} per rank)")
        print(f"local step (forward+backward+update, {n} images): {1e3 * t_local:.1f} ms")
        print(f"gradient average over {world.size} ranks: {1e3 * t_avg:.1f} ms")
        print(f"data-parallel step: {1e3 * t_step:.1f} ms")


if __name__ == "__main__":
    main()
