#!/usr/bin/env python3
"""Training speed of cuda-convnet's ``layers-18pct`` (the authors' CIFAR-10 net, 18% error) on the CPU, side by
side with the same layers in PyTorch (issue 19, part 5): images/s of a whole train step (forward, loss, backward,
SGD update) at batch 128, the two alternating step by step in one process (so load from other work on a shared
machine hits both alike), medians over the repetitions, at each thread count; plus the time of each of our ops in
the step (the breakdown table).

The network (alexnet_cuda.nets.builtin("layers-18pct"), 32x32 input, one tower): conv1 32@5x5 pad 2 -> max pool
3/2 -> ReLU -> rnorm 3x3 -> conv2 32@5x5 + ReLU -> avg pool 3/2 -> rnorm -> conv3 64@5x5 + ReLU -> avg pool 3/2 ->
fc10, softmax cross-entropy. Pools use cuda-convnet's output rule (32 -> 16 -> 8 -> 4, the last windows clipped),
which is PyTorch's ceil_mode=True; an average divides by the clipped window's size (count_include_pad=False).
PyTorch's within-map normalization is written with avg_pool2d on squares, x * (1 + alpha * avg_pool2d(x^2, 3, 1, 1,
count_include_pad=True))^-0.75: the padded mean divides by size^2 everywhere, cuda-convnet's divisor
(reference/spatial_lrn.py, docs/cuda_convnet.md). Both start from the same weights (cuda-convnet's initW: gaussian
with std 1e-4 for conv1, 0.01 for the rest, zero biases) and take the same float32 NCHW batch.

Ours is ``AlexNet.from_description(builtin("layers-18pct"))`` + ``train_step`` when the engine has it; before the
engine builds descriptions, the same step is run as the sequence of our ``_C`` ops that the engine calls (forward,
loss, backward, SGD update; :class:`OpsStep`), which is also what the breakdown times op by op. The result says which.

Each thread count runs in a child process (``OMP_NUM_THREADS`` must be set before OpenMP starts; PyTorch gets
``torch.set_num_threads``). Ratio = our images/s / PyTorch's. The CPU model, whether it has AVX-512 (which PyTorch's
oneDNN uses) and the load average before each run are recorded.

    python3 benchmarks/cifar_speed.py                      # 1 and 2 threads, batch 128
    python3 benchmarks/cifar_speed.py --threads 2 --reps 20

Results: benchmarks/results/cifar_speed_<cpu-slug>.json (raw timings) and .md (the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

if __package__ in (None, ""):  # run as a script: make `benchmarks.common` importable (see network.py)
    sys.path.append(str(Path(__file__).resolve().parent.parent))

from benchmarks import common  # noqa: E402
from benchmarks.cifar_kernels import RNORM  # noqa: E402  (layer-params-18pct.cfg's rnorm1/rnorm2)

NET = "layers-18pct"
SIDE, CLASSES = 32, 10
# layer: (c_in, c_out, initW) of the weighted layers, layers-18pct.cfg; fc10 takes conv3's pooled 64x4x4 maps.
WEIGHTED = {"conv1": (3, 32, 1e-4), "conv2": (32, 32, 0.01), "conv3": (32, 64, 0.01), "fc10": (64 * 4 * 4, 10, 0.01)}
# layer-params-18pct.cfg: epsW 0.001, epsB 0.002, momW = momB = 0.9, wc 0.004 (fc10: wc 1); lr scales these.
EPS_W, EPS_B, MOMENTUM = 0.001, 0.002, 0.9
WEIGHT_COST = {"conv1": 0.004, "conv2": 0.004, "conv3": 0.004, "fc10": 1.0}
LR = 1.0  # the step's lr multiplies each layer's eps (cuda-convnet's update)


def initial_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """cuda-convnet's initialization of layers-18pct: weights ~ N(0, initW^2), biases 0."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, (c_in, c_out, std) in WEIGHTED.items():
        shape = (c_out, c_in) if name == "fc10" else (c_out, c_in, 5, 5)
        out[f"{name}.weight"] = (rng.standard_normal(shape) * std).astype(np.float32)
        out[f"{name}.bias"] = np.zeros(c_out, np.float32)
    return out


