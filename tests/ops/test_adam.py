"""Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), in place: several steps on every backend against
the NumPy float64 reference, the bias correction of the first steps, the two kinds of weight decay, and bad
arguments."""

from __future__ import annotations

import numpy as np
import pytest

import alexnet_cuda
from alexnet_cuda import ops
from alexnet_cuda.reference import adam as ref

SETTINGS = [
    dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False),  # Kingma & Ba's defaults
    dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=5e-4, decoupled=False),  # L2 penalty in g
    dict(lr=1e-2, beta1=0.8, beta2=0.99, eps=1e-6, weight_decay=1e-2, decoupled=True),  # AdamW
    dict(lr=0.1, beta1=0.0, beta2=0.0, eps=1e-3, weight_decay=0.1, decoupled=True),  # no memory: sign-like steps
]
IDS = ["adam", "adam-l2", "adamw", "no-momentum"]


def as_float32(settings: dict) -> dict:
    """The hyper-parameters as the kernels receive them: float32 (0.999 becomes 0.99900001, so 1 - beta2 moves by
    1.3e-5 relative, more than the float32 rounding the comparisons allow)."""
    return {k: float(np.float32(v)) if isinstance(v, float) else v for k, v in settings.items()}


@pytest.mark.parametrize("settings", SETTINGS, ids=IDS)
@pytest.mark.parametrize("shape", [(1,), (5,), (7, 13), (96, 3, 11, 11)])
def test_several_steps_match_reference(device, rng, shape, settings):
    w = rng.standard_normal(shape).astype(np.float32)
    m, v = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    w_ref, m_ref, v_ref = w.astype(np.float64), m.astype(np.float64), v.astype(np.float64)
    for step in range(1, 5):
        dw = rng.standard_normal(shape).astype(np.float32)
        ops.adam_update(w, m, v, dw, **settings, step=step, device=device)
        w_ref, m_ref, v_ref = ref.adam_update(w_ref, m_ref, v_ref, dw, **as_float32(settings), step=step)
        # intermediates are double: each step rounds w, m, v once to float32
        np.testing.assert_allclose(m, m_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(v, v_ref, rtol=1e-6, atol=1e-9)
        np.testing.assert_allclose(w, w_ref, rtol=1e-6, atol=1e-6)


def test_first_step_is_lr_times_sign(device):
    """At step 1 the bias corrections make m_hat = g and v_hat = g^2, so each weight moves by lr * g / (|g| + eps):
    almost exactly lr against the gradient's sign, whatever its scale (Kingma & Ba, Section 2.1)."""
    dw = np.array([1e-4, -3.0, 250.0, -0.5], np.float32)
    w, m, v = np.zeros(4, np.float32), np.zeros(4, np.float32), np.zeros(4, np.float32)
    ops.adam_update(w, m, v, dw, lr=0.01, eps=1e-12, step=1, device=device)
    np.testing.assert_allclose(w, -0.01 * np.sign(dw), rtol=1e-6)


def test_adamw_decay_is_decoupled(device):
    """With a zero gradient Adam's L2 penalty still goes through the adaptive step (a move of ~lr per weight),
    while AdamW only shrinks each weight by lr * weight_decay * w."""
    w0 = np.array([2.0, -4.0], np.float32)
    zeros = np.zeros(2, np.float32)
    w_l2, w_decoupled = w0.copy(), w0.copy()
    ops.adam_update(w_l2, zeros.copy(), zeros.copy(), zeros, lr=0.1, weight_decay=0.5, step=1, device=device)
    ops.adam_update(w_decoupled, zeros.copy(), zeros.copy(), zeros, lr=0.1, weight_decay=0.5, decoupled=True,
                    step=1, device=device)
    np.testing.assert_allclose(w_l2, w0 - 0.1 * np.sign(w0), rtol=1e-6)
    np.testing.assert_allclose(w_decoupled, w0 * (1 - 0.1 * 0.5), rtol=1e-6)


def test_large_steps_and_huge_gradients(device, rng):
    """A late step (beta^t underflows to 0: no correction) and gradients whose squares overflow float32 but whose
    update does not: the kernels keep their intermediates in double, so w stays finite and matches."""
    w = rng.standard_normal(6).astype(np.float32)
    m, v = np.zeros(6, np.float32), np.zeros(6, np.float32)
    dw = np.array([1e30, -1e30, 1.0, -1.0, 3e20, 0.0], np.float32)
    w_ref = ref.adam_update(w, m, v, dw, **as_float32(dict(lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)), step=10**6)
    ops.adam_update(w, m, v, dw, lr=1e-3, step=10**6, device=device)
    np.testing.assert_allclose(w, w_ref[0], rtol=1e-6)
    np.testing.assert_allclose(m, w_ref[1], rtol=1e-6)
    assert np.isinf(v[:2]).all() and np.isfinite(v[2:]).all()  # 1e59 is beyond float32: the true value is inf


def test_tensors_are_updated_in_place(device, rng):
    w, dw = rng.standard_normal(9).astype(np.float32), rng.standard_normal(9).astype(np.float32)
    tw, tm, tv, tdw = (alexnet_cuda.tensor(a, device) for a in (w, np.zeros(9, np.float32), np.zeros(9, np.float32),
                                                                 dw))
    w_ref, m_ref, v_ref = w, np.zeros(9), np.zeros(9)
    for step in (1, 2):
        ops.adam_update(tw, tm, tv, tdw, lr=0.01, weight_decay=0.01, decoupled=True, step=step)
        w_ref, m_ref, v_ref = ref.adam_update(w_ref, m_ref, v_ref, dw, **as_float32(
            dict(lr=0.01, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01)), decoupled=True, step=step)
    np.testing.assert_allclose(tw.numpy(), w_ref, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(tm.numpy(), m_ref, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(tv.numpy(), v_ref, rtol=1e-6, atol=1e-10)


def test_bad_args(device):
    w, m, v, dw = (np.zeros((2, 3), np.float32) for _ in range(4))

    def call(**kw):
        ops.adam_update(w, m, v, dw, **{"lr": 1e-3, **kw}, device=device)

    for beta in (1.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"adam_update: beta1 must be in \[0, 1\)"):
            call(beta1=beta)
        with pytest.raises(ValueError, match=r"adam_update: beta2 must be in \[0, 1\)"):
            call(beta2=beta)
    with pytest.raises(ValueError, match="adam_update: eps must be > 0"):
        call(eps=0.0)
    with pytest.raises(ValueError, match="adam_update: lr must be >= 0"):
        call(lr=-1e-3)
    with pytest.raises(ValueError, match="adam_update: weight_decay must be >= 0"):
        call(weight_decay=-1.0)
    for step in (0, -5):
        with pytest.raises(ValueError, match="adam_update: step must be >= 1"):
            call(step=step)
    with pytest.raises(TypeError, match="adam_update: step must be an int"):
        call(step=1.0)
    with pytest.raises(TypeError, match="adam_update: decoupled must be True or False"):
        call(decoupled=1)
    for name in ("lr", "beta1", "beta2", "eps", "weight_decay"):
        with pytest.raises(ValueError, match=f"adam_update: {name} must be a finite float32"):
            call(**{name: float("nan")})
    with pytest.raises(ValueError, match=r"adam_update: expected v of shape \(2, 3\)"):
        ops.adam_update(w, m, np.zeros(6, np.float32), dw, device=device)
    with pytest.raises(TypeError, match="adam_update: expected grad of dtype float32"):
        ops.adam_update(w, m, v, np.zeros((2, 3)), device=device)
    readonly = np.zeros((2, 3), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="adam_update: weight, m and v must be writeable"):
        ops.adam_update(w, readonly, v, dw, device=device)
    with pytest.raises(ValueError, match="adam_update: step must be >= 1"):
        ref.adam_update(w, m, v, dw, 1e-3, step=0)


def test_cuda_device_mismatch_names_the_op():
    if alexnet_cuda.build_info()["gpus"] == []:
        pytest.skip("needs a CUDA device (a GPU or the emulated device) to put one input elsewhere")
    w, m, v = (alexnet_cuda.tensor(np.zeros(4, np.float32), "cpu") for _ in range(3))
    grad = alexnet_cuda.tensor(np.zeros(4, np.float32), "cuda")
    with pytest.raises(ValueError, match="adam_update: grad is on cuda:0 but the other inputs are on cpu"):
        ops.adam_update(w, m, v, grad)
