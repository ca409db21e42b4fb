#!/usr/bin/env python3
"""Training-step benchmark of the whole network: step time, images/s, per-tower GPU time, peak memory per device.

One training step is what :meth:`alexnet_cuda.AlexNet.train_step` does: copy the batch to the towers' devices,
prepare it (uint8 crop/mirror/mean subtraction on the device, the default, or float32 as given with ``--input
float32``), forward, softmax cross-entropy, backward with the exchanges between the towers, the paper's SGD update,
and the synchronization that ends the step. Its wall-clock time is the step time; images/s = batch / step time. The
same run times evaluation (forward only, dropout off).

Placements (``--placement``, repeatable): 'cpu,cpu' (towers one after the other on the CPU), 'cuda:0,cuda:0' (both
towers on one GPU, each on its own stream, overlapping), 'cuda:0,cuda:1' (a tower per GPU, peer copies at the
exchanges) and 'cuda:0/1' (the one-tower net of the paper's footnote on one GPU, for comparison). Default: every
placement the machine has (on a GPU machine the CPU is skipped), or 'cpu,cpu' without a GPU.

Per-tower times come from CUDA events on each tower's stream around its forward, backward and update work (waits at
the exchange points included), from the last step's :meth:`AlexNet.tower_timings`. Peak memory is the caching
allocator's peak of bytes in live tensors per device during the timed steps (on the CPU: every tensor of the
process, parameters and momentum included).

    python3 benchmarks/network.py                         # GPU placements when there is a GPU, else the CPU
    python3 benchmarks/network.py --device cpu --batch 4  # the full net on the CPU at batch 4
    python3 benchmarks/network.py --placement cuda:0,cuda:0 --batch 128 --reps 20
    python3 benchmarks/network.py --arch alexnet-small --input-size 32 --batch 256

Results: benchmarks/results/network_<device-name-slug>.json (raw timings) and .md (``--out DIR`` to change).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable (appended: an installed
    # alexnet_cuda wins over the checkout; run with PYTHONPATH=. to benchmark an in-place build)
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402

ONE_TOWER = "/1"  # placement suffix: the one-tower net


def parse_placement(spec: str) -> tuple[list[str], int]:
    """'cuda:0,cuda:1' -> (['cuda:0', 'cuda:1'], 2); 'cuda:0/1' -> (['cuda:0', 'cuda:0'], 1)."""
    if spec.endswith(ONE_TOWER):
        d = spec[: -len(ONE_TOWER)]
        return [d, d], 1
    parts = spec.split(",")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise SystemExit(f"network.py: --placement takes 'DEV,DEV' or 'DEV/1', got {spec!r}")
    return parts, 2


def default_placements(device: str | None) -> list[str]:
    import alexnet_cuda

    gpus = len(alexnet_cuda.build_info()["gpus"]) if alexnet_cuda.cuda_available() else 0
    if device == "cpu" or (device is None and gpus == 0):
        return ["cpu,cpu"]
    d = device if device and device != "cuda" else "cuda:0"
    out = [f"{d},{d}", f"{d}{ONE_TOWER}"]
    if gpus >= 2 and device in (None, "cuda"):
        out.insert(1, "cuda:0,cuda:1")
    return out


def make_batch(args, input_size: int, rng: np.random.Generator) -> dict[str, Any]:
    n = args.batch
    labels = rng.integers(0, args.classes, n).astype(np.int32)
    if args.input == "float32":
        return {"images": rng.standard_normal((n, 3, input_size, input_size)).astype(np.float32), "labels": labels,
                "kw": {}}
    side = args.image_size or (256 if input_size == 227 else input_size + input_size // 8)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    crops = rng.integers(0, side - input_size + 1, (n, 2)).astype(np.int32)
    flips = rng.integers(0, 2, n).astype(np.int32)
    shift = rng.normal(0, 0.1, (n, 3)).astype(np.float32)
    return {"images": images, "labels": labels, "kw": {"crops": crops, "flips": flips, "rgb_shift": shift},
            "image_size": side}


def run_placement(spec: str, args, rng: np.random.Generator) -> dict[str, Any]:
    from alexnet_cuda import AlexNet

    devices, towers = parse_placement(spec)
    out: dict[str, Any] = {"placement": spec, "devices": devices, "towers": towers}
    try:
        net = AlexNet(args.classes, devices, args.arch, args.input_size, towers=towers, seed=0, **tiny_widths(args))
    except (ValueError, TypeError, MemoryError) as exc:
        out.update(status="error", error=str(exc))
        return out
    out["parameters"] = net.num_parameters()
    out["config"] = net.config
    b = make_batch(args, net.input_size, rng)
    if args.input == "uint8":
        net.set_normalization(np.full(3, 127.5, np.float32), 1 / 64)
    out["input"] = {"dtype": args.input, "shape": list(b["images"].shape)}
    try:
        for _ in range(args.warmup):
            net.train_step(b["images"], b["labels"], args.lr, **b["kw"])
        net.reset_peak_memory()
        step_s, towers_ms, losses = [], [], []
        for _ in range(args.reps):
            t0 = time.perf_counter()
            r = net.train_step(b["images"], b["labels"], args.lr, **b["kw"])
            step_s.append(time.perf_counter() - t0)
            towers_ms.append(net.tower_timings())
            losses.append(r.loss)
        peak = net.peak_memory()
        memory = net.memory_stats()
        eval_kw = {k: v for k, v in b["kw"].items() if k != "rgb_shift"}
        eval_s = []
        for _ in range(max(1, args.reps // 2)):
            t0 = time.perf_counter()
            net.evaluate(b["images"], b["labels"], **eval_kw)
            eval_s.append(time.perf_counter() - t0)
    except (RuntimeError, ValueError, MemoryError) as exc:  # an op not implemented yet, or out of memory
        out.update(status="error", error=str(exc))
        return out
    step = common.median(step_s)
    out.update(
        status="ok", step_seconds=step_s, step_median_s=step, images_per_s=args.batch / step,
        eval_seconds=eval_s, eval_median_s=common.median(eval_s), eval_images_per_s=args.batch / common.median(eval_s),
        losses=losses, tower_timings_ms=towers_ms, peak_memory_bytes=peak, memory_stats=memory,
    )
    if towers_ms and towers_ms[0]:
        out["tower_median_ms"] = {
            t: {k: common.median(r[t][k] for r in towers_ms) for k in ("forward_ms", "backward_ms", "update_ms",
                                                                         "total_ms")}
            for t in towers_ms[0]}
    return out


def tiny_widths(args) -> dict:
    return {"widths": {"conv": [8, 8, 8, 8, 8], "fc": [16, 16]}} if args.tiny else {}


def _markdown(p: dict) -> str:
    lines = [f"# Training-step benchmark: {p['device']['name']}", "",
             f"- command: `{p['command']}`", f"- commit: `{p['git_commit']}`", f"- date (UTC): {p['date_utc']}",
             f"- network: {p['arch']} at {p['input_size']}x{p['input_size']}, {p['classes']} classes"
             f"{' (tiny widths: smoke test)' if p['tiny'] else ''}; batch {p['batch']} (every tower sees the whole "
             f"batch, as in the paper); input {p['input']}; {p['reps']} timed steps after {p['warmup']} warm-up, "
             f"medians shown", "- step time: wall clock around `train_step` (host copies, preparation, forward, "
             "backward, update, end-of-step synchronization); tower times: CUDA events on each tower's stream"]
    if p["device"].get("kind") == "cpu":
        lines.append(f"- CPU load average at the start (1, 5, 15 min): {p['device'].get('load_average_at_start')} on "
                     f"{p['device'].get('cores')} cores: other work on a shared machine slows these timings")
    lines.append("")
    rows = []
    for r in p["results"]:
        if r["status"] != "ok":
            rows.append([r["placement"], r.get("parameters", "—"), "error: " + r["error"][:80], "", "", "", ""])
            continue
        towers = "; ".join(f"{t}: fwd {v['forward_ms']:.2f} + bwd {v['backward_ms']:.2f} + upd {v['update_ms']:.2f}"
                           f" = {v['total_ms']:.2f} ms" for t, v in r.get("tower_median_ms", {}).items()) or "— (CPU)"
        peak = ", ".join(f"{d}: {b / 2**20:.0f} MiB" for d, b in r["peak_memory_bytes"].items())
        rows.append([r["placement"], f"{r['parameters']:,}", common.format_seconds(r["step_median_s"]),
                     f"{r['images_per_s']:.1f}", f"{r['eval_images_per_s']:.1f}", towers, peak])
    lines.append(common.markdown_table(["placement", "parameters", "step", "train images/s", "eval images/s",
                                        "per-tower GPU time (median)", "peak memory"], rows))
    lines += ["", "Raw per-step timings, losses and per-tower timings are in the .json file."]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help="'cpu', 'cuda' or 'cuda:N': picks the default placements")
    p.add_argument("--placement", action="append", help="'DEV,DEV' (two towers) or 'DEV/1' (one tower); repeatable")
    p.add_argument("--arch", default="alexnet", choices=["alexnet", "alexnet-small"])
    p.add_argument("--input-size", type=int, help="227 for alexnet; 32 or 64 for alexnet-small")
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--batch", type=int, help="images per step (default: 128 on a GPU, the paper's; 4 on the CPU)")
    p.add_argument("--input", choices=["uint8", "float32"], default="uint8",
                   help="uint8 NHWC images prepared on the device (default) or float32 NCHW as given")
    p.add_argument("--image-size", type=int, help="side of the uint8 images (default 256 for 227 crops)")
    p.add_argument("--reps", type=int, help="timed steps (default: 20 on a GPU, 3 on the CPU)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default: 3 on a GPU, 1 on the CPU)")
    p.add_argument("--lr", type=float, default=0.001,
                   help="learning rate of the timed steps (default 0.001: the same batch is repeated, and at the "
                        "paper's 0.01 the repeated batch makes the losses oscillate; the cost is the same)")
    p.add_argument("--out", default=str(common.RESULTS_DIR), help="results folder (default: benchmarks/results)")
    p.add_argument("--tiny", action="store_true", help="tiny layer widths (smoke test only)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import alexnet_cuda

    placements = args.placement or default_placements(args.device)
    first_device = parse_placement(placements[0])[0][0]
    on_gpu = first_device != "cpu"
    args.batch = args.batch or (128 if on_gpu else 4)
    args.reps = args.reps or (20 if on_gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    args.input_size = args.input_size or (227 if args.arch == "alexnet" else 32)
    dev = common.device_description(alexnet_cuda._C.parse_device(first_device))
    print(f"network.py on {dev['name']}: {args.arch} {args.input_size}x{args.input_size}, batch {args.batch}, "
          f"{args.input} input, {args.reps} steps after {args.warmup} warm-up; placements {placements}")
    rng = np.random.default_rng(0)
    results = []
    for spec in placements:
        r = run_placement(spec, args, rng)
        results.append(r)
        if r["status"] != "ok":
            print(f"{spec:<16} error: {r['error']}", flush=True)
            continue
        line = (f"{spec:<16} step {common.format_seconds(r['step_median_s'])}  {r['images_per_s']:.1f} images/s  "
                f"(eval {r['eval_images_per_s']:.1f} images/s)  peak " +
                ", ".join(f"{d} {b / 2**20:.0f} MiB" for d, b in r["peak_memory_bytes"].items()))
        for t, v in r.get("tower_median_ms", {}).items():
            line += f"\n    {t}: forward {v['forward_ms']:.2f} ms, backward {v['backward_ms']:.2f} ms, " \
                    f"update {v['update_ms']:.2f} ms, total {v['total_ms']:.2f} ms"
        print(line, flush=True)
    payload = {
        "benchmark": "network", "schema_version": 1, "device": dev, "build_info": alexnet_cuda.build_info(),
        "git_commit": common.git_commit(), "date_utc": common.utc_now(), "command": common.command_line(__file__, argv),
        "arch": args.arch, "input_size": args.input_size, "classes": args.classes, "batch": args.batch,
        "input": args.input, "reps": args.reps, "warmup": args.warmup, "lr": args.lr, "tiny": args.tiny,
        "timing": "wall clock (time.perf_counter) per train_step; CUDA events per tower", "results": results,
    }
    json_path, md_path = common.write_results(args.out, "network_" + common.slugify(dev["name"]), payload,
                                              _markdown(payload))
    print(f"wrote {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    main()