# ---- PyTorch's side -----------------------------------------------------------------------------------------------
def torch_net(torch: Any, weights: dict[str, np.ndarray]) -> tuple[Any, Any]:
    """The same layers in PyTorch, with our weights; returns (module, SGD optimizer with cuda-convnet's per-layer
    learning rates, momentum and weight decay)."""
    nn, F = torch.nn, torch.nn.functional

    class WithinMapNorm(nn.Module):  # cuda-convnet's rnorm (see the module docstring)
        def forward(self, x):
            mean = F.avg_pool2d(x * x, RNORM["size"], 1, RNORM["size"] // 2, count_include_pad=True)
            return x * (RNORM["k"] + RNORM["alpha"] * mean) ** -RNORM["beta"]

    def avg_pool():
        return nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False)

    layers = {"conv1": nn.Conv2d(3, 32, 5, padding=2), "conv2": nn.Conv2d(32, 32, 5, padding=2),
              "conv3": nn.Conv2d(32, 64, 5, padding=2), "fc10": nn.Linear(1024, 10)}
    net = nn.Sequential(layers["conv1"], nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(), WithinMapNorm(),
                        layers["conv2"], nn.ReLU(), avg_pool(), WithinMapNorm(),
                        layers["conv3"], nn.ReLU(), avg_pool(), nn.Flatten(), layers["fc10"])
    groups = []
    with torch.no_grad():
        for name, layer in layers.items():
            layer.weight.copy_(torch.from_numpy(weights[f"{name}.weight"]))
            layer.bias.copy_(torch.from_numpy(weights[f"{name}.bias"]))
            groups.append({"params": [layer.weight], "lr": LR * EPS_W, "weight_decay": WEIGHT_COST[name]})
            groups.append({"params": [layer.bias], "lr": LR * EPS_B, "weight_decay": 0.0})
    return net, torch.optim.SGD(groups, lr=LR * EPS_W, momentum=MOMENTUM)


# ---- ours: the engine, or the same step from our ops ----------------------------------------------------------------
class OpsStep:
    """layers-18pct's train step as the sequence of our ops the engine runs, on CPU Tensors made once. ``step(times)``
    adds each op's seconds to ``times[name]`` when given (the breakdown); ``logits`` are the last step's."""

    def __init__(self, weights: dict[str, np.ndarray], images: np.ndarray, labels: np.ndarray):
        from alexnet_cuda import Tensor

        def tensor(a):
            return Tensor.from_numpy(np.ascontiguousarray(a), "cpu", "cifar_speed")

        self.w = {k: tensor(v) for k, v in weights.items()}
        self.v = {k: tensor(np.zeros_like(v)) for k, v in weights.items()}
        self.x, self.labels = tensor(images), tensor(labels.astype(np.int32))
        self.n = images.shape[0]

    def step(self, times: dict[str, float] | None = None) -> None:
        from alexnet_cuda import ops

        def run(name: str, fn: Callable[[], Any]) -> Any:
            if times is None:
                return fn()
            t0 = time.perf_counter()
            r = fn()
            times[name] = times.get(name, 0.0) + time.perf_counter() - t0
            return r

        w, n, x, labels = self.w, self.n, self.x, self.labels
        conv = dict(stride=1, padding=2)
        # forward
        c1 = run("conv1 forward", lambda: ops.conv2d_forward(x, w["conv1.weight"], w["conv1.bias"], **conv))
        p1 = run("pool1 (max) forward", lambda: ops.maxpool_forward(c1, 3, 2, outputs=16))
        a1 = run("pool1 relu forward", lambda: ops.relu_forward(p1))
        r1, d1 = run("rnorm1 forward", lambda: ops.spatial_lrn_forward(a1, **RNORM))
        c2 = run("conv2+relu forward",
                 lambda: ops.conv2d_forward(r1, w["conv2.weight"], w["conv2.bias"], activation="relu", **conv))
        p2 = run("pool2 (avg) forward", lambda: ops.avgpool_forward(c2, 3, 2, outputs=8))
        r2, d2 = run("rnorm2 forward", lambda: ops.spatial_lrn_forward(p2, **RNORM))
        c3 = run("conv3+relu forward",
                 lambda: ops.conv2d_forward(r2, w["conv3.weight"], w["conv3.bias"], activation="relu", **conv))
        p3 = run("pool3 (avg) forward", lambda: ops.avgpool_forward(c3, 3, 2, outputs=4))
        flat = p3.view([n, 1024])
        logits = self.logits = run("fc10 forward", lambda: ops.linear_forward(flat, w["fc10.weight"], w["fc10.bias"]))
        _, probs = run("softmax loss", lambda: ops.softmax_xent_forward(logits, labels))
        # backward
        g = run("softmax loss", lambda: ops.softmax_xent_backward(probs, labels))
        grads = {"fc10.weight": run("fc10 backward", lambda: ops.linear_backward_weight(flat, g)),
                 "fc10.bias": run("fc10 backward", lambda: ops.bias_backward(g))}
        dflat = run("fc10 backward", lambda: ops.linear_backward_input(g, w["fc10.weight"]))
        dc3 = run("pool3 (avg) backward", lambda: ops.avgpool_backward(dflat.view([n, 64, 4, 4]), 8, 8, 3, 2,
                                                                        outputs=4))
        dc3 = run("conv3 relu backward", lambda: ops.relu_backward(c3, dc3))
        grads["conv3.weight"] = run("conv3 weight grad", lambda: ops.conv2d_backward_weight(r2, dc3, (5, 5), **conv))
        grads["conv3.bias"] = run("conv3 bias grad", lambda: ops.bias_backward(dc3))
        dr2 = run("conv3 input grad", lambda: ops.conv2d_backward_input(dc3, w["conv3.weight"], (8, 8), **conv))
        dp2 = run("rnorm2 backward", lambda: ops.spatial_lrn_backward(p2, r2, d2, dr2, **RNORM))
        dc2 = run("pool2 (avg) backward", lambda: ops.avgpool_backward(dp2, 16, 16, 3, 2, outputs=8))
        dc2 = run("conv2 relu backward", lambda: ops.relu_backward(c2, dc2))
        grads["conv2.weight"] = run("conv2 weight grad", lambda: ops.conv2d_backward_weight(r1, dc2, (5, 5), **conv))
        grads["conv2.bias"] = run("conv2 bias grad", lambda: ops.bias_backward(dc2))
        dr1 = run("conv2 input grad", lambda: ops.conv2d_backward_input(dc2, w["conv2.weight"], (16, 16), **conv))
        da1 = run("rnorm1 backward", lambda: ops.spatial_lrn_backward(a1, r1, d1, dr1, **RNORM))
        dp1 = run("pool1 relu backward", lambda: ops.relu_backward(a1, da1))
        dc1 = run("pool1 (max) backward", lambda: ops.maxpool_backward(c1, p1, dp1, 3, 2, outputs=16))
        grads["conv1.weight"] = run("conv1 weight grad", lambda: ops.conv2d_backward_weight(x, dc1, (5, 5), **conv))
        grads["conv1.bias"] = run("conv1 bias grad", lambda: ops.bias_backward(dc1))
        # update
        for name, grad in grads.items():
            layer, kind = name.split(".")
            lr, decay = (LR * EPS_W, WEIGHT_COST[layer]) if kind == "weight" else (LR * EPS_B, 0.0)
            run("SGD update", lambda: ops.sgd_update(w[name], self.v[name], grad, lr, MOMENTUM, decay))


