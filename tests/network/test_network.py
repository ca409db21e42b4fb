"""The two-tower network (csrc/network.cpp via alexnet_cuda.AlexNet) against the float64 NumPy reference network.

Most tests use a tiny net: arch 'alexnet-small' at 32x32 with a few channels per layer (the same layers, exchanges
and tower split as the full net), so a step takes milliseconds. weight_std is raised to 0.2 there so the signal
survives eight layers (with the paper's 0.01 the tiny net's gradients would be ~0 and prove nothing).

Tolerances (float32 network vs float64 reference): loss relative 1e-5; logits 1e-5 of their largest magnitude; every
parameter gradient max |error| <= 2e-4 of that gradient's largest magnitude (+1e-9), the error of float32
accumulation over these sums, far below what a wrong exchange, offset or mask produces (an error of order 1).
"""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_cuda
from alexnet_cuda import AlexNet
from alexnet_cuda.reference import network as refnet
from alexnet_cuda.reference.prepare_batch import prepare_batch as ref_prepare_batch
from alexnet_cuda.reference.sgd import sgd_update as ref_sgd_update
from conftest import CUDA_SKIP, requires_cuda

TINY = dict(arch="alexnet-small", input_size=32, widths={"conv": [4, 8, 8, 8, 6], "fc": [16, 12]}, weight_std=0.2,
            bias_init=0.1)
NUM_CLASSES = 5  # odd: fc8 splits 3 / 2 between the towers


def _gpu_count() -> int:
    info = alexnet_cuda.build_info()
    return len(info["gpus"]) if info["cuda"] else 0


requires_two_gpus = pytest.mark.skipif(_gpu_count() < 2, reason=CUDA_SKIP or "needs two GPUs for 'cuda:0','cuda:1'")
PLACEMENTS = [
    pytest.param(("cpu", "cpu"), id="cpu,cpu"),
    pytest.param(("cuda:0", "cuda:0"), id="cuda0,cuda0", marks=requires_cuda),
    pytest.param(("cuda:0", "cuda:1"), id="cuda0,cuda1", marks=[requires_cuda, requires_two_gpus]),
]


def tiny(devices=("cpu", "cpu"), num_classes=NUM_CLASSES, **options) -> AlexNet:
    kw = dict(TINY)
    kw.update(options)
    return AlexNet(num_classes, list(devices), seed=kw.pop("seed", 3), **kw)


