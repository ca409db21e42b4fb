"""Property-based fuzzing of every op (issue 9): valid calls on random shapes and values must match the NumPy
reference; a call with one argument replaced by a bad or edge-case value must either raise a TypeError/ValueError
naming the op and an argument, or return the correct result. Never a crash, a hang, or NaN/inf where the exact
answer is finite; topk_correct never counts a NaN or a tie as correct. Cases run in a child process
(fuzz_harness.py); ALEXNET_FUZZ=long runs many more examples."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from fuzz_harness import Child, assert_clean_error, assert_matches_reference, view_of
from hypothesis import given
from hypothesis import strategies as st

from alexnet_cuda import ops
from alexnet_cuda.reference import activation as ref_activation
from alexnet_cuda.reference import adam as ref_adam
from alexnet_cuda.reference import avgpool as ref_avgpool
from alexnet_cuda.reference import batchnorm as ref_batchnorm
from alexnet_cuda.reference import conv2d as ref_conv2d
from alexnet_cuda.reference import dropout as ref_dropout
from alexnet_cuda.reference import global_avgpool as ref_global_avgpool
from alexnet_cuda.reference import linear as ref_linear
from alexnet_cuda.reference import local as ref_local
from alexnet_cuda.reference import lrn as ref_lrn
from alexnet_cuda.reference import maxpool as ref_maxpool
from alexnet_cuda.reference import prepare_batch as ref_prepare_batch
from alexnet_cuda.reference import sgd as ref_sgd
from alexnet_cuda.reference import softmax_xent as ref_softmax_xent
from alexnet_cuda.reference import spatial_lrn as ref_spatial_lrn

F32 = np.float32


@pytest.fixture(scope="module")
def child():
    c = Child()
    yield c
    c.close()


# ---- valid arguments for each op ----------------------------------------------------------------------------------
def arrays(draw, shape, dtype=F32, lo=-4.0, hi=4.0):
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if np.dtype(dtype) == np.uint8:
        return rng.integers(0, 256, size=shape, dtype=np.uint8)
    a = rng.uniform(lo, hi, size=shape).astype(dtype)
    if draw(st.booleans()):  # ties and exact zeros, which ReLU, maxpool and topk treat specially
        a = np.asarray(np.round(a), dtype)  # (np.round of a 0-d array is a scalar)
    return a


def activation(draw):
    return draw(st.sampled_from([None, "none", "relu", "tanh"]))


@st.composite
def conv_geometry(draw):
    g = draw(st.integers(1, 2))
    # 16 channels per group and square 3x3 / 5x5 kernels reach the CPU's Winograd paths (conv2d_winograd.cpp: stride
    # 1, and strided forwards folded to stride 1), which must agree with the reference like the im2col ones.
    per_group = st.sampled_from([1, 2, 16])
    n, cin, cout = draw(st.integers(1, 2)), g * draw(per_group), g * draw(per_group)
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    pad, stride = draw(st.integers(0, 2)), draw(st.integers(1, 3))
    kh, kw = draw(st.integers(1, min(5, h + 2 * pad))), draw(st.integers(1, min(5, w + 2 * pad)))
    if draw(st.booleans()) and kh <= w + 2 * pad:
        kw = kh
    ho, wo = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    return dict(n=n, cin=cin, cout=cout, g=g, h=h, w=w, pad=pad, stride=stride, kh=kh, kw=kw, ho=ho, wo=wo)


@st.composite
def conv2d_forward(draw):
    s = draw(conv_geometry())
    bias = arrays(draw, (s["cout"],)) if draw(st.booleans()) else None
    return dict(x=arrays(draw, (s["n"], s["cin"], s["h"], s["w"])), weight=arrays(draw, (s["cout"], s["cin"] // s["g"],
                s["kh"], s["kw"])), bias=bias, stride=s["stride"], padding=s["pad"], groups=s["g"],
                activation=activation(draw))


@st.composite
def conv2d_backward_input(draw):
    s = draw(conv_geometry())
    return dict(dy=arrays(draw, (s["n"], s["cout"], s["ho"], s["wo"])),
                weight=arrays(draw, (s["cout"], s["cin"] // s["g"], s["kh"], s["kw"])), input_size=(s["h"], s["w"]),
                stride=s["stride"], padding=s["pad"], groups=s["g"])


@st.composite
def conv2d_backward_weight(draw):
    s = draw(conv_geometry())
    return dict(x=arrays(draw, (s["n"], s["cin"], s["h"], s["w"])),
                dy=arrays(draw, (s["n"], s["cout"], s["ho"], s["wo"])), kernel_size=(s["kh"], s["kw"]),
                stride=s["stride"], padding=s["pad"], groups=s["g"])


@st.composite
def local_geometry(draw):
    """conv_geometry with local's weight (h_out, w_out, c_in/groups, kh, kw, c_out) and cuda-convnet's ceil output size
    (windows may run past the padding)."""
    s = draw(conv_geometry())
    while any((1 + -(-(size + 2 * s["pad"] - k) // s["stride"]) - 1) * s["stride"] >= size + 2 * s["pad"]
              for size, k in ((s["h"], s["kh"]), (s["w"], s["kw"]))):
        s["stride"] -= 1  # the last window would start past the padded input, which local refuses
    s["ho"] = ref_local.output_size(s["h"], s["kh"], s["stride"], s["pad"])
    s["wo"] = ref_local.output_size(s["w"], s["kw"], s["stride"], s["pad"])
    s["x"] = arrays(draw, (s["n"], s["cin"], s["h"], s["w"]))
    s["weight"] = arrays(draw, (s["ho"], s["wo"], s["cin"] // s["g"], s["kh"], s["kw"], s["cout"]))
    return s


@st.composite
def local_forward(draw):
    s = draw(local_geometry())
    bias = arrays(draw, (s["cout"], s["ho"], s["wo"])) if draw(st.booleans()) else None
    return dict(x=s["x"], weight=s["weight"], bias=bias, stride=s["stride"], padding=s["pad"], groups=s["g"],
                activation=activation(draw))


@st.composite
def local_backward(draw):
    s = draw(local_geometry())
    return dict(x=s["x"], weight=s["weight"], dy=arrays(draw, (s["n"], s["cout"], s["ho"], s["wo"])),
                stride=s["stride"], padding=s["pad"], groups=s["g"])


def any_shape(draw, min_dims=0):
    return tuple(draw(st.lists(st.integers(0, 4), min_size=min_dims, max_size=4)))


@st.composite
def bias_backward(draw):
    return dict(dy=arrays(draw, any_shape(draw, 2)))


@st.composite
def linear_forward(draw):
    n, i, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    bias = arrays(draw, (o,)) if draw(st.booleans()) else None
    return dict(x=arrays(draw, (n, i)), weight=arrays(draw, (o, i)), bias=bias, activation=activation(draw))


@st.composite
def linear_backward_input(draw):
    n, i, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return dict(dy=arrays(draw, (n, o)), weight=arrays(draw, (o, i)))


@st.composite
def linear_backward_weight(draw):
    n, i, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    return dict(x=arrays(draw, (n, i)), dy=arrays(draw, (n, o)))


@st.composite
def unary(draw):
    return dict(x=arrays(draw, any_shape(draw)))


@st.composite
def activation_forward(draw):
    return dict(x=arrays(draw, any_shape(draw)), activation=activation(draw))


@st.composite
def backward_pair(draw):
    shape = any_shape(draw)
    return dict(y=arrays(draw, shape), dy=arrays(draw, shape))


@st.composite
def activation_backward(draw):
    return dict(**draw(backward_pair()), activation=activation(draw))


def lrn_params(draw):
    return dict(size=draw(st.integers(1, 7)), alpha=draw(st.floats(0, 1e-2)), beta=draw(st.floats(0, 1)),
                k=draw(st.floats(0.5, 3)))


@st.composite
def lrn_forward(draw):
    return dict(x=arrays(draw, (draw(st.integers(1, 2)), draw(st.integers(1, 6)), 2, 2)), **lrn_params(draw))


@st.composite
def lrn_backward(draw):
    x, p = arrays(draw, (draw(st.integers(1, 2)), draw(st.integers(1, 6)), 2, 2)), lrn_params(draw)
    y, scale = (a.astype(F32) for a in ref_lrn.lrn_forward(x, **p))
    return dict(x=x, y=y, scale=scale, dy=arrays(draw, x.shape), **p)


def batchnorm_inputs(draw):
    """x (n, c) or (n, c, h, w) with at least 2 values per channel, and the (c) parameter vectors."""
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 4))
    spatial = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if draw(st.booleans()) else ()
    if n * int(np.prod(spatial)) < 2:
        n = 2
    return dict(x=arrays(draw, (n, c) + spatial), gamma=arrays(draw, (c,)), beta=arrays(draw, (c,)))


def batchnorm_running(draw, c):
    return dict(running_mean=arrays(draw, (c,)), running_var=arrays(draw, (c,), lo=0.1, hi=4.0))


@st.composite
def batchnorm_forward_train(draw):
    d = batchnorm_inputs(draw)
    return dict(**d, **batchnorm_running(draw, d["x"].shape[1]), momentum=draw(st.floats(0, 1)),
                eps=draw(st.floats(1e-5, 1e-1)))


@st.composite
def batchnorm_forward_eval(draw):
    d = batchnorm_inputs(draw)
    return dict(**d, **batchnorm_running(draw, d["x"].shape[1]), eps=draw(st.floats(1e-5, 1e-1)))


@st.composite
def batchnorm_backward(draw):
    d = batchnorm_inputs(draw)
    c = d["x"].shape[1]
    _, mean, invstd, _, _ = ref_batchnorm.batchnorm_forward_train(d["x"], d["gamma"], d["beta"], np.zeros(c),
                                                                   np.ones(c), eps=draw(st.floats(1e-5, 1e-1)))
    return dict(x=d["x"], dy=arrays(draw, d["x"].shape), gamma=d["gamma"], saved_mean=mean.astype(F32),
                saved_invstd=invstd.astype(F32))


@st.composite
def global_avgpool_forward(draw):
    return dict(x=arrays(draw, tuple(draw(st.integers(1, 4)) for _ in range(4))))


@st.composite
def global_avgpool_backward(draw):
    return dict(dy=arrays(draw, (draw(st.integers(1, 3)), draw(st.integers(1, 4)))), h=draw(st.integers(1, 5)),
                w=draw(st.integers(1, 5)))


def pool_args(draw):
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    return (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), draw(st.integers(1, min(h, w))), \
        draw(st.integers(1, 3))


def pool_geometry(draw):
    """cuda-convnet's geometry: (shape, dict(kernel, stride, start, outputs)) with windows that may hang over an
    edge -- a start in (-kernel, 0] and up to as many outputs as still start inside the input -- or, half the time,
    the defaults (start 0, whole windows)."""
    shape, kernel, stride = pool_args(draw)
    if draw(st.booleans()):
        return shape, dict(kernel=kernel, stride=stride)
    start = draw(st.integers(1 - kernel, 0))
    most = [(size - 1 - start) // stride + 1 for size in shape[2:]]
    outputs = (draw(st.integers(1, most[0])), draw(st.integers(1, most[1])))
    return shape, dict(kernel=kernel, stride=stride, start=start, outputs=outputs)


@st.composite
def maxpool_forward(draw):
    shape, g = pool_geometry(draw)
    return dict(x=arrays(draw, shape), **g)


@st.composite
def maxpool_backward(draw):
    shape, g = pool_geometry(draw)
    x = arrays(draw, shape)
    y = ref_maxpool.maxpool_forward(x, **g).astype(F32)
    return dict(x=x, y=y, dy=arrays(draw, y.shape), **g)


avgpool_forward = maxpool_forward  # the same arguments


@st.composite
def avgpool_backward(draw):
    shape, g = pool_geometry(draw)
    h_out, w_out = ref_maxpool.output_size(shape[2], shape[3], g["kernel"], g["stride"], g.get("start", 0),
                                           g.get("outputs"))
    return dict(dy=arrays(draw, shape[:2] + (h_out, w_out)), h=shape[2], w=shape[3], **g)


@st.composite
def convnet_pool_outputs(draw):
    size = draw(st.integers(1, 64))
    kernel = draw(st.integers(1, size))
    return dict(size=size, kernel=kernel, stride=draw(st.integers(1, kernel)), start=draw(st.integers(1 - kernel, 0)))


@st.composite
def spatial_lrn_forward(draw):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return dict(x=arrays(draw, shape), **lrn_params(draw))


@st.composite
def spatial_lrn_backward(draw):
    x = draw(spatial_lrn_forward())
    p = {k: v for k, v in x.items() if k != "x"}
    y, denom = (a.astype(F32) for a in ref_spatial_lrn.spatial_lrn_forward(x["x"], **p))
    return dict(x=x["x"], y=y, denom=denom, dy=arrays(draw, x["x"].shape), **p)


def dropout_params(draw):
    return dict(p=draw(st.floats(0, 0.95)), seed=draw(st.integers(0, 2**64 - 1)),
                offset=draw(st.integers(0, 2**64 - 1)), training=draw(st.booleans()))


@st.composite
def dropout_forward(draw):
    return dict(x=arrays(draw, any_shape(draw)), **dropout_params(draw))


@st.composite
def dropout_backward(draw):
    return dict(dy=arrays(draw, any_shape(draw)), **dropout_params(draw))


def labelled(draw, name):
    n, classes = draw(st.integers(1, 4)), draw(st.integers(1, 8))
    labels = np.array(draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)), np.int32)
    return {name: arrays(draw, (n, classes), lo=-30, hi=30), "labels": labels}


@st.composite
def softmax_xent_forward(draw):
    return labelled(draw, "logits")


@st.composite
def softmax_xent_backward(draw):
    d = labelled(draw, "probs")
    d["probs"] = ref_softmax_xent.softmax_xent_forward(d["probs"], d["labels"])[1].astype(F32)
    return d


@st.composite
def topk_correct(draw):
    return labelled(draw, "scores")


@st.composite
def sgd_update(draw):
    shape = any_shape(draw)
    return dict(weight=arrays(draw, shape), momentum_buffer=arrays(draw, shape), grad=arrays(draw, shape),
                lr=draw(st.floats(0, 1)), momentum=draw(st.floats(0, 0.99)), weight_decay=draw(st.floats(0, 1e-2)))


@st.composite
def adam_update(draw):
    shape = any_shape(draw)
    return dict(weight=arrays(draw, shape), m=arrays(draw, shape), v=arrays(draw, shape, lo=0.0),
                grad=arrays(draw, shape), lr=draw(st.floats(0, 1)), beta1=draw(st.floats(0, 0.99)), beta2=draw(st.floats(0, 0.999)),
                eps=draw(st.floats(1e-8, 1e-2)), weight_decay=draw(st.floats(0, 1e-1)), decoupled=draw(st.booleans()),
                step=draw(st.integers(1, 10**6)))


@st.composite
def prepare_batch(draw):
    n, h, w = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(1, 6))
    crop = draw(st.integers(1, min(h, w)))
    offsets = [np.array(draw(st.lists(st.integers(0, side - crop), min_size=n, max_size=n)), np.int32)
               for side in (h, w)]
    mean = arrays(draw, (3, h, w) if draw(st.booleans()) else (3,), lo=0, hi=255)
    return dict(images=arrays(draw, (n, h, w, 3), np.uint8), mean=mean, crop_y=offsets[0], crop_x=offsets[1],
                flip=np.array(draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)), np.int32),
                rgb_shift=arrays(draw, (n, 3)), crop=crop, scale=draw(st.floats(-2, 2)))


def sgd_returning(**kw):
    """sgd_update updates in place: the child returns the updated weight and momentum buffer."""
    ops.sgd_update(**kw)
    return kw["weight"], kw["momentum_buffer"]


def adam_returning(**kw):
    """adam_update updates in place: the child returns the updated weight and moment estimates."""
    ops.adam_update(**kw)
    return kw["weight"], kw["m"], kw["v"]


def batchnorm_train_returning(**kw):
    """batchnorm_forward_train updates the running statistics in place: the child returns them after its outputs."""
    return (*ops.batchnorm_forward_train(**kw), kw["running_mean"], kw["running_var"])


def reference_sgd(**kw):
    return ref_sgd.sgd_update(**kw)


def reference_lrn_backward(x, y, scale, dy, **p):
    return ref_lrn.lrn_backward(x, y, scale, dy, **p)


def reference_maxpool_backward(x, y, dy, kernel, stride, start=0, outputs=None):
    return ref_maxpool.maxpool_backward(x, dy, kernel, stride, start, outputs)


def reference_topk(scores, labels):
    return ref_softmax_xent.topk_correct(scores, labels)


# The ops that update arguments in place run in the child through a wrapper returning them; this is the op itself.
IN_PLACE = {"sgd_update": ops.sgd_update, "adam_update": ops.adam_update,
            "batchnorm_forward_train": ops.batchnorm_forward_train}

# op name -> (valid-argument strategy, the function run in the child, the float64 reference)
OPS = {
    "conv2d_forward": (conv2d_forward, ops.conv2d_forward, ref_conv2d.conv2d_forward),
    "conv2d_backward_input": (conv2d_backward_input, ops.conv2d_backward_input, ref_conv2d.conv2d_backward_input),
    "conv2d_backward_weight": (conv2d_backward_weight, ops.conv2d_backward_weight, ref_conv2d.conv2d_backward_weight),
    "bias_backward": (bias_backward, ops.bias_backward, ref_conv2d.bias_backward),
    "local_forward": (local_forward, ops.local_forward, ref_local.local_forward),
    "local_backward": (local_backward, ops.local_backward, ref_local.local_backward),
    "linear_forward": (linear_forward, ops.linear_forward, ref_linear.linear_forward),
    "linear_backward_input": (linear_backward_input, ops.linear_backward_input, ref_linear.linear_backward_input),
    "linear_backward_weight": (linear_backward_weight, ops.linear_backward_weight, ref_linear.linear_backward_weight),
    "activation_forward": (activation_forward, ops.activation_forward, ref_activation.activation_forward),
    "activation_backward": (activation_backward, ops.activation_backward, ref_activation.activation_backward),
    "relu_forward": (unary, ops.relu_forward, ref_activation.relu_forward),
    "relu_backward": (backward_pair, ops.relu_backward, ref_activation.relu_backward),
    "tanh_forward": (unary, ops.tanh_forward, ref_activation.tanh_forward),
    "tanh_backward": (backward_pair, ops.tanh_backward, ref_activation.tanh_backward),
    "lrn_forward": (lrn_forward, ops.lrn_forward, ref_lrn.lrn_forward),
    "lrn_backward": (lrn_backward, ops.lrn_backward, reference_lrn_backward),
    "maxpool_forward": (maxpool_forward, ops.maxpool_forward, ref_maxpool.maxpool_forward),
    "maxpool_backward": (maxpool_backward, ops.maxpool_backward, reference_maxpool_backward),
    "avgpool_forward": (avgpool_forward, ops.avgpool_forward, ref_avgpool.avgpool_forward),
    "avgpool_backward": (avgpool_backward, ops.avgpool_backward, ref_avgpool.avgpool_backward),
    "convnet_pool_outputs": (convnet_pool_outputs, ops.convnet_pool_outputs, ref_maxpool.convnet_pool_outputs),
    "spatial_lrn_forward": (spatial_lrn_forward, ops.spatial_lrn_forward, ref_spatial_lrn.spatial_lrn_forward),
    "spatial_lrn_backward": (spatial_lrn_backward, ops.spatial_lrn_backward, ref_spatial_lrn.spatial_lrn_backward),
    "dropout_forward": (dropout_forward, ops.dropout_forward, ref_dropout.dropout_forward),
    "dropout_backward": (dropout_backward, ops.dropout_backward, ref_dropout.dropout_backward),
    "softmax_xent_forward": (softmax_xent_forward, ops.softmax_xent_forward, ref_softmax_xent.softmax_xent_forward),
    "softmax_xent_backward": (softmax_xent_backward, ops.softmax_xent_backward, ref_softmax_xent.softmax_xent_backward),
    "topk_correct": (topk_correct, ops.topk_correct, reference_topk),
    "sgd_update": (sgd_update, sgd_returning, reference_sgd),
    "adam_update": (adam_update, adam_returning, ref_adam.adam_update),
    "batchnorm_forward_train": (batchnorm_forward_train, batchnorm_train_returning,
                                ref_batchnorm.batchnorm_forward_train),
    "batchnorm_forward_eval": (batchnorm_forward_eval, ops.batchnorm_forward_eval,
                               ref_batchnorm.batchnorm_forward_eval),
    "batchnorm_backward": (batchnorm_backward, ops.batchnorm_backward, ref_batchnorm.batchnorm_backward),
    "global_avgpool_forward": (global_avgpool_forward, ops.global_avgpool_forward,
                               ref_global_avgpool.global_avgpool_forward),
    "global_avgpool_backward": (global_avgpool_backward, ops.global_avgpool_backward,
                                ref_global_avgpool.global_avgpool_backward),
    "prepare_batch": (prepare_batch, ops.prepare_batch, ref_prepare_batch.prepare_batch),
}


def test_every_op_is_fuzzed():
    public = {n for n, f in vars(ops).items() if inspect.isfunction(f) and not n.startswith("_")
              and f.__module__ == ops.__name__ and n != "to_tensor"}
    assert public == set(OPS), public ^ set(OPS)


def with_tensors(fn, **kwargs):
    """Runs in the child: the op on alexnet_cuda.Tensor arguments (the no-copy path) wherever an array can be one."""
    import alexnet_cuda

    for name, v in kwargs.items():
        if isinstance(v, np.ndarray) and v.dtype in ops.DTYPE_NAMES and v.flags.c_contiguous:
            kwargs[name] = alexnet_cuda.tensor(v)
    return fn(**kwargs)


def _run(child, op, kwargs, tensors=False):
    _, fn, _ = OPS[op]
    return child.call(with_tensors, fn, **kwargs) if tensors else child.call(fn, **kwargs)


@pytest.mark.parametrize("op", sorted(OPS))
@given(data=st.data())
def test_valid_calls_match_the_reference(child, op, data):
    kwargs = data.draw(OPS[op][0](), label="arguments")
    outcome = _run(child, op, kwargs)
    assert outcome.error is None, f"{op}: raised {outcome.error}: {outcome.message}"
    assert_matches_reference(outcome.value, OPS[op][2](**as_received(kwargs)), op)


# ---- one bad argument ---------------------------------------------------------------------------------------------
BAD_INTS = [-2**63, -2**31 - 1, -2**31, -1, 0, 2**31 - 1, 2**31, 2**63, 2**64, 10**30, 1.5, float("nan"), "2", None,
            True, np.int64(2), np.uint64(2**63), (1,), 2**20]
BAD_FLOATS = [float("nan"), float("inf"), -float("inf"), 1e39, -1e39, 3.4e38, 1e-45, -1.0, 0.0, 1.0, 10**400, "1",
              None, True, np.float64(1e39), np.float32(0.5), 1j, [0.1]]
BAD_BOOLS = ["yes", 1, 0, None, np.bool_(True), 2.5]
BAD_NAMES = ["RELU", "sigmoid", "", 1, None, ["relu"], b"relu"]


def bad_arrays(a: np.ndarray) -> st.SearchStrategy:
    """Replacements for an array argument: wrong dtype, shape, layout or type, non-finite values, byte order."""
    base = np.asarray(a)
    floating = base.dtype.kind == "f"
    choices = [base.astype(np.float64), base.astype(np.int64), base.astype(np.uint8), base.astype(bool),
               base.astype(base.dtype.newbyteorder(">")), np.full_like(base, np.nan) if floating else base,
               np.full_like(base, np.inf) if floating else base, base.reshape(-1), base[None],
               np.zeros((0,) + base.shape[1:], base.dtype), np.zeros((2,) * 3, base.dtype),
               np.zeros((7, 1, 9, 2), base.dtype), base.tolist(), None, 3.0, "x"]
    if base.ndim >= 1 and base.shape[-1] > 1:
        choices.append(view_of(base, (Ellipsis, slice(None, None, 2))))  # a strided view
    return st.sampled_from(choices)


def mutations(op: str, kwargs: dict) -> st.SearchStrategy:
    """(argument name, bad value) pairs for one argument of ``op``."""
    params = inspect.signature(IN_PLACE.get(op, OPS[op][1])).parameters
    options = []
    for name in params:
        value = kwargs.get(name, params[name].default)
        if isinstance(value, np.ndarray):
            pool = bad_arrays(value)
        elif name in ("activation",):
            pool = st.sampled_from(BAD_NAMES)
        elif name in ("training", "decoupled"):
            pool = st.sampled_from(BAD_BOOLS)
        elif name == "device":
            pool = st.sampled_from(["cuda:99", "tpu", "", 0, "cpu:1", "CPU"])
        elif name in ("input_size", "kernel_size"):
            pool = st.sampled_from([5, (1,), (1, 2, 3), (2**31, 1), (-1, 2), ("a", 1), None, [2, 2]])
        elif name in ("h", "w"):  # output sizes: no huge valid value, whose tensor would only test the allocator
            pool = st.sampled_from([0, -1, -2**31, 2**31, 2**63, 1.5, float("nan"), "2", None, True, np.int64(2), (1,)])
        elif isinstance(value, float) or name in ("p", "lr", "momentum", "weight_decay", "alpha", "beta", "k", "scale"):
            pool = st.sampled_from(BAD_FLOATS)
        else:
            pool = st.sampled_from(BAD_INTS)
        options.append(st.tuples(st.just(name), pool))
    return st.one_of(options)


# Arguments whose consistency with the others the op trusts rather than recomputes: maxpool_backward routes each
# gradient to the input equal to the forward's output y; with a y that is not maxpool_forward(x, kernel, stride) the
# gradient goes nowhere. Such a call must still not crash or produce NaN.
TRUSTED = {("maxpool_backward", name) for name in ("x", "y", "kernel", "stride", "start", "outputs")}


def as_received(kwargs: dict) -> dict:
    """The arguments as the op receives them (floats rounded to float32), for the reference."""
    return {k: float(np.float32(v)) if isinstance(v, (float, np.floating)) else v for k, v in kwargs.items()
            if k != "device"}


def _finite_float_inputs(kwargs: dict) -> bool:
    return all(np.isfinite(np.asarray(v, np.float64)).all() for v in kwargs.values()
               if isinstance(v, np.ndarray) and v.dtype.kind in "fiub")


@pytest.mark.parametrize("op", sorted(OPS))
@given(data=st.data())
def test_one_bad_argument(child, op, data):
    kwargs = data.draw(OPS[op][0](), label="valid arguments")
    name, bad = data.draw(mutations(op, kwargs), label="bad argument")
    kwargs[name] = bad
    outcome = _run(child, op, kwargs, tensors=data.draw(st.booleans(), label="as Tensors"))
    call = f"{op}({name}={bad!r:.60})"
    if outcome.error is not None:
        names = [n for n in inspect.signature(IN_PLACE.get(op, OPS[op][1])).parameters]
        assert_clean_error(outcome, op, names, call)
        return
    # Accepted: then it must be right (a NumPy integer for an int, a big-endian array, an equivalent value...).
    try:
        expected = OPS[op][2](**as_received(kwargs))
    except Exception:  # noqa: BLE001 - the reference refuses it: the op should have too
        raise AssertionError(f"{call}: accepted a value the reference refuses") from None
    if (op, name) in TRUSTED:
        assert all(np.isfinite(v).all() for v in np.atleast_1d(outcome.value)), f"{call}: NaN/inf"
    elif _finite_float_inputs(kwargs):
        assert_matches_reference(outcome.value, expected, call)


# ---- scoring ------------------------------------------------------------------------------------------------------
SCORES = st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 1.0, -1.0, 3.4e38])


@given(data=st.data())
def test_topk_never_counts_nan_or_ties(child, data):
    n, classes = data.draw(st.integers(1, 6)), data.draw(st.integers(1, 12))
    scores = np.array(data.draw(st.lists(SCORES, min_size=n * classes, max_size=n * classes)), F32).reshape(n, classes)
    labels = np.array(data.draw(st.lists(st.integers(0, classes - 1), min_size=n, max_size=n)), np.int32)
    outcome = child.call(ops.topk_correct, scores, labels)
    assert outcome.error is None, outcome.message
    top1, top5 = outcome.value
    label_scores = scores[np.arange(n), labels]
    # A row counts at top-1 only when its label's score is a number strictly above every other class's.
    strict = [not np.isnan(s) and all(scores[i, j] < s for j in range(classes) if j != labels[i])
              for i, s in enumerate(label_scores)]
    assert top1 == sum(strict)
    assert top5 <= n - int(np.isnan(label_scores).sum())
    assert (top1, top5) == ref_softmax_xent.topk_correct(scores, labels)


# ---- the harness itself -------------------------------------------------------------------------------------------
def _segfault_self():
    """Runs in the child: dies the way a bad native read does."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


def test_harness_reports_a_crash_and_a_hang_and_carries_on():
    import time

    c = Child(timeout=2.0)
    try:
        with pytest.raises(AssertionError, match=r"crash: the child process died \(signal SIGSEGV\) running "
                                                 r"_segfault_self"):
            c.call(_segfault_self)
        with pytest.raises(AssertionError, match=r"hang: sleep\(\*\(30,\), \*\*\{\}\) did not return within 2 s"):
            c.call(time.sleep, 30)
        assert c.call(ops.relu_forward, np.array([-1.0, 2.0], F32)).value.tolist() == [0.0, 2.0]
    finally:
        c.close()