def engine_model(weights: dict[str, np.ndarray]) -> Any | None:
    """Our model of layers-18pct through the engine with the benchmark's weights, or None before the engine builds
    descriptions (AlexNet.from_description)."""
    from alexnet_cuda import AlexNet
    from alexnet_cuda.nets.builtin import builtin

    if not hasattr(AlexNet, "from_description"):
        return None
    desc = builtin(NET)
    model = AlexNet.from_description(desc, "cpu", seed=0)
    state = model.state_dict()
    for layer in desc.layers:  # parameter names: <module or layer name>.tower0.weight / .bias
        prefix = getattr(layer, "module", None) or layer.name
        for kind in ("weight", "bias"):
            key = f"{prefix}.tower0.{kind}"
            if layer.name in WEIGHTED and key in state:
                state[key] = weights[f"{layer.name}.{kind}"].reshape(state[key].shape)
    model.load_state_dict(state)
    return model


# ---- measuring ----------------------------------------------------------------------------------------------------
def measure(batch: int, threads: int, reps: int, warmup: int) -> dict[str, Any]:
    """One thread count (run in the child process): alternating train steps, per-step seconds of both sides, then
    the per-op breakdown of OpsStep."""
    import alexnet_cuda

    torch = common.import_torch()
    if torch is not None:
        torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    images = (rng.standard_normal((batch, 3, SIDE, SIDE)) * 50).astype(np.float32)  # mean-subtracted 0-255 pixels
    labels = rng.integers(0, CLASSES, batch).astype(np.int32)
    weights = initial_weights()
    model = engine_model(weights)
    if model is not None:
        ours_what = f"AlexNet.from_description(builtin('{NET}')).train_step"
        ours = lambda: model.train_step(images, labels, LR)  # noqa: E731
    else:
        ours_what = "our ops in the engine's order (OpsStep: the engine does not build descriptions yet)"
        ours = OpsStep(weights, images, labels).step
    steps: dict[str, Callable[[], Any]] = {"ours": ours}
    if torch is not None:
        net, opt = torch_net(torch, weights)
        x, y = torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))
        loss_fn = torch.nn.CrossEntropyLoss()

        def torch_step():
            opt.zero_grad(set_to_none=True)
            loss_fn(net(x), y).backward()
            opt.step()

        steps["torch"] = torch_step
    times: dict[str, list[float]] = {k: [] for k in steps}
    common.alternate(steps, list(steps), reps, warmup, times)
    breakdown_step = OpsStep(weights, images, labels)
    breakdown_step.step()
    per_op: list[dict[str, float]] = []
    for _ in range(reps):
        t: dict[str, float] = {}
        breakdown_step.step(t)
        per_op.append(t)
    out: dict[str, Any] = {"threads": threads, "batch": batch, "seconds": times, "ours_what": ours_what,
                           "torch_version": torch.__version__ if torch is not None else None,
                           "breakdown_seconds": {k: common.median(r[k] for r in per_op) for k in per_op[0]},
                           "openmp_threads": alexnet_cuda.build_info().get("openmp_threads"),
                           "load_average_after": list(os.getloadavg())}
    out["ours_images_per_s"] = batch / common.median(times["ours"])
    if torch is not None:
        out["torch_images_per_s"] = batch / common.median(times["torch"])
        out["ratio"] = out["ours_images_per_s"] / out["torch_images_per_s"]
    return out


