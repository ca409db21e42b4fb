"""Every AlexNet op, forward and backward, on the CPU or a GPU.

Each function takes NumPy arrays (and returns NumPy arrays) or :class:`alexnet_cuda.Tensor` objects (and returns
Tensors, with no host copies). With NumPy inputs, ``device`` says where the op runs ('cpu', 'cuda', 'cuda:N');
with Tensor inputs the op runs where the tensors are. Float data must be float32, labels and crop offsets int32,
images uint8; arrays must be C-contiguous. Bad input raises TypeError or ValueError naming the op.

The maths of each op, with the paper's section, is in ``csrc/ops.h`` and ``csrc/cpu/kernels.h``; the NumPy float64
reference is :mod:`alexnet_cuda.reference`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _C
from .arguments import UINT64_MAX, bool_arg, channel_scale_arg, float_arg, int_arg, pair_arg

Tensor = _C.Tensor
_ACTIVATIONS = {"none": 0, None: 0, "relu": 1, "tanh": 2}
DTYPE_NAMES = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.uint8): "uint8"}


def _activation(op: str, act: Any) -> int:
    if not (act is None or isinstance(act, str)) or act not in _ACTIVATIONS:
        raise ValueError(f"{op}: activation must be 'none', 'relu' or 'tanh', got {act!r}")
    return _ACTIVATIONS[act]


def to_tensor(a: Any, device: str, op: str, name: str = "x", dtype: str = "float32") -> Tensor:
    """Checks one argument of ``op`` and returns it as a Tensor on ``device`` (a Tensor is passed through)."""
    if isinstance(a, Tensor):
        if a.dtype != dtype:
            raise TypeError(f"{op}: expected {name} of dtype {dtype}, got a {a.dtype} Tensor")
        return a
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{op}: expected {name} as a numpy.ndarray or alexnet_cuda.Tensor, got {type(a).__name__}")
    if not a.dtype.isnative:  # big-endian data: convert the numbers, never reinterpret their bytes
        a = a.astype(a.dtype.newbyteorder("="))
    if DTYPE_NAMES.get(a.dtype) != dtype:
        raise TypeError(f"{op}: expected {name} of dtype {dtype}, got {a.dtype} (convert with .astype(np.{dtype}))")
    if not a.flags.c_contiguous:
        raise ValueError(f"{op}: expected {name} to be C-contiguous (use numpy.ascontiguousarray)")
    return Tensor.from_numpy(a, device, f"{op}: {name}")


def _parse_device(op: str, device: str) -> str:
    if not isinstance(device, str):
        raise TypeError(f"{op}: device must be a string such as 'cpu' or 'cuda:0', got {device!r}")
    try:
        return _C.parse_device(device)
    except ValueError as exc:
        raise ValueError(f"{op}: {exc}") from None


class _Call:
    """Converts one op call's arguments and converts the results back to NumPy when the inputs were NumPy."""

    def __init__(self, op: str, device: str | None, first: Any):
        self.op = op
        self.numpy = not isinstance(first, Tensor)
        if self.numpy:
            self.device = _parse_device(op, "cpu" if device is None else device)
        else:
            self.device = first.device
            if device is not None and _parse_device(op, device) != self.device:
                raise ValueError(f"{op}: device={device!r} but the input Tensor is on {self.device}")

    def t(self, a: Any, name: str, dtype: str = "float32") -> Tensor:
        if isinstance(a, Tensor) and a.device != self.device:
            raise ValueError(f"{self.op}: {name} is on {a.device} but the other inputs are on {self.device}")
        return to_tensor(a, self.device, self.op, name, dtype)

    def opt(self, a: Any, name: str) -> Tensor | None:
        return None if a is None else self.t(a, name)

    def ints(self, **values: Any) -> list[int]:
        """The C int arguments, in order, checked for type and range (arguments.int_arg)."""
        return [int_arg(self.op, name, v) for name, v in values.items()]

    def floats(self, **values: Any) -> list[float]:
        """The float32 arguments, in order, checked to be finite float32 numbers (arguments.float_arg)."""
        return [float_arg(self.op, name, v) for name, v in values.items()]

    def run(self, native: Any, *args: Any) -> Any:
        """Calls the C++ op and converts its result. Its errors are named after this op (relu_forward runs
        activation_forward; the allocator's out-of-memory message names no op at all)."""
        try:
            return self.out(native(*args))
        except (TypeError, ValueError, MemoryError) as exc:
            message, prefix = str(exc), f"{native.__name__}: "
            if message.startswith(prefix):
                message = message[len(prefix):]
            raise type(exc)(f"{self.op}: {message}") from None

    def out(self, r: Any) -> Any:
        if not self.numpy:
            return r
        if isinstance(r, Tensor):
            return r.numpy()
        if isinstance(r, tuple):
            return tuple(self.out(v) for v in r)
        return r


