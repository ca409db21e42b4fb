#!/usr/bin/env python3
"""Side by side with PyTorch on the CPU: train and eval images/s of our network and of the same layers in PyTorch,
measured in one process with the two alternating step by step (so load from other work on a shared machine hits
both alike), medians over the repetitions, at each thread count.

The PyTorch network (:func:`torch_alexnet`) has the same layers as ours: conv1..conv5 with the paper's kernel sizes,
strides and paddings, groups=2 where the paper's towers see only their own half (conv2, conv4, conv5; Section 3.2),
ReLU, LRN after conv1 and conv2 (Section 3.3), 3/2 max pooling after conv1, conv2, conv5 (Section 3.4), fc6..fc8
with dropout 0.5 on fc6 and fc7 (Section 4.2); softmax cross-entropy; SGD with momentum 0.9 and weight decay 5e-4.
Both take the same float32 NCHW batch (no uint8 preparation on either side), so the same arithmetic is timed.

Each thread count runs in a child process (``OMP_NUM_THREADS`` must be set before OpenMP starts; PyTorch gets
``torch.set_num_threads``). Ratio = our images/s / PyTorch's.

    python3 benchmarks/vs_torch.py                               # both networks, 1 and 2 threads, batch 32
    python3 benchmarks/vs_torch.py --arch alexnet-small --threads 1 --reps 5

Results: benchmarks/results/vs_torch_<device-name-slug>.json (raw timings) and .md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable (see network.py)
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

ARCHS = {"alexnet": (227, 1000), "alexnet-small": (32, 10)}  # input side, classes (ImageNet; CIFAR-10-like)


def torch_alexnet(torch: Any, arch: str, classes: int) -> Any:
    """PyTorch's version of our network (see the module docstring); layer table as csrc/network_layers.cpp."""
    nn = torch.nn
    if arch == "alexnet":
        kernels, strides, pads, fc, side = (11, 5, 3, 3, 3), (4, 1, 1, 1, 1), (0, 2, 1, 1, 1), 4096, 6
    else:
        kernels, strides, pads, fc, side = (5, 5, 3, 3, 3), (1, 1, 1, 1, 1), (2, 2, 1, 1, 1), 1024, 3
    channels, groups = (3, 96, 256, 384, 384, 256), (1, 2, 1, 2, 2)
    layers: list[Any] = []
    for i in range(5):
        layers += [nn.Conv2d(channels[i], channels[i + 1], kernels[i], strides[i], pads[i], groups=groups[i]),
                   nn.ReLU()]
        if i < 2:
            layers.append(nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0))
        if i in (0, 1, 4):
            layers.append(nn.MaxPool2d(3, 2))
    layers += [nn.Flatten(), nn.Linear(256 * side * side, fc), nn.ReLU(), nn.Dropout(0.5),
               nn.Linear(fc, fc), nn.ReLU(), nn.Dropout(0.5), nn.Linear(fc, classes)]
    return nn.Sequential(*layers)