def cpu_features() -> dict[str, Any]:
    """lscpu's model name and whether the CPU has AVX-512 (PyTorch's oneDNN uses it; our build uses -march=native)."""
    flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        pass
    model = common.cpu_name()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False, timeout=30).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                      if line.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    return {"model_name": model, "avx512f": " avx512f" in flags, "avx2": " avx2" in flags,
            "logical_cpus": os.cpu_count()}


def _markdown(p: dict) -> str:
    cpu = p["cpu"]
    first = p["results"][0]
    lines = [f"# layers-18pct training speed on the CPU: {cpu['model_name']}", "",
             f"- command: `{p['command']}`", f"- commit: `{p['git_commit']}`", f"- date (UTC): {p['date_utc']}",
             f"- CPU: {cpu['model_name']}, {cpu['logical_cpus']} logical CPUs, AVX-512: "
             f"{'yes' if cpu['avx512f'] else 'no'}",
             f"- batch {p['batch']}, 32x32 float32 NCHW input for both; a whole train step (forward, loss, backward, "
             f"SGD update); {p['reps']} alternating steps of each after {p['warmup']} warm-up, medians",
             f"- ours: {first['ours_what']}",
             f"- PyTorch {first['torch_version']}: the same layers (ceil-mode pools, rnorm written with avg_pool2d on "
             "squares), the same weights", "- load average (1 min) before each run in the last column: other work "
             "on a shared machine slows both alike", ""]
    rows = []
    for r in p["results"]:
        theirs = r.get("torch_images_per_s")
        rows.append([r["threads"], f"{r['ours_images_per_s']:.0f}", f"{theirs:.0f}" if theirs else "—",
                     f"{r['ratio']:.2f}x" if theirs else "—", f"{r['load_average_before'][0]:.1f}"])
    lines.append(common.markdown_table(["threads", "ours images/s", "PyTorch images/s", "ratio", "load (1 min)"],
                                       rows))
    lines += ["", "## Our step op by op (medians, ms)", ""]
    names = list(first["breakdown_seconds"])
    headers = ["op"] + [f"{r['threads']} thread{'s' if r['threads'] > 1 else ''}" for r in p["results"]]
    table = [[name] + [f"{r['breakdown_seconds'][name] * 1e3:.2f}" for r in p["results"]] for name in names]
    table.append(["sum"] + [f"{sum(r['breakdown_seconds'].values()) * 1e3:.2f}" for r in p["results"]])
    lines.append(common.markdown_table(headers, table))
    lines += ["", "Raw per-step timings are in the .json file."]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_child_arguments(p, batch=128, reps=10, warmup=2)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict | None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    threads = args.threads or [1, 2]
    if args.child:
        print(json.dumps(measure(args.batch, threads[0], args.reps, args.warmup)))
        return None
    import alexnet_cuda

    if common.import_torch() is None:
        print("cifar_speed.py: PyTorch is not installed; timing ours only", flush=True)
    results = []
    for t in threads:
        r = common.run_child(__file__, args, t)
        results.append(r)
        theirs = (f", PyTorch {r['torch_images_per_s']:.0f} images/s, ratio {r['ratio']:.2f}x"
                  if r.get("torch_images_per_s") else "")
        print(f"{NET} {t} thread(s): ours {r['ours_images_per_s']:.0f} images/s{theirs}; "
              f"load {r['load_average_before'][0]:.1f}", flush=True)
    payload = {
        "benchmark": "cifar_speed", "schema_version": 1, "net": NET, "cpu": cpu_features(),
        "device": common.device_description("cpu"), "build_info": alexnet_cuda.build_info(),
        "git_commit": common.git_commit(), "date_utc": common.utc_now(), "command": common.command_line(__file__, argv),
        "threads": threads, "batch": args.batch, "reps": args.reps, "warmup": args.warmup, "results": results,
    }
    json_path, md_path = common.write_results(args.out, "cifar_speed_" + common.slugify(payload["device"]["name"]),
                                              payload, _markdown(payload))
    print(f"wrote {json_path} and {md_path}")
    return payload


if __name__ == "__main__":
    main()
