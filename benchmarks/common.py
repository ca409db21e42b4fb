"""Helpers shared by the benchmark scripts (kernels.py, network.py, loader.py).

- run metadata: :func:`git_commit`, :func:`utc_now`, :func:`command_line`, :func:`device_description`
- timing: :class:`WallClock` (CPU, ``time.perf_counter``), :class:`CudaEventClock` (our ops on a GPU: CUDA events on
  the device's current stream, L2 flushed before each repetition), :class:`TorchCudaClock` (the same for PyTorch)
- results: :func:`write_results` writes ``<out>/<name>.json`` and ``<out>/<name>.md``; :func:`slugify`,
  :func:`markdown_table`, :func:`median`.

Nothing here makes up a number: every figure written comes from a timing taken in the run that writes it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"

# Bytes written between CUDA repetitions so no input is still in L2 (50 MB on an H100; 256 MB is 5x that).
L2_FLUSH_BYTES = 256 << 20


# ---- run metadata -------------------------------------------------------------------------------------------------
def git_commit(repo: Path = REPO_ROOT) -> str:
    """``git rev-parse HEAD`` plus ``-dirty`` when tracked files differ from it; 'unknown' outside a checkout."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True,
                             timeout=30).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("-dirty" if status else "")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def command_line(script: str, argv: Sequence[str]) -> str:
    """The command that reproduces this run, e.g. ``python3 benchmarks/kernels.py --device cpu``."""
    try:
        script = os.path.relpath(script, REPO_ROOT)
    except ValueError:  # another drive (Windows)
        pass
    return shlex.join([Path(sys.executable).name, script, *argv])


def cpu_name() -> str:
    """The CPU model from /proc/cpuinfo (Linux), else what the platform module says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def device_description(device: str) -> dict[str, Any]:
    """Name and versions of the device a benchmark runs on, with alexnet_cuda.build_info()."""
    import alexnet_cuda

    info = alexnet_cuda.build_info()
    if device == "cpu":
        cores = os.cpu_count() or 1
        name = f"{cpu_name()} ({cores} cores)"
        try:  # other work on the machine skews CPU timings: recorded so a reader can tell
            load = [round(v, 2) for v in os.getloadavg()]
        except OSError:
            load = None
        return {"kind": "cpu", "name": name, "cores": cores, "openmp_threads": info.get("openmp_threads"),
                "load_average_at_start": load, "platform": platform.platform(), "build_info": info,
                "alexnet_cuda": str(Path(alexnet_cuda.__file__).parent)}
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    gpus = info.get("gpus") or []
    name = gpus[index] if index < len(gpus) else f"cuda:{index}"
    return {"kind": "cuda", "name": name, "index": index, "driver_version": info.get("cuda_driver_version"),
            "runtime_version": info.get("cuda_runtime_version"),
            "compiler_version": info.get("cuda_compiler_version"), "platform": platform.platform(),
            "build_info": info, "alexnet_cuda": str(Path(alexnet_cuda.__file__).parent)}


def slugify(name: str) -> str:
    """'NVIDIA H100 80GB HBM3' -> 'nvidia-h100-80gb-hbm3'."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "unknown-device"


# ---- timing -------------------------------------------------------------------------------------------------------
def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


class WallClock:
    """CPU ops run synchronously, so wall-clock time around the call is the op's time."""

    name = "wall-clock (time.perf_counter)"

    def time(self, fn: Callable[[], Any], repetitions: int, warmup: int) -> list[float]:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repetitions):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return times


