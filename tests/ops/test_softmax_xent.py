"""Softmax cross-entropy (mean over the batch), its gradient, and top-1/top-5 counts: every backend against the
NumPy float64 reference, the reference gradient against finite differences, stability with huge logits, ties."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import assert_grad_close, numerical_grad

from alexnet_cuda import ops
from alexnet_cuda.reference import softmax_xent as ref

SHAPES = [(1, 1), (1, 10), (5, 1), (7, 13), (3, 1000), (64, 37)]


def _inputs(rng, n, classes, spread=3.0):
    logits = (spread * rng.standard_normal((n, classes))).astype(np.float32)
    labels = rng.integers(0, classes, size=n).astype(np.int32)
    return logits, labels


@pytest.mark.parametrize("n, classes", SHAPES)
def test_forward_matches_reference(device, rng, n, classes):
    logits, labels = _inputs(rng, n, classes)
    loss, probs = ops.softmax_xent_forward(logits, labels, device=device)
    ref_loss, ref_probs = ref.softmax_xent_forward(logits, labels)
    assert isinstance(loss, float)
    # float32 exp/log of O(10) logits: ~1e-6 relative; probs are in [0, 1]
    assert loss == pytest.approx(ref_loss, rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("n, classes", SHAPES)
def test_backward_matches_reference(device, rng, n, classes):
    logits, labels = _inputs(rng, n, classes)
    _, probs = ops.softmax_xent_forward(logits, labels, device=device)
    dlogits = ops.softmax_xent_backward(probs, labels, device=device)
    expected = ref.softmax_xent_backward(probs, labels)  # from the same float32 probs
    np.testing.assert_allclose(dlogits, expected, rtol=1e-6, atol=1e-9)


def test_huge_logits_are_stable(device):
    # exp(1e4) overflows float32 and float64: a naive softmax gives inf/nan
    logits = np.array([[1e4, 0.0, -1e4], [3e4, 3e4 - 2.0, 3e4 - 50.0], [-1e4, -1e4, -1e4]], dtype=np.float32)
    labels = np.array([1, 0, 2], dtype=np.int32)
    loss, probs = ops.softmax_xent_forward(logits, labels, device=device)
    ref_loss, ref_probs = ref.softmax_xent_forward(logits, labels)
    assert np.isfinite(loss) and np.all(np.isfinite(probs))
    # row 0's label has probability exp(-1e4) = 0 in float, yet its loss (1e4) is finite and exact
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    assert ref_loss == pytest.approx((1e4 + np.log1p(np.exp(-2.0)) + np.log(3.0)) / 3, rel=1e-12)
    np.testing.assert_allclose(probs, ref_probs, rtol=1e-5, atol=1e-7)


def test_single_class_has_zero_loss(device):
    logits = np.array([[3.0], [-100.0]], dtype=np.float32)
    labels = np.zeros(2, dtype=np.int32)
    loss, probs = ops.softmax_xent_forward(logits, labels, device=device)
    assert loss == 0.0
    np.testing.assert_array_equal(probs, np.ones((2, 1), dtype=np.float32))
    np.testing.assert_array_equal(ops.softmax_xent_backward(probs, labels, device=device), np.zeros((2, 1)))
    assert ops.topk_correct(logits, labels, device=device) == (2, 2)


def test_loss_is_deterministic(device, rng):
    logits, labels = _inputs(rng, 301, 1000)
    first = ops.softmax_xent_forward(logits, labels, device=device)[0]
    for _ in range(3):
        assert ops.softmax_xent_forward(logits, labels, device=device)[0] == first


def test_reference_gradient():
    rng = np.random.default_rng(3)
    logits = 2.0 * rng.standard_normal((4, 6))
    labels = np.array([0, 5, 2, 2])
    numeric = numerical_grad(lambda z: ref.softmax_xent_forward(z, labels)[0], logits, np.array(1.0))
    _, probs = ref.softmax_xent_forward(logits, labels)
    assert_grad_close(ref.softmax_xent_backward(probs, labels), numeric, rtol=1e-6)


@pytest.mark.parametrize("n, classes", [(1, 1), (1, 3), (6, 4), (40, 10), (257, 1000)])
def test_topk_matches_reference(device, rng, n, classes):
    scores = rng.standard_normal((n, classes)).astype(np.float32)
    labels = rng.integers(0, classes, size=n).astype(np.int32)
    top1, top5 = ops.topk_correct(scores, labels, device=device)
    assert (top1, top5) == ref.topk_correct(scores, labels)
    assert isinstance(top1, int) and isinstance(top5, int)


def test_topk_ties_count_against_the_label(device):
    # Issue 9: ties used to count in the label's favour, so constant outputs scored 100%.
    scores = np.array([
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0],  # all tied: 6 others at least as high, neither
        [5.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0],  # label 2 tied with one other, one higher: rank 2, top-5 only
        [5.0, 5.0, 5.0, 5.0, 2.0, 1.0, 2.0],  # label 6: 4 higher + 1 tie = 5, neither
        [5.0, 5.0, 5.0, 2.0, 2.0, 1.0, 1.0],  # label 4: 3 higher + 1 tie = 4, top-5 only
        [0.0, 9.0, 8.0, 1.0, 1.0, 1.0, 1.0],  # label 1 strictly the best: top-1
    ], dtype=np.float32)
    labels = np.array([3, 2, 6, 4, 1], dtype=np.int32)
    assert ops.topk_correct(scores, labels, device=device) == (1, 3)
    assert ref.topk_correct(scores, labels) == (1, 3)


@pytest.mark.parametrize("classes", [2, 3, 10])
def test_topk_nan_and_constant_scores_are_never_correct(device, classes):
    labels = np.arange(4, dtype=np.int32) % classes
    trivial_top5 = 4 if classes <= 5 else 0  # with at most 5 classes every number is in the top 5
    for fill, expected in ((np.nan, (0, 0)), (0.0, (0, trivial_top5)), (np.inf, (0, trivial_top5))):
        scores = np.full((4, classes), fill, np.float32)
        assert ops.topk_correct(scores, labels, device=device) == expected, fill
        assert ref.topk_correct(scores, labels) == expected, fill
    # One NaN elsewhere in the row outranks the label; a NaN label score never counts, even for top-5 of 3 classes.
    scores = np.zeros((2, classes), np.float32)
    scores[:, 1] = 5.0
    scores[0, 0] = np.nan
    scores[1, 1] = np.nan
    labels = np.array([1, 1], np.int32)
    expected = (0, 1)  # row 0: rank 1 (the NaN), top-5 only; row 1: never
    assert ops.topk_correct(scores, labels, device=device) == expected
    assert ref.topk_correct(scores, labels) == expected


def test_fewer_than_five_classes_top5_always_correct(device, rng):
    scores = rng.standard_normal((50, 4)).astype(np.float32)
    labels = np.argmin(scores, axis=1).astype(np.int32)  # the worst class: rank 3
    top1, top5 = ops.topk_correct(scores, labels, device=device)
    assert (top1, top5) == (0, 50)


def test_int64_labels_are_accepted(device, rng):
    logits, labels = _inputs(rng, 9, 5)
    wide = labels.astype(np.int64)
    loss32, probs32 = ops.softmax_xent_forward(logits, labels, device=device)
    loss64, probs64 = ops.softmax_xent_forward(logits, wide, device=device)
    assert loss64 == loss32
    np.testing.assert_array_equal(probs64, probs32)
    np.testing.assert_array_equal(ops.softmax_xent_backward(probs32, wide, device=device),
                                  ops.softmax_xent_backward(probs32, labels, device=device))
    assert ops.topk_correct(logits, wide, device=device) == ops.topk_correct(logits, labels, device=device)


@pytest.mark.parametrize("bad", [5, -1])
def test_labels_out_of_range(device, bad):
    logits = np.zeros((3, 5), dtype=np.float32)
    labels = np.array([0, bad, 1], dtype=np.int32)
    with pytest.raises(ValueError, match=r"softmax_xent_forward: label .* out of range \[0, 5\)"):
        ops.softmax_xent_forward(logits, labels, device=device)
    with pytest.raises(ValueError, match=r"softmax_xent_backward: label .* out of range"):
        ops.softmax_xent_backward(logits, labels, device=device)
    with pytest.raises(ValueError, match=r"topk_correct: label .* out of range"):
        ops.topk_correct(logits, labels, device=device)
    with pytest.raises(ValueError, match="softmax_xent_forward: labels must be in"):
        ref.softmax_xent_forward(logits, labels)


def test_bad_shapes_and_dtypes(device):
    with pytest.raises(ValueError, match="softmax_xent_forward: expected 3 labels"):
        ops.softmax_xent_forward(np.zeros((3, 5), np.float32), np.zeros(4, np.int32), device=device)
    with pytest.raises(ValueError, match="softmax_xent_forward: expected logits with 2 dimensions"):
        ops.softmax_xent_forward(np.zeros(5, np.float32), np.zeros(5, np.int32), device=device)
    with pytest.raises(TypeError, match="softmax_xent_forward: expected logits of dtype float32"):
        ops.softmax_xent_forward(np.zeros((3, 5)), np.zeros(3, np.int32), device=device)
    with pytest.raises(TypeError, match="softmax_xent_forward: expected labels of dtype int32"):
        ops.softmax_xent_forward(np.zeros((3, 5), np.float32), np.zeros(3, np.float32), device=device)
    with pytest.raises(ValueError, match="softmax_xent_forward: labels out of the int32 range"):
        ops.softmax_xent_forward(np.zeros((1, 5), np.float32), np.array([2**40], np.int64), device=device)
