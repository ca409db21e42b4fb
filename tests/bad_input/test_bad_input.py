"""Regression tests for issue 9's defects in the ops, Tensor and AlexNet: integer overflow at the boundary, float
arguments beyond float32, byte order, messages naming the op and argument, NaN/constant outputs scored as correct.
The command lines and the training driver have theirs in test_cli_errors.py and test_train.py; the property-based
fuzz suite is test_fuzz_*.py."""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_cuda
from alexnet_cuda import AlexNet, Tensor, ops

TINY = dict(arch="alexnet-small", input_size=32, widths={"conv": [4, 4, 4, 4, 4], "fc": [8, 8]})
X = np.zeros((1, 1, 4, 4), np.float32)
W = np.zeros((1, 1, 3, 3), np.float32)


# ---- integer overflow: every size is checked in 64 bits before anything is allocated or launched -----------------
def test_tensor_whose_byte_count_wraps_is_refused():
    # (2^31)^2 float32 is 2^64 bytes: the unchecked product wrapped to a 0-byte buffer that ops then overran.
    with pytest.raises(ValueError, match=r"tensor: shape \(2147483648, 2147483648\) of float32 is too large"):
        Tensor.zeros([2**31, 2**31])
    with pytest.raises(ValueError, match="Tensor.zeros: dimension 18446744073709551616 does not fit in 64 bits"):
        Tensor.zeros([2**64])
    with pytest.raises(TypeError, match="Tensor.zeros: expected the shape as ints, got 1.5"):
        Tensor.zeros([1.5])
    empty = Tensor.zeros([0, 2**40])  # nothing to allocate
    assert empty.shape == (0, 2**40) and empty.numpy().shape == (0, 2**40)
    with pytest.raises(ValueError, match="is too large"):  # NumPy's rule: no array could hold its shape
        Tensor.zeros([0, 2**62])


@pytest.mark.parametrize("shape, match", [
    ([-1, -6], r"Tensor.view: negative dimension in shape \(-1, -6\)"),
    ([2**62, 2**62], "Tensor.view: shape .* is too large"),
    ([2**32, 2**32, 0], "Tensor.view: shape .* is too large"),  # empty, but no NumPy array could have the shape
    ([3, 3], r"Tensor.view: cannot view \(2, 3\) as \(3, 3\)"),
])
def test_view_rejects_negative_and_overflowing_shapes(shape, match):
    with pytest.raises(ValueError, match=match):
        Tensor.zeros([2, 3]).view(shape)


def test_conv_padding_near_int_max_is_refused(device):
    # h + 2 * padding overflowed int and the output came back with a wrong shape.
    with pytest.raises(ValueError, match=r"conv2d_forward: padded input height .* = 4294967298 is out of"):
        ops.conv2d_forward(X, W, padding=2**31 - 1, device=device)
    with pytest.raises(ValueError, match="conv2d_backward_weight: padded input height"):
        ops.conv2d_backward_weight(X, X, (3, 3), padding=2**30, device=device)


def test_prepare_batch_crop_offset_near_int_max_is_refused(device):
    # crop_x + crop overflowed int32, passed the bounds check and read far out of bounds (SIGSEGV).
    images = np.zeros((1, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"prepare_batch: crop offset \(0, 2147483647\) of image 0"):
        ops.prepare_batch(images, np.zeros(3, np.float32), np.zeros(1, np.int32), np.array([2**31 - 1], np.int32),
                          np.zeros(1, np.int32), np.zeros((1, 3), np.float32), 4, device=device)


# ---- float arguments: beyond float32 or infinite ------------------------------------------------------------------
@pytest.mark.parametrize("value", [1e39, float("inf"), -float("inf"), float("nan"), 10**400])
def test_float_arguments_must_be_finite_float32(device, value):
    v = np.zeros(3, np.float32)
    with pytest.raises(ValueError, match="sgd_update: lr must be a finite float32"):
        ops.sgd_update(v.copy(), v.copy(), v, lr=value, device=device)
    with pytest.raises(ValueError, match="sgd_update: weight_decay must be a finite float32"):
        ops.sgd_update(v.copy(), v.copy(), v, lr=0.1, weight_decay=value, device=device)
    for name in ("alpha", "beta", "k"):
        with pytest.raises(ValueError, match=f"lrn_forward: {name} must be a finite float32"):
            ops.lrn_forward(X, **{name: value}, device=device)
    with pytest.raises(ValueError, match="prepare_batch: scale must be a finite float32"):
        ops.prepare_batch(np.zeros((1, 4, 4, 3), np.uint8), np.zeros(3, np.float32), np.zeros(1, np.int32),
                          np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros((1, 3), np.float32), 4, scale=value,
                          device=device)


def test_alexnet_float_arguments_must_be_finite_float32():
    with pytest.raises(ValueError, match="AlexNet: weight_std must be a finite float32"):
        AlexNet(4, "cpu", weight_std=1e39, **TINY)
    with pytest.raises(ValueError, match="AlexNet: bias_init must be a finite float32"):
        AlexNet(4, "cpu", bias_init=-1e39, **TINY)
    net = AlexNet(4, "cpu", **TINY)
    with pytest.raises(ValueError, match="AlexNet.set_normalization: scale must be a finite float32"):
        net.set_normalization(np.zeros(3, np.float32), 1e39)
    with pytest.raises(ValueError, match="AlexNet.set_normalization: the mean contains NaN or inf"):
        net.set_normalization(np.array([0, np.inf, 0], np.float32))
    images, labels = np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int32)
    for name in ("lr", "weight_decay"):
        with pytest.raises(ValueError, match=f"AlexNet.train_step: {name} must be a finite float32"):
            net.train_step(images, labels, **{"lr": 0.01, name: 1e39})


