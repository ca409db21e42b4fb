"""A stand-in for :class:`alexnet_cuda.AlexNet` with the same Python API, for fast tests of the training driver.

``FakeAlexNet`` is a softmax regression on 4x4 average-pooled input patches, in NumPy: it takes the same uint8
batches, crops, flips and colour shifts (through :func:`alexnet_cuda.data.apply_augmentation`), has dropout driven
by the ``step`` counter (so exact resume is tested the same way as with the real network), the paper's SGD with
momentum and weight decay, state dicts, and learns the synthetic dataset well enough for "the loss falls" tests.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np

from alexnet_cuda.data import apply_augmentation

StepResult = namedtuple("StepResult", ["loss", "top1", "top5"])

GRID = 4  # features: the input patch average-pooled to GRID x GRID per channel


class FakeAlexNet:
    def __init__(self, num_classes=1000, devices=None, arch="alexnet", input_size=None, *, lrn=True,
                 overlapping_pool=True, activation="relu", dropout=0.5, towers=2, bias_init=1.0, weight_std=0.01,
                 seed=0, widths=None, norm="lrn", bn_position="before_pool", head=None, optimizer="sgd",
                 adam_betas=(0.9, 0.999), adam_eps=1e-8):
        # The variants (norm, head, optimizer) change nothing in this stand-in: it stays one linear layer with SGD.
        if arch not in ("alexnet", "alexnet-small"):
            raise ValueError(f"FakeAlexNet: unknown arch {arch!r}")
        self.arch = arch
        self.input_size = int(input_size or (227 if arch == "alexnet" else 32))
        self.num_classes = int(num_classes)
        self.devices = ["cpu"] * towers if devices in (None, "auto") else list(devices)
        self.dropout, self.seed = float(dropout), int(seed)
        rng = np.random.default_rng(seed)
        feat = 3 * GRID * GRID
        self.params = {"fc.weight": rng.normal(0, weight_std, (self.num_classes, feat)).astype(np.float32),
                       "fc.bias": np.zeros(self.num_classes, np.float32)}
        self.momentum = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.mean = None
        self.scale = 1.0
        self.step = 0
        self.train_calls = 0  # tests look at this

    @classmethod
    def from_description(cls, desc, devices=None, *, seed=0, optimizer="sgd", adam_betas=(0.9, 0.999),
                         adam_eps=1e-8):
        """A described network's stand-in: the same softmax regression at the description's input side and classes
        (what the driver reads of a network: ``input_size``, ``num_classes``, ``towers``, ``arch``)."""
        model = cls(desc.classes, devices, "alexnet-small", desc.input_size, towers=desc.towers, seed=seed)
        model.arch, model.description = desc.name, desc
        return model

    # ---- API ---------------------------------------------------------------------------------------------------
    def set_normalization(self, mean, scale=1.0):
        self.mean = np.asarray(mean, np.float32)
        self.scale = float(scale)

    def _features(self, images, crops, flips, rgb_shift):
        n, s = images.shape[0], images.shape[1]
        if crops is None:
            c = (s - self.input_size) // 2
            crops = np.full((n, 2), c, np.int32)
        params = {"crops": crops, "flips": np.zeros(n, np.int32) if flips is None else flips,
                  "rgb_shift": np.zeros((n, 3), np.float32) if rgb_shift is None else rgb_shift}
        mean = self.mean
        if mean is not None and mean.ndim == 1:
            mean = np.broadcast_to(mean[:, None, None], (3, s, s))
        x = apply_augmentation(images, params, self.input_size, mean) * self.scale
        b = self.input_size // GRID
        x = x[:, :, :b * GRID, :b * GRID].reshape(n, 3, GRID, b, GRID, b).mean(axis=(3, 5))
        return x.reshape(n, -1).astype(np.float64) / 64.0

    def _forward(self, f, training):
        mask = None
        if training and self.dropout > 0:
            rng = np.random.default_rng([self.seed, self.step])
            mask = (rng.random(f.shape) >= self.dropout) / (1.0 - self.dropout)
            f = f * mask
        w, b = self.params["fc.weight"].astype(np.float64), self.params["fc.bias"].astype(np.float64)
        logits = f @ w.T + b
        z = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        probs = e / e.sum(axis=1, keepdims=True)
        return f, probs

    @staticmethod
    def _metrics(probs, labels):
        n = len(labels)
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = float(-np.mean(np.log(probs[np.arange(n), labels])))
        order = np.argsort(-probs, axis=1, kind="stable")
        top1 = float(np.mean(order[:, 0] == labels))
        top5 = float(np.mean((order[:, :5] == labels[:, None]).any(axis=1)))
        return StepResult(loss, top1, top5)

    def train_step(self, images, labels, lr, momentum=0.9, weight_decay=5e-4, *, crops=None, flips=None,
                   rgb_shift=None):
        labels = np.asarray(labels)
        f, probs = self._forward(self._features(images, crops, flips, rgb_shift), training=True)
        result = self._metrics(probs, labels)
        n = len(labels)
        dlogits = probs.copy()
        dlogits[np.arange(n), labels] -= 1.0
        dlogits /= n
        grads = {"fc.weight": dlogits.T @ f, "fc.bias": dlogits.sum(axis=0)}
        with np.errstate(over="ignore", invalid="ignore"):
            for k, w in self.params.items():  # the paper's update (Section 5)
                v = momentum * self.momentum[k] - weight_decay * lr * w - lr * grads[k]
                self.momentum[k] = v.astype(np.float32)
                self.params[k] = (w + self.momentum[k]).astype(np.float32)
        self.step += 1
        self.train_calls += 1
        return result

    def evaluate(self, images, labels, *, crops=None, flips=None):
        _, probs = self._forward(self._features(images, crops, flips, None), training=False)
        return self._metrics(probs, np.asarray(labels))

    def predict(self, images, *, crops=None, flips=None):
        _, probs = self._forward(self._features(images, crops, flips, None), training=False)
        return probs.astype(np.float32)

    def state_dict(self):
        return {k: v.copy() for k, v in self.params.items()}

    def load_state_dict(self, d):
        if set(d) != set(self.params):
            raise ValueError(f"FakeAlexNet.load_state_dict: expected keys {sorted(self.params)}, got {sorted(d)}")
        for k, v in d.items():
            if v.shape != self.params[k].shape:
                raise ValueError(f"FakeAlexNet.load_state_dict: {k} has shape {v.shape}, "
                                 f"expected {self.params[k].shape}")
            self.params[k] = np.array(v, np.float32)

    def optimizer_state_dict(self):
        return {k: v.copy() for k, v in self.momentum.items()}

    def load_optimizer_state_dict(self, d):
        for k, v in d.items():
            self.momentum[k] = np.array(v, np.float32)

    def num_parameters(self):
        return int(sum(v.size for v in self.params.values()))

    def peak_memory(self):
        return {d: 0 for d in self.devices}
