"""``python -m alexnet_cuda``: what was built, which GPUs are visible, and the commands."""

from __future__ import annotations

import json
import sys

USAGE = """\
commands:
  python -m alexnet_cuda.train                 train (no arguments: the built-in synthetic dataset; --help)
  python -m alexnet_cuda.train --arch NAME | --net FILE [--net-params FILE]
                                               a network described as data (layers-18pct, conv-local-13pct, ...)
  python -m alexnet_cuda.train --init-from FILE  fine-tune a checkpoint or imported weights (e.g. torchvision's)
  python -m alexnet_cuda.evaluate [--checkpoint PATH] [--data DIR]
                                               top-1 / top-5 error, centre crop and 10-crop average
  python -m alexnet_cuda.predict IMAGE... [--checkpoint PATH]
                                               the top-5 classes of each image
  python -m alexnet_cuda.weights export CHECKPOINT --safetensors FILE
  python -m alexnet_cuda.weights import FILE --out model.npz [--like CHECKPOINT]
                                               weights out to / in from safetensors, in from a .pth state dict
                                               (torchvision's AlexNet: as torchvision-alexnet)
  python -m alexnet_cuda.export CHECKPOINT --onnx model.onnx
                                               the network as ONNX, preprocessing inside
  python -m alexnet_cuda.summary [--arch A | --net FILE | --checkpoint PATH]
                                               each layer's output shape, parameters and multiply-adds
  python -m alexnet_cuda.report RUN_DIR        curves, conv1 kernels (Figure 3) and confusion matrix of a run
  python -m alexnet_cuda.study [--variants A,B]  the paper's ablations trained side by side: table and plot
  python -m alexnet_cuda.figure1 [--data DIR]  ReLU vs tanh: epochs to 25% training error (the paper's Figure 1;
                                               with CIFAR-10: its four-layer net and a learning-rate sweep)"""


def main() -> int:
    import alexnet_cuda

    info = alexnet_cuda.build_info()
    print(f"alexnet_cuda {alexnet_cuda.__version__}")
    print(json.dumps(info, indent=2))
    if not hasattr(alexnet_cuda, "AlexNet"):
        print("note: alexnet_cuda.AlexNet is not available in this build")
    print(USAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
