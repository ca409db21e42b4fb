#!/usr/bin/env python3
"""Throughput of the data loader alone (decode + resize + batch assembly), in images per second.

    python3 benchmarks/loader.py                          # synthetic 256x256 images, workers 0,1,2,4
    python3 benchmarks/loader.py --data /path/to/imagenet --split train --workers 4 8 --batches 50
    python3 benchmarks/loader.py --data ../shared/data/imagenette-mini
    python3 benchmarks/loader.py --data overhead          # free images: what the loader itself costs

For each worker count it runs ``--warmup`` batches (worker start-up, page cache, the batches prefetched
meanwhile), then times ``--batches`` batches and reports images/s, with every per-batch wait time in the JSON.
Results are printed and written to benchmarks/results/loader_<host>.json and .md (host, CPU, load average,
commit, date, command, raw timings). Other processes competing for the CPUs lower the numbers: see the load.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from alexnet_cuda.data import Dataset, Loader, open_dataset, synthetic_dataset  # noqa: E402


class ConstantDataset(Dataset):
    """Free images (one shared array): measures the loader's own cost (task queue, shared-memory ring, copy)."""

    def __init__(self, n: int, image_size: int):
        self.n, self.image_size, self.root = n, image_size, None
        self.classes = self.class_ids = ["constant"]
        self.image = np.full((image_size, image_size, 3), 127, np.uint8)

    def __len__(self) -> int:
        return self.n

    def label(self, i: int) -> int:
        return 0

    def load(self, i: int) -> np.ndarray:
        return self.image


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def measure(dataset, batch_size: int, workers: int, batches: int, warmup: int, prefetch: int) -> dict:
    with Loader(dataset, batch_size, shuffle=True, seed=0, workers=workers, prefetch=prefetch) as loader:
        if warmup is None:  # drain what the workers prefetched during start-up: it would flatter the timing
            warmup = min(max(2, prefetch + workers), len(loader) // 2)
        if warmup + batches > len(loader):
            batches = len(loader) - warmup
            print(f"  (the dataset gives {len(loader)} batches of {batch_size}: timing {batches} after {warmup} "
                  "warm-up batches)")
        it = iter(loader)
        t0 = time.perf_counter()
        for _ in range(warmup):
            next(it)
        warm_s = time.perf_counter() - t0
        waits = []
        start = time.perf_counter()
        for _ in range(batches):
            t = time.perf_counter()
            next(it)
            waits.append(time.perf_counter() - t)
        total = time.perf_counter() - start
        skipped = loader.skipped
    return {"workers": workers, "batches": batches, "batch_size": batch_size, "seconds": total,
            "images_per_s": batches * batch_size / total, "warmup_batches": warmup, "warmup_s": warm_s,
            "batch_wait_s": waits,
            "skipped": skipped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="synthetic",
                    help="dataset directory, 'synthetic' (default), or 'overhead' (free images: the loader's own cost)")
    ap.add_argument("--kind", default="auto", help="dataset kind for open_dataset (default: auto)")
    ap.add_argument("--split", default="train")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="worker counts (default 0 1 2 4)")
    ap.add_argument("--batches", type=int, default=16, help="timed batches per worker count")
    ap.add_argument("--warmup", type=int, default=None,
                    help="untimed batches first (default: prefetch + workers, at least 2)")
    ap.add_argument("--prefetch", type=int, default=4)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="results folder")
    args = ap.parse_args(argv)

    n = (args.batches + max(2, args.prefetch + max(args.workers or [4])) if args.warmup is None
         else args.batches + args.warmup) * args.batch_size
    if args.data == "synthetic":
        dataset = synthetic_dataset(num_images=n, image_size=args.image_size)
    elif args.data == "overhead":
        dataset = ConstantDataset(n, args.image_size)
    else:
        dataset = open_dataset(args.data, kind=args.kind, split=args.split, image_size=args.image_size)
    workers = args.workers if args.workers is not None else [0, 1, 2, 4]
    host = socket.gethostname().split(".")[0]
    print(f"loader benchmark: {dataset!r}, batch {args.batch_size}, host {host} ({os.cpu_count()} CPUs, "
          f"{cpu_name()})")
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    runs = []
    for w in workers:
        r = measure(dataset, args.batch_size, w, args.batches, args.warmup, args.prefetch)
        runs.append(r)
        print(f"  workers={w:2d}: {r['images_per_s']:9.1f} images/s  ({r['batches']} batches in "
              f"{r['seconds']:.2f} s; start-up + {r['warmup_batches']} warm-up batches {r['warmup_s']:.2f} s; "
              f"skipped {r['skipped']})")

    result = {
        "benchmark": "loader", "host": host, "cpu": cpu_name(), "cpus": os.cpu_count(),
        "load_average_before": load_before, "python": platform.python_version(), "platform": platform.platform(),
        "commit": commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "dataset": repr(dataset), "image_size": dataset.image_size, "runs": runs,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"loader_{host}.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Loader throughput on {host}", "",
             f"- CPU: {result['cpu']} ({result['cpus']} logical CPUs); load average before the run "
             f"{result['load_average_before']}",
             f"- commit {result['commit']}, {result['date']}, Python {result['python']}",
             f"- command: `{result['command']}`", f"- dataset: `{result['dataset']}`", "",
             "| workers | batch | timed batches | images/s | seconds | warm-up batches | start-up + warm-up s |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in runs:
        lines.append(f"| {r['workers']} | {r['batch_size']} | {r['batches']} | {r['images_per_s']:.1f} | "
                     f"{r['seconds']:.2f} | {r['warmup_batches']} | {r['warmup_s']:.2f} |")
    lines += ["", f"Raw per-batch wait times are in loader_{host}.json."]
    (out / f"loader_{host}.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out / f'loader_{host}.json'} and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