class CudaEventClock:
    """Our ops on a GPU: CUDA events (``alexnet_cuda._C.Timer``) recorded on the device's current stream, the stream
    every op launches on. Before each repetition a 256 MB buffer is zeroed on that stream, which (1) evicts the op's
    inputs from L2 and (2) keeps the GPU busy while Python queues the start event and the op, so the launch overhead
    of the Python call is hidden and the events bracket GPU time only. An op that returns a host value (softmax
    cross-entropy's loss) synchronizes inside the bracket, so its time includes that synchronization."""

    name = "CUDA events, L2 flushed before each repetition"

    def __init__(self, device: str):
        from alexnet_cuda import _C

        if not hasattr(_C, "Timer"):
            raise RuntimeError("alexnet_cuda was built without the CUDA backend: no CUDA timer")
        self._C = _C
        self.device = device
        self.timer = _C.Timer(device)

    def flush(self) -> None:
        self._C.Tensor.zeros([L2_FLUSH_BYTES // 4], self.device, "float32")

    def time(self, fn: Callable[[], Any], repetitions: int, warmup: int) -> list[float]:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repetitions):
            self.flush()
            self.timer.start()
            fn()
            self.timer.stop()
            times.append(self.timer.elapsed_ms() * 1e-3)
        return times


class TorchCudaClock:
    """PyTorch ops on a GPU, timed the same way: torch.cuda events on torch's current stream, a 256 MB buffer zeroed
    on that stream before each repetition."""

    name = "torch.cuda events, L2 flushed before each repetition"

    def __init__(self, torch: Any, device: str):
        self.torch = torch
        self.device = device
        self.buffer = torch.empty(L2_FLUSH_BYTES // 4, dtype=torch.float32, device=device)
        self.start = torch.cuda.Event(enable_timing=True)
        self.stop = torch.cuda.Event(enable_timing=True)

    def time(self, fn: Callable[[], Any], repetitions: int, warmup: int) -> list[float]:
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repetitions):
            self.buffer.zero_()
            self.start.record()
            fn()
            self.stop.record()
            self.stop.synchronize()
            times.append(self.start.elapsed_time(self.stop) * 1e-3)
        return times


def import_torch() -> Any:
    """PyTorch when it is importable (it is only a comparison, never a dependency), else None."""
    try:
        import torch  # noqa: PLC0415
    except Exception:  # noqa: BLE001 - any import failure means "no torch comparison"
        return None
    return torch


# ---- side by side with PyTorch on the CPU (vs_torch.py, cifar_speed.py) -------------------------------------------
def alternate(steps: dict[str, Callable[[], Any]], order: Sequence[str], reps: int, warmup: int,
              times: dict[str, list[float]]) -> None:
    """Runs the steps named in `order` one after the other, warmup + reps times, the order reversed every other
    repetition (so load from other work on a shared machine hits each alike), appending each timed step's seconds to
    times[name]."""
    for rep in range(warmup + reps):
        for name in order if rep % 2 == 0 else order[::-1]:
            t0 = time.perf_counter()
            steps[name]()
            if rep >= warmup:
                times.setdefault(name, []).append(time.perf_counter() - t0)


def add_child_arguments(p: Any, batch: int, reps: int, warmup: int) -> None:
    """The arguments of a benchmark that runs each thread count in a child process (run_child)."""
    p.add_argument("--batch", type=int, default=batch)
    p.add_argument("--threads", type=int, action="append", help="repeatable (default: 1 and 2)")
    p.add_argument("--reps", type=int, default=reps, help=f"timed steps of each side per cell (default {reps})")
    p.add_argument("--warmup", type=int, default=warmup)
    p.add_argument("--out", default=str(RESULTS_DIR), help="results folder (default: benchmarks/results)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def run_child(script: str, args: Any, threads: int, extra: Sequence[str] = (), what: str = "") -> dict[str, Any]:
    """Runs `script --child` at `threads` OpenMP threads (OMP_NUM_THREADS must be set before OpenMP starts) with the
    add_child_arguments values of args; returns the JSON its last output line prints, with the load average taken
    before it started."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, script, "--child", *extra, "--batch", str(args.batch), "--threads", str(threads),
           "--reps", str(args.reps), "--warmup", str(args.warmup)]
    load = list(os.getloadavg())
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{Path(script).name}: the {what}{threads}-thread run failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_average_before"] = load
    return result


# ---- results ------------------------------------------------------------------------------------------------------
def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(out_dir: str | os.PathLike, name: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Writes ``<out_dir>/<name>.json`` (everything, raw timings included) and ``<out_dir>/<name>.md``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=1, sort_keys=False, default=_json_default) + "\n",
                         encoding="utf-8")
    md_path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return json_path, md_path


def _json_default(v: Any) -> Any:
    if hasattr(v, "item"):  # numpy scalars
        return v.item()
    if isinstance(v, (set, tuple)):
        return list(v)
    return str(v)


def format_seconds(s: float | None) -> str:
    if s is None or s != s:
        return "—"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3f} ms"
    return f"{s * 1e6:.1f} µs"