def _labels(c: _Call, labels: Any) -> Tensor:
    if isinstance(labels, np.ndarray) and labels.dtype.kind in "iu" and labels.dtype != np.int32:
        if labels.size and (labels.min() < np.iinfo(np.int32).min or labels.max() > np.iinfo(np.int32).max):
            raise ValueError(f"{c.op}: labels out of the int32 range")
        labels = np.ascontiguousarray(labels, dtype=np.int32)
    return c.t(labels, "labels", "int32")


# ---- conv2d -------------------------------------------------------------------------------------------------------
def conv2d_forward(x, weight, bias=None, stride=1, padding=0, groups=1, activation=None, *, device=None):
    """y = act(conv2d(x, weight) + bias). x (n, c_in, h, w), weight (c_out, c_in/groups, kh, kw)."""
    c = _Call("conv2d_forward", device, x)
    return c.run(_C.ops.conv2d_forward, c.t(x, "x"), c.t(weight, "weight"), c.opt(bias, "bias"),
                 *c.ints(stride=stride, padding=padding, groups=groups), _activation(c.op, activation))


def conv2d_backward_input(dy, weight, input_size, stride=1, padding=0, groups=1, *, device=None):
    """dL/dx for an input of spatial size input_size = (h, w)."""
    c = _Call("conv2d_backward_input", device, dy)
    h, w = pair_arg(c.op, "input_size", input_size)
    return c.run(_C.ops.conv2d_backward_input, c.t(dy, "dy"), c.t(weight, "weight"), h, w,
                 *c.ints(stride=stride, padding=padding, groups=groups))


def conv2d_backward_weight(x, dy, kernel_size, stride=1, padding=0, groups=1, *, device=None):
    """dL/dweight for kernel_size = (kh, kw)."""
    c = _Call("conv2d_backward_weight", device, x)
    kh, kw = pair_arg(c.op, "kernel_size", kernel_size)
    return c.run(_C.ops.conv2d_backward_weight, c.t(x, "x"), c.t(dy, "dy"), kh, kw,
                 *c.ints(stride=stride, padding=padding, groups=groups))


# ---- local (locally connected) -------------------------------------------------------------------------------------
def local_forward(x, weight, bias=None, stride=1, padding=0, groups=1, activation=None, *, device=None):
    """The locally connected layer (cuda-convnet's ``local``): a convolution with its own filters at every output
    position. y = act(local(x, weight) + bias). x (n, c_in, h, w); weight (h_out, w_out, c_in/groups, kh, kw, c_out)
    with h_out = 1 + ceil((h + 2*padding - kh) / stride) (cuda-convnet's rule; likewise w_out); bias
    (c_out, h_out, w_out), one per output element (reference/local.py: output_size)."""
    c = _Call("local_forward", device, x)
    return c.run(_C.ops.local_forward, c.t(x, "x"), c.t(weight, "weight"), c.opt(bias, "bias"),
                 *c.ints(stride=stride, padding=padding, groups=groups), _activation(c.op, activation))


def local_backward(x, weight, dy, stride=1, padding=0, groups=1, *, device=None):
    """(dx, dweight, dbias) of :func:`local_forward` (dy is the gradient after any activation)."""
    c = _Call("local_backward", device, x)
    return c.run(_C.ops.local_backward, c.t(x, "x"), c.t(weight, "weight"), c.t(dy, "dy"),
                 *c.ints(stride=stride, padding=padding, groups=groups))


def bias_backward(dy, *, device=None):
    """dL/dbias: dy summed over every dim but 1 (conv2d and linear)."""
    c = _Call("bias_backward", device, dy)
    return c.run(_C.ops.bias_backward, c.t(dy, "dy"))


