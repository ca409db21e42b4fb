"""Kernel benchmark cases of the variants' ops (issue 10), at the shapes where the variants put them in one tower of
the paper's network: BatchNorm after conv1 and conv5 (per channel) and on the fc6 outputs (per feature), in
training mode (forward and backward) and inference mode; global average pooling of conv5's 13x13 maps (the `gap`
head); the fused Adam step over each layer's per-tower parameters. kernels.py times them with the rest."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.kernel_cases import F4, Case, f32, layer_parameter_counts, tensors, torch_tensors

BATCHNORM = dict(momentum=0.1, eps=1e-5)
ADAM = dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=5e-4)


def _per_channel(device: str, c: int):
    """gamma = 1, beta = 0, running mean 0, running variance 1 (as freshly initialized), on the device."""
    return tensors(device, np.ones(c, np.float32), np.zeros(c, np.float32), np.zeros(c, np.float32),
                   np.ones(c, np.float32))


def batchnorm_cases(net: Any, n: int, rng: np.random.Generator) -> list[Case]:
    from alexnet_cuda import ops

    cases: list[Case] = []
    shapes = [(layer, (n, net.conv(layer).c_out, net.conv(layer).h_out, net.conv(layer).h_out))
              for layer in ("conv1", "conv5")] + [("fc6", (n, net.fc))]
    for layer, shape in shapes:
        c, numel = shape[1], int(np.prod(shape))

        def train(device, shape=shape):
            (x,), (g, b, rm, rv) = tensors(device, f32(rng, *shape)), _per_channel(device, shape[1])
            return lambda: ops.batchnorm_forward_train(x, g, b, rm, rv, **BATCHNORM)

        def evaluate(device, shape=shape):
            (x,), (g, b, rm, rv) = tensors(device, f32(rng, *shape)), _per_channel(device, shape[1])
            return lambda: ops.batchnorm_forward_eval(x, g, b, rm, rv, BATCHNORM["eps"])

        def backward(device, shape=shape):
            x, dy = tensors(device, f32(rng, *shape), f32(rng, *shape))
            g, b, rm, rv = _per_channel(device, shape[1])
            _, mean, invstd = ops.batchnorm_forward_train(x, g, b, rm, rv, **BATCHNORM)
            return lambda: ops.batchnorm_backward(x, dy, g, mean, invstd)

        def torch_forward(training):
            def make(torch, device, shape=shape, c=c):
                (x,) = torch_tensors(torch, device, f32(rng, *shape))
                g, b, rm, rv = (torch.full((c,), v, device=device) for v in (1.0, 0.0, 0.0, 1.0))
                return lambda: torch.nn.functional.batch_norm(x, rm, rv, g, b, training, **BATCHNORM)
            return make

        def torch_backward(torch, device, shape=shape, c=c):
            x, dy = torch_tensors(torch, device, f32(rng, *shape), f32(rng, *shape), grad=True)
            g, b = (torch.full((c,), v, device=device, requires_grad=True) for v in (1.0, 0.0))
            y = torch.nn.functional.batch_norm(x, None, None, g, b, True, **BATCHNORM)
            return lambda: torch.autograd.grad(y, (x, g, b), dy.detach(), retain_graph=True)

        kw = dict(group="batchnorm", layer=layer, shape="x".join(map(str, shape)), target="bandwidth")
        cases += [
            Case(f"batchnorm.{layer}.forward_train", pass_="forward", ours=train, bytes=2.0 * numel * F4,
                 theirs=torch_forward(True), theirs_what="F.batch_norm(training=True)",
                 note="bytes: x read once, y written (the kernels read x three times: mean, variance, normalize)",
                 **kw),
            Case(f"batchnorm.{layer}.forward_eval", pass_="forward", ours=evaluate, bytes=2.0 * numel * F4,
                 theirs=torch_forward(False), theirs_what="F.batch_norm(training=False)", **kw),
            Case(f"batchnorm.{layer}.backward", pass_="backward", ours=backward, bytes=3.0 * numel * F4,
                 theirs=torch_backward, theirs_what="autograd through F.batch_norm (dx, dgamma, dbeta)",
                 note="bytes: x, dy read once, dx written (the kernel reads x and dy twice)", **kw),
        ]
    return cases


def global_avgpool_cases(net: Any, n: int, rng: np.random.Generator) -> list[Case]:
    from alexnet_cuda import ops

    c5 = net.conv("conv5")
    shape = (n, c5.c_out, c5.h_out, c5.h_out)
    numel, planes = int(np.prod(shape)), n * c5.c_out

    def forward(device):
        (x,) = tensors(device, f32(rng, *shape))
        return lambda: ops.global_avgpool_forward(x)

    def backward(device):
        (dy,) = tensors(device, f32(rng, n, c5.c_out))
        return lambda: ops.global_avgpool_backward(dy, c5.h_out, c5.h_out)

    def torch_forward(torch, device):
        (x,) = torch_tensors(torch, device, f32(rng, *shape))
        return lambda: torch.nn.functional.adaptive_avg_pool2d(x, 1)

    def torch_backward(torch, device):
        (x,) = torch_tensors(torch, device, f32(rng, *shape), grad=True)
        y = torch.nn.functional.adaptive_avg_pool2d(x, 1)
        dy = torch.randn_like(y)
        return lambda: torch.autograd.grad(y, x, dy, retain_graph=True)

    kw = dict(group="global_avgpool", layer="conv5", shape="x".join(map(str, shape)) + " -> 1x1",
              target="bandwidth", bytes=float(numel + planes) * F4)
    return [
        Case("global_avgpool.conv5.forward", pass_="forward", ours=forward, theirs=torch_forward,
             theirs_what="F.adaptive_avg_pool2d(x, 1)", **kw),
        Case("global_avgpool.conv5.backward", pass_="backward", ours=backward, theirs=torch_backward,
             theirs_what="autograd through F.adaptive_avg_pool2d", **kw),
    ]


def adam_cases(net: Any, rng: np.random.Generator) -> list[Case]:
    from alexnet_cuda import ops

    cases = []
    for layer, count in layer_parameter_counts(net):
        def adam(device, count=count):
            w, m, v, g = tensors(device, f32(rng, count, scale=0.01), np.zeros(count, np.float32),
                                 np.zeros(count, np.float32), f32(rng, count, scale=1e-3))
            return lambda: ops.adam_update(w, m, v, g, **ADAM, decoupled=True, step=10)

        def adam_torch(torch, device, count=count):
            w, m, v, g = torch_tensors(torch, device, f32(rng, count, scale=0.01), np.zeros(count, np.float32),
                                       np.zeros(count, np.float32), f32(rng, count, scale=1e-3))
            return lambda: torch._fused_adamw_([w], [g], [m], [v], [], [torch.tensor(10.0, device=device)],
                                               amsgrad=False, maximize=False, **ADAM)

        cases.append(Case(f"adam.{layer}", group="adam", layer=layer, pass_="update", shape=f"{count} parameters",
                          ours=adam, bytes=7.0 * count * F4, target="bandwidth", theirs=adam_torch,
                          theirs_what="torch._fused_adamw_ (one fused kernel, like ours)",
                          note="AdamW; bytes: w, m, v, dw read, w, m, v written"))
    return cases


def variant_cases(net: Any, n: int, rng: np.random.Generator) -> list[Case]:
    return batchnorm_cases(net, n, rng) + global_avgpool_cases(net, n, rng) + adam_cases(net, rng)
