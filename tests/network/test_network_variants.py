"""The network variants of issue 10 (norm, head, optimizer) against the float64 dense reference network.

Same tiny net and tolerances as tests/test_network.py (alexnet-small at 32x32 with a few channels per layer, loss
relative 1e-5, every gradient within 2e-4 of its largest magnitude). BatchNorm's running statistics are compared
after a training forward, and evaluation (BN on its running statistics) against the reference's eval-mode forward.
The parameter counts of three variants are checked against a hand computation.
"""

from __future__ import annotations

import numpy as np
import pytest

from alexnet_cuda import AlexNet
from alexnet_cuda.reference import network as refnet
from alexnet_cuda.reference.adam import adam_update as ref_adam_update
from alexnet_cuda.nets.table import totals
from alexnet_cuda.summary import describe
from conftest import requires_cuda
from test_network import NUM_CLASSES, assert_matches_reference, batch, tiny

VARIANTS = {
    "batchnorm": dict(norm="batchnorm"),
    "batchnorm-after-pool": dict(norm="batchnorm", bn_position="after_pool"),
    "no-norm": dict(norm="none"),
    "gap": dict(head="gap"),
    "gap-batchnorm-one-tower": dict(head="gap", norm="batchnorm", towers=1),
    "head-none": dict(head=[]),
    "head-3-hidden": dict(head=[16, 12, 8]),  # more hidden layers than the paper: dropout streams per layer
    "head-1-hidden-tanh": dict(head="10", activation="tanh", norm="batchnorm"),
    "batchnorm-no-overlap": dict(norm="batchnorm", overlapping_pool=False, bn_position="after_pool"),
}


def tiny_variant(devices=("cpu", "cpu"), **options) -> AlexNet:
    """The tiny net of test_network with the variant's options (its own head replaces the tiny hidden widths)."""
    if "head" in options:
        options["widths"] = {"conv": [4, 8, 8, 8, 6]}
    return tiny(devices, **options)


def variant(name: str, devices=("cpu", "cpu"), **extra) -> AlexNet:
    return tiny_variant(devices, **VARIANTS[name], **extra)


def check_running_stats(net: AlexNet, running: dict) -> None:
    dense = refnet.merge_towers({n: net.state_dict()[n] for n in net.buffer_names()}, net.config["towers"])
    assert set(dense) == set(running)
    for name, ref in running.items():
        np.testing.assert_allclose(dense[name], ref, rtol=1e-5, atol=1e-6, err_msg=name)


def check_against_reference(net: AlexNet) -> None:
    images, labels = batch(n=4)
    net.step = 3
    before = refnet.merge_towers(net.state_dict(), net.config["towers"])
    assert_matches_reference(net, images, labels, training=True)
    if net.buffer_names():
        # compute_gradients ran one training forward: the running statistics moved as the reference's did.
        running: dict = {}
        refnet.forward_backward(before, net.config, images, labels, seed=net.config["seed"], step=3,
                                backward=False, bn_batch_stats=True, running_out=running)
        check_running_stats(net, running)
    # Evaluation: dropout off, BatchNorm on the running statistics.
    dense = refnet.merge_towers(net.state_dict(), net.config["towers"])
    loss, _, _ = refnet.forward_backward(dense, net.config, images, labels, training=False, backward=False)
    assert net.evaluate(images, labels).loss == pytest.approx(loss, rel=1e-5)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_matches_reference(name):
    check_against_reference(variant(name))


@requires_cuda
@pytest.mark.parametrize("name", ["batchnorm", "gap", "head-3-hidden", "batchnorm-after-pool"])
def test_variant_matches_reference_cuda(name):
    """The CUDA towers (two streams on one device) of the variants against the reference."""
    check_against_reference(variant(name, ("cuda:0", "cuda:0")))


# ---- parameter counts by hand ---------------------------------------------------------------------------------------
def conv_params(c_out, c_in, k, bias=True):
    return c_out * c_in * k * k + (c_out if bias else 0)


def test_parameter_count_batchnorm_gap_alexnet():
    """The paper's convs (two towers) with BatchNorm before the pool (no conv biases; scale and shift per channel)
    and the GAP head: 256 pooled features -> 1000 classes."""
    convs = (conv_params(96, 3, 11, False) + conv_params(256, 48, 5, False) + conv_params(384, 256, 3, False)
             + conv_params(384, 192, 3, False) + conv_params(256, 192, 3, False))
    bn = 2 * (96 + 256 + 384 + 384 + 256)
    head = 256 * 1000 + 1000
    expected = convs + bn + head
    net = AlexNet(1000, "cpu", norm="batchnorm", head="gap")
    assert net.num_parameters() == expected
    assert totals(describe(1000, norm="batchnorm", head="gap"))["parameters"] == expected
    assert f"parameters={expected:,}" in repr(net) and f"{expected:,}" in net.summary()


