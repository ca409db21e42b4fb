"""Layer summary: ``python -m alexnet_cuda.summary`` (``--help``) and :meth:`alexnet_cuda.AlexNet.summary`.

Prints each layer of each tower with its output shape, parameters and multiply-adds, and the totals. The table is
the layer table of the network's description (``nets.description.layer_table``), the description from which the C++
network creates its layers and parameters, so what is printed is what is built: the paper's net has 60,965,224 parameters and 724,406,816 multiply-adds per
227x227 image forward.

What "multiply-adds" counts: the products of the weight layers only, per image, forward pass:
``out_channels * out_h * out_w * in_channels * k * k`` for a convolution (``in_channels`` being the maps the
tower's kernels see: their own tower's, or both towers' at conv3) and ``outputs * inputs`` for a fully connected
layer. Bias additions, activations, LRN, pooling, dropout and the softmax are not counted (together they add well
under 1%). A training step costs about three times the forward count (forward, input gradient, weight gradient).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .checkpoint import load, network_description
from .nets.alexnet import alexnet
from .nets.builtin import BUILTIN, builtin
from .nets.from_convnet import read_convnet
from .nets.description import layer_table
from .nets.table import format_table, totals
from .nets.file_format import read_net
from .network_options import BN_POSITIONS, NORMS, check_choice, head_str, parse_head, resolve_norm

PROG = "python -m alexnet_cuda.summary"


def describe(num_classes: int = 1000, arch: str = "alexnet", input_size: int | None = None, *, towers: int = 2,
             lrn: bool = True, overlapping_pool: bool = True, activation: str = "relu", dropout: float = 0.5,
             widths: dict | None = None, norm: str = "lrn", bn_position: str = "before_pool",
             head: Any = None) -> list[dict[str, Any]]:
    """The layer table of the network that ``AlexNet(num_classes, arch=arch, ...)`` would build, without building
    it (no weights are allocated). Raises ValueError for options the network rejects."""
    if arch not in ("alexnet", "alexnet-small"):
        raise ValueError(f"{PROG}: arch must be 'alexnet' or 'alexnet-small' here, got {arch!r}")
    if input_size is None:
        input_size = 227 if arch == "alexnet" else 32
    if (arch == "alexnet" and input_size != 227) or (arch == "alexnet-small" and input_size not in (32, 64)):
        raise ValueError(f"{PROG}: arch={arch!r} does not take input_size={input_size} (alexnet: 227; "
                         f"alexnet-small: 32 or 64)")
    widths = widths or {}
    head = parse_head(widths["fc"] if widths.get("fc") is not None else head, PROG)
    check_choice(PROG, "bn_position", bn_position, BN_POSITIONS)
    return layer_table(alexnet(arch, input_size, num_classes, towers=towers, norm=resolve_norm(norm, lrn, PROG),
                               bn_position=bn_position, overlapping_pool=overlapping_pool, activation=activation,
                               dropout=dropout, conv_channels=widths.get("conv"), head=head))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Each layer of each tower of AlexNet with its output shape, parameters and multiply-adds per "
                    "image, and the totals, read from the same C++ layer table the network is built from. "
                    "Multiply-adds count the conv and fully connected weights only (forward, one image).")
    p.add_argument("--arch", choices=("alexnet", "alexnet-small", *BUILTIN), default="alexnet",
                   help="default alexnet; the others are the authors' CIFAR-10 networks from cuda-convnet's layer files "
                        "(docs/cuda_convnet.md)")
    p.add_argument("--input-size", type=int, metavar="N", help="default 227 for alexnet, 32 for alexnet-small")
    p.add_argument("--num-classes", type=int, default=1000, metavar="K", help="default 1000")
    p.add_argument("--towers", type=int, choices=(1, 2), default=2, help="default 2")
    p.add_argument("--no-lrn", dest="lrn", action="store_false", help="no local response normalization")
    p.add_argument("--no-overlap-pool", dest="overlapping_pool", action="store_false", help="2x2/2 pooling")
    p.add_argument("--activation", choices=("relu", "tanh"), default="relu", help="default relu")
    p.add_argument("--dropout", type=float, default=0.5, metavar="P", help="default 0.5")
    p.add_argument("--norm", choices=NORMS, default="lrn", help="default lrn (the paper)")
    p.add_argument("--bn-position", choices=BN_POSITIONS, default="before_pool", help="default before_pool")
    p.add_argument("--head", default=None, metavar="WIDTHS|gap",
                   help="hidden fc widths ('4096,4096', '2000,200', 'none') or 'gap'; default: the arch's")
    p.add_argument("--net", metavar="FILE", help="a network file (docs/network_format.md) instead of --arch and "
                                                 "the variant flags, or cuda-convnet's layers-*.cfg with --net-params")
    p.add_argument("--net-params", metavar="FILE", help="cuda-convnet's layer-params-*.cfg for a layers-*.cfg --net "
                                                        "(its inputs are --input-size, default 32)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help="the network of a checkpoint written by alexnet_cuda.train (its recorded description, or "
                        "the alexnet family's options), instead of --arch and --net")
    p.add_argument("--json", action="store_true", help="print the layers and totals as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.net or args.checkpoint or args.arch in BUILTIN:
        return _summarize_description(args)
    try:
        layers = describe(args.num_classes, args.arch, args.input_size, towers=args.towers, lrn=args.lrn,
                          overlapping_pool=args.overlapping_pool, activation=args.activation, dropout=args.dropout,
                          norm=args.norm, bn_position=args.bn_position, head=args.head)
    except ValueError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"layers": layers, "totals": totals(layers)}, indent=2))
        return 0
    print(format_table(layers, f"{args.arch}, {args.num_classes} classes, {args.towers} tower(s), norm "
                               f"{resolve_norm(args.norm, args.lrn)}, head {head_str(parse_head(args.head, PROG))}"))
    return 0


def _summarize_description(args) -> int:
    try:
        if args.checkpoint:
            desc = network_description(load(args.checkpoint).model_config)
        elif args.net_params and args.net:
            desc = read_convnet(args.net, args.net_params, input_size=args.input_size or 32)
        elif args.net:
            desc = read_net(args.net)
        else:
            desc = builtin(args.arch)
        layers = layer_table(desc)
    except (ValueError, OSError) as exc:  # DescriptionError, ConfigError, CheckpointError: one line each
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"layers": layers, "totals": totals(layers)}, indent=2))
    else:
        source = args.checkpoint or args.net or "built in"
        print(format_table(layers, f"{desc.name} ({source}), {desc.classes} classes, {desc.towers} tower(s)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
