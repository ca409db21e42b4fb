"""The paper's network (Krizhevsky, Sutskever, Hinton 2012, Section 3.5, Figure 2) as a Python class, and any other
network described as data.

``AlexNet(...)`` builds the paper's network or one of its variants; ``AlexNet.from_description(desc)`` builds any
description (``alexnet_cuda.nets``: a network file, cuda-convnet's layer files, the built-in CIFAR-10 networks). Both
are the same C++ engine (``csrc/network.h``) built from a description: ``AlexNet(...)`` describes its options with
``alexnet_cuda.nets.alexnet.alexnet`` first, and ``self.description`` is the description either way.

:class:`AlexNet` wraps the C++ network (``csrc/network.h``), which composes the ops of ``csrc/ops.h`` into two towers
like cuda-convnet: each tower holds half of every layer's kernels/neurons and lives on its own device, and the towers
exchange activations only at conv3's input and at the inputs of fc6, fc7 and fc8 (their gradients flow back and are
summed at the same points). A training step (forward, softmax cross-entropy, backward, the paper's SGD update) runs
entirely in C++ with the GIL released.

Layers (totals; each tower has half, fc8's classes split ceil/floor between the towers)::

    input 3x227x227
    conv1 96@11x11 stride 4 -> ReLU -> LRN -> maxpool 3/2     55x55 -> 27x27
    conv2 256@5x5 pad 2 (each tower: its own 48 maps)         27x27 -> LRN -> maxpool -> 13x13
    conv3 384@3x3 pad 1 (all 256 maps: exchange)              13x13
    conv4 384@3x3 pad 1, conv5 256@3x3 pad 1 (own tower)      13x13 -> maxpool -> 6x6
    fc6 4096, fc7 4096 (inputs from both towers) -> ReLU -> dropout 0.5
    fc8 num_classes -> softmax cross-entropy

Tower-local details: LRN sums over adjacent kernel maps of the same tower (each GPU normalized its own maps in
cuda-convnet: the window stops at the tower boundary), and each tower draws its own dropout mask.

Why 227 and not the paper's 224: conv1 has 11x11 kernels at stride 4 and the paper reports 55x55 maps;
(227 - 11) / 4 + 1 = 55 exactly, while (224 - 11) / 4 + 1 = 54.25 does not divide. 60,965,224 parameters at 1000
classes.

Parameter names (``state_dict``) follow torchvision's AlexNet positions, with the tower split explicit:
``'<module>.tower<T>.weight'`` / ``'.bias'`` where module is ``features.0`` (conv1), ``features.3`` (conv2),
``features.6`` (conv3), ``features.8`` (conv4), ``features.10`` (conv5), ``classifier.1`` (fc6), ``classifier.4``
(fc7), ``classifier.6`` (fc8), and T the tower (0, 1; only 0 when towers=1). Tower T's conv2 weight
(``features.3.towerT.weight``) is (128, 48, 5, 5) and sees only tower T's conv1 maps; its conv3 weight is
(192, 256, 3, 3) over both towers' conv2 maps in tower order (tower 0's 128 maps first); fc6 weights are
(2048, 9216) over the flattened (channel, y, x) conv5 maps of tower 0 then tower 1; ``classifier.6.tower0`` holds
classes [0, ceil(C/2)) and ``classifier.6.tower1`` the rest. :func:`alexnet_cuda.reference.network.merge_towers`
turns this into the equivalent one-tower (grouped-convolution) layout.

Ablations (constructor options): ``lrn=False`` drops both LRN layers; ``overlapping_pool=False`` pools 2x2 with
stride 2 (the paper's s = z = 2 baseline; at 227 the maps are 55 -> 27 -> 13 -> 6 exactly as with 3/2 pooling, so fc6
still has 9216 inputs; alexnet-small at 32 gets 32 -> 16 -> 8 -> 4, fc6 input 256*4*4 = 4096); ``activation='tanh'``;
``dropout=0.0``; ``towers=1``: the one-GPU net of the paper's footnote (Section 6.1): half the kernels of conv1-conv4
(48, 128, 192, 192), but conv5 keeps 256 and fc6/fc7 keep 4096 ("we did not halve the size of the final convolutional
layer (nor the fully-connected layers which follow)"), so it has about as many parameters (59,798,312 at 1000
classes). ``arch='alexnet-small'``: the same 5 conv + 3 fc layers for 32x32 (CIFAR-10) or 64x64 (Tiny ImageNet)
inputs: conv1 5x5 pad 2 (stride 1 at 32, 2 at 64), conv2 5x5 pad 2, conv3-5 3x3 pad 1, the paper's channel counts,
3/2 pooling (32 -> 15 -> 7 -> 3), fc6/fc7 of 1024.

Variants (issue 10): ``head`` = the arch's default hidden widths (the paper's ``[4096, 4096]``; ``[1024, 1024]`` for
alexnet-small), any list of hidden widths (``[2000, 200]``, ``[]``; each hidden layer is linear -> activation ->
dropout, split between the towers like fc6/fc7), or ``'gap'`` (the conv5 block -> global average pooling, each tower
its own maps -> one linear layer to the classes). ``norm`` = ``'lrn'`` (the paper), ``'none'``, or ``'batchnorm'``
(Ioffe & Szegedy 2015) after every conv, each tower normalizing its own channels: by default
(``bn_position='before_pool'``) conv -> BN -> activation -> pool, BN on the conv's output before the nonlinearity as in
Ioffe & Szegedy's Section 3.2; ``'after_pool'``: conv -> activation -> pool -> BN in conv1, conv2, conv5 (the common
Keras AlexNet). A conv that BN directly follows has no bias (BN's mean subtraction cancels it, Section 3.2; its shift
replaces it). BN uses the batch's statistics in ``train_step``/``compute_gradients`` and updates its running mean and
(unbiased) variance with momentum 0.1 (PyTorch's convention), eps 1e-5; ``evaluate``/``predict`` use the running
statistics. ``optimizer`` = ``'sgd'`` (Section 5), ``'adam'`` (Kingma & Ba 2015; weight decay as L2 in the gradient)
or ``'adamw'`` (Loshchilov & Hutter 2019; decoupled decay), with ``adam_betas`` and ``adam_eps``; Adam's timestep is
``step + 1``, so restoring ``step`` and :meth:`optimizer_state_dict` resumes it exactly.

Names of the variants' tensors: hidden fc layer k is ``classifier.<3k+1>`` and the output layer
``classifier.<3*hidden>`` (torchvision's Dropout/Linear/ReLU positions: the paper's head keeps classifier.1/.4/.6;
the GAP head's only layer is ``classifier.0``; the layer names are fc6, fc7, ...). A conv's BatchNorm takes the
position of the ReLU after it in torchvision: ``features.1`` (conv1), ``features.4``, ``features.7``, ``features.9``,
``features.11`` (conv5), with PyTorch's ``weight``, ``bias``, ``running_mean``, ``running_var``. The running
statistics are buffers: in :meth:`state_dict` and checkpoints, not in :meth:`parameter_names` nor in
:meth:`num_parameters`.

Initialization (Section 5): weights N(0, weight_std^2) with weight_std 0.01; biases ``bias_init`` (1 in the paper;
Caffe uses 0.1) in conv2, conv4, conv5, fc6 and fc7 and 0 elsewhere. The numbers come from a Philox stream keyed by
``seed`` on the host, so every placement starts from the same weights.

Dropout masks come from Philox streams keyed by ``seed`` at offset ``4 * step + 2 * layer + tower`` (layer 0 = fc6,
1 = fc7): distinct per layer, tower and step, identical in every placement, and reproducible after a resume that
restores ``step``.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from . import _C
from .arguments import INT32_MAX, UINT64_MAX, float32_array, float_arg, int_arg
from .arguments import is_int as _is_int
from .arguments import is_real as _is_real
from .net_spec import alexnet_config, learning_settings, native_spec
from .nets.alexnet import alexnet
from .nets.description import NetDescription, layer_table
from .network_options import (BN_POSITIONS, DEFAULT_ADAM_BETAS, DEFAULT_ADAM_EPS, OPTIMIZERS, check_adam,
                              check_choice, parse_head, resolve_norm)

_ARCHS = ("alexnet", "alexnet-small")
_ACTIVATIONS = ("relu", "tanh")


class StepResult(NamedTuple):
    """Mean loss of the batch and the fractions of it classified correctly at top-1 and top-5."""

    loss: float
    top1: float
    top5: float


def _check_finite(where: str, name: str, batch: np.ndarray) -> None:
    """Refuses a batch with NaN or inf in it, naming the first such image: one would poison conv1's weights, and
    ReLU would hide the damage from the loss downstream (issue 9)."""
    finite = np.isfinite(batch.reshape(len(batch), -1)).all(axis=1)
    if not finite.all():
        raise ValueError(f"{where}: {name} of image {int(np.argmin(finite))} of the batch contain NaN or inf")


def _check_update_arguments(op: str, lr, momentum, weight_decay) -> None:
    for name, v, ok in (("lr", lr, lambda x: x >= 0), ("momentum", momentum, lambda x: 0 <= x < 1),
                        ("weight_decay", weight_decay, lambda x: x >= 0)):
        if not ok(float_arg(op, name, v)):
            raise ValueError(f"{op}: bad {name}={v!r} (lr >= 0, 0 <= momentum < 1, weight_decay >= 0)")


def resolve_devices(devices: Any) -> list[str]:
    """The two tower devices for AlexNet's ``devices`` argument (see :class:`AlexNet`)."""
    if devices is None or devices == "auto":
        from .runtime import visible_gpus

        gpus = visible_gpus(emulated=False)
        return ["cuda:0", "cuda:1"] if gpus >= 2 else ["cuda:0", "cuda:0"] if gpus == 1 else ["cpu", "cpu"]
    if isinstance(devices, str):
        devices = [devices, devices]
    if not isinstance(devices, (list, tuple)) or len(devices) != 2 or not all(isinstance(d, str) for d in devices):
        raise TypeError(f"AlexNet: devices must be None, 'auto', a device string or a list of two device strings "
                        f"(one per tower), got {devices!r}")
    out = []
    for d in devices:
        try:
            out.append(_C.parse_device(d))
        except ValueError as exc:
            raise ValueError(f"AlexNet: bad device {d!r}: {exc}") from None
    if (out[0] == "cpu") != (out[1] == "cpu"):
        raise ValueError(f"AlexNet: the two towers must be both on the CPU or both on GPUs, got {out}")
    return out


