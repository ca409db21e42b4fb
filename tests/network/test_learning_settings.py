"""Per-parameter learning settings (AlexNet.set_learning; csrc/network.h LearningSettings), as cuda-convnet gives each
layer its own epsW/epsB, momW/momB and wc: a parameter's update uses the step's lr times its lr_scale, and its own
momentum and weight decay when given. Checked against networks that get the same values as step-wide settings."""

from __future__ import annotations

import numpy as np
import pytest
from test_network import batch, tiny

W, B = "features.0.tower0.weight", "classifier.6.tower1.bias"


def _steps(net, steps, lr=0.01, momentum=0.9, weight_decay=5e-4):
    images, labels = batch(n=4)
    for _ in range(steps):
        net.train_step(images, labels, lr, momentum, weight_decay)
    return net.state_dict()


# One step for the learning rate and the decay (all networks then take their first step from the same point: the
# parameter's gradient is the same in all of them); two for the momentum, which first acts in the second step (whose
# gradient is still the same: the first step did not depend on the momentum).
@pytest.mark.parametrize("own, step_wide, steps", [
    (dict(lr_scale=3.0), dict(lr=0.03), 1),
    (dict(momentum=0.5), dict(momentum=0.5), 2),
    (dict(weight_decay=0.25), dict(weight_decay=0.25), 1),
    (dict(lr_scale=0.5, momentum=0.0, weight_decay=0.0), dict(lr=0.005, momentum=0.0, weight_decay=0.0), 1),
])
def test_a_parameters_own_settings_act_as_step_settings_would(device, own, step_wide, steps):
    devices = [device, device]
    mine = tiny(devices=devices)
    mine.set_learning(W, **own)
    assert mine.learning(W) == {"lr_scale": own.get("lr_scale", 1.0), "momentum": own.get("momentum"),
                                "weight_decay": own.get("weight_decay")}
    got = _steps(mine, steps)
    everywhere = _steps(tiny(devices=devices), steps, **step_wide)
    plain = _steps(tiny(devices=devices), 1)
    if steps == 1:
        for name in got:
            if name != W:  # every other parameter follows the step's
                np.testing.assert_array_equal(got[name], plain[name], err_msg=name)
    np.testing.assert_array_equal(got[W], everywhere[W])  # the parameter follows its own settings


def test_a_frozen_parameter_and_a_bias_without_decay(device):
    net = tiny(devices=[device, device])
    before = net.state_dict()
    net.set_learning(W, lr_scale=0.0)
    net.set_learning(B, weight_decay=0.5)  # biases are never decayed, whatever their settings say
    after = _steps(net, 1)
    np.testing.assert_array_equal(after[W], before[W])
    np.testing.assert_array_equal(after[B], _steps(tiny(devices=[device, device]), 1)[B])
    _steps(net, 2)
    np.testing.assert_array_equal(net.state_dict()[W], before[W])


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr_scale=-1.0), "bad lr"), (dict(momentum=1.0), "bad momentum"), (dict(weight_decay=-0.1), "bad weight_decay"),
    (dict(lr_scale=float("nan")), "lr"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=f"AlexNet.set_learning: .*{message}"):
        tiny().set_learning(W, **kwargs)


def test_unknown_names_are_refused():
    net = tiny(norm="batchnorm")
    with pytest.raises(ValueError, match="AlexNet.set_learning: 'nope' is not a trained parameter"):
        net.set_learning("nope", lr_scale=2.0)
    with pytest.raises(ValueError, match="running_mean' is not a trained parameter"):
        net.set_learning("features.1.tower0.running_mean", lr_scale=2.0)