def measure(arch: str, batch: int, threads: int, reps: int, warmup: int) -> dict[str, Any]:
    """One thread count (run in the child process): alternating steps, per-step seconds of both."""
    import torch

    import alexnet_cuda

    torch.set_num_threads(threads)
    side, classes = ARCHS[arch]
    rng = np.random.default_rng(0)
    images = rng.standard_normal((batch, 3, side, side)).astype(np.float32)
    labels = rng.integers(0, classes, batch).astype(np.int32)
    ours = alexnet_cuda.AlexNet(classes, ["cpu", "cpu"], arch, side, seed=0)
    theirs = torch_alexnet(torch, arch, classes)
    opt = torch.optim.SGD(theirs.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
    loss_fn = torch.nn.CrossEntropyLoss()

    def torch_train():
        theirs.train()
        opt.zero_grad(set_to_none=True)
        loss_fn(theirs(x), y).backward()
        opt.step()

    def torch_eval():
        theirs.eval()
        with torch.no_grad():
            theirs(x)

    steps = {
        "ours_train": lambda: ours.train_step(images, labels, 0.001),
        "torch_train": torch_train,
        "ours_eval": lambda: ours.evaluate(images, labels),
        "torch_eval": torch_eval,
    }
    times: dict[str, list[float]] = {k: [] for k in steps}
    for phase in ("train", "eval"):
        common.alternate(steps, [f"ours_{phase}", f"torch_{phase}"], reps, warmup, times)
    out: dict[str, Any] = {"arch": arch, "threads": threads, "batch": batch, "seconds": times,
                           "torch_version": torch.__version__, "load_average_after": list(os.getloadavg())}
    for phase in ("train", "eval"):
        ours_ips = batch / common.median(times[f"ours_{phase}"])
        torch_ips = batch / common.median(times[f"torch_{phase}"])
        out[phase] = {"ours_images_per_s": ours_ips, "torch_images_per_s": torch_ips, "ratio": ours_ips / torch_ips}
    return out


def run_child(arch: str, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    return common.run_child(__file__, args, threads, ["--arch", arch], f"{arch} / ")


def _markdown(p: dict) -> str:
    threads = p["threads"]
    lines = [f"# Side by side with PyTorch on the CPU: {p['device']['name']}", "",
             f"- command: `{p['command']}`", f"- commit: `{p['git_commit']}`", f"- date (UTC): {p['date_utc']}",
             f"- batch {p['batch']}, float32 NCHW input for both; {p['reps']} alternating steps of each after "
             f"{p['warmup']} warm-up, medians; torch {p['results'][0]['torch_version']} with the same layers "
             "(groups=2 for the towers)",
             "- cell: ours / torch images per second (ours and torch images/s in brackets); load average (1 min) "
             "before each run in the last column: other work on a shared machine slows both alike", ""]
    headers = ["network, batch %d" % p["batch"]]
    for t in threads:
        headers += [f"{t} thread{'s' if t > 1 else ''}, train", f"{t} thread{'s' if t > 1 else ''}, eval"]
    headers.append("load (1 min) per run")
    rows = []
    for arch in p["archs"]:
        row, loads = [arch], []
        for t in threads:
            r = next(r for r in p["results"] if r["arch"] == arch and r["threads"] == t)
            for phase in ("train", "eval"):
                c = r[phase]
                row.append(f"{c['ratio']:.2f}x ({c['ours_images_per_s']:.1f} / {c['torch_images_per_s']:.1f})")
            loads.append(f"{r['load_average_before'][0]:.1f}")
        row.append(", ".join(loads))
        rows.append(row)
    lines.append(common.markdown_table(headers, rows))
    lines += ["", "Raw per-step timings are in the .json file."]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", action="append", choices=list(ARCHS), help="repeatable (default: both)")
    common.add_child_arguments(p, batch=32, reps=5, warmup=1)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    archs = args.arch or list(ARCHS)
    threads = args.threads or [1, 2]
    if args.child:
        print(json.dumps(measure(archs[0], args.batch, threads[0], args.reps, args.warmup)))
        return None
    if common.import_torch() is None:
        raise SystemExit("vs_torch.py: needs PyTorch (pip install torch)")
    import alexnet_cuda

    results = []
    for arch in archs:
        for t in threads:
            r = run_child(arch, args, t)
            results.append(r)
            print(f"{arch:<14} {t} thread(s): train {r['train']['ratio']:.2f}x "
                  f"({r['train']['ours_images_per_s']:.1f} vs {r['train']['torch_images_per_s']:.1f} images/s), "
                  f"eval {r['eval']['ratio']:.2f}x ({r['eval']['ours_images_per_s']:.1f} vs "
                  f"{r['eval']['torch_images_per_s']:.1f}); load {r['load_average_before'][0]:.1f}", flush=True)
    payload = {
        "benchmark": "vs_torch", "schema_version": 1, "device": common.device_description("cpu"),
        "build_info": alexnet_cuda.build_info(), "git_commit": common.git_commit(), "date_utc": common.utc_now(),
        "command": common.command_line(__file__, argv), "archs": archs, "threads": threads, "batch": args.batch,
        "reps": args.reps, "warmup": args.warmup, "results": results,
    }
    json_path, md_path = common.write_results(args.out, "vs_torch_" + common.slugify(payload["device"]["name"]),
                                              payload, _markdown(payload))
    print(f"wrote {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    main()