def batch(n=3, num_classes=NUM_CLASSES, size=32, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.standard_normal((n, 3, size, size)).astype(np.float32)
    labels = rng.integers(0, num_classes, n).astype(np.int32)
    return images, labels


def assert_matches_reference(net: AlexNet, images, labels, training: bool, rtol_grad=2e-4):
    result = net.compute_gradients(images, labels, training=training)
    cfg = net.config
    dense = refnet.merge_towers(net.state_dict(), cfg["towers"])
    loss, logits, grads = refnet.forward_backward(dense, cfg, images, labels, training=training, seed=cfg["seed"],
                                                  step=net.step)
    assert result.loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(net.logits(), logits, rtol=0, atol=1e-5 * np.abs(logits).max())
    got = refnet.merge_towers(net.gradients(), cfg["towers"])
    assert set(got) == set(grads)
    for name, ref in grads.items():
        assert got[name].shape == ref.shape, name
        err, scale = np.abs(got[name] - ref).max(), np.abs(ref).max()
        assert scale > 0, f"{name}: zero reference gradient proves nothing"
        assert err <= rtol_grad * scale + 1e-9, f"{name}: max error {err:.3e} vs gradient scale {scale:.3e}"
    return result, loss


# ---- sizes ---------------------------------------------------------------------------------------------------------
def test_parameter_count_is_the_papers():
    net = AlexNet(1000, "cpu")
    assert net.num_parameters() == 60_965_224
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert shapes["features.0.tower0.weight"] == (48, 3, 11, 11)
    assert shapes["features.3.tower1.weight"] == (128, 48, 5, 5)    # own tower's 48 maps
    assert shapes["features.6.tower0.weight"] == (192, 256, 3, 3)   # both towers' maps
    assert shapes["features.8.tower1.weight"] == (192, 192, 3, 3)
    assert shapes["features.10.tower0.weight"] == (128, 192, 3, 3)
    assert shapes["classifier.1.tower1.weight"] == (2048, 9216)          # both towers' 256x6x6
    assert shapes["classifier.4.tower0.weight"] == (2048, 4096)
    assert shapes["classifier.6.tower0.weight"] == (500, 4096)
    c = net.config
    assert c["conv_out"] == [55, 27, 13, 13, 13] and c["block_out"] == [27, 13, 13, 13, 6]
    assert c["fc6_inputs"] == 9216


def test_one_tower_net_of_the_footnote():
    # Half the kernels of conv1-conv4, conv5 and the fc layers not halved (paper, footnote in Section 6.1).
    net = AlexNet(1000, "cpu", towers=1, widths=None)
    shapes = {k: v.shape for k, v in net.state_dict().items()}
    assert set(k.split(".")[2] for k in shapes) == {"tower0"}
    assert shapes["features.0.tower0.weight"] == (48, 3, 11, 11)
    assert shapes["features.6.tower0.weight"] == (192, 128, 3, 3)
    assert shapes["features.10.tower0.weight"] == (256, 192, 3, 3)
    assert shapes["classifier.1.tower0.weight"] == (4096, 9216)
    assert net.num_parameters() == 59_798_312


@pytest.mark.parametrize("arch,size,overlap,block_out,fc6", [
    ("alexnet", 227, True, [27, 13, 13, 13, 6], 9216),
    ("alexnet", 227, False, [27, 13, 13, 13, 6], 9216),  # 2/2 pooling: 55 -> 27 -> 13 -> 6, the same sizes
    ("alexnet-small", 32, True, [15, 7, 7, 7, 3], 2304),
    ("alexnet-small", 32, False, [16, 8, 8, 8, 4], 4096),
    ("alexnet-small", 64, True, [15, 7, 7, 7, 3], 2304),  # conv1 stride 2: 64 -> 32, then as at 32
])
def test_geometry(arch, size, overlap, block_out, fc6):
    net = AlexNet(10, "cpu", arch, size, overlapping_pool=overlap, widths={"conv": [4, 4, 4, 4, 256], "fc": [2, 2]})
    assert net.config["block_out"] == block_out
    assert net.config["fc6_inputs"] == fc6
    assert net.state_dict()["classifier.1.tower0.weight"].shape == (1, fc6)


def test_fc8_classes_split_ceil_floor():
    sd = tiny(num_classes=5).state_dict()
    assert sd["classifier.6.tower0.weight"].shape[0] == 3 and sd["classifier.6.tower1.weight"].shape[0] == 2


# ---- initialization ------------------------------------------------------------------------------------------------
def test_initialization_follows_section_5():
    net = AlexNet(10, "cpu", "alexnet-small", 32, widths={"conv": [32, 32, 32, 32, 32], "fc": [64, 64]})
    sd = net.state_dict()
    for name, v in sd.items():
        prefix, _, kind = name.rsplit(".", 2)
        if kind == "weight":
            assert abs(v.mean()) < 3e-3 and 0.0085 < v.std() < 0.0115, name
        else:
            biased = ("features.3", "features.8", "features.10", "classifier.1", "classifier.4")  # conv2/4/5, fc6/7
            expected = 1.0 if prefix in biased else 0.0
            assert np.all(v == expected), name
    caffe = AlexNet(10, "cpu", "alexnet-small", 32, bias_init=0.1, widths={"conv": [4] * 5, "fc": [4, 4]})
    assert np.all(caffe.state_dict()["features.3.tower0.bias"] == np.float32(0.1))
    assert np.all(caffe.state_dict()["features.6.tower0.bias"] == 0)


def test_initialization_is_deterministic_per_seed():
    a, b, c = tiny(seed=7).state_dict(), tiny(seed=7).state_dict(), tiny(seed=8).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["features.0.tower0.weight"], c["features.0.tower0.weight"])
    # Towers draw distinct streams.
    assert not np.array_equal(a["features.0.tower0.weight"], a["features.0.tower1.weight"])


