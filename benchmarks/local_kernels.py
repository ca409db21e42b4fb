"""Kernel benchmark cases of the locally connected layer (cuda-convnet's ``local``) at the shapes of cuda-convnet's
conv-local networks (example-layers/layers-conv-local-11pct.cfg and -13pct.cfg): local3 and local4, 3x3 filters,
padding 1, stride 1, on the 6x6 maps that 24x24 crops leave after two 3x3/2 poolings (cuda-convnet's pooling output
rule: 24 -> 12 -> 6). 11pct: local3 64 -> 64, local4 64 -> 32; 13pct: local3 64 -> 32, local4 32 -> 32. Forward
(bias and ReLU fused, as the cfg's neuron=relu) and backward (dx, dw and db in one call). kernels.py times them with
the rest; PyTorch's counterpart, where it is installed, is F.unfold + einsum (PyTorch has no such layer)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.kernel_cases import Case, f32, tensors, torch_tensors

# (layer, c_in, c_out, map size): 3x3 filters, padding 1, stride 1 (the cfgs' local3 / local4).
LOCAL_LAYERS = [("local3-11pct", 64, 64, 6), ("local4-11pct", 64, 32, 6), ("local3-13pct", 64, 32, 6),
                ("local4-13pct", 32, 32, 6)]
KERNEL, PADDING, STRIDE = 3, 1, 1


def local_cases(net: Any, n: int, rng: np.random.Generator) -> list[Case]:
    """net is unused: these shapes are cuda-convnet's CIFAR-10 networks', not AlexNet's."""
    del net
    from alexnet_cuda import ops

    cases: list[Case] = []
    for layer, c_in, c_out, size in LOCAL_LAYERS:
        xs, ys = (n, c_in, size, size), (n, c_out, size, size)
        ws, bs = (size, size, c_in, KERNEL, KERNEL, c_out), (c_out, size, size)
        macs = n * c_out * size * size * c_in * KERNEL * KERNEL

        def fwd(device, xs=xs, ws=ws, bs=bs):
            x, w, b = tensors(device, f32(rng, *xs), f32(rng, *ws, scale=0.04), f32(rng, *bs))
            return lambda: ops.local_forward(x, w, b, STRIDE, PADDING, 1, "relu")

        def bwd(device, xs=xs, ws=ws, ys=ys):
            x, w, dy = tensors(device, f32(rng, *xs), f32(rng, *ws, scale=0.04), f32(rng, *ys))
            return lambda: ops.local_backward(x, w, dy, STRIDE, PADDING, 1)

        def torch_local(torch, x, w, size=size):
            cols = torch.nn.functional.unfold(x, KERNEL, padding=PADDING, stride=STRIDE)  # (n, c_in*9, positions)
            w_flat = w.reshape(size * size, -1, w.shape[-1])  # (positions, c_in*9, c_out)
            return torch.einsum("nkp,pko->nop", cols, w_flat).reshape(x.shape[0], -1, size, size)

        def fwd_torch(torch, device, xs=xs, ws=ws, bs=bs):
            x, w, b = torch_tensors(torch, device, f32(rng, *xs), f32(rng, *ws, scale=0.04), f32(rng, *bs))
            return lambda: torch.relu(torch_local(torch, x, w) + b)

        def bwd_torch(torch, device, xs=xs, ws=ws, bs=bs, ys=ys):
            x, w, b = torch_tensors(torch, device, f32(rng, *xs), f32(rng, *ws, scale=0.04), f32(rng, *bs), grad=True)
            (dy,) = torch_tensors(torch, device, f32(rng, *ys))
            y = torch_local(torch, x, w) + b
            return lambda: torch.autograd.grad(y, (x, w, b), dy, retain_graph=True)

        desc = f"{n}x{c_in}x{size}x{size} -> {c_out}, {KERNEL}x{KERNEL}/{STRIDE} pad {PADDING}, unshared"
        kw = dict(group="local", layer=layer, shape=desc)
        cases += [
            Case(f"{layer}.forward", pass_="forward", ours=fwd, flops=2.0 * macs, theirs=fwd_torch,
                 theirs_what="F.unfold + einsum, + bias, ReLU", **kw),
            Case(f"{layer}.backward", pass_="backward", ours=bwd, flops=4.0 * macs, theirs=bwd_torch,
                 theirs_what="autograd through F.unfold + einsum (dx, dw, db)",
                 note="dx, dw and db in one call: two products of the forward's size", **kw),
        ]
    return cases