# ---- linear -------------------------------------------------------------------------------------------------------
def linear_forward(x, weight, bias=None, activation=None, *, device=None):
    """y = act(x @ weight.T + bias). x (n, in), weight (out, in)."""
    c = _Call("linear_forward", device, x)
    return c.run(_C.ops.linear_forward, c.t(x, "x"), c.t(weight, "weight"), c.opt(bias, "bias"),
                 _activation(c.op, activation))


def linear_backward_input(dy, weight, *, device=None):
    c = _Call("linear_backward_input", device, dy)
    return c.run(_C.ops.linear_backward_input, c.t(dy, "dy"), c.t(weight, "weight"))


def linear_backward_weight(x, dy, *, device=None):
    c = _Call("linear_backward_weight", device, x)
    return c.run(_C.ops.linear_backward_weight, c.t(x, "x"), c.t(dy, "dy"))


# ---- activation ---------------------------------------------------------------------------------------------------
# relu_* and tanh_* are activation_* under their own name, so that their errors name them.
def _activation_forward(op, x, activation, device):
    c = _Call(op, device, x)
    return c.run(_C.ops.activation_forward, c.t(x, "x"), _activation(op, activation))


def _activation_backward(op, y, dy, activation, device):
    c = _Call(op, device, y)
    return c.run(_C.ops.activation_backward, c.t(y, "y"), c.t(dy, "dy"), _activation(op, activation))


def activation_forward(x, activation="relu", *, device=None):
    return _activation_forward("activation_forward", x, activation, device)


def activation_backward(y, dy, activation="relu", *, device=None):
    """Gradient through the activation, from its output y."""
    return _activation_backward("activation_backward", y, dy, activation, device)


def relu_forward(x, *, device=None):
    return _activation_forward("relu_forward", x, "relu", device)


def relu_backward(y, dy, *, device=None):
    return _activation_backward("relu_backward", y, dy, "relu", device)


def tanh_forward(x, *, device=None):
    return _activation_forward("tanh_forward", x, "tanh", device)


def tanh_backward(y, dy, *, device=None):
    return _activation_backward("tanh_backward", y, dy, "tanh", device)


# ---- lrn ----------------------------------------------------------------------------------------------------------
def lrn_forward(x, size=5, alpha=1e-4, beta=0.75, k=2.0, *, device=None):
    """Local response normalization across channels (paper Section 3.3). Returns (y, scale)."""
    c = _Call("lrn_forward", device, x)
    return c.run(_C.ops.lrn_forward, c.t(x, "x"), *c.ints(size=size), *c.floats(alpha=alpha, beta=beta, k=k))


def lrn_backward(x, y, scale, dy, size=5, alpha=1e-4, beta=0.75, k=2.0, *, device=None):
    c = _Call("lrn_backward", device, x)
    return c.run(_C.ops.lrn_backward, c.t(x, "x"), c.t(y, "y"), c.t(scale, "scale"), c.t(dy, "dy"),
                 *c.ints(size=size), *c.floats(alpha=alpha, beta=beta, k=k))


# ---- spatial_lrn --------------------------------------------------------------------------------------------------
def spatial_lrn_forward(x, size=3, alpha=5e-5, beta=0.75, k=1.0, *, device=None):
    """Response normalization within each map, cuda-convnet's ``rnorm``: denom = k + (alpha / size^2) * the sum of
    x^2 over the size x size window (rows and columns [i - size//2, i - size//2 + size), clipped to the map), and
    y = x * denom^-beta. A cuda-convnet layer's size, scale and pow are size, alpha and beta here, with k = 1.
    The defaults are layers-18pct's rnorm1/rnorm2 (size 3, scale 0.00005, pow 0.75). x (n, c, h, w); returns
    (y, denom)."""
    c = _Call("spatial_lrn_forward", device, x)
    return c.run(_C.ops.spatial_lrn_forward, c.t(x, "x"), *c.ints(size=size), *c.floats(alpha=alpha, beta=beta, k=k))


def spatial_lrn_backward(x, y, denom, dy, size=3, alpha=5e-5, beta=0.75, k=1.0, *, device=None):
    c = _Call("spatial_lrn_backward", device, x)
    return c.run(_C.ops.spatial_lrn_backward, c.t(x, "x"), c.t(y, "y"), c.t(denom, "denom"), c.t(dy, "dy"),
                 *c.ints(size=size), *c.floats(alpha=alpha, beta=beta, k=k))