# ---- against the reference network ---------------------------------------------------------------------------------
@pytest.mark.parametrize("training", [True, False], ids=["dropout-on", "dropout-off"])
@pytest.mark.parametrize("options", [{}, {"lrn": False}, {"overlapping_pool": False}, {"activation": "tanh"},
                                     {"dropout": 0.0}, {"towers": 1}],
                         ids=["paper", "no-lrn", "pool-2/2", "tanh", "no-dropout", "one-tower"])
def test_matches_reference_network(options, training):
    net = tiny(**options)
    images, labels = batch(n=3)
    assert_matches_reference(net, images, labels, training)


def test_matches_reference_at_64_and_batch_1():
    net = tiny(input_size=64, num_classes=2)
    images, labels = batch(n=1, num_classes=2, size=64, seed=5)
    assert_matches_reference(net, images, labels, training=True)


def test_reference_network_gradient_check():
    # The reference network's own backward against central finite differences (float64), on a few entries of
    # every parameter, dropout on. eps = 1e-6 is far below the margin of every ReLU and pooling decision of this
    # fixed input, so the loss is smooth within +-eps (tolerance: 1e-5 relative + 1e-6 absolute).
    net = tiny(dropout=0.5)
    params = refnet.merge_towers(net.state_dict(), 2)
    cfg = net.config
    images, labels = batch(n=2, seed=1)
    kw = dict(training=True, seed=cfg["seed"], step=4)
    _, _, grads = refnet.forward_backward(params, cfg, images, labels, **kw)
    rng = np.random.default_rng(0)
    eps = 1e-6
    for name in params:
        flat = params[name].reshape(-1)
        for i in rng.choice(flat.size, size=min(3, flat.size), replace=False):
            orig = flat[i]
            flat[i] = orig + eps
            plus = refnet.forward_backward(params, cfg, images, labels, backward=False, **kw)[0]
            flat[i] = orig - eps
            minus = refnet.forward_backward(params, cfg, images, labels, backward=False, **kw)[0]
            flat[i] = orig
            numeric = (plus - minus) / (2 * eps)
            analytic = grads[name].reshape(-1)[i]
            assert abs(analytic - numeric) <= 1e-6 + 1e-5 * abs(numeric), (name, i, analytic, numeric)


def test_dropout_masks_follow_the_step_counter():
    net = tiny()
    images, labels = batch()
    first = net.compute_gradients(images, labels, training=True).loss
    assert net.compute_gradients(images, labels, training=True).loss == first  # same step: same masks
    net.step = 11
    eleventh = net.compute_gradients(images, labels, training=True).loss
    assert eleventh != first
    assert_matches_reference(net, images, labels, training=True)  # the reference draws the step-11 masks too
    off = tiny(dropout=0.0)
    a = off.compute_gradients(images, labels).loss
    off.step = 11
    assert off.compute_gradients(images, labels).loss == a


