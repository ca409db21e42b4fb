"""torchvision's AlexNet for the tests (no torchvision, nothing downloaded): its state-dict keys, a random state dict
in its format, its module written out in PyTorch, and its weights under the NumPy reference's names."""

from __future__ import annotations

import numpy as np

from alexnet_cuda.nets import torchvision as tv

TORCHVISION_KEYS = ["features.0.weight", "features.0.bias", "features.3.weight", "features.3.bias",
                    "features.6.weight", "features.6.bias", "features.8.weight", "features.8.bias",
                    "features.10.weight", "features.10.bias", "classifier.1.weight", "classifier.1.bias",
                    "classifier.4.weight", "classifier.4.bias", "classifier.6.weight", "classifier.6.bias"]


def random_state_dict(num_classes: int = 1000, seed: int = 0) -> dict[str, np.ndarray]:
    """A torchvision-format AlexNet state dict (torchvision's keys and shapes) of random float32 weights, scaled per
    layer as PyTorch's default initialization so that activations neither vanish nor explode."""
    rng = np.random.default_rng(seed)
    shapes = tv.to_torchvision(tv.parameter_shapes(tv.torchvision_alexnet(num_classes)))
    out = {}
    for key, shape in shapes.items():
        weight = shapes[key.rsplit(".", 1)[0] + ".weight"]  # a bias takes its layer's fan-in
        bound = 1.0 / np.sqrt(np.prod(weight[1:]))
        out[key] = rng.uniform(-bound, bound, shape).astype(np.float32)
    return out


def torch_alexnet(num_classes: int):
    """torchvision.models.AlexNet written out by hand (torchvision/models/alexnet.py; torchvision is not installed
    here): the same modules at the same indices, so its state_dict keys are torchvision's."""
    import torch
    from torch import nn

    class TorchvisionAlexNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(64, 192, kernel_size=5, padding=2), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2),
                nn.Conv2d(192, 384, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(384, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.Conv2d(256, 256, kernel_size=3, padding=1), nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2))
            self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
            self.classifier = nn.Sequential(
                nn.Dropout(p=0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
                nn.Dropout(p=0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
                nn.Linear(4096, num_classes))

        def forward(self, x):
            x = self.avgpool(self.features(x))
            return self.classifier(torch.flatten(x, 1))

    return TorchvisionAlexNet()


def reference_params(desc, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A torchvision state dict under the NumPy reference's names ('<layer>.weight')."""
    by_module = {x.module: x.name for x in desc.layers if x.module}
    out = {}
    for key, a in state.items():
        module, _, field = key.rpartition(".")
        out[f"{by_module[module]}.{field}"] = a
    return out