# ---- batchnorm ----------------------------------------------------------------------------------------------------
def batchnorm_forward_train(x, gamma, beta, running_mean, running_var, momentum=0.1, eps=1e-5, *, device=None):
    """Batch normalization in training mode (Ioffe & Szegedy 2015, Algorithm 1) over x (n, c) per feature or
    (n, c, h, w) per channel. Returns (y, saved_mean, saved_invstd) and updates running_mean and running_var in
    place (PyTorch's rule: running = (1 - momentum) * running + momentum * batch statistic, the variance unbiased).
    """
    c = _Call("batchnorm_forward_train", device, x)
    rm, rv = c.t(running_mean, "running_mean"), c.t(running_var, "running_var")
    _require_writeable(c, running_mean=running_mean, running_var=running_var)
    out = c.run(_C.ops.batchnorm_forward_train, c.t(x, "x"), c.t(gamma, "gamma"), c.t(beta, "beta"), rm, rv,
                *c.floats(momentum=momentum, eps=eps))
    _write_back([(running_mean, rm), (running_var, rv)])
    return out


def batchnorm_forward_eval(x, gamma, beta, running_mean, running_var, eps=1e-5, *, device=None):
    """Inference mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta."""
    c = _Call("batchnorm_forward_eval", device, x)
    return c.run(_C.ops.batchnorm_forward_eval, c.t(x, "x"), c.t(gamma, "gamma"), c.t(beta, "beta"),
                 c.t(running_mean, "running_mean"), c.t(running_var, "running_var"), *c.floats(eps=eps))


def batchnorm_backward(x, dy, gamma, saved_mean, saved_invstd, *, device=None):
    """Backward of the training-mode forward, from its saved statistics. Returns (dx, dgamma, dbeta)."""
    c = _Call("batchnorm_backward", device, x)
    return c.run(_C.ops.batchnorm_backward, c.t(x, "x"), c.t(dy, "dy"), c.t(gamma, "gamma"),
                 c.t(saved_mean, "saved_mean"), c.t(saved_invstd, "saved_invstd"))