class AlexNet:
    """The paper's two-tower network: train, evaluate, predict, and its parameters by name.

    Args:
        num_classes: output classes (>= 2).
        devices: None or 'auto' (two GPUs -> ['cuda:0', 'cuda:1'], one -> ['cuda:0', 'cuda:0'], none ->
            ['cpu', 'cpu']), one device string for both towers, or a list of two (tower 0's, tower 1's).
        arch: 'alexnet' (227x227 inputs) or 'alexnet-small' (32x32 or 64x64).
        input_size: 227 for 'alexnet'; 32 (default) or 64 for 'alexnet-small'.
        lrn, overlapping_pool, activation, dropout, towers: the paper's choices and their ablations (module doc).
        bias_init, weight_std: initialization (Section 5). seed: initialization and dropout streams.
        widths: optional dict {'conv': [5 totals], 'fc': [hidden fc totals]} overriding the layer widths (each a
            multiple of ``towers``); used by the tests to build tiny nets. 'fc' is the same as ``head``.
        norm, bn_position, head, optimizer, adam_betas, adam_eps: the variants (module doc). ``lrn=False`` with the
            default ``norm='lrn'`` means ``norm='none'``.
    """

    def __init__(self, num_classes=1000, devices=None, arch="alexnet", input_size=None, *, lrn=True,
                 overlapping_pool=True, activation="relu", dropout=0.5, towers=2, bias_init=1.0, weight_std=0.01,
                 seed=0, widths=None, norm="lrn", bn_position="before_pool", head=None, optimizer="sgd",
                 adam_betas=DEFAULT_ADAM_BETAS, adam_eps=DEFAULT_ADAM_EPS):
        int_arg("AlexNet", "num_classes", num_classes, 2, INT32_MAX)
        if arch not in _ARCHS:
            raise ValueError(f"AlexNet: arch must be one of {_ARCHS}, got {arch!r}")
        if input_size is None:
            input_size = 227 if arch == "alexnet" else 32
        if not _is_int(input_size):
            raise TypeError(f"AlexNet: input_size must be an int, got {type(input_size).__name__}")
        if arch == "alexnet" and input_size != 227:
            raise ValueError(f"AlexNet: arch='alexnet' takes input_size=227 (the size giving the paper's 55x55 conv1 "
                             f"maps), got {input_size}")
        if arch == "alexnet-small" and input_size not in (32, 64):
            raise ValueError(f"AlexNet: arch='alexnet-small' takes input_size 32 or 64, got {input_size}")
        for name, value in (("lrn", lrn), ("overlapping_pool", overlapping_pool)):
            if not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"AlexNet: {name} must be True or False, got {value!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"AlexNet: activation must be one of {_ACTIVATIONS}, got {activation!r}")
        if not _is_real(dropout) or not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"AlexNet: dropout must be a number in [0, 1), got {dropout!r}")
        if not _is_int(towers) or towers not in (1, 2):
            raise ValueError(f"AlexNet: towers must be 1 or 2, got {towers!r}")
        float_arg("AlexNet", "bias_init", bias_init)
        if float_arg("AlexNet", "weight_std", weight_std) < 0:
            raise ValueError(f"AlexNet: weight_std must be >= 0, got {weight_std!r}")
        int_arg("AlexNet", "seed", seed, 0, UINT64_MAX)
        conv_channels = fc_width = None
        if widths is not None:
            if not isinstance(widths, dict) or not set(widths) <= {"conv", "fc"}:
                raise ValueError(f"AlexNet: widths must be a dict with keys 'conv' (5 ints) and/or 'fc' (2 ints), "
                                 f"got {widths!r}")
            conv_channels = widths.get("conv")
            fc_width = widths.get("fc")
            if conv_channels is not None and (not isinstance(conv_channels, (list, tuple)) or len(conv_channels) != 5
                                              or not all(_is_int(c) and 1 <= c <= INT32_MAX for c in conv_channels)):
                raise ValueError(f"AlexNet: widths['conv'] must be 5 positive ints, got {conv_channels!r}")
            if fc_width is not None and not isinstance(fc_width, (list, tuple)):
                raise ValueError(f"AlexNet: widths['fc'] must be a list of positive ints, got {fc_width!r}")
            conv_channels = None if conv_channels is None else [int(c) for c in conv_channels]
        head = parse_head(head)
        if fc_width is not None:
            if head is not None:
                raise ValueError("AlexNet: give the hidden fc widths once: head or widths['fc'], not both")
            head = parse_head(list(fc_width))
        norm = resolve_norm(norm, lrn)
        check_choice("AlexNet", "bn_position", bn_position, BN_POSITIONS)
        check_choice("AlexNet", "optimizer", optimizer, OPTIMIZERS)
        desc = alexnet(arch, int(input_size), int(num_classes), towers=int(towers), norm=norm,
                       bn_position=bn_position, overlapping_pool=bool(overlapping_pool), activation=activation,
                       dropout=float(dropout), conv_channels=conv_channels, head=head, weight_std=float(weight_std),
                       bias_init=float(bias_init))
        self._build(desc, devices, seed, optimizer, adam_betas, adam_eps)
        self._config = alexnet_config(desc, {"norm": norm, "bn_position": bn_position, "activation": activation,
                                             "dropout": float(dropout), "head": head})

    @classmethod
    def from_description(cls, desc: NetDescription, devices=None, *, seed=0, optimizer="sgd",
                         adam_betas=DEFAULT_ADAM_BETAS, adam_eps=DEFAULT_ADAM_EPS) -> "AlexNet":
        """The network of any description (alexnet_cuda.nets: a network file, a cuda-convnet layer file, a built-in
        name), with each layer's own learning settings (lr_weight, lr_bias, momentum_*, weight_decay: cuda-convnet's
        epsW, epsB, momW, momB, wc) applied with :meth:`set_learning`, so a step's ``lr`` multiplies them. Raises
        DescriptionError (a ValueError naming the layer and the field) for a description that cannot be built."""
        if not isinstance(desc, NetDescription):
            raise TypeError(f"AlexNet.from_description: expected a NetDescription, got {type(desc).__name__}")
        net = cls.__new__(cls)
        net._build(desc, devices, seed, optimizer, adam_betas, adam_eps)
        net._config = None
        for name, settings in learning_settings(desc).items():
            net.set_learning(name, **settings)
        return net

    def _build(self, desc: NetDescription, devices, seed, optimizer, adam_betas, adam_eps) -> None:
        int_arg("AlexNet", "seed", seed, 0, UINT64_MAX)
        check_choice("AlexNet", "optimizer", optimizer, OPTIMIZERS)
        self.adam_betas, self.adam_eps = check_adam(adam_betas, adam_eps)
        self.devices: list[str] = resolve_devices(devices)
        spec = native_spec(desc, seed=int(seed), optimizer=optimizer)
        self.description = desc
        self.num_classes = int(desc.classes)
        self.input_size = int(desc.input_size)
        self.arch = desc.name
        self.towers = int(desc.towers)
        self.optimizer = optimizer
        self.seed = int(seed)
        self._net = _C.Network(spec, self.devices)
        self._names = list(self._net.parameter_names())
        self._buffers = list(self._net.buffer_names())
        self._shapes = {n: tuple(self._net.get_tensor(n).shape) for n in self._names + self._buffers}
        self._mean_shape: tuple[int, ...] = (3,)

    # ---- properties ------------------------------------------------------------------------------------------------
    @property
    def step(self) -> int:
        """The dropout stream counter: train_step advances it; restore it when resuming (see the module doc)."""
        return int(self._net.step)

    @step.setter
    def step(self, value: int) -> None:
        if not _is_int(value) or value < 0:
            raise ValueError(f"AlexNet.step must be an int >= 0, got {value!r}")
        self._net.step = int(value)

    @property
    def sample_offset(self) -> int:
        """Position of the batch's first sample in the global batch of a data-parallel step (rank r of N with local
        batch n: r * n; 0 in one process). Dropout then draws each sample's mask from its global position, so N
        ranks draw the masks of one process with the whole batch (alexnet_cuda/train/distributed.py)."""
        return int(self._net.sample_offset)

    @sample_offset.setter
    def sample_offset(self, value: int) -> None:
        if not _is_int(value) or value < 0:
            raise ValueError(f"AlexNet.sample_offset must be an int >= 0, got {value!r}")
        self._net.sample_offset = int(value)

    @property
    def config(self) -> dict:
        """The layer widths, kernels, spatial sizes (conv_out, block_out, fc6_inputs) and options of an AlexNet built
        by the constructor (``head``: 'gap' or the hidden widths; ``fc_width``: the hidden widths); for a net built
        from a description, its name, input, classes, towers, optimizer, seed and devices."""
        c = {"arch": self.arch, "input_size": self.input_size, "num_classes": self.num_classes,
             "towers": self.towers, "optimizer": self.optimizer, "seed": self.seed,
             "devices": self.devices[:self.towers]}
        if self._config is not None:
            c.update(self._config)
            c["head"] = "gap" if c["gap_head"] else list(c["fc_width"])
        return c

    def __repr__(self) -> str:
        if self._config is None:
            return (f"AlexNet(net={self.arch!r}, input_size={self.input_size}, num_classes={self.num_classes}, "
                    f"towers={self.towers}, optimizer={self.optimizer!r}, devices={self.devices[:self.towers]}, "
                    f"parameters={self.num_parameters():,})")
        c = self.config
        return (f"AlexNet(arch={c['arch']!r}, input_size={c['input_size']}, num_classes={c['num_classes']}, "
                f"towers={c['towers']}, norm={c['norm']!r}, head={c['head']!r}, optimizer={c['optimizer']!r}, "
                f"devices={c['devices']}, parameters={self.num_parameters():,})")

    # ---- input -----------------------------------------------------------------------------------------------------
    def set_normalization(self, mean, scale=1.0) -> None:
        """Mean (3, H, W) per pixel or (3,) per channel, subtracted from uint8 inputs, then times ``scale``."""
        mean = np.asarray(mean)
        if mean.dtype.kind != "f":
            raise TypeError(f"AlexNet.set_normalization: expected a float mean, got dtype {mean.dtype}")
        if not (mean.shape == (3,) or (mean.ndim == 3 and mean.shape[0] == 3)):
            raise ValueError(f"AlexNet.set_normalization: expected a mean of shape (3,) or (3, H, W), got "
                             f"{mean.shape}")
        if mean.ndim == 3 and (mean.shape[1] < self.input_size or mean.shape[2] < self.input_size):
            raise ValueError(f"AlexNet.set_normalization: a per-pixel mean must be at least {self.input_size}x"
                             f"{self.input_size} (the image size), got {mean.shape}")
        float_arg("AlexNet.set_normalization", "scale", scale)
        if not np.isfinite(mean).all():
            raise ValueError("AlexNet.set_normalization: the mean contains NaN or inf")
        self._net.set_normalization(np.ascontiguousarray(mean, np.float32), float(scale))
        self._mean_shape = mean.shape

    def _batch(self, op: str, images, labels, crops, flips, rgb_shift, need_labels: bool):
        """Checks one batch completely (before anything runs) and returns the arrays the C++ side takes."""
        where = f"AlexNet.{op}"
        if not isinstance(images, np.ndarray):
            raise TypeError(f"{where}: expected images as a numpy.ndarray, got {type(images).__name__}")
        s = self.input_size
        if images.dtype == np.float32:
            if images.ndim != 4 or images.shape[1:] != (3, s, s) or images.shape[0] < 1:
                raise ValueError(f"{where}: expected float32 images of shape (N, 3, {s}, {s}), got {images.shape}")
            _check_finite(where, "images", images)
            if crops is not None or flips is not None or rgb_shift is not None:
                raise ValueError(f"{where}: crops, flips and rgb_shift apply to uint8 images only; float32 images "
                                 f"are used as given (already normalized)")
        elif images.dtype == np.uint8:
            if images.ndim != 4 or images.shape[3] != 3 or images.shape[0] < 1:
                raise ValueError(f"{where}: expected uint8 images of shape (N, H, W, 3), got {images.shape}")
            h, w = images.shape[1:3]
            if h < s or w < s:
                raise ValueError(f"{where}: uint8 images must be at least {s}x{s}, got {h}x{w}")
            if len(self._mean_shape) == 3 and self._mean_shape[1:] != (h, w):
                raise ValueError(f"{where}: the per-pixel mean is {self._mean_shape} but the images are {h}x{w}")
        else:
            raise TypeError(f"{where}: expected images as float32 (N, 3, {s}, {s}) or uint8 (N, H, W, 3), got dtype "
                            f"{images.dtype}")
        n = images.shape[0]
        images = np.ascontiguousarray(images)
        if labels is None:
            if need_labels:
                raise ValueError(f"{where}: labels are required")
        else:
            labels = np.asarray(labels)
            if labels.dtype.kind not in "iu":
                raise TypeError(f"{where}: expected integer labels, got dtype {labels.dtype}")
            if labels.shape != (n,):
                raise ValueError(f"{where}: expected labels of shape ({n},) (one per image), got {labels.shape}")
            if labels.min() < 0 or labels.max() >= self.num_classes:
                raise ValueError(f"{where}: labels must be in [0, {self.num_classes}), got values in "
                                 f"[{labels.min()}, {labels.max()}]")
            labels = np.ascontiguousarray(labels, np.int32)
        if crops is not None:
            crops = np.asarray(crops)
            if crops.dtype.kind not in "iu" or crops.shape != (n, 2):
                raise ValueError(f"{where}: expected integer crops of shape ({n}, 2) (y, x), got {crops.dtype} "
                                 f"{crops.shape}")
            h, w = images.shape[1:3]
            if (crops.min() < 0 or (crops[:, 0] > h - s).any() or (crops[:, 1] > w - s).any()):
                raise ValueError(f"{where}: crops must be in [0, {h - s}] x [0, {w - s}] for {s}x{s} crops of "
                                 f"{h}x{w} images")
            crops = np.ascontiguousarray(crops, np.int32)
        if flips is not None:
            flips = np.asarray(flips)
            if flips.dtype.kind not in "iub" or flips.shape != (n,):
                raise ValueError(f"{where}: expected flips of shape ({n},) (nonzero = mirror), got {flips.dtype} "
                                 f"{flips.shape}")
            flips = np.ascontiguousarray(flips != 0, np.int32)
        if rgb_shift is not None:
            rgb_shift = np.asarray(rgb_shift)
            if rgb_shift.dtype.kind != "f" or rgb_shift.shape != (n, 3):
                raise ValueError(f"{where}: expected float rgb_shift of shape ({n}, 3), got {rgb_shift.dtype} "
                                 f"{rgb_shift.shape}")
            rgb_shift = np.ascontiguousarray(rgb_shift, np.float32)
            _check_finite(where, "rgb_shift", rgb_shift)
        return images, labels, crops, flips, rgb_shift

    def _optimizer_settings(self, op: str, lr, momentum, weight_decay):
        """One update's settings: the step's lr, momentum (SGD) and weight decay, the constructor's Adam betas/eps."""
        _check_update_arguments(op, lr, momentum, weight_decay)
        opt = _C.OptimizerSettings()
        opt.lr, opt.momentum, opt.weight_decay = float(lr), float(momentum), float(weight_decay)
        (opt.beta1, opt.beta2), opt.eps = self.adam_betas, self.adam_eps
        return opt

    @staticmethod
    def _result(s) -> StepResult:
        return StepResult(float(s.loss), s.top1 / s.n, s.top5 / s.n)

    # ---- steps -----------------------------------------------------------------------------------------------------
    def train_step(self, images, labels, lr, momentum=0.9, weight_decay=5e-4, *, crops=None, flips=None,
                   rgb_shift=None) -> StepResult:
        """Forward, loss, backward and the update of this net's optimizer on one batch; advances ``step``.

        SGD is the paper's (Section 5) with ``momentum``; Adam/AdamW ignore ``momentum`` and use the constructor's
        ``adam_betas`` and ``adam_eps``. Weight decay applies to the conv and fc weights, not to the biases nor
        BatchNorm's scale and shift (cuda-convnet's setting for the paper's net).
        """
        opt = self._optimizer_settings("AlexNet.train_step", lr, momentum, weight_decay)
        images, labels, crops, flips, rgb_shift = self._batch("train_step", images, labels, crops, flips, rgb_shift,
                                                              True)
        s = self._net.train_step(images, labels, opt, crops, flips, rgb_shift)
        return self._result(s)

    def evaluate(self, images, labels, *, crops=None, flips=None) -> StepResult:
        """Loss and top-1/top-5 accuracy with dropout off and BatchNorm on its running statistics; no update."""
        images, labels, crops, flips, _ = self._batch("evaluate", images, labels, crops, flips, None, True)
        return self._result(self._net.evaluate(images, labels, crops, flips))

    def predict(self, images, *, crops=None, flips=None) -> np.ndarray:
        """Softmax probabilities (N, num_classes) float32, dropout off, BatchNorm on its running statistics."""
        images, _, crops, flips, _ = self._batch("predict", images, None, crops, flips, None, False)
        return self._net.predict(images, crops, flips)

    def compute_gradients(self, images, labels, *, training=True, crops=None, flips=None,
                          rgb_shift=None) -> StepResult:
        """Forward and backward without an update or a step advance (dropout on when ``training``; BatchNorm uses
        the batch's statistics either way and updates its running statistics); then :meth:`gradients` and
        :meth:`logits` hold the results. For tests and inspection."""
        images, labels, crops, flips, rgb_shift = self._batch("compute_gradients", images, labels, crops, flips,
                                                              rgb_shift, True)
        return self._result(self._net.compute_gradients(images, labels, bool(training), crops, flips, rgb_shift))

    def apply_update(self, lr, momentum=0.9, weight_decay=5e-4) -> None:
        """The update half of :meth:`train_step` from the current gradients (those of :meth:`compute_gradients`
        with ``training=True``, possibly replaced by :meth:`set_gradients`); advances ``step``.
        ``compute_gradients`` + ``apply_update`` equals ``train_step`` bit for bit: data-parallel training averages
        the gradients across ranks between the two."""
        self._net.apply_update(self._optimizer_settings("AlexNet.apply_update", lr, momentum, weight_decay))

    def set_learning(self, name: str, *, lr_scale: float = 1.0, momentum: float | None = None,
                     weight_decay: float | None = None) -> None:
        """Parameter ``name``'s own learning settings, as cuda-convnet gives each layer (epsW and epsB as multiples
        of the step's learning rate, momW/momB, wc): its updates use ``lr * lr_scale``, and ``momentum`` and
        ``weight_decay`` instead of the step's when given (None: the step's). Weight decay still never applies to
        biases or BatchNorm's scale and shift. The settings are not stored in checkpoints."""
        op = "AlexNet.set_learning"
        if name not in self._names:
            raise ValueError(f"{op}: {name!r} is not a trained parameter of this network (see state_dict())")
        _check_update_arguments(op, lr_scale, 0.0 if momentum is None else momentum,
                                0.0 if weight_decay is None else weight_decay)
        nan = float("nan")
        self._net.set_learning(name, float(lr_scale), nan if momentum is None else float(momentum),
                               nan if weight_decay is None else float(weight_decay))

    def learning(self, name: str) -> dict:
        """Parameter ``name``'s own learning settings (:meth:`set_learning`); None: the step's."""
        if name not in self._names:
            raise ValueError(f"AlexNet.learning: {name!r} is not a trained parameter of this network")
        lr_scale, momentum, weight_decay = self._net.learning(name)
        return {"lr_scale": lr_scale, "momentum": None if math.isnan(momentum) else momentum,
                "weight_decay": None if math.isnan(weight_decay) else weight_decay}

    def set_gradients(self, grads: dict) -> None:
        """Replace the gradients of the last :meth:`compute_gradients` (float32 arrays of the parameters' shapes,
        by name; names left out keep theirs)."""
        for n, g in grads.items():
            if n not in self._names:
                raise ValueError(f"AlexNet.set_gradients: unknown parameter {n!r}")
            self._net.set_gradient(n, np.ascontiguousarray(g, dtype=np.float32))

    def gradients(self) -> dict[str, np.ndarray]:
        """The gradients of the last :meth:`compute_gradients`, by parameter name."""
        out = {}
        for n in self._names:
            g = self._net.get_gradient(n)
            if g is None:
                raise ValueError("AlexNet.gradients: call compute_gradients first")
            out[n] = g
        return out

    def logits(self) -> np.ndarray:
        """The logits (N, num_classes) of the last :meth:`compute_gradients`."""
        z = self._net.logits()
        if z is None:
            raise ValueError("AlexNet.logits: call compute_gradients first")
        return z

    # ---- parameters ------------------------------------------------------------------------------------------------
    def parameter_names(self) -> list[str]:
        """The trainable parameters' names (:meth:`state_dict` also holds the BatchNorm running statistics)."""
        return list(self._names)

    def buffer_names(self) -> list[str]:
        """The BatchNorm running statistics' names ('features.1.tower0.running_mean', ...); empty without BN."""
        return list(self._buffers)

    def num_parameters(self) -> int:
        """Trainable parameters of this variant (running statistics are not counted, as in PyTorch)."""
        return int(self._net.num_parameters())

    def layers(self) -> list[dict]:
        """This net's layer table (the one its parameters were created from): per layer and tower the name, kind,
        input/output shapes per image, weight shape, parameters and multiply-adds (see alexnet_cuda.summary)."""
        return layer_table(self.description)

    def summary(self) -> str:
        """The layer table as text, with the totals (``print(net.summary())``; alexnet_cuda.summary says what the
        multiply-adds count)."""
        from .nets.table import format_table

        return format_table(self.layers(), repr(self))

    def state_dict(self) -> dict[str, np.ndarray]:
        """Every parameter and BatchNorm running statistic by name (module doc: '<layer>.tower<T>.weight'), as
        float32 host copies."""
        return {n: self._net.get_tensor(n) for n in self._names + self._buffers}

    def _optimizer_slots(self) -> dict[str, tuple[str, str]]:
        """Key of each optimizer state tensor -> (parameter, slot). SGD: the momentum buffer under the parameter's
        own name (as checkpoints have always stored it); Adam: '<name>.exp_avg' (m) and '<name>.exp_avg_sq' (v),
        PyTorch's names."""
        if self.optimizer == "sgd":
            return {n: (n, "momentum") for n in self._names}
        slots = {}
        for n in self._names:
            slots[f"{n}.exp_avg"] = (n, "momentum")
            slots[f"{n}.exp_avg_sq"] = (n, "variance")
        return slots

    def optimizer_state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state per parameter (SGD: momentum by the parameter's name; Adam: '<name>.exp_avg',
        '<name>.exp_avg_sq'); Adam's step count is :attr:`step`."""
        return {k: self._net.get_tensor(n, slot) for k, (n, slot) in self._optimizer_slots().items()}

    def _check_state(self, op: str, state, shapes: dict[str, tuple]) -> dict[str, np.ndarray]:
        if not isinstance(state, dict):
            raise TypeError(f"AlexNet.{op}: expected a dict of arrays by name, got {type(state).__name__}")
        missing = [n for n in shapes if n not in state]
        unexpected = [k for k in state if k not in shapes]
        if missing or unexpected:
            raise ValueError(f"AlexNet.{op}: state does not match this network: missing {missing[:6]}"
                             f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}"
                             f"{'...' if len(unexpected) > 6 else ''}")
        out = {}
        for n, shape in shapes.items():
            a = np.asarray(state[n])
            if a.dtype.kind != "f":
                raise TypeError(f"AlexNet.{op}: {n} must be a float array, got dtype {a.dtype}")
            if a.shape != shape:
                raise ValueError(f"AlexNet.{op}: {n} has shape {a.shape}, expected {shape}")
            out[n] = float32_array(f"AlexNet.{op}", n, a)
        return out

    def load_state_dict(self, state) -> None:
        """Loads every parameter and running statistic (all are checked before any is written: names, shapes, and
        values, which must be finite and within float32's range)."""
        for n, a in self._check_state("load_state_dict", state, self._shapes).items():
            self._net.set_tensor(n, "value", a)

    def load_optimizer_state_dict(self, state) -> None:
        """Loads the optimizer's state (the keys of :meth:`optimizer_state_dict`; all are checked before any is
        written)."""
        slots = self._optimizer_slots()
        shapes = {k: self._shapes[n] for k, (n, _) in slots.items()}
        for k, a in self._check_state("load_optimizer_state_dict", state, shapes).items():
            self._net.set_tensor(slots[k][0], slots[k][1], a)

    # ---- measurements ----------------------------------------------------------------------------------------------
    def peak_memory(self) -> dict[str, int]:
        """Peak bytes allocated on each of the towers' devices since the last reset (on the CPU: every tensor of
        the process)."""
        return {d: int(s["peak_allocated"]) for d, s in self._net.memory_stats().items()}

    def memory_stats(self) -> dict[str, dict]:
        return {d: dict(s) for d, s in self._net.memory_stats().items()}

    def reset_peak_memory(self) -> None:
        self._net.reset_peak_memory()

    def tower_timings(self) -> dict:
        """The last step's GPU time per tower, from CUDA events on the tower's stream (waits at the exchange points
        included): {'tower0': {'device', 'forward_ms', 'backward_ms', 'update_ms', 'total_ms'}, ...}. Empty on the
        CPU."""
        return {f"tower{t}": dict(d) for t, d in enumerate(self._net.tower_timings())}
