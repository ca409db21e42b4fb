"""alexnet_cuda.AlexNet's Python API: device resolution, options, and clear errors for bad input.

Every bad argument raises ValueError or TypeError naming AlexNet and what was expected, before any kernel runs: the
parameters and the step counter are unchanged afterwards.
"""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_cuda
from alexnet_cuda import AlexNet
from alexnet_cuda.model import StepResult, resolve_devices

TINY = dict(arch="alexnet-small", input_size=32, widths={"conv": [4, 4, 4, 4, 4], "fc": [8, 8]})


@pytest.fixture(scope="module")
def net() -> AlexNet:
    return AlexNet(4, ["cpu", "cpu"], **TINY)


def good_batch(n=2):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 3, 32, 32)).astype(np.float32), np.array([0, 3][:n] + [1] * (n - 2), np.int32)


# ---- construction --------------------------------------------------------------------------------------------------
def test_api_surface(net):
    images, labels = good_batch()
    r = net.train_step(images, labels, 0.01)
    assert isinstance(r, StepResult) and isinstance(r.loss, float)
    assert net.input_size == 32 and net.num_classes == 4 and net.devices == ["cpu", "cpu"]
    assert isinstance(net.step, int)
    assert sorted(net.state_dict()) == sorted(net.optimizer_state_dict()) == sorted(net.parameter_names())
    assert all(v.dtype == np.float32 for v in net.state_dict().values())
    assert "AlexNet(" in repr(net)


def test_devices_resolve():
    gpus = alexnet_cuda.visible_gpus(emulated=False)  # 'auto' never picks an emulated device
    auto = resolve_devices(None)
    assert auto == resolve_devices("auto")
    assert auto == (["cuda:0", "cuda:1"] if gpus >= 2 else ["cuda:0", "cuda:0"] if gpus == 1 else ["cpu", "cpu"])
    assert resolve_devices("cpu") == ["cpu", "cpu"]
    assert AlexNet(4, "cpu", **TINY).devices == ["cpu", "cpu"]


def test_default_input_sizes():
    assert AlexNet(4, "cpu", "alexnet-small", widths={"conv": [2] * 5, "fc": [2, 2]}).input_size == 32
    assert AlexNet(4, "cpu", "alexnet-small", 64, widths={"conv": [2] * 5, "fc": [2, 2]}).input_size == 64
    assert AlexNet(4, "cpu", widths={"conv": [2] * 5, "fc": [2, 2]}).input_size == 227


@pytest.mark.parametrize("devices,match", [
    ("cuda:7", "AlexNet: bad device 'cuda:7'"),
    (["cpu", "gpu0"], "AlexNet: bad device 'gpu0'"),
    (["cpu", "cuda:9"], "AlexNet: bad device 'cuda:9'"),
])
def test_device_that_does_not_exist(devices, match):
    with pytest.raises(ValueError, match=match):
        AlexNet(4, devices, **TINY)


def test_devices_wrong_type():
    with pytest.raises(TypeError, match="AlexNet: devices must be"):
        AlexNet(4, ["cpu"], **TINY)
    with pytest.raises(TypeError, match="AlexNet: devices must be"):
        AlexNet(4, 0, **TINY)


@pytest.mark.skipif(not alexnet_cuda.cuda_available(), reason="needs a GPU to mix a CPU and a GPU tower")
def test_mixed_cpu_gpu_towers_rejected():
    with pytest.raises(ValueError, match="both on the CPU or both on GPUs"):
        AlexNet(4, ["cpu", "cuda:0"], **TINY)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(arch="vgg"), ValueError, "AlexNet: arch must be one of"),
    (dict(activation="sigmoid"), ValueError, "AlexNet: activation must be one of"),
    (dict(towers=3), ValueError, "AlexNet: towers must be 1 or 2"),
    (dict(dropout=1.0), ValueError, "AlexNet: dropout must be a number in \\[0, 1\\)"),
    (dict(dropout="half"), ValueError, "AlexNet: dropout"),
    (dict(lrn="yes"), TypeError, "AlexNet: lrn must be True or False"),
    (dict(overlapping_pool=None), TypeError, "AlexNet: overlapping_pool must be True or False"),
    (dict(weight_std=-1.0), ValueError, "AlexNet: weight_std"),
    (dict(bias_init=float("nan")), ValueError, "AlexNet: bias_init"),
    (dict(seed=-1), ValueError, "AlexNet: seed"),
    (dict(input_size=48), ValueError, "AlexNet: arch='alexnet-small' takes input_size 32 or 64"),
    (dict(input_size=32.0), TypeError, "AlexNet: input_size must be an int"),
    (dict(widths={"conv": [3, 4, 4, 4, 4]}), ValueError, "layer .conv1., filters: 3 filters do not split evenly "
                                                          "between 2 towers"),
    (dict(widths={"fc": [8, 0]}), ValueError, "AlexNet: head must be 'gap' or a list of positive int hidden widths"),
    (dict(widths={"convs": [4] * 5}), ValueError, "AlexNet: widths must be a dict"),
])
def test_unknown_option_values(kwargs, error, match):
    options = dict(TINY)
    options.update(kwargs)
    with pytest.raises(error, match=match):
        AlexNet(4, "cpu", **options)


