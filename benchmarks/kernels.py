#!/usr/bin/env python3
"""Kernel microbenchmarks: every layer of the paper's network at its exact shapes, forward and backward.

Shapes are those of ONE tower of the two-GPU network (Krizhevsky et al. 2012, Section 3.5 and Figure 2) as it runs
them, at batch 128 by default (``--batch``): conv1 3->48 11x11/4 on 227x227, conv2 48->128 5x5 pad 2 on 27x27,
conv3 256->192 3x3 pad 1 on 13x13 (conv3 sees the maps of both towers), conv4 192->192, conv5 192->128; ReLU
(standalone, and its cost when fused into the conv/fc epilogue); LRN (n=5) after conv1 and conv2; 3x3/2 max
pooling after conv1, conv2 and conv5; fc6 9216->2048, fc7 4096->2048, fc8 4096->500; dropout on the fc6/fc7
outputs; softmax cross-entropy over batch x 1000; the SGD update over each layer's per-tower parameters (weights +
biases); prepare_batch (batch x 256x256x3 uint8 -> 227x227 float crops); the variants' ops of issue 10
(variant_kernels.py): BatchNorm, global average pooling, Adam; and the layers of cuda-convnet's CIFAR-10 networks of
issue 19: pooling and normalization (cifar_kernels.py: layers-18pct, conv-local at 32x32) and the locally connected
layers (local_kernels.py: local3/local4 on the 6x6 maps of 24x24 crops).

Ops run through :mod:`alexnet_cuda.ops` on device Tensors (no host copies are timed). An op that is not implemented
yet (or fails) is reported as such and the run goes on.

    python3 benchmarks/kernels.py                          # GPU when there is one, else CPU (batch 16)
    python3 benchmarks/kernels.py --device cpu --op conv2d,lrn
    python3 benchmarks/kernels.py --device cuda --batch 128 --reps 20

Results: benchmarks/results/kernels_<device-name-slug>.md and .json (``--out DIR`` to change). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Callable

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable. Appended, not prepended, so an
    # installed alexnet_cuda wins over the checkout's sources (which have no compiled _C after a plain `pip install .`);
    # to benchmark an in-place build (tools/dev_build.sh) run with PYTHONPATH=.
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.kernel_cases import Case, Thunk, paper_net, small_net, tiny_net  # noqa: E402
from benchmarks.paper_kernels import build_cases  # noqa: E402

# The targets (GPU only): what "fast enough" means for each kind of op.
CONV_VS_CUDNN = 0.8        # conv forward/backward: at least 0.8x cuDNN's speed (torch time / our time >= 0.8)
BANDWIDTH_FRACTION = 0.7   # LRN, BN, pooling, ReLU, dropout, SGD, Adam: >= 70% of the measured copy bandwidth
FMA_FRACTION = 0.7         # fully connected: >= 70% of the measured FP32 FMA peak
WHY_PLACEHOLDER = "TODO(human): not met; explain from a profile of this run (ncu/nsys) and say what would close it"

GROUPS = ["conv2d", "relu", "lrn", "maxpool", "linear", "dropout", "softmax_xent", "sgd", "prepare_batch", "batchnorm",
          "global_avgpool", "adam", "avgpool", "spatial_lrn", "local"]
ALIASES = {"conv": "conv2d", "fc": "linear", "pool": "maxpool", "softmax": "softmax_xent", "xent": "softmax_xent",
           "prepare": "prepare_batch", "bn": "batchnorm", "gap": "global_avgpool", "rnorm": "spatial_lrn"}

def select(cases: list[Case], spec: str | None) -> list[Case]:
    """``--op``: comma-separated op kinds (conv2d, relu, lrn, ...), layers (conv1, fc6, ...) or case names."""
    if not spec:
        return cases
    tokens = [ALIASES.get(t.strip(), t.strip()) for t in spec.split(",") if t.strip()]
    known = set(GROUPS) | {c.layer for c in cases} | {c.name for c in cases} | set(ALIASES)
    unknown = [t for t in tokens if t not in known]
    if unknown:
        raise SystemExit(f"kernels.py: unknown --op {', '.join(unknown)}; choose from op kinds {', '.join(GROUPS)}, "
                         f"layers {', '.join(sorted({c.layer for c in cases}))} or case names (see --list)")
    return [c for c in cases if c.group in tokens or c.layer in tokens or c.name in tokens]


# ---- running ------------------------------------------------------------------------------------------------------
def _status_of(exc: BaseException) -> str:
    return "not implemented" if "not implemented" in str(exc).lower() else "error"


def _measure(make: Callable[[], Thunk], clock: Any, reps: int, warmup: int) -> list[float]:
    thunk = make()
    return clock.time(thunk, reps, warmup)


def run_case(case: Case, device: str, clock: Any, torch: Any, torch_clock: Any, reps: int, warmup: int) -> dict:
    r: dict[str, Any] = {"name": case.name, "op": case.group, "layer": case.layer, "pass": case.pass_,
                         "shape": case.shape, "flops": case.flops, "bytes": case.bytes, "note": case.note,
                         "status": "ok", "error": None, "times_s": [], "median_s": None, "rate": None,
                         "rate_unit": None, "torch": None, "ratio_ours_over_theirs": None}
    try:
        if case.baseline is None:
            r["times_s"] = _measure(lambda: case.ours(device), clock, reps, warmup)
            r["median_s"] = common.median(r["times_s"])
            r["min_s"] = min(r["times_s"])
        else:
            with_t = _measure(lambda: case.ours(device), clock, reps, warmup)
            without_t = _measure(lambda: case.baseline(device), clock, reps, warmup)
            r["times_s"], r["baseline_times_s"] = with_t, without_t
            r["median_s"] = common.median(with_t) - common.median(without_t)
            r["median_with_s"], r["median_without_s"] = common.median(with_t), common.median(without_t)
    except Exception as exc:  # noqa: BLE001 - report and go on with the next op
        r["status"], r["error"] = _status_of(exc), f"{type(exc).__name__}: {exc}"
        return r
    med = r["median_s"]
    if med and med > 0 and case.baseline is None:
        if case.flops:
            r["rate"], r["rate_unit"] = case.flops / med, "FLOP/s"
        elif case.bytes:
            r["rate"], r["rate_unit"] = case.bytes / med, "B/s"
    if torch is not None and case.theirs is not None:
        try:
            with torch.no_grad() if "autograd" not in case.theirs_what else _nullcontext():
                times = _measure(lambda: case.theirs(torch, device), torch_clock, reps, warmup)
            tmed = common.median(times)
            r["torch"] = {"what": case.theirs_what, "times_s": times, "median_s": tmed, "min_s": min(times)}
            if tmed > 0 and med:
                r["ratio_ours_over_theirs"] = med / tmed
        except Exception as exc:  # noqa: BLE001
            r["torch"] = {"what": case.theirs_what, "error": f"{type(exc).__name__}: {exc}"}
    return r


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def judge(r: dict, target: str | None, peaks: dict | None, on_gpu: bool) -> dict:
    """Whether the op meets its target (GPU only): met True/False, or None when it cannot be judged."""
    if target is None:
        return {"target": None, "met": None, "why": ""}
    text = {"cudnn": f">= {CONV_VS_CUDNN}x cuDNN speed", "bandwidth": f">= {BANDWIDTH_FRACTION:.0%} of copy bandwidth",
            "fma": f">= {FMA_FRACTION:.0%} of FP32 FMA peak"}[target]
    out: dict[str, Any] = {"target": text, "met": None, "why": "", "fraction": None}
    if not on_gpu:  # the targets are for GPUs; a CPU run only reports
        return out
    if r["status"] != "ok":
        out["why"] = r["status"]
        return out
    if target == "cudnn":
        ratio = r.get("ratio_ours_over_theirs")
        if ratio is None:
            out["why"] = "no cuDNN measurement in this run (torch with CUDA not importable)"
            return out
        out["fraction"] = 1.0 / ratio  # our speed as a fraction of cuDNN's
        out["met"] = out["fraction"] >= CONV_VS_CUDNN
    else:
        key, need = ("copy_bytes_per_s", BANDWIDTH_FRACTION) if target == "bandwidth" else ("fma_flops_per_s",
                                                                                             FMA_FRACTION)
        peak = (peaks or {}).get(key)
        if not peak or not r.get("rate"):
            out["why"] = "no peak measured in this run"
            return out
        out["fraction"] = r["rate"] / peak
        out["met"] = out["fraction"] >= need
    if out["met"] is False:
        out["why"] = WHY_PLACEHOLDER
    return out


def measure_peaks(device: str) -> dict:
    from alexnet_cuda import _C

    if not hasattr(_C, "bench_fma_peak"):
        return {"error": "alexnet_cuda was built without CUDA: bench_fma_peak/bench_copy_bandwidth are absent"}
    fma = _C.bench_fma_peak(device)
    copy = _C.bench_copy_bandwidth(device)
    return {"fma_flops_per_s": fma["rate"], "fma_times_ms": fma["times_ms"], "fma_flop_per_launch": fma["work_per_launch"],
            "copy_bytes_per_s": copy["rate"], "copy_times_ms": copy["times_ms"],
            "copy_bytes_per_launch": copy["work_per_launch"],
            "method": "fastest of the timed launches; FMA: 8 independent fmaf chains per thread, 2 FLOP each; "
                      "copy: float4 grid-stride copy of 1 GiB, bytes read + written"}


# ---- output -------------------------------------------------------------------------------------------------------
def _rate_text(r: dict) -> str:
    if not r.get("rate"):
        return "—"
    if r["rate_unit"] == "FLOP/s":
        return f"{r['rate'] / 1e9:.4g} GFLOP/s"
    return f"{r['rate'] / 1e9:.4g} GB/s"


def _line(r: dict) -> str:
    head = f"{r['name']:<32} {r['shape']:<44}"
    if r["status"] != "ok":
        return f"{head} {r['status'].upper()}" + ("" if r["status"] == "not implemented" else f": {r['error']}")
    if r["pass"] == "fused":
        text = (f"{head} {common.format_seconds(r['median_s']):>11}  fused ReLU cost "
                f"(with {common.format_seconds(r['median_with_s'])}, without {common.format_seconds(r['median_without_s'])})")
    else:
        text = f"{head} {common.format_seconds(r['median_s']):>11} {_rate_text(r):>16}"
    t = r.get("torch")
    if t and "median_s" in t:
        text += f" | torch {common.format_seconds(t['median_s']):>11}  ours/theirs {r['ratio_ours_over_theirs']:.2f}"
    elif t and "error" in t:
        text += f" | torch failed: {t['error'][:80]}"
    return text


def _markdown(payload: dict) -> str:
    dev = payload["device"]
    lines = [f"# Kernel benchmarks: {dev['name']}", "",
             "Written by `benchmarks/kernels.py` from measurements taken in this run; see benchmarks/README.md for "
             "how to read it.", "",
             f"- device: {dev['name']} ({dev['kind']})"]
    if dev["kind"] == "cuda":
        lines.append(f"- driver / runtime / nvcc: {dev.get('driver_version')} / {dev.get('runtime_version')} / "
                     f"{dev.get('compiler_version')}")
    else:
        lines.append(f"- OpenMP threads: {dev.get('openmp_threads')}; load average at start (1/5/15 min): "
                     f"{dev.get('load_average_at_start')}; platform: {dev.get('platform')}")
    lines += [f"- git commit: `{payload['git_commit']}`", f"- date (UTC): {payload['date_utc']}",
              f"- command: `{payload['command']}`",
              f"- batch: {payload['batch']} per tower{' (' + payload['batch_note'] + ')' if payload.get('batch_note') else ''}; "
              f"repetitions: {payload['repetitions']} after {payload['warmup']} warm-up; shapes: {payload['shapes']}",
              f"- timing: {payload['timing']}; reported time = median of the repetitions",
              f"- torch: {payload['torch']['status']}"]
    peaks = payload.get("peaks")
    if peaks:
        if "error" in peaks:
            lines.append(f"- peaks: {peaks['error']}")
        else:
            lines.append(f"- measured peaks: FP32 FMA {peaks['fma_flops_per_s'] / 1e12:.2f} TFLOP/s, copy "
                         f"{peaks['copy_bytes_per_s'] / 1e9:.1f} GB/s (bytes read + written)")
    if dev["kind"] == "cpu":
        lines.append(f"- load average at the end: {payload.get('load_average_at_end')} (the machine's other work "
                     "shows up as scheduler-quantum steps in the times; `min` is the least disturbed repetition)")
    lines += ["", "Rates: conv and fc in GFLOP/s (2 x the direct product's multiply-adds; the CPU backend's Winograd "
              "layers do fewer, so theirs are effective rates and can exceed the FMA peak); the rest in GB/s (bytes "
              "each input is read plus each output written, once). ours/theirs = our median time / torch's (below "
              "1: ours is faster).", ""]
    on_gpu = dev["kind"] == "cuda"
    headers = ["op", "shape", "median", "min", "rate", "torch median", "ours/theirs", "target", "met",
               "why and what would close the gap"]
    rows = []
    for r in payload["results"]:
        t = r.get("torch") or {}
        tj = r.get("judgement") or {}
        if r["status"] != "ok":
            rows.append([r["name"], r["shape"], r["status"], "—", "—", "—", "—", tj.get("target") or "—", "—",
                         "" if r["status"] == "not implemented" else r["error"]])
            continue
        med = common.format_seconds(r["median_s"])
        if r["pass"] == "fused":
            med += " (fused ReLU cost)"
        met = {True: "met", False: "NOT MET", None: "—"}[tj.get("met")] if on_gpu else "n/a (CPU)"
        if tj.get("fraction") is not None:
            met += f" ({tj['fraction']:.2f})"
        rows.append([r["name"], r["shape"], med, common.format_seconds(r.get("min_s")), _rate_text(r),
                     common.format_seconds(t.get("median_s")),
                     f"{r['ratio_ours_over_theirs']:.2f}" if r.get("ratio_ours_over_theirs") else "—",
                     tj.get("target") or "—", met, tj.get("why", "")])
    lines += [common.markdown_table(headers, rows), ""]
    if on_gpu:
        lines += ["`met` shows, in brackets, our speed as a fraction of cuDNN's (conv) or of the measured peak "
                  "(others). Every `TODO(human)` must be replaced by an explanation taken from a profile; nothing in "
                  "this file is estimated.", ""]
    lines += ["## Raw timings (ms, every repetition)", ""]
    for r in payload["results"]:
        if r["status"] != "ok":
            continue
        ms = ", ".join(f"{t * 1e3:.4g}" for t in r["times_s"])
        lines.append(f"- {r['name']}: {ms}")
        if r.get("baseline_times_s"):
            lines.append(f"  - without the ReLU: {', '.join(f'{t * 1e3:.4g}' for t in r['baseline_times_s'])}")
        t = r.get("torch") or {}
        if t.get("times_s"):
            lines.append(f"  - torch: {', '.join(f'{v * 1e3:.4g}' for v in t['times_s'])}")
    if peaks and "error" not in peaks:
        lines.append(f"- FMA peak launches: {', '.join(f'{t:.4g}' for t in peaks['fma_times_ms'])}")
        lines.append(f"- copy launches: {', '.join(f'{t:.4g}' for t in peaks['copy_times_ms'])}")
    return "\n".join(lines)


# ---- main ---------------------------------------------------------------------------------------------------------
def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", help="'cpu', 'cuda' or 'cuda:N' (default: cuda when a GPU is visible, else cpu)")
    p.add_argument("--batch", type=int, help="images per tower (default: 128 on a GPU, 16 on the CPU)")
    p.add_argument("--op", help="comma-separated filter: op kinds (" + ",".join(GROUPS) + "), layers (conv1, fc6, "
                                "...) or case names")
    p.add_argument("--reps", type=int, help="timed repetitions (default: 20 on a GPU, 9 on the CPU)")
    p.add_argument("--warmup", type=int, help="untimed repetitions first (default: 3 on a GPU, 1 on the CPU)")
    p.add_argument("--out", default=str(common.RESULTS_DIR), help="results folder (default: benchmarks/results)")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--tiny", action="store_true", help="tiny shapes with the network's structure (smoke test only)")
    p.add_argument("--small", action="store_true", help="alexnet-small's shapes at 32x32 (the default training run)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    import alexnet_cuda

    device = args.device or ("cuda" if alexnet_cuda.cuda_available() else "cpu")
    device = alexnet_cuda._C.parse_device(device)
    on_gpu = device != "cpu"
    batch = args.batch or (128 if on_gpu else 16)
    batch_note = "" if on_gpu or args.batch else "CPU default; the paper's network runs 128 per tower"
    reps = args.reps or (20 if on_gpu else 9)
    warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    net = tiny_net() if args.tiny else small_net() if args.small else paper_net()
    cases = select(build_cases(net, batch), args.op)
    if args.list:
        for c in cases:
            print(f"{c.name:<32} {c.shape}")
        return {}

    torch = None if args.no_torch else common.import_torch()
    torch_status, torch_clock = "not used (--no-torch)" if args.no_torch else "not importable", None
    if torch is not None:
        if on_gpu and not torch.cuda.is_available():
            torch_status, torch = f"torch {torch.__version__} has no CUDA: no cuDNN comparison", None
        elif on_gpu:
            torch.cuda.set_device(torch.device(device))  # torch's events and ops on the same GPU as ours
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cudnn.benchmark = True  # cuDNN picks its fastest algorithm per shape: the strongest baseline
            torch_clock = common.TorchCudaClock(torch, device)
            torch_status = (f"torch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}, TF32 off, "
                            "cudnn.benchmark on")
        else:
            threads = alexnet_cuda.build_info().get("openmp_threads") or 1
            torch.set_num_threads(threads)
            torch_clock = common.WallClock()
            torch_status = f"torch {torch.__version__} on the CPU, {threads} threads (same as ours)"

    clock = common.CudaEventClock(device) if on_gpu else common.WallClock()
    dev = common.device_description(device)
    print(f"kernels.py on {dev['name']} [{device}]: batch {batch} per tower"
          f"{' (' + batch_note + ')' if batch_note else ''}, {reps} repetitions after {warmup} warm-up, "
          f"median shown; {clock.name}")
    print(f"torch comparison: {torch_status}; ours/theirs = our time / torch's")
    peaks = None
    if on_gpu:
        peaks = measure_peaks(device)
        if "error" in peaks:
            print(f"peaks: {peaks['error']}")
        else:
            print(f"measured peaks: FP32 FMA {peaks['fma_flops_per_s'] / 1e12:.2f} TFLOP/s, "
                  f"copy {peaks['copy_bytes_per_s'] / 1e9:.1f} GB/s")

    results = []
    for case in cases:
        r = run_case(case, device, clock, torch, torch_clock, reps, warmup)
        r["judgement"] = judge(r, case.target, peaks, on_gpu)
        results.append(r)
        line = _line(r)
        if on_gpu and r["judgement"].get("met") is not None:
            line += f"  [{'met' if r['judgement']['met'] else 'NOT MET'}: {r['judgement']['target']}]"
        print(line, flush=True)

    try:
        load_at_end = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        load_at_end = None
    payload = {
        "benchmark": "kernels", "load_average_at_end": load_at_end, "schema_version": 1, "device": dev, "device_arg": device,
        "build_info": alexnet_cuda.build_info(), "git_commit": common.git_commit(), "date_utc": common.utc_now(),
        "command": common.command_line(__file__, argv), "batch": batch, "batch_note": batch_note,
        "repetitions": reps, "warmup": warmup, "shapes": "tiny (smoke test)" if args.tiny else
        "alexnet-small 32x32 (one tower)" if args.small else "paper (one tower)",
        "timing": clock.name, "torch": {"status": torch_status, "version": getattr(torch, "__version__", None)},
        "peaks": peaks, "targets": {"conv_vs_cudnn": CONV_VS_CUDNN, "bandwidth_fraction": BANDWIDTH_FRACTION,
                                    "fma_fraction": FMA_FRACTION},
        "results": results,
    }
    json_path, md_path = common.write_results(args.out, "kernels_" + common.slugify(dev["name"]), payload, _markdown(payload))
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "not implemented", "error")}
    print(f"{counts['ok']} timed, {counts['not implemented']} not implemented, {counts['error']} failed; "
          f"wrote {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    main()