# ---- byte order ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [">f4", ">i4"])
def test_big_endian_arrays_are_converted_not_reinterpreted(dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    np.testing.assert_array_equal(Tensor.from_numpy(a).numpy(), a)
    np.testing.assert_array_equal(alexnet_cuda.tensor(a).numpy(), a)
    if dtype == ">f4":
        np.testing.assert_array_equal(ops.relu_forward(a - 2), np.maximum(a - 2, 0))


# ---- messages naming the op and the argument instead of pybind11's signature dump ---------------------------------
@pytest.mark.parametrize("call, error, match", [
    (lambda: ops.conv2d_forward(X, W, stride=1.5), TypeError, "conv2d_forward: stride must be an int, got 1.5"),
    (lambda: ops.conv2d_forward(X, W, padding=2**40), ValueError, "conv2d_forward: padding must be in"),
    (lambda: ops.maxpool_forward(X, kernel=True), TypeError, "maxpool_forward: kernel must be an int"),
    (lambda: ops.dropout_forward(X, seed=-1), ValueError,
     r"dropout_forward: seed must be in \[0, 18446744073709551615\], got seed=-1"),
    (lambda: ops.dropout_forward(X, training="yes"), TypeError, "dropout_forward: training must be True or False"),
    (lambda: ops.lrn_forward(X, alpha="1"), TypeError, "lrn_forward: alpha must be a number"),
    (lambda: ops.conv2d_backward_input(X, W, input_size=5), TypeError,
     r"conv2d_backward_input: input_size must be a pair \(height, width\) of ints, got 5"),
    (lambda: ops.conv2d_backward_weight(X, X, kernel_size=(3, 3.0)), TypeError,
     r"conv2d_backward_weight: kernel_size\[1\] must be an int"),
    (lambda: ops.relu_backward(X, np.zeros(3, np.float32)), ValueError, "relu_backward: expected dy of shape"),
    (lambda: ops.tanh_forward(X.astype(np.float64)), TypeError, "tanh_forward: expected x of dtype float32"),
    (lambda: ops.relu_forward(X, device=0), TypeError, "relu_forward: device must be a string"),
    (lambda: ops.linear_forward(X[0, 0], X[0, 0], activation=["relu"]), ValueError,
     "linear_forward: activation must be"),
    (lambda: AlexNet(2**31), ValueError, r"AlexNet: num_classes must be in \[2, 2147483647\]"),
    (lambda: AlexNet(4, "cpu", seed=-1, **TINY), ValueError, "AlexNet: seed must be in"),
    (lambda: AlexNet(4, "cpu", arch="alexnet-small", widths={"conv": [2**31] * 5}), ValueError,
     "AlexNet: widths"),
])
def test_errors_name_the_op_and_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_float_argument_helper_reports_the_value_given():
    # 1e39 becomes inf in float32: the message shows what the caller passed, not inf.
    with pytest.raises(ValueError, match=r"lrn_forward: alpha must be a finite float32 .* got alpha=1e\+39"):
        ops.lrn_forward(X, alpha=1e39)


# ---- scoring: NaN or constant outputs are never counted correct -------------------------------------------------
def test_alexnet_evaluate_does_not_score_nan_or_constant_outputs():
    net = AlexNet(10, "cpu", **TINY)
    images, labels = np.zeros((8, 32, 32, 3), np.uint8), np.arange(8, dtype=np.int32)
    state = net.state_dict()
    net.load_state_dict({n: np.zeros_like(a) for n, a in state.items()})  # constant outputs: every class tied
    r = net.evaluate(images, labels)
    assert (r.top1, r.top5) == (0.0, 0.0)
    # load_state_dict refuses NaN weights (issue 21); a diverged training step is how they arise, so put them in
    # place underneath it.
    for n, a in state.items():
        net._net.set_tensor(n, "value", np.full_like(a, np.nan))
    r = net.evaluate(images, labels)
    assert (r.top1, r.top5) == (0.0, 0.0)


def test_non_finite_float_batches_are_refused():
    net = AlexNet(4, "cpu", **TINY)
    images, labels = np.zeros((3, 3, 32, 32), np.float32), np.zeros(3, np.int32)
    images[2, 1, 5, 5] = np.nan
    before = net.state_dict()
    with pytest.raises(ValueError, match="AlexNet.train_step: images of image 2 of the batch contain NaN or inf"):
        net.train_step(images, labels, 0.01)
    images[2, 1, 5, 5] = -np.inf
    with pytest.raises(ValueError, match="AlexNet.evaluate: images of image 2"):
        net.evaluate(images, labels)
    shift = np.zeros((3, 3), np.float32)
    shift[0, 0] = np.inf
    with pytest.raises(ValueError, match="AlexNet.train_step: rgb_shift of image 0"):
        net.train_step(np.zeros((3, 32, 32, 3), np.uint8), labels, 0.01, rgb_shift=shift)
    for name, a in net.state_dict().items():
        np.testing.assert_array_equal(a, before[name])
