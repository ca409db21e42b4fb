"""Kernel benchmark cases of the pooling and normalization layers of cuda-convnet's CIFAR-10 networks (issue 19),
at their shapes on whole 32x32 images (example-layers/ in cuda-convnet): ``layers-18pct.cfg`` (max pool 3/2 after
conv1, rnorm size 3 after pool1 and pool2, average pools 3/2 after conv2 and conv3) and
``layers-conv-local-11pct.cfg`` (max pools 3/2 after conv1 and conv2, cmrnorm size 9 = the lrn op with k = 1).
Pools use cuda-convnet's output rule (``ops.convnet_pool_outputs``: 32 -> 16 -> 8 -> 4, the last windows clipped).
Layers are named ``18pct.<layer>`` and ``conv-local.<layer>``; layers-18pct's three 5x5 convolutions are here too
(paper_kernels.conv_cases at their shapes). kernels.py times them with the rest."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.kernel_cases import F4, Case, Conv, Net, f32, tensors, torch_tensors

SIDE = 32  # CIFAR-10 images, whole (layers-18pct trains on them uncropped)
RNORM = dict(size=3, alpha=5e-5, beta=0.75, k=1.0)      # layer-params-18pct.cfg: rnorm1/rnorm2 scale, pow
CMRNORM = dict(size=9, alpha=1e-3, beta=0.75, k=1.0)    # layer-params-conv-local-11pct.cfg: rnorm1/rnorm2
ACTIVATION_SCALE = 50.0  # the nets see mean-subtracted 0-255 pixels, so their activations are tens, not ones

# (layer, op, channels, input side): each pooling and normalization layer, in network order.
LAYERS = [
    ("18pct.pool1", "maxpool", 32, SIDE),
    ("18pct.rnorm1", "spatial_lrn", 32, SIDE // 2),
    ("18pct.pool2", "avgpool", 32, SIDE // 2),
    ("18pct.rnorm2", "spatial_lrn", 32, SIDE // 4),
    ("18pct.pool3", "avgpool", 64, SIDE // 4),
    ("conv-local.pool1", "maxpool", 64, SIDE),
    ("conv-local.rnorm1", "lrn", 64, SIDE // 2),  # rnorm2 (after conv2) has the same shape
    ("conv-local.pool2", "maxpool", 64, SIDE // 2),
]


def _pool_cases(layer: str, kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> list[Case]:
    from alexnet_cuda import ops

    side = shape[2]
    out = ops.convnet_pool_outputs(side, 3, 2)
    forward_op, backward_op = getattr(ops, f"{kind}_forward"), getattr(ops, f"{kind}_backward")
    torch_name = "max_pool2d" if kind == "maxpool" else "avg_pool2d"
    n_in, n_out = int(np.prod(shape)), shape[0] * shape[1] * out * out

    def fwd(device):
        (x,) = tensors(device, f32(rng, *shape))
        return lambda: forward_op(x, 3, 2, outputs=out)

    def bwd(device):
        x = f32(rng, *shape)
        if kind == "maxpool":
            tx = tensors(device, x)[0]
            y = ops.maxpool_forward(tx, 3, 2, outputs=out)
            (tdy,) = tensors(device, f32(rng, shape[0], shape[1], out, out))
            return lambda: ops.maxpool_backward(tx, y, tdy, 3, 2, outputs=out)
        (tdy,) = tensors(device, f32(rng, shape[0], shape[1], out, out))
        return lambda: backward_op(tdy, side, side, 3, 2, outputs=out)

    def fwd_torch(torch, device):
        (x,) = torch_tensors(torch, device, f32(rng, *shape))
        return lambda: getattr(torch.nn.functional, torch_name)(x, 3, 2, ceil_mode=True)

    def bwd_torch(torch, device):
        x, dy = torch_tensors(torch, device, f32(rng, *shape), f32(rng, shape[0], shape[1], out, out), grad=True)
        y = getattr(torch.nn.functional, torch_name)(x, 3, 2, ceil_mode=True)
        return lambda: torch.autograd.grad(y, x, dy.detach(), retain_graph=True)

    desc = "x".join(map(str, shape)) + f" -> {out}x{out}, 3/2 (cuda-convnet's ceil rule)"
    kw = dict(group=kind, layer=layer, shape=desc, target="bandwidth")
    backward_bytes = (2.0 * (n_in + n_out) if kind == "maxpool" else float(n_in + n_out)) * F4
    return [
        Case(f"{layer}.forward", pass_="forward", ours=fwd, bytes=float(n_in + n_out) * F4, theirs=fwd_torch,
             theirs_what=f"F.{torch_name}(ceil_mode=True)", **kw),
        Case(f"{layer}.backward", pass_="backward", ours=bwd, bytes=backward_bytes, theirs=bwd_torch,
             theirs_what=f"autograd through F.{torch_name}(ceil_mode=True)",
             note="bytes: x, y, dy read, dx written" if kind == "maxpool" else "bytes: dy read, dx written", **kw),
    ]


def _spatial_lrn_torch(torch, x, p):
    """Within-map normalization written with avg_pool2d on squares (issue 19): count_include_pad divides by size^2
    everywhere, cuda-convnet's divisor (odd sizes: the window is centred, as padding size // 2 makes it)."""
    area_mean = torch.nn.functional.avg_pool2d(x * x, p["size"], 1, p["size"] // 2, count_include_pad=True)
    return x * (p["k"] + p["alpha"] * area_mean) ** -p["beta"]


def _norm_cases(layer: str, kind: str, shape: tuple[int, ...], rng: np.random.Generator) -> list[Case]:
    from alexnet_cuda import ops

    p = RNORM if kind == "spatial_lrn" else CMRNORM
    forward_op, backward_op = getattr(ops, f"{kind}_forward"), getattr(ops, f"{kind}_backward")
    numel = int(np.prod(shape))

    def torch_forward(torch, x):
        if kind == "spatial_lrn":
            return _spatial_lrn_torch(torch, x, p)
        return torch.nn.functional.local_response_norm(x, p["size"], p["alpha"], p["beta"], p["k"])

    def fwd(device):
        (x,) = tensors(device, f32(rng, *shape, scale=ACTIVATION_SCALE))
        return lambda: forward_op(x, **p)

    def bwd(device):
        x, dy = tensors(device, f32(rng, *shape, scale=ACTIVATION_SCALE), f32(rng, *shape))
        y, denom = forward_op(x, **p)
        return lambda: backward_op(x, y, denom, dy, **p)

    def fwd_torch(torch, device):
        (x,) = torch_tensors(torch, device, f32(rng, *shape, scale=ACTIVATION_SCALE))
        return lambda: torch_forward(torch, x)

    def bwd_torch(torch, device):
        x, dy = torch_tensors(torch, device, f32(rng, *shape, scale=ACTIVATION_SCALE), f32(rng, *shape), grad=True)
        y = torch_forward(torch, x)
        return lambda: torch.autograd.grad(y, x, dy.detach(), retain_graph=True)

    what = ("x * (1 + alpha * F.avg_pool2d(x^2, size, 1, size // 2)) ^ -beta" if kind == "spatial_lrn"
            else "F.local_response_norm(k=1)")
    desc = "x".join(map(str, shape)) + f", size {p['size']}" + (" within maps" if kind == "spatial_lrn" else
                                                                 " across maps (cmrnorm)")
    kw = dict(group=kind, layer=layer, shape=desc, target="bandwidth")
    return [
        Case(f"{layer}.forward", pass_="forward", ours=fwd, bytes=3.0 * numel * F4, theirs=fwd_torch,
             theirs_what=what, note="bytes: x read, y and denom written", **kw),
        Case(f"{layer}.backward", pass_="backward", ours=bwd, bytes=5.0 * numel * F4, theirs=bwd_torch,
             theirs_what=f"autograd through {what}", note="bytes: x, y, denom, dy read, dx written", **kw),
    ]


# layers-18pct's convolutions (5x5, stride 1, padding 2, on the whole image and the two pooled maps): conv2 and
# conv3 run F(2x2, 5x5) Winograd on the CPU, conv1 (3 input channels) im2col. fc10 (1024 -> 10) is too small to time.
CONVS_18PCT = [Conv("18pct.conv1", 3, 32, 5, 1, 2, SIDE), Conv("18pct.conv2", 32, 32, 5, 1, 2, SIDE // 2),
               Conv("18pct.conv3", 32, 64, 5, 1, 2, SIDE // 4)]


def cifar_cases(net: Any, n: int, rng: np.random.Generator) -> list[Case]:
    """Every convolution (forward with a fused ReLU, both gradients), pooling and normalization layer of
    layers-18pct and the pooling and normalization layers of conv-local at batch n (net is not used: these networks
    have their own shapes)."""
    from benchmarks.paper_kernels import conv_cases  # (paper_kernels imports this module)

    cases: list[Case] = conv_cases(Net(tuple(CONVS_18PCT), fc=0, classes=10, image=SIDE, crop=SIDE), n, rng)
    for layer, kind, channels, side in LAYERS:
        shape = (n, channels, side, side)
        make = _pool_cases if kind in ("maxpool", "avgpool") else _norm_cases
        cases += make(layer, kind, shape, rng)
    return cases
