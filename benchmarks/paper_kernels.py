"""Kernel benchmark cases of the paper's layers, one function per op, at the shapes of one tower (see kernels.py's
docstring): conv2d, linear, ReLU, LRN, max pooling, dropout, softmax cross-entropy, SGD and prepare_batch. Each
case times our op and, where PyTorch has the same op, PyTorch's."""

from __future__ import annotations

import numpy as np

from benchmarks.kernel_cases import F4, Case, Net, f32, layer_parameter_counts, tensors, torch_tensors
from benchmarks.cifar_kernels import cifar_cases
from benchmarks.local_kernels import local_cases
from benchmarks.variant_kernels import variant_cases

# Hyper-parameters of the paper (Sections 3.3, 4.2, 5).
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=2.0)
DROPOUT_P = 0.5
SGD = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)


def _lrn_numpy(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """y and scale for lrn_backward's inputs (paper Section 3.3; window clipped at the channel edges)."""
    size, alpha, beta, k = LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"]
    sq = x.astype(np.float64) ** 2
    c = x.shape[1]
    window = np.zeros_like(sq)
    for i in range(c):
        lo, hi = max(0, i - size // 2), min(c, i + (size - 1) // 2 + 1)
        window[:, i] = sq[:, lo:hi].sum(axis=1)
    scale = k + alpha / size * window
    return (x * scale ** -beta).astype(np.float32), scale.astype(np.float32)


def _maxpool_numpy(x: np.ndarray, kernel: int = 3, stride: int = 2) -> np.ndarray:
    n, c, h, w = x.shape
    ho, wo = (h - kernel) // stride + 1, (w - kernel) // stride + 1
    y = np.full((n, c, ho, wo), -np.inf, dtype=np.float32)
    for dy in range(kernel):
        for dx in range(kernel):
            y = np.maximum(y, x[:, :, dy:dy + stride * (ho - 1) + 1:stride, dx:dx + stride * (wo - 1) + 1:stride])
    return y


def _softmax_numpy(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def conv_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """conv2d: forward (bias + ReLU fused, as the network runs it), dL/dx, dL/dw."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    for cv in net.convs:
        xs = (n, cv.c_in, cv.h_in, cv.h_in)
        ws = (cv.c_out, cv.c_in, cv.k, cv.k)
        ys = (n, cv.c_out, cv.h_out, cv.h_out)
        macs = n * cv.c_out * cv.h_out ** 2 * cv.c_in * cv.k * cv.k
        desc = f"{n}x{cv.c_in}x{cv.h_in}x{cv.h_in} -> {cv.c_out}, {cv.k}x{cv.k}/{cv.stride} pad {cv.pad}"

        def fwd(device, cv=cv, xs=xs, ws=ws, act="relu"):
            x, w, b = tensors(device, f32(rng, *xs), f32(rng, *ws, scale=0.01), f32(rng, cv.c_out))
            return lambda: ops.conv2d_forward(x, w, b, cv.stride, cv.pad, 1, act)

        def fwd_torch(torch, device, cv=cv, xs=xs, ws=ws):
            x, w, b = torch_tensors(torch, device, f32(rng, *xs), f32(rng, *ws, scale=0.01), f32(rng, cv.c_out))
            return lambda: torch.nn.functional.conv2d(x, w, b, cv.stride, cv.pad)

        def bwd_in(device, cv=cv, ys=ys, ws=ws):
            dy, w = tensors(device, f32(rng, *ys), f32(rng, *ws, scale=0.01))
            return lambda: ops.conv2d_backward_input(dy, w, (cv.h_in, cv.h_in), cv.stride, cv.pad, 1)

        def bwd_w(device, cv=cv, xs=xs, ys=ys):
            x, dy = tensors(device, f32(rng, *xs), f32(rng, *ys))
            return lambda: ops.conv2d_backward_weight(x, dy, (cv.k, cv.k), cv.stride, cv.pad, 1)

        def torch_bwd(mask, cv=cv, xs=xs, ws=ws, ys=ys):
            def make(torch, device):
                x, w, dy = torch_tensors(torch, device, f32(rng, *xs), f32(rng, *ws, scale=0.01), f32(rng, *ys))
                conv_bwd = torch.ops.aten.convolution_backward
                return lambda: conv_bwd(dy, x, w, None, [cv.stride] * 2, [cv.pad] * 2, [1, 1], False, [0, 0], 1, mask)
            return make

        common_kw = dict(group="conv2d", layer=cv.name, shape=desc, flops=2.0 * macs, target="cudnn")
        cases += [
            Case(f"{cv.name}.forward", pass_="forward", ours=fwd, theirs=fwd_torch,
                 theirs_what="F.conv2d (+bias; ours also applies the fused ReLU)", **common_kw),
            Case(f"{cv.name}.backward_input", pass_="backward_input", ours=bwd_in, theirs=torch_bwd([True, False, False]),
                 theirs_what="aten.convolution_backward (input)",
                 note="not needed in training (the input is data)" if cv.name == "conv1" else "", **common_kw),
            Case(f"{cv.name}.backward_weight", pass_="backward_weight", ours=bwd_w,
                 theirs=torch_bwd([False, True, False]), theirs_what="aten.convolution_backward (weight)", **common_kw),
        ]
    return cases


def linear_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """linear: fc6, fc7 (ReLU fused), fc8."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    for name, fin, fout, act in net.fcs():
        desc = f"{n}x{fin} -> {fout}"
        flops = 2.0 * n * fin * fout

        def fwd(device, fin=fin, fout=fout, act=act):
            x, w, b = tensors(device, f32(rng, n, fin), f32(rng, fout, fin, scale=0.01), f32(rng, fout))
            return lambda: ops.linear_forward(x, w, b, act)

        def fwd_torch(torch, device, fin=fin, fout=fout):
            x, w, b = torch_tensors(torch, device, f32(rng, n, fin), f32(rng, fout, fin, scale=0.01), f32(rng, fout))
            return lambda: torch.nn.functional.linear(x, w, b)

        def bwd_in(device, fin=fin, fout=fout):
            dy, w = tensors(device, f32(rng, n, fout), f32(rng, fout, fin, scale=0.01))
            return lambda: ops.linear_backward_input(dy, w)

        def bwd_in_torch(torch, device, fin=fin, fout=fout):
            dy, w = torch_tensors(torch, device, f32(rng, n, fout), f32(rng, fout, fin, scale=0.01))
            return lambda: torch.mm(dy, w)

        def bwd_w(device, fin=fin, fout=fout):
            x, dy = tensors(device, f32(rng, n, fin), f32(rng, n, fout))
            return lambda: ops.linear_backward_weight(x, dy)

        def bwd_w_torch(torch, device, fin=fin, fout=fout):
            x, dy = torch_tensors(torch, device, f32(rng, n, fin), f32(rng, n, fout))
            return lambda: torch.mm(dy.t(), x)

        kw = dict(group="linear", layer=name, shape=desc, flops=flops, target="fma")
        fused = " (ours also applies the fused ReLU)" if act == "relu" else ""
        cases += [
            Case(f"{name}.forward", pass_="forward", ours=fwd, theirs=fwd_torch, theirs_what="F.linear" + fused, **kw),
            Case(f"{name}.backward_input", pass_="backward_input", ours=bwd_in, theirs=bwd_in_torch,
                 theirs_what="torch.mm(dy, W)", **kw),
            Case(f"{name}.backward_weight", pass_="backward_weight", ours=bwd_w, theirs=bwd_w_torch,
                 theirs_what="torch.mm(dy.T, x)", **kw),
        ]
    return cases


def relu_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """ReLU: standalone forward/backward at every activation's shape, and its cost fused in the epilogue."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    relu_shapes = [(cv.name, (n, cv.c_out, cv.h_out, cv.h_out)) for cv in net.convs]
    relu_shapes += [(name, (n, fout)) for name, _, fout, act in net.fcs() if act == "relu"]
    for layer, shape in relu_shapes:
        numel = int(np.prod(shape))
        desc = "x".join(map(str, shape))

        def fwd(device, shape=shape):
            (x,) = tensors(device, f32(rng, *shape))
            return lambda: ops.relu_forward(x)

        def fwd_torch(torch, device, shape=shape):
            (x,) = torch_tensors(torch, device, f32(rng, *shape))
            return lambda: torch.nn.functional.relu(x)

        def bwd(device, shape=shape):
            y, dy = tensors(device, np.maximum(f32(rng, *shape), 0), f32(rng, *shape))
            return lambda: ops.relu_backward(y, dy)

        def bwd_torch(torch, device, shape=shape):
            y, dy = torch_tensors(torch, device, np.maximum(f32(rng, *shape), 0), f32(rng, *shape))
            return lambda: torch.ops.aten.threshold_backward(dy, y, 0)

        kw = dict(group="relu", layer=layer, shape=desc, target="bandwidth")
        cases += [
            Case(f"relu.{layer}.forward", pass_="forward", ours=fwd, bytes=2.0 * numel * F4, theirs=fwd_torch,
                 theirs_what="F.relu", **kw),
            Case(f"relu.{layer}.backward", pass_="backward", ours=bwd, bytes=3.0 * numel * F4, theirs=bwd_torch,
                 theirs_what="aten.threshold_backward", **kw),
        ]
        # The fused ReLU's cost: the layer's forward with the ReLU epilogue minus the same forward without it.
        if layer.startswith("conv"):
            cv = net.conv(layer)
            xs, ws = (n, cv.c_in, cv.h_in, cv.h_in), (cv.c_out, cv.c_in, cv.k, cv.k)

            def fused(act, cv=cv, xs=xs, ws=ws):
                def make(device):
                    x, w, b = tensors(device, f32(rng, *xs), f32(rng, *ws, scale=0.01), f32(rng, cv.c_out))
                    return lambda: ops.conv2d_forward(x, w, b, cv.stride, cv.pad, 1, act)
                return make
        else:
            fin = next(f[1] for f in net.fcs() if f[0] == layer)

            def fused(act, fin=fin, fout=shape[1]):
                def make(device):
                    x, w, b = tensors(device, f32(rng, n, fin), f32(rng, fout, fin, scale=0.01), f32(rng, fout))
                    return lambda: ops.linear_forward(x, w, b, act)
                return make
        cases.append(Case(f"relu.{layer}.fused", group="relu", layer=layer, pass_="fused", shape=desc,
                          ours=fused("relu"), baseline=fused("none"),
                          note=f"{layer} forward with the ReLU epilogue minus without it"))
    return cases


def lrn_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """LRN after conv1 and conv2."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    for layer in ("conv1", "conv2"):
        cv = net.conv(layer)
        shape = (n, cv.c_out, cv.h_out, cv.h_out)
        numel = int(np.prod(shape))
        desc = "x".join(map(str, shape)) + f", n={LRN['size']}"

        def fwd(device, shape=shape):
            (x,) = tensors(device, f32(rng, *shape))
            return lambda: ops.lrn_forward(x, **LRN)

        def fwd_torch(torch, device, shape=shape):
            (x,) = torch_tensors(torch, device, f32(rng, *shape))
            return lambda: torch.nn.functional.local_response_norm(x, LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"])

        def bwd(device, shape=shape):
            x = f32(rng, *shape)
            y, scale = _lrn_numpy(x)
            tx, ty, ts, tdy = tensors(device, x, y, scale, f32(rng, *shape))
            return lambda: ops.lrn_backward(tx, ty, ts, tdy, **LRN)

        def bwd_torch(torch, device, shape=shape):
            x, dy = torch_tensors(torch, device, f32(rng, *shape), f32(rng, *shape), grad=True)
            dy = dy.detach()
            y = torch.nn.functional.local_response_norm(x, LRN["size"], LRN["alpha"], LRN["beta"], LRN["k"])
            return lambda: torch.autograd.grad(y, x, dy, retain_graph=True)

        kw = dict(group="lrn", layer=layer, shape=desc, target="bandwidth")
        cases += [
            Case(f"lrn.{layer}.forward", pass_="forward", ours=fwd, bytes=3.0 * numel * F4, theirs=fwd_torch,
                 theirs_what="F.local_response_norm", note="bytes: x read, y and scale written", **kw),
            Case(f"lrn.{layer}.backward", pass_="backward", ours=bwd, bytes=5.0 * numel * F4, theirs=bwd_torch,
                 theirs_what="autograd through F.local_response_norm", note="bytes: x, y, scale, dy read, dx written",
                 **kw),
        ]
    return cases


def maxpool_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """Max pooling 3x3/2 after conv1, conv2, conv5."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    for layer in ("conv1", "conv2", "conv5"):
        cv = net.conv(layer)
        shape = (n, cv.c_out, cv.h_out, cv.h_out)
        ho = Net.pooled(cv.h_out)
        n_in, n_out = int(np.prod(shape)), n * cv.c_out * ho * ho
        desc = "x".join(map(str, shape)) + f" -> {ho}x{ho}"

        def fwd(device, shape=shape):
            (x,) = tensors(device, f32(rng, *shape))
            return lambda: ops.maxpool_forward(x, 3, 2)

        def fwd_torch(torch, device, shape=shape):
            (x,) = torch_tensors(torch, device, f32(rng, *shape))
            return lambda: torch.nn.functional.max_pool2d(x, 3, 2)

        def bwd(device, shape=shape):
            x = f32(rng, *shape)
            y = _maxpool_numpy(x)
            tx, ty, tdy = tensors(device, x, y, f32(rng, *y.shape))
            return lambda: ops.maxpool_backward(tx, ty, tdy, 3, 2)

        def bwd_torch(torch, device, shape=shape):
            (x,) = torch_tensors(torch, device, f32(rng, *shape))
            y, idx = torch.nn.functional.max_pool2d(x, 3, 2, return_indices=True)
            dy = torch.randn_like(y)
            return lambda: torch.ops.aten.max_pool2d_with_indices_backward(dy, x, [3, 3], [2, 2], [0, 0], [1, 1],
                                                                            False, idx)

        kw = dict(group="maxpool", layer=layer, shape=desc, target="bandwidth")
        cases += [
            Case(f"maxpool.{layer}.forward", pass_="forward", ours=fwd, bytes=float(n_in + n_out) * F4,
                 theirs=fwd_torch, theirs_what="F.max_pool2d", **kw),
            Case(f"maxpool.{layer}.backward", pass_="backward", ours=bwd, bytes=2.0 * (n_in + n_out) * F4,
                 theirs=bwd_torch, theirs_what="aten.max_pool2d_with_indices_backward (reads indices, not x and y)",
                 note="bytes: x, y, dy read, dx written", **kw),
        ]
    return cases


def dropout_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """Dropout on the fc6 and fc7 outputs."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    for layer in ("fc6", "fc7"):
        shape = (n, net.fc)
        numel = n * net.fc

        def fwd(device, shape=shape):
            (x,) = tensors(device, f32(rng, *shape))
            return lambda: ops.dropout_forward(x, DROPOUT_P, 1234, 0, True)

        def fwd_torch(torch, device, shape=shape):
            (x,) = torch_tensors(torch, device, f32(rng, *shape))
            return lambda: torch.nn.functional.dropout(x, DROPOUT_P, training=True)

        def bwd(device, shape=shape):
            (dy,) = tensors(device, f32(rng, *shape))
            return lambda: ops.dropout_backward(dy, DROPOUT_P, 1234, 0, True)

        def bwd_torch(torch, device, shape=shape):
            x, dy = torch_tensors(torch, device, f32(rng, *shape), f32(rng, *shape))
            _, mask = torch.native_dropout(x, DROPOUT_P, True)
            return lambda: torch.ops.aten.native_dropout_backward(dy, mask, 1.0 / (1.0 - DROPOUT_P))

        kw = dict(group="dropout", layer=layer, shape="x".join(map(str, shape)) + f", p={DROPOUT_P}",
                  target="bandwidth", bytes=2.0 * numel * F4)
        cases += [
            Case(f"dropout.{layer}.forward", pass_="forward", ours=fwd, theirs=fwd_torch,
                 theirs_what="F.dropout (random: time only)", note="mask from Philox, not stored", **kw),
            Case(f"dropout.{layer}.backward", pass_="backward", ours=bwd, theirs=bwd_torch,
                 theirs_what="aten.native_dropout_backward (reads a stored mask)", **kw),
        ]
    return cases


def softmax_xent_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """Softmax cross-entropy."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    classes = net.classes
    logits_np = f32(rng, n, classes)
    labels_np = rng.integers(0, classes, size=n, dtype=np.int32)
    xent_bytes = 2.0 * n * classes * F4 + n * 4

    def xent_fwd(device):
        logits, labels = tensors(device, logits_np, labels_np)
        return lambda: ops.softmax_xent_forward(logits, labels)

    def xent_fwd_torch(torch, device):
        logits, labels = torch_tensors(torch, device, logits_np, labels_np.astype(np.int64))
        return lambda: torch.nn.functional.cross_entropy(logits, labels)

    def xent_bwd(device):
        probs, labels = tensors(device, _softmax_numpy(logits_np), labels_np)
        return lambda: ops.softmax_xent_backward(probs, labels)

    def xent_bwd_torch(torch, device):
        (logits,) = torch_tensors(torch, device, logits_np, grad=True)
        (labels,) = torch_tensors(torch, device, labels_np.astype(np.int64))
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return lambda: torch.autograd.grad(loss, logits, retain_graph=True)

    kw = dict(group="softmax_xent", layer="fc8", shape=f"{n}x{classes}", bytes=xent_bytes)
    cases += [
        Case("softmax_xent.forward", pass_="forward", ours=xent_fwd, theirs=xent_fwd_torch,
             theirs_what="F.cross_entropy (ours also writes the probabilities)",
             note="returns the loss to the host: includes a stream synchronization", **kw),
        Case("softmax_xent.backward", pass_="backward", ours=xent_bwd, theirs=xent_bwd_torch,
             theirs_what="autograd through F.cross_entropy", **kw),
    ]
    return cases


def sgd_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """SGD over each layer's per-tower parameters (weights + biases)."""
    from alexnet_cuda import ops

    cases: list[Case] = []
    for layer, count in layer_parameter_counts(net):
        def sgd(device, count=count):
            w, v, g = tensors(device, f32(rng, count, scale=0.01), np.zeros(count, np.float32),
                               f32(rng, count, scale=1e-3))
            return lambda: ops.sgd_update(w, v, g, SGD["lr"], SGD["momentum"], SGD["weight_decay"])

        def sgd_torch(torch, device, count=count):
            w, v, g = torch_tensors(torch, device, f32(rng, count, scale=0.01), np.zeros(count, np.float32),
                                     f32(rng, count, scale=1e-3))
            lr, mu, wd = SGD["lr"], SGD["momentum"], SGD["weight_decay"]

            def step():  # the paper's update (Section 5) as eager in-place ops
                v.mul_(mu).add_(w, alpha=-wd * lr).add_(g, alpha=-lr)
                w.add_(v)
            return step

        cases.append(Case(f"sgd.{layer}", group="sgd", layer=layer, pass_="update", shape=f"{count} parameters",
                          ours=sgd, bytes=5.0 * count * F4, target="bandwidth", theirs=sgd_torch,
                          theirs_what="v.mul_().add_().add_(); w.add_(v)",
                          note="bytes: w, v, dw read, w, v written"))
    return cases


def prepare_batch_cases(net: Net, n: int, rng: np.random.Generator) -> list[Case]:
    """prepare_batch: uint8 images to the network's float crops (mean subtracted, scaled, mirrored)."""
    from alexnet_cuda import ops

    cases: list[Case] = []

    def prepare(device):
        images = rng.integers(0, 256, size=(n, net.image, net.image, 3), dtype=np.uint8)
        mean = (rng.random((3, net.image, net.image), dtype=np.float32) * 255).astype(np.float32)
        span = net.image - net.crop + 1
        crop_y = rng.integers(0, span, size=n, dtype=np.int32)
        crop_x = rng.integers(0, span, size=n, dtype=np.int32)
        flip = rng.integers(0, 2, size=n, dtype=np.int32)
        shift = f32(rng, n, 3, scale=0.1)
        t = tensors(device, images, mean, crop_y, crop_x, flip, shift)
        return lambda: ops.prepare_batch(*t, net.crop, 1.0 / 255)

    crop_px = n * net.crop * net.crop * 3
    cases.append(Case("prepare_batch", group="prepare_batch", layer="input", pass_="forward",
                      shape=f"{n}x{net.image}x{net.image}x3 uint8 -> {n}x3x{net.crop}x{net.crop}", ours=prepare,
                      bytes=float(crop_px + 3 * net.image * net.image * F4 + crop_px * F4),
                      note="bytes: cropped pixels and the mean read once, float crops written"))
    return cases


def build_cases(net: Net, batch: int, seed: int = 0) -> list[Case]:
    """Every case, the paper's layers, the variants' ops, then the CIFAR-10 networks' pooling and normalization
    layers (cifar_kernels.py) and local layers (local_kernels.py), with one random stream (seeded) for their data."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = []
    for make in (conv_cases, linear_cases, relu_cases, lrn_cases, maxpool_cases, dropout_cases, softmax_xent_cases,
                 sgd_cases, prepare_batch_cases, variant_cases, cifar_cases, local_cases):
        cases += make(net, batch, rng)
    return cases