# ---- pooling: maxpool, avgpool --------------------------------------------------------------------------------
# Geometry (csrc/shapes.h): window o covers input rows [start + o*stride, start + o*stride + kernel) and the same
# columns, clipped to the input. ``outputs=None``: as many whole windows as fit from ``start`` (the paper's pooling,
# the default); an int (both sides) or an (h, w) pair: exactly that many windows, which may hang over the far edge,
# as cuda-convnet's ``outputsX`` (see :func:`convnet_pool_outputs` for its rule when outputsX=0).
def convnet_pool_outputs(size, kernel, stride, start=0):
    """cuda-convnet's number of pooling outputs along a side of ``size`` when a layer says ``outputsX=0``
    (layer.py, PoolLayerParser.parse: ``int(ceil((imgSize - start - sizeX) / float(stride))) + 1``): windows start
    while they are still inside the image, so the last may hang over the edge (32, 3/2 -> 16, where whole windows
    give 15)."""
    op = "convnet_pool_outputs"
    size, kernel, stride, start = (int_arg(op, name, v) for name, v in
                                   (("size", size), ("kernel", kernel), ("stride", stride), ("start", start)))
    if size < 1 or kernel < 1 or stride < 1:
        raise ValueError(f"{op}: size, kernel and stride must be >= 1, got size={size}, kernel={kernel}, "
                         f"stride={stride}")
    return -(-(size - start - kernel) // stride) + 1  # ceil division, also for a negative numerator


def _geometry(c: _Call, kernel, stride, start, outputs) -> list[int]:
    if outputs is None:
        h_out = w_out = 0
    elif isinstance(outputs, (tuple, list)):
        h_out, w_out = pair_arg(c.op, "outputs", outputs)
    else:
        h_out = w_out = int_arg(c.op, "outputs", outputs)
    if outputs is not None and (h_out < 1 or w_out < 1):
        raise ValueError(f"{c.op}: outputs must be >= 1 (or None: as many whole windows as fit), got {outputs!r}")
    return c.ints(kernel=kernel, stride=stride, start=start) + [h_out, w_out]


def maxpool_forward(x, kernel=3, stride=2, *, start=0, outputs=None, device=None):
    """Max pooling (paper Section 3.4: overlapping with kernel 3, stride 2), with cuda-convnet's geometry."""
    c = _Call("maxpool_forward", device, x)
    return c.run(_C.ops.maxpool_forward, c.t(x, "x"), *_geometry(c, kernel, stride, start, outputs))


def maxpool_backward(x, y, dy, kernel=3, stride=2, *, start=0, outputs=None, device=None):
    """Each output gradient goes to its window's maximum; ties go to the first maximum in scan order."""
    c = _Call("maxpool_backward", device, x)
    return c.run(_C.ops.maxpool_backward, c.t(x, "x"), c.t(y, "y"), c.t(dy, "dy"),
                 *_geometry(c, kernel, stride, start, outputs))


def avgpool_forward(x, kernel=3, stride=2, *, start=0, outputs=None, device=None):
    """Average pooling (cuda-convnet's pool=avg): the mean of each window, clipped to the input, divided by the
    number of input elements it holds."""
    c = _Call("avgpool_forward", device, x)
    return c.run(_C.ops.avgpool_forward, c.t(x, "x"), *_geometry(c, kernel, stride, start, outputs))


def avgpool_backward(dy, h, w, kernel=3, stride=2, *, start=0, outputs=None, device=None):
    """dx (n, c, h, w): each window's dy divided by its clipped size, added over the windows holding an element."""
    c = _Call("avgpool_backward", device, dy)
    return c.run(_C.ops.avgpool_backward, c.t(dy, "dy"), *c.ints(h=h, w=w),
                 *_geometry(c, kernel, stride, start, outputs))


# ---- global_avgpool -----------------------------------------------------------------------------------------------
def global_avgpool_forward(x, *, device=None):
    """Global average pooling (Lin et al. 2014, Network in Network): x (n, c, h, w) -> (n, c), the mean over h, w."""
    c = _Call("global_avgpool_forward", device, x)
    return c.run(_C.ops.global_avgpool_forward, c.t(x, "x"))


def global_avgpool_backward(dy, h, w, *, device=None):
    """dy (n, c) -> dx (n, c, h, w) = dy / (h * w) at every position."""
    c = _Call("global_avgpool_backward", device, dy)
    return c.run(_C.ops.global_avgpool_backward, c.t(dy, "dy"), *c.ints(h=h, w=w))


# ---- dropout ------------------------------------------------------------------------------------------------------
def _dropout_args(c, p, seed, offset, training, first):
    return (*c.floats(p=p), int_arg(c.op, "seed", seed, 0, UINT64_MAX), int_arg(c.op, "offset", offset, 0, UINT64_MAX),
            bool_arg(c.op, "training", training), int_arg(c.op, "first", first, 0, UINT64_MAX))


def dropout_forward(x, p=0.5, seed=0, offset=0, training=True, *, first=0, device=None):
    """Inverted dropout (paper Section 4.2) with a Philox mask keyed by (seed, offset); identity when not training.
    ``first``: x is the slice starting at element ``first`` of a larger tensor, and gets that slice of its mask."""
    c = _Call("dropout_forward", device, x)
    return c.run(_C.ops.dropout_forward, c.t(x, "x"), *_dropout_args(c, p, seed, offset, training, first))


def dropout_backward(dy, p=0.5, seed=0, offset=0, training=True, *, first=0, device=None):
    c = _Call("dropout_backward", device, dy)
    return c.run(_C.ops.dropout_backward, c.t(dy, "dy"), *_dropout_args(c, p, seed, offset, training, first))


# ---- softmax cross-entropy ----------------------------------------------------------------------------------------
def softmax_xent_forward(logits, labels, *, device=None):
    """Mean softmax cross-entropy over the batch. Returns (loss: float, probs)."""
    c = _Call("softmax_xent_forward", device, logits)
    return c.run(_C.ops.softmax_xent_forward, c.t(logits, "logits"), _labels(c, labels))


def softmax_xent_backward(probs, labels, *, device=None):
    """dL/dlogits = (probs - onehot(labels)) / n."""
    c = _Call("softmax_xent_backward", device, probs)
    return c.run(_C.ops.softmax_xent_backward, c.t(probs, "probs"), _labels(c, labels))


def topk_correct(scores, labels, *, device=None):
    """(top-1 correct count, top-5 correct count). A row is top-k correct when its label's score is a number and
    fewer than k other classes score at least as high: ties and NaN count against the label, so constant or NaN
    outputs are never correct."""
    c = _Call("topk_correct", device, scores)
    return tuple(c.run(_C.ops.topk_correct, c.t(scores, "scores"), _labels(c, labels)))


# ---- in-place state ----------------------------------------------------------------------------------------------
def _require_writeable(c: _Call, **arrays: Any) -> None:
    """NumPy arrays that an op updates in place must be writeable (Tensors are updated on their device)."""
    if any(not a.flags.writeable for a in arrays.values() if isinstance(a, np.ndarray)):
        *others, last = arrays
        raise ValueError(f"{c.op}: {', '.join(others)} and {last} must be writeable arrays (updated in place)")


def _write_back(pairs: list[tuple[Any, Tensor]]) -> None:
    """Copies the updated Tensors back into the caller's NumPy arrays (a Tensor argument was updated in place)."""
    for array, tensor in pairs:
        if isinstance(array, np.ndarray):
            array[...] = tensor.numpy()


# ---- sgd ----------------------------------------------------------------------------------------------------------
def sgd_update(weight, momentum_buffer, grad, lr, momentum=0.9, weight_decay=5e-4, *, device=None):
    """The paper's update (Section 5), in place: v = mu*v - wd*lr*w - lr*grad; w += v.

    With NumPy arrays the update runs on ``device`` and the results are written back into ``weight`` and
    ``momentum_buffer``; with Tensors it happens in place on the device.
    """
    c = _Call("sgd_update", device, weight)
    w, v, g = c.t(weight, "weight"), c.t(momentum_buffer, "momentum_buffer"), c.t(grad, "grad")
    _require_writeable(c, weight=weight, momentum_buffer=momentum_buffer)
    c.run(_C.ops.sgd_update, w, v, g, *c.floats(lr=lr, momentum=momentum, weight_decay=weight_decay))
    _write_back([(weight, w), (momentum_buffer, v)])


# ---- adam ---------------------------------------------------------------------------------------------------------
def adam_update(weight, m, v, grad, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False,
                step=1, *, device=None):
    """Adam (Kingma & Ba 2015, Algorithm 1), in place on weight and the moment estimates m and v, at the 1-based
    ``step`` (bias correction 1 - beta^step). ``decoupled=False``: the L2 penalty enters the gradient
    (g = grad + weight_decay * weight); ``decoupled=True``: AdamW (Loshchilov & Hutter 2019), the weight shrinks by
    lr * weight_decay * weight apart from the adaptive step. NumPy arrays are written back like ``sgd_update``.
    """
    c = _Call("adam_update", device, weight)
    w, tm, tv, g = c.t(weight, "weight"), c.t(m, "m"), c.t(v, "v"), c.t(grad, "grad")
    _require_writeable(c, weight=weight, m=m, v=v)
    c.run(_C.ops.adam_update, w, tm, tv, g,
          *c.floats(lr=lr, beta1=beta1, beta2=beta2, eps=eps, weight_decay=weight_decay),
          bool_arg(c.op, "decoupled", decoupled), int_arg(c.op, "step", step, -(2**63), 2**63 - 1))
    _write_back([(weight, w), (m, tm), (v, tv)])


# ---- prepare_batch ------------------------------------------------------------------------------------------------
def prepare_batch(images, mean, crop_y, crop_x, flip, rgb_shift, crop, scale=1.0, *, device=None):
    """uint8 NHWC images -> float32 NCHW crops: (pixel - mean + rgb_shift) * scale, cropped at (crop_y, crop_x)
    and mirrored where flip is non-zero. mean is (3, h, w) or (3,); rgb_shift (n, 3) is the paper's PCA colour
    noise (Section 4.1); scale is one number or one per channel (3,)."""
    c = _Call("prepare_batch", device, images)
    return c.run(_C.ops.prepare_batch, c.t(images, "images", "uint8"), c.t(mean, "mean"),
                 c.t(crop_y, "crop_y", "int32"), c.t(crop_x, "crop_x", "int32"), c.t(flip, "flip", "int32"),
                 c.t(rgb_shift, "rgb_shift"), *c.ints(crop=crop), channel_scale_arg(c.op, "scale", scale))