def test_parameter_count_small_head_2000_200():
    """alexnet-small at 64x64 (200 classes, Tiny ImageNet) with the 2000-200 head and LRN: conv5 block 256x3x3."""
    convs = (conv_params(96, 3, 5) + conv_params(256, 48, 5) + conv_params(384, 256, 3) + conv_params(384, 192, 3)
             + conv_params(256, 192, 3))
    head = (2304 * 2000 + 2000) + (2000 * 200 + 200) + (200 * 200 + 200)
    net = AlexNet(200, "cpu", arch="alexnet-small", input_size=64, head="2000,200")
    assert net.num_parameters() == convs + head
    assert net.buffer_names() == []


def test_parameter_count_one_tower_batchnorm_after_pool():
    """towers=1 (the footnote's net: 48, 128, 192, 192, 256 kernels) with BN after the pool: conv1, conv2, conv5
    keep their biases (BN follows the pool, not the conv); conv3, conv4 lose them; head 9216 -> 4096 -> 4096 -> 10."""
    convs = (conv_params(48, 3, 11) + conv_params(128, 48, 5) + conv_params(192, 128, 3, False)
             + conv_params(192, 192, 3, False) + conv_params(256, 192, 3))
    bn = 2 * (48 + 128 + 192 + 192 + 256)
    head = (9216 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 10 + 10)
    layers = describe(10, towers=1, norm="batchnorm", bn_position="after_pool")
    assert totals(layers)["parameters"] == convs + bn + head
    assert [x["name"] for x in layers][:4] == ["conv1", "pool1", "bn1", "conv2"]


# ---- names, buffers, checkpoints ------------------------------------------------------------------------------------
def test_batchnorm_names_and_buffers_round_trip():
    net = variant("batchnorm")
    names = net.parameter_names()
    assert "features.0.tower0.bias" not in names  # BN follows conv1 directly: no conv bias
    assert {"features.1.tower0.weight", "features.1.tower1.bias", "classifier.6.tower0.weight"} <= set(names)
    assert net.buffer_names()[:2] == ["features.1.tower0.running_mean", "features.1.tower0.running_var"]
    images, labels = batch(n=4)
    net.train_step(images, labels, 0.05)
    state = net.state_dict()
    assert set(state) == set(names) | set(net.buffer_names())
    assert not np.allclose(state["features.1.tower0.running_var"], 1.0)  # the step updated them
    other = variant("batchnorm", seed=9)
    other.load_state_dict(state)
    assert other.evaluate(images, labels) == net.evaluate(images, labels)
    with pytest.raises(ValueError, match="missing.*running_mean"):
        other.load_state_dict({n: state[n] for n in names})


def test_head_names_follow_torchvision_positions():
    assert [n for n in variant("head-3-hidden").parameter_names() if n.endswith("tower0.weight")][-4:] == [
        "classifier.1.tower0.weight", "classifier.4.tower0.weight", "classifier.7.tower0.weight",
        "classifier.9.tower0.weight"]
    assert variant("gap").parameter_names()[-2:] == ["classifier.0.tower1.weight", "classifier.0.tower1.bias"]
    assert variant("gap").config["fc6_inputs"] == 6 and variant("gap").config["head"] == "gap"


