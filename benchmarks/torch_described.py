"""A PyTorch twin of any described network (``alexnet_cuda.nets``), for the parity run (benchmarks/parity.py).

It computes what ``alexnet_cuda.reference.described`` computes, with PyTorch's own operators and autograd instead of
our hand-written backward passes, so agreeing with it is an independent check of a whole training step. Dense, like
the reference: the towers are groups (a layer reading its own tower's maps is grouped, except on the images), and
cross-map LRN and dropout work on each tower's block of channels.

Each layer kind is written from documented PyTorch operators:
- conv: ``conv2d`` with groups; local (cuda-convnet's unshared filters): ``unfold`` of the zero-padded maps and one
  ``einsum`` with the per-position weights (h_out, w_out, in/groups, k, k, out);
- max and average pooling with cuda-convnet's geometry (windows from ``start`` every ``stride``, clipped to the
  maps): the maps padded with -inf (max) or zeros (average, divided by the count of real elements in the window);
- cross-map LRN (Section 3.3) and within-map ``rnorm``: sums of squares by average pooling over zero-padded squares;
- linear (block-diagonal per tower when it reads its own tower), dropout with OUR Philox masks (so both nets drop
  the same units), batchnorm is not mirrored (the parity nets have none).

The update is ``torch.optim.SGD`` with one parameter group per tensor at our per-layer settings
(``AlexNet.learning``): lr x lr_scale, the layer's momentum, weight decay on weights only, which equals the paper's
update at a constant learning rate (benchmarks/parity.py's docstring has the algebra).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from alexnet_cuda.nets.description import NetDescription, layer_table, resolved_settings
from alexnet_cuda.reference.described import dense_params, pool_outputs, tower_groups
from alexnet_cuda.reference.dropout import dropout_mask
from alexnet_cuda.reference.network import dropout_offset


class DescribedTwin:
    """``desc`` in PyTorch with ``model``'s weights (an ``AlexNet.from_description`` network) in ``dtype``."""

    def __init__(self, torch: Any, desc: NetDescription, model: Any, lr: float, momentum: float,
                 weight_decay: float, dtype: str = "float64", seed: int = 0):
        self.torch, self.F, self.desc, self.seed = torch, torch.nn.functional, desc, seed
        self.dtype = getattr(torch, dtype)
        self.layers = [(layer, resolved_settings(layer)) for layer in desc.layers]
        unsupported = sorted({layer.kind for layer, _ in self.layers} - set(self._FORWARD))
        if unsupported:
            raise ValueError(f"DescribedTwin: no PyTorch form of {', '.join(unsupported)} layers")
        self.rows = {r["name"]: r for r in layer_table(desc) if r["tower"] == 0}
        self.dropouts = [layer.name for layer, _ in self.layers if layer.kind == "dropout"]
        self.p = {k: torch.tensor(v, dtype=self.dtype, requires_grad=True)
                  for k, v in dense_params(model.state_dict(), desc).items()}
        self.opt = torch.optim.SGD(self._groups(model, lr, momentum, weight_decay), lr=lr, momentum=momentum)

    def _groups(self, model: Any, lr: float, momentum: float, weight_decay: float) -> list[dict]:
        """One SGD group per dense tensor, at the settings of its tower-0 tensor in ``model``."""
        modules = {layer.name: (layer.module or layer.name) for layer, _ in self.layers}
        groups = []
        for key, tensor in self.p.items():
            name, kind = key.rsplit(".", 1)
            own = model.learning(f"{modules[name]}.tower0.{kind}")
            decay = weight_decay if own["weight_decay"] is None else own["weight_decay"]
            groups.append({"params": [tensor], "lr": lr * own["lr_scale"],
                           "momentum": momentum if own["momentum"] is None else own["momentum"],
                           "weight_decay": decay if kind == "weight" else 0.0})
        return groups

    # ---- layers ---------------------------------------------------------------------------------------------------
    def _act(self, x, s: dict):
        a = s.get("activation")
        return self.torch.relu(x) if a == "relu" else self.torch.tanh(x) if a == "tanh" else x

    def _conv(self, layer, s, x, step):
        return self.F.conv2d(x, self.p[f"{layer.name}.weight"], self.p.get(f"{layer.name}.bias"), s["stride"],
                             s["padding"], groups=tower_groups(self.desc, layer))

    def _local(self, layer, s, x, step):
        w = self.p[f"{layer.name}.weight"]  # (h_out, w_out, in/groups, k, k, out)
        h_out, w_out, cg, k, _, c_out = w.shape
        stride, pad, n = s["stride"], s["padding"], x.shape[0]
        bottom = max(pad, (h_out - 1) * stride + k - x.shape[2] - pad)  # cuda-convnet's ceil rule may overhang
        right = max(pad, (w_out - 1) * stride + k - x.shape[3] - pad)
        xp = self.F.pad(x, (pad, right, pad, bottom))
        cols = self.F.unfold(xp, k, stride=stride)  # (n, c*k*k, positions)
        rows, columns = (xp.shape[2] - k) // stride + 1, (xp.shape[3] - k) // stride + 1
        cols = cols.view(n, x.shape[1], k, k, rows, columns)[..., :h_out, :w_out]
        groups = tower_groups(self.desc, layer)
        mg = c_out // groups
        y = self.torch.cat([self.torch.einsum("ncrqhw,hwcrqo->nohw", cols[:, g * cg:(g + 1) * cg],
                                              w[..., g * mg:(g + 1) * mg]) for g in range(groups)], dim=1)
        bias = self.p.get(f"{layer.name}.bias")
        return y if bias is None else y + bias

    def _pool(self, layer, s, x, step):
        size, stride, start = s["size"], s["stride"], s["start"]
        out = pool_outputs(s, self.rows[layer.name]) or (x.shape[2] - start - size) // stride + 1
        left = max(0, -start)
        x = x[:, :, max(0, start):, max(0, start):]
        right = max(0, (out - 1) * stride + size - left - x.shape[2])
        if layer.kind == "maxpool":
            padded = self.F.pad(x, (left, right, left, right), value=float("-inf"))
            return self.F.max_pool2d(padded, size, stride)[:, :, :out, :out]
        ones = self.torch.ones_like(x[:1, :1])
        total = self.F.avg_pool2d(self.F.pad(x, (left, right, left, right)), size, stride)
        count = self.F.avg_pool2d(self.F.pad(ones, (left, right, left, right)), size, stride)
        return (total / count)[:, :, :out, :out]  # the mean of the window's elements inside the maps

    def _lrn(self, layer, s, x, step):
        size, alpha, beta, k = s["size"], s["alpha"], s["beta"], s["k"]
        out = []
        for block in x.chunk(self.desc.towers, dim=1):  # the window never crosses towers
            sq = self.F.pad((block * block).unsqueeze(1), (0, 0, 0, 0, size // 2, (size - 1) // 2))
            sums = self.F.avg_pool3d(sq, (size, 1, 1), stride=1).squeeze(1) * size
            out.append(block * (k + alpha / size * sums) ** (-beta))
        return self.torch.cat(out, dim=1)

    def _spatial_lrn(self, layer, s, x, step):
        size, alpha, beta, k = s["size"], s["alpha"], s["beta"], s["k"]
        before, after = size // 2, size - 1 - size // 2
        sums = self.F.avg_pool2d(self.F.pad(x * x, (before, after, before, after)), size, stride=1) * size * size
        return x * (k + alpha / size ** 2 * sums) ** (-beta)  # the divisor stays size^2 where clipped

    def _linear(self, layer, s, x, step):
        x = x.flatten(1)
        w, b = self.p[f"{layer.name}.weight"], self.p.get(f"{layer.name}.bias")
        groups = tower_groups(self.desc, layer)
        if groups == 1:
            return self.F.linear(x, w, b)
        ws, bs = w.chunk(groups, dim=0), (b.chunk(groups) if b is not None else [None] * groups)
        return self.torch.cat([self.F.linear(xb, wg, bg) for xb, wg, bg in zip(x.chunk(groups, dim=1), ws, bs)],
                              dim=1)

    def _dropout(self, layer, s, x, step):
        if step is None or s["p"] == 0:
            return x
        k, hidden = self.dropouts.index(layer.name), len(self.dropouts)
        blocks = x.chunk(self.desc.towers, dim=1)
        keep = [dropout_mask(tuple(b.shape), s["p"], self.seed, dropout_offset(step, k, t, hidden))
                for t, b in enumerate(blocks)]
        scale = np.concatenate([np.where(m, 1.0 / (1.0 - s["p"]), 0.0) for m in keep], axis=1)
        return x * self.torch.from_numpy(scale).to(self.dtype)

    _FORWARD = {"conv": _conv, "local": _local, "maxpool": _pool, "avgpool": _pool, "lrn": _lrn,
                "spatial_lrn": _spatial_lrn, "linear": _linear, "dropout": _dropout}

    # ---- the net ----------------------------------------------------------------------------------------------------
    def forward(self, x, step: int | None):
        """Logits; ``step`` is the training step whose dropout masks to apply (None: evaluation, no dropout)."""
        for layer, s in self.layers:
            x = self._act(self._FORWARD[layer.kind](self, layer, s, x, step), s)
        return x

    def loss_and_grads(self, x: np.ndarray, labels: np.ndarray, step: int | None) -> tuple[float, dict]:
        return loss_and_grads(self, x, labels, step)

    def train_step(self, x: np.ndarray, labels: np.ndarray, step: int) -> float:
        return train_step(self, x, labels, step)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return predict(self, x)


# What every twin does with its ``forward(x, step)``, its dense tensors ``p`` and its optimizer ``opt``.
def _loss(twin: Any, x: np.ndarray, labels: np.ndarray, step: int | None):
    torch = twin.torch
    logits = twin.forward(torch.from_numpy(np.asarray(x)).to(twin.dtype), step)
    return twin.F.cross_entropy(logits, torch.from_numpy(np.asarray(labels).astype(np.int64)))


def loss_and_grads(twin: Any, x: np.ndarray, labels: np.ndarray, step: int | None) -> tuple[float, dict]:
    """Loss and the dense gradients, without an update (to compare with the reference)."""
    for t in twin.p.values():
        t.grad = None
    loss = _loss(twin, x, labels, step)
    loss.backward()
    return float(loss.detach()), {k: t.grad.numpy() for k, t in twin.p.items()}


def train_step(twin: Any, x: np.ndarray, labels: np.ndarray, step: int) -> float:
    """One SGD step on the batch with our dropout masks of training step ``step``; the loss before it."""
    twin.opt.zero_grad()
    loss = _loss(twin, x, labels, step)
    loss.backward()
    twin.opt.step()
    return float(loss.detach())


def predict(twin: Any, x: np.ndarray) -> np.ndarray:
    """Logits with dropout off."""
    with twin.torch.no_grad():
        return twin.forward(twin.torch.from_numpy(np.asarray(x)).to(twin.dtype), None).numpy()
