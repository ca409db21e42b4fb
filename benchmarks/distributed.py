"""The cost of one data-parallel gradient average beside one training step (alexnet_cuda/distributed.py):

    mpiexec -n 2 python -m mpi4py benchmarks/distributed.py --arch alexnet-small --batch-size 32

Per rank: the median time of the local step (forward + backward + update, batch / N images), of the gradient
average (MPI Reduce_scatter_block + Allgather over the fused buffers, with the host copies in and out), and of a
full data-parallel step. Rank 0 prints one line per measurement.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from alexnet_cuda import AlexNet, distributed


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="alexnet-small")
    p.add_argument("--batch-size", type=int, default=32, help="global batch")
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
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
                         stop_requested=False)

    local_step()
    t_local = median_seconds(local_step, a.repeats)
    net.compute_gradients(images, labels, training=True)
    t_avg = median_seconds(average, a.repeats)
    net.apply_update(0.01)
    t_step = median_seconds(parallel_step, a.repeats)
    if world.is_root:
        mb = net.num_parameters() * 4 / 2**20
        print(f"{a.arch}: {net.num_parameters():,} parameters ({mb:.1f} MiB of gradients), {world.size} ranks, "
              f"global batch {a.batch_size} ({n} per rank)")
        print(f"local step (forward+backward+update, {n} images): {1e3 * t_local:.1f} ms")
        print(f"gradient average over {world.size} ranks: {1e3 * t_avg:.1f} ms")
        print(f"data-parallel step: {1e3 * t_step:.1f} ms")


if __name__ == "__main__":
    main()