# ---- optimizers ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_adam_step_matches_reference(optimizer):
    net = tiny(optimizer=optimizer, adam_betas=(0.8, 0.99), adam_eps=1e-6)
    images, labels = batch(n=4)
    net.step = 2  # Adam's timestep is step + 1 = 3
    before = net.state_dict()
    net.compute_gradients(images, labels)
    grads = net.gradients()
    net.step = 2
    net.train_step(images, labels, 0.01, weight_decay=0.1)
    after, state = net.state_dict(), net.optimizer_state_dict()
    for name in net.parameter_names():
        decay = 0.1 if name.endswith("weight") else 0.0
        w, m, v = ref_adam_update(before[name], np.zeros_like(grads[name]), np.zeros_like(grads[name]), grads[name],
                                  0.01, 0.8, 0.99, 1e-6, decay, optimizer == "adamw", 3)
        np.testing.assert_allclose(after[name], w, rtol=1e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(state[f"{name}.exp_avg"], m, rtol=1e-5, atol=1e-7, err_msg=name)
        np.testing.assert_allclose(state[f"{name}.exp_avg_sq"], v, rtol=1e-4, atol=1e-9, err_msg=name)


@pytest.mark.parametrize("options", [dict(optimizer="adam", norm="batchnorm"), dict(optimizer="sgd", head="gap")])
def test_resume_equals_uninterrupted(options):
    """Train 2 steps, save (parameters, buffers, optimizer state, step), restore into a fresh net and train 2 more:
    the same numbers as 4 uninterrupted steps."""
    data = [batch(n=4, seed=s) for s in range(4)]
    whole = tiny_variant(**options)
    losses = [whole.train_step(x, y, 0.01).loss for x, y in data]
    first = tiny_variant(**options)
    for x, y in data[:2]:
        first.train_step(x, y, 0.01)
    resumed = tiny_variant(**options)  # the same seed: it keys the dropout streams
    resumed.load_state_dict(first.state_dict())
    resumed.load_optimizer_state_dict(first.optimizer_state_dict())
    resumed.step = first.step
    assert [resumed.train_step(x, y, 0.01).loss for x, y in data[2:]] == losses[2:]
    for name, value in whole.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)


def test_compute_gradients_then_apply_update_equals_train_step():
    """The data-parallel split of a step (distributed.py) with BatchNorm and Adam: bit for bit train_step."""
    images, labels = batch(n=4)
    one, two = (tiny_variant(norm="batchnorm", optimizer="adam") for _ in range(2))
    one.train_step(images, labels, 0.01)
    two.compute_gradients(images, labels, training=True)
    two.apply_update(0.01)
    assert one.step == two.step == 1
    for name, value in one.state_dict().items():
        np.testing.assert_array_equal(two.state_dict()[name], value, err_msg=name)
    for name, value in one.optimizer_state_dict().items():
        np.testing.assert_array_equal(two.optimizer_state_dict()[name], value, err_msg=name)


# ---- bad options --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    (dict(norm="layernorm"), "norm must be one of"),
    (dict(bn_position="middle"), "bn_position must be one of"),
    (dict(head="gap,100"), "head must be 'gap' or comma-separated"),
    (dict(head=[0]), "head must be 'gap' or a list of positive"),
    (dict(head=[1]), "layer 'fc6', outputs: 1 outputs cannot be split between 2 towers"),
    (dict(optimizer="rmsprop"), "optimizer must be one of"),
    (dict(optimizer="adam", adam_betas=(0.9, 1.0)), "adam_betas must be in"),
    (dict(optimizer="adam", adam_eps=0.0), "adam_eps must be > 0"),
])
def test_bad_options_name_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        AlexNet(NUM_CLASSES, "cpu", arch="alexnet-small", widths={"conv": [4, 8, 8, 8, 6]}, **options)


def test_head_and_widths_fc_conflict():
    with pytest.raises(ValueError, match="head or widths"):
        tiny(head="gap")


# ---- through the trainer: checkpoints carry the variant ------------------------------------------------------------
def test_train_resume_and_evaluate_a_variant(tmp_path):
    """train with BatchNorm, the GAP head and Adam; resume is exact (Adam's moments and step, BN's running
    statistics come back), the config round-trips, and the checkpoint rebuilds the same variant for evaluation."""
    from alexnet_cuda import checkpoint as ckpt_io
    from alexnet_cuda.train.config import TrainConfig, resolve
    from alexnet_cuda.train.run import train
    from runs import NARROW, assert_same_run, real

    variant_flags = dict(norm="batchnorm", head="gap", optimizer="adam", adam_betas=(0.8, 0.99),
                         widths={"conv": NARROW["conv"]}, lr=0.003)
    whole = train(real(tmp_path, "whole", epochs=2, synthetic_images=32, **variant_flags))
    part1 = train(real(tmp_path, "parts", epochs=1, synthetic_images=32, **variant_flags))
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, epochs=2, progress=False))
    assert_same_run(whole, [part1, part2])
    ckpt = ckpt_io.load(tmp_path / "whole" / "last.npz")
    assert TrainConfig(**ckpt.meta["config"]) == resolve(real(tmp_path, "whole", epochs=2, synthetic_images=32,
                                                              **variant_flags))
    model = ckpt_io.build_model(ckpt, devices="cpu")
    assert model.config["norm"] == "batchnorm" and model.config["head"] == "gap" and model.optimizer == "adam"
    assert model.buffer_names() and any(k.endswith(".exp_avg_sq") for k in ckpt.momentum)