# ---- training ------------------------------------------------------------------------------------------------------
def test_train_step_is_the_papers_sgd():
    net = tiny()
    images, labels = batch()
    net.step = 2
    net.compute_gradients(images, labels, training=True)
    grads, before = net.gradients(), net.state_dict()
    lr, mom, wd = 0.05, 0.9, 5e-4
    result = net.train_step(images, labels, lr, mom, wd)
    assert net.step == 3
    after, momentum = net.state_dict(), net.optimizer_state_dict()
    for name in before:
        decay = 0.0 if name.endswith(".bias") else wd  # weights only (cuda-convnet)
        w_ref, v_ref = ref_sgd_update(before[name], np.zeros_like(before[name]), grads[name], lr, mom, decay)
        np.testing.assert_allclose(after[name], w_ref, rtol=1e-6, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(momentum[name], v_ref, rtol=1e-6, atol=1e-8, err_msg=name)
    assert 0.0 <= result.top1 <= result.top5 <= 1.0


def test_training_reduces_the_loss():
    # A learnable problem: the class is the colour of the image (plus noise).
    rng = np.random.default_rng(0)
    n, classes = 16, 3
    labels = np.arange(n, dtype=np.int32) % classes
    colours = np.array([[1, -1, 0], [-1, 1, -1], [0, -1, 1]], np.float32)
    images = (colours[labels][:, :, None, None] + 0.5 * rng.standard_normal((n, 3, 32, 32))).astype(np.float32)
    net = tiny(num_classes=classes, seed=1, dropout=0.0)
    first = net.evaluate(images, labels).loss
    for _ in range(25):
        net.train_step(images, labels, lr=0.02)
    final = net.evaluate(images, labels)
    assert final.loss < 0.5 * first, (first, final)
    assert final.top1 == 1.0


def test_resume_reproduces_the_run():
    images, labels = batch(n=4)
    net = tiny()
    for _ in range(2):
        net.train_step(images, labels, 0.01)
    saved = (net.state_dict(), net.optimizer_state_dict(), net.step)
    continued = [net.train_step(images, labels, 0.01).loss for _ in range(2)]
    resumed = tiny()  # the same configuration (seed included: it keys the dropout streams) ...
    resumed.train_step(*batch(n=4, seed=9), 0.5)  # ... in another state, which the checkpoint replaces
    resumed.load_state_dict(saved[0])
    resumed.load_optimizer_state_dict(saved[1])
    resumed.step = saved[2]
    assert [resumed.train_step(images, labels, 0.01).loss for _ in range(2)] == continued
    assert all(np.array_equal(v, resumed.state_dict()[k]) for k, v in net.state_dict().items())


def test_state_dict_round_trip():
    a, b = tiny(seed=1), tiny(seed=2)
    images, labels = batch()
    b.load_state_dict(a.state_dict())
    assert all(np.array_equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert a.evaluate(images, labels) == b.evaluate(images, labels)
    mom = {k: np.full_like(v, 0.5) for k, v in a.optimizer_state_dict().items()}
    b.load_optimizer_state_dict(mom)
    assert all(np.array_equal(v, b.optimizer_state_dict()[k]) for k, v in mom.items())


# ---- inputs, outputs -----------------------------------------------------------------------------------------------
def test_uint8_inputs_are_prepared_like_the_reference():
    rng = np.random.default_rng(2)
    n, h = 3, 40
    raw = rng.integers(0, 256, (n, h, h, 3), dtype=np.uint8)
    labels = np.array([0, 4, 2], np.int32)
    mean = rng.uniform(100, 150, (3, h, h)).astype(np.float32)
    crops = np.array([[0, 8], [3, 1], [8, 8]], np.int32)
    flips = np.array([1, 0, 1], np.int32)
    shift = rng.normal(0, 5, (n, 3)).astype(np.float32)
    scale = 1 / 64
    net = tiny()
    net.set_normalization(mean, scale)
    prepared = ref_prepare_batch(raw, mean, crops[:, 0], crops[:, 1], flips, shift, 32, scale).astype(np.float32)
    got = net.compute_gradients(raw, labels, crops=crops, flips=flips, rgb_shift=shift)
    want = net.compute_gradients(prepared, labels)
    assert got.loss == pytest.approx(want.loss, rel=1e-6)
    # Defaults: centre crop, no flip, no shift; per-channel mean.
    net.set_normalization(np.array([120, 110, 100], np.float32), scale)
    centre = ref_prepare_batch(raw, np.array([120, 110, 100.0]), np.full(n, 4), np.full(n, 4), np.zeros(n),
                               np.zeros((n, 3)), 32, scale).astype(np.float32)
    assert net.evaluate(raw, labels).loss == pytest.approx(net.evaluate(centre, labels).loss, rel=1e-6)


def test_predict_and_evaluate():
    net = tiny()
    images, labels = batch(n=4)
    probs = net.predict(images)
    assert probs.shape == (4, NUM_CLASSES) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    net.compute_gradients(images, labels, training=False)
    z = net.logits().astype(np.float64)
    softmax = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(probs, softmax / softmax.sum(1, keepdims=True), rtol=1e-5, atol=1e-7)
    r = net.evaluate(images, labels)
    assert r.loss == pytest.approx(-np.log(probs[np.arange(4), labels]).mean(), rel=1e-5)
    top1 = (probs.argmax(1) == labels).mean()
    assert r.top1 == top1 and r.top5 == 1.0  # 5 classes: top-5 is everything
    step = net.step
    net.evaluate(images, labels)
    net.predict(images)
    assert net.step == step  # only train_step advances the dropout stream


def test_cpu_measurements():
    net = tiny()
    images, labels = batch()
    net.reset_peak_memory()
    net.train_step(images, labels, 0.01)
    assert net.tower_timings() == {}  # GPU-only
    peak = net.peak_memory()
    assert list(peak) == ["cpu"] and peak["cpu"] > 0


# ---- placements ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("devices", PLACEMENTS)
def test_placements_agree(devices):
    """Every placement computes the loss and gradients of 'cpu','cpu' (GPU vs CPU kernels: float32 rounding
    differs, so rtol 1e-4 of each gradient's scale; the two GPU placements run the same kernels and must agree to
    1e-6)."""
    images, labels = batch(n=4)
    ref = tiny(("cpu", "cpu"))
    ref.step = 5
    r0 = ref.compute_gradients(images, labels, training=True)
    g0 = ref.gradients()
    net = tiny(devices)
    net.step = 5
    r = net.compute_gradients(images, labels, training=True)
    assert r.loss == pytest.approx(r0.loss, rel=1e-5)
    for name, g in net.gradients().items():
        scale = np.abs(g0[name]).max()
        assert np.abs(g - g0[name]).max() <= 1e-4 * scale + 1e-9, name
    assert_matches_reference(net, images, labels, training=True)
    # A few training steps stay together too.
    for _ in range(3):
        assert net.train_step(images, labels, 0.02).loss == pytest.approx(ref.train_step(images, labels, 0.02).loss,
                                                                          rel=1e-4)


def test_cpu_towers_at_once_or_in_turn_agree(monkeypatch):
    """Two CPU towers run at the same time, one thread each, when there are two OpenMP threads (network_engine.h,
    each_tower), and in turn with ALEXNET_CPU_TOWERS=serial: the same step up to float rounding (an op's sums may
    be split among threads differently). With another thread count both runs take turns and agree trivially."""
    images, labels = batch(n=4)
    runs = {}
    for mode in ("serial", "concurrent"):
        monkeypatch.setenv("ALEXNET_CPU_TOWERS", mode)
        net = tiny(("cpu", "cpu"))
        net.step = 5
        r = net.compute_gradients(images, labels, training=True)
        runs[mode] = (r.loss, net.gradients(), [net.train_step(images, labels, 0.02).loss for _ in range(2)])
    (loss_s, grads_s, steps_s), (loss_c, grads_c, steps_c) = runs["serial"], runs["concurrent"]
    assert loss_c == pytest.approx(loss_s, rel=1e-6)
    for name, g in grads_c.items():
        assert np.abs(g - grads_s[name]).max() <= 1e-5 * np.abs(grads_s[name]).max() + 1e-9, name
    assert steps_c == pytest.approx(steps_s, rel=1e-5)


def test_cpu_towers_setting_is_checked(monkeypatch):
    monkeypatch.setenv("ALEXNET_CPU_TOWERS", "sideways")
    images, labels = batch(n=2)
    with pytest.raises(ValueError, match="ALEXNET_CPU_TOWERS must be 'serial' or 'concurrent'"):
        tiny(("cpu", "cpu")).evaluate(images, labels)


@requires_cuda
def test_gpu_placements_agree_with_each_other():
    images, labels = batch(n=4)
    one = tiny(("cuda:0", "cuda:0"))
    one.compute_gradients(images, labels)
    devices = ("cuda:0", "cuda:1") if _gpu_count() >= 2 else ("cuda:0", "cuda:0")
    two = tiny(devices)
    two.compute_gradients(images, labels)
    for name, g in two.gradients().items():
        np.testing.assert_allclose(g, one.gradients()[name], rtol=1e-6, atol=1e-9, err_msg=name)


@requires_cuda
def test_gpu_timings_and_peak_memory():
    net = tiny(("cuda:0", "cuda:0"))
    images, labels = batch(n=8)
    net.reset_peak_memory()
    net.train_step(images, labels, 0.01)
    timings = net.tower_timings()
    assert set(timings) == {"tower0", "tower1"}
    for t in timings.values():
        assert t["device"] == "cuda:0"
        assert t["forward_ms"] > 0 and t["backward_ms"] > 0 and t["update_ms"] > 0
        assert t["total_ms"] >= t["forward_ms"]
    peak = net.peak_memory()
    assert list(peak) == ["cuda:0"] and peak["cuda:0"] > 0