def test_bad_num_classes_and_alexnet_input_size():
    with pytest.raises(ValueError, match=r"AlexNet: num_classes must be in \[2, 2147483647\], got num_classes=1"):
        AlexNet(1, "cpu", **TINY)
    with pytest.raises(TypeError, match="AlexNet: num_classes must be an int"):
        AlexNet("10", "cpu", **TINY)
    with pytest.raises(ValueError, match="arch='alexnet' takes input_size=227"):
        AlexNet(10, "cpu", "alexnet", 224)


# ---- bad batches: nothing runs -------------------------------------------------------------------------------------
def _unchanged(net, before, step):
    assert net.step == step
    assert all(np.array_equal(v, net.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("make,error,match", [
    (lambda im, lb: (im[:, :, :31], lb), ValueError, r"AlexNet.train_step: expected float32 images of shape "
                                                     r"\(N, 3, 32, 32\), got \(2, 3, 31, 32\)"),
    (lambda im, lb: (im[0], lb), ValueError, "expected float32 images of shape"),
    (lambda im, lb: (im[:0], lb[:0]), ValueError, "expected float32 images of shape"),
    (lambda im, lb: (im.astype(np.float64), lb), TypeError, "AlexNet.train_step: expected images as float32 .* or "
                                                            "uint8 .*, got dtype float64"),
    (lambda im, lb: (im.tolist(), lb), TypeError, "AlexNet.train_step: expected images as a numpy.ndarray"),
    (lambda im, lb: (im, np.array([0, 4], np.int32)), ValueError, r"AlexNet.train_step: labels must be in \[0, 4\)"),
    (lambda im, lb: (im, np.array([-1, 0], np.int32)), ValueError, r"labels must be in \[0, 4\)"),
    (lambda im, lb: (im, lb[:1]), ValueError, r"AlexNet.train_step: expected labels of shape \(2,\)"),
    (lambda im, lb: (im, lb.astype(np.float32)), TypeError, "AlexNet.train_step: expected integer labels"),
    (lambda im, lb: (np.zeros((2, 20, 20, 3), np.uint8), lb), ValueError, "uint8 images must be at least 32x32"),
    (lambda im, lb: (np.zeros((2, 32, 32, 4), np.uint8), lb), ValueError, r"uint8 images of shape \(N, H, W, 3\)"),
])
def test_bad_batch(net, make, error, match):
    images, labels = make(*good_batch())
    before, step = net.state_dict(), net.step
    with pytest.raises(error, match=match):
        net.train_step(images, labels, 0.01)
    _unchanged(net, before, step)


def test_bad_augmentation_arguments(net):
    images, labels = good_batch()
    raw = np.zeros((2, 36, 40, 3), np.uint8)
    before, step = net.state_dict(), net.step
    with pytest.raises(ValueError, match="crops, flips and rgb_shift apply to uint8 images only"):
        net.train_step(images, labels, 0.01, flips=np.array([1, 0]))
    with pytest.raises(ValueError, match=r"AlexNet.train_step: crops must be in \[0, 4\] x \[0, 8\]"):
        net.train_step(raw, labels, 0.01, crops=np.array([[0, 0], [5, 0]]))
    with pytest.raises(ValueError, match=r"expected integer crops of shape \(2, 2\)"):
        net.train_step(raw, labels, 0.01, crops=np.array([0, 0]))
    with pytest.raises(ValueError, match=r"expected flips of shape \(2,\)"):
        net.train_step(raw, labels, 0.01, flips=np.array([1, 0, 1]))
    with pytest.raises(ValueError, match=r"expected float rgb_shift of shape \(2, 3\)"):
        net.train_step(raw, labels, 0.01, rgb_shift=np.zeros((2, 3), np.int32))
    with pytest.raises(ValueError, match="AlexNet.train_step: bad lr"):
        net.train_step(images, labels, -0.1)
    with pytest.raises(ValueError, match="AlexNet.train_step: bad momentum"):
        net.train_step(images, labels, 0.1, momentum=1.0)
    with pytest.raises(ValueError, match="AlexNet.train_step: weight_decay must be a finite float32"):
        net.train_step(images, labels, 0.1, weight_decay=float("inf"))
    _unchanged(net, before, step)


def test_evaluate_and_predict_check_too(net):
    images, labels = good_batch()
    with pytest.raises(ValueError, match="AlexNet.evaluate: expected float32 images"):
        net.evaluate(images[:, :2], labels)
    with pytest.raises(ValueError, match="AlexNet.evaluate: labels are required"):
        net.evaluate(images, None)
    with pytest.raises(TypeError, match="AlexNet.predict: expected images as float32"):
        net.predict(images.astype(np.float16))


def test_normalization_checks(net):
    with pytest.raises(ValueError, match=r"AlexNet.set_normalization: expected a mean of shape \(3,\) or \(3, H, W\)"):
        net.set_normalization(np.zeros(4, np.float32))
    with pytest.raises(TypeError, match="AlexNet.set_normalization: expected a float mean"):
        net.set_normalization(np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="at least 32x32"):
        net.set_normalization(np.zeros((3, 16, 16), np.float32))
    other = AlexNet(4, "cpu", **TINY)
    other.set_normalization(np.zeros((3, 40, 40), np.float32))
    with pytest.raises(ValueError, match=r"the per-pixel mean is \(3, 40, 40\) but the images are 36x36"):
        other.evaluate(np.zeros((2, 36, 36, 3), np.uint8), np.array([0, 1], np.int32))
    other.evaluate(np.zeros((2, 40, 40, 3), np.uint8), np.array([0, 1], np.int32))


def test_state_dict_checks(net):
    sd = net.state_dict()
    bad = dict(sd)
    del bad["classifier.6.tower1.bias"]
    with pytest.raises(ValueError, match=r"AlexNet.load_state_dict: state does not match this network: missing "
                                         r"\['classifier.6.tower1.bias'\]"):
        net.load_state_dict(bad)
    bad = dict(sd, extra=np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        net.load_state_dict(bad)
    bad = dict(sd)
    bad["features.0.tower0.weight"] = np.zeros((1, 2), np.float32)
    with pytest.raises(ValueError, match=r"AlexNet.load_state_dict: features.0.tower0.weight has shape \(1, 2\), expected"):
        net.load_state_dict(bad)
    bad["features.0.tower0.weight"] = sd["features.0.tower0.weight"].astype(np.int32)
    with pytest.raises(TypeError, match="features.0.tower0.weight must be a float array"):
        net.load_optimizer_state_dict(bad)
    with pytest.raises(TypeError, match="expected a dict"):
        net.load_state_dict([1, 2])
    # float64 arrays are accepted (converted to float32); a failed load wrote nothing.
    assert all(np.array_equal(v, net.state_dict()[k]) for k, v in sd.items())
    net.load_state_dict({k: v.astype(np.float64) for k, v in sd.items()})


@pytest.mark.parametrize("value,match", [
    (np.nan, r"features.3.tower1.weight contains nan at index \(1, 1, 0, 3\)"),
    (-np.inf, r"features.3.tower1.weight contains -inf at index"),
    (1e39, r"features.3.tower1.weight holds 1e\+39 at index \(1, 1, 0, 3\), beyond float32's range"),
    (-4e38, r"features.3.tower1.weight holds -4e\+38 at index"),
])
@pytest.mark.parametrize("load", ["load_state_dict", "load_optimizer_state_dict"])
def test_weights_must_be_finite_float32(net, value, match, load):
    """A NaN, an inf, or a float64 value float32 cannot hold (np.float32(1e39) is inf without a word) is refused
    naming the key and where in it; nothing is written (issue 21)."""
    sd = net.state_dict() if load == "load_state_dict" else net.optimizer_state_dict()
    bad = {k: v.astype(np.float64) for k, v in sd.items()}
    bad["features.3.tower1.weight"][1, 1, 0, 3] = value
    before = net.state_dict(), net.optimizer_state_dict()
    with pytest.raises(ValueError, match=rf"AlexNet.{load}: " + match):
        getattr(net, load)(bad)
    for was, now in zip(before, (net.state_dict(), net.optimizer_state_dict())):
        assert all(np.array_equal(was[k], now[k]) for k in was)
    # The largest float32 itself is fine, in float64 or float32.
    bad["features.3.tower1.weight"][1, 1, 0, 3] = float(np.finfo(np.float32).max)
    getattr(net, load)(bad)
    getattr(net, load)(sd)


def test_step_setter(net):
    with pytest.raises(ValueError, match="AlexNet.step must be an int >= 0"):
        net.step = -1
    net.step = 3
    assert net.step == 3


def test_compute_gradients_api(net):
    with pytest.raises(ValueError, match="AlexNet.gradients: call compute_gradients first"):
        AlexNet(4, "cpu", **TINY).gradients()
    images, labels = good_batch()
    net.compute_gradients(images, labels)
    grads = net.gradients()
    assert {k: v.shape for k, v in grads.items()} == {k: v.shape for k, v in net.state_dict().items()}
    assert net.logits().shape == (2, 4)
