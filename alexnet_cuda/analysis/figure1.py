"""The paper's Figure 1, ReLU against tanh: ``python -m alexnet_cuda.figure1`` (``--help``).

Trains the same network twice, with ReLU and with tanh, on one dataset with one seed, and reports the epochs each
needs to reach 25% training error and their ratio, with the plot of both training-error curves
(``OUT/figure1.png``, ``OUT/figure1.md``). The two runs are a study (``alexnet_cuda.study``), so a killed preset
continues where it stopped when run again with the same arguments.

How this differs from the paper's experiment (Section 3.1: "a four-layer convolutional neural network with ReLUs
... reaches a 25% training error rate on CIFAR-10 six times faster than an equivalent network with tanh neurons";
no regularization, each network's learning rate chosen to make it train fastest):

* the network is ``alexnet-small`` (5 convolutional and 3 fully connected layers, LRN and overlapping pooling), not
  the paper's four-layer net;
* one learning rate (the trainer's, 0.01, constant: ``--lr-schedule none``) for both, not the best for each;
* no regularization, as in the paper: ``--dropout 0 --weight-decay 0 --pca-std 0`` (random crops and flips stay);
* training error is the running error of each epoch's mini-batches (``metrics.jsonl``'s ``train_top1``), so an
  epoch is the finest resolution;
* the data: ``--data`` takes CIFAR-10 (``cifar-10-batches-py``), ``--subset N`` trains on N images per epoch. No
  CIFAR-10 on the machine (there is no download here): the default is the built-in synthetic 10-class set of 32x32
  images (``--subset`` images, default 1280), which is far easier than CIFAR-10, so its ratio says little about
  the paper's (docs/analysis.md records what it gave).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from .. import files
from .run_logs import read_run
from .study import STUDY_FLAGS, run_command, run_study, split_argv

PROG = "python -m alexnet_cuda.figure1"
# The paper trained both networks without regularization; constant learning rate so a schedule cannot favour one.
NO_REGULARIZATION = ["--dropout", "0", "--weight-decay", "0", "--pca-std", "0", "--lr-schedule", "none"]
VARIANTS = [("relu", ["--activation", "relu"]), ("tanh", ["--activation", "tanh"])]
DEFAULT_SUBSET = 1280
DEFAULT_EPOCHS = 15


def epochs_to_reach(epochs: list[dict[str, Any]], target: float) -> int | None:
    """The first epoch whose training error (1 - train_top1) is at most ``target``; None if none is."""
    for r in epochs:
        if 1.0 - r["train_top1"] <= target:
            return int(r["epoch"])
    return None


def _subset_flags(data: str | None, subset: int | None, train_flags: list[str]) -> list[str]:
    """Synthetic data: generate ``subset`` images. A real dataset: cap each epoch at ``subset`` images (whole
    batches, as the trainer counts them)."""
    from ..train.config import build_parser, config_from_args, resolve

    if data is None:
        return ["--synthetic-images", str(subset or DEFAULT_SUBSET)]
    if subset is None:
        return []
    config = resolve(config_from_args(build_parser().parse_args([*train_flags, "--data", data])))
    return ["--train-batches", str(max(1, math.ceil(subset / config.batch_size)))]


def write_figure(out: Path, target: float) -> dict[str, Any]:
    """figure1.png (both training-error curves and the target line) and figure1.md (epochs to the target, ratio)."""
    from .plots import compare_curves

    logs = {name: read_run(out / name).epochs for name, _ in VARIANTS}
    reached = {name: epochs_to_reach(e, target) for name, e in logs.items()}
    curves = {name: ([r["epoch"] for r in e], [100 * (1 - r["train_top1"]) for r in e]) for name, e in logs.items()}
    compare_curves(curves, out / "figure1.png", ylabel="training error (%)", hline=100 * target,
                   hline_label=f"{100 * target:g}% training error",
                   title="ReLU vs tanh (the paper's Figure 1 setting, see figure1.md)")
    relu, tanh = reached["relu"], reached["tanh"]
    if relu and tanh:
        ratio = tanh / relu
        verdict = (f"tanh needed {ratio:.2g}x the epochs of ReLU" if ratio >= 1 else
                   f"tanh got there first: ReLU needed {1 / ratio:.2g}x the epochs of tanh (ratio {ratio:.2g})")
    elif relu:
        ratio, verdict = None, (f"ReLU reached it at epoch {relu}; tanh not within {len(logs['tanh'])} epochs, so "
                                f"the ratio is more than {len(logs['tanh']) / relu:.2g}")
    else:
        ratio, verdict = None, "ReLU did not reach it within the budget: train longer (--epochs)"
    lines = [f"# ReLU vs tanh: epochs to {100 * target:g}% training error", "", "| activation | epochs to reach | "
             "training error per epoch |", "|---|---:|---|"]
    for name, e in logs.items():
        errs = ", ".join(f"{100 * (1 - r['train_top1']):.0f}" for r in e)
        lines.append(f"| {name} | {reached[name] or '-'} | {errs} |")
    lines += ["", f"**{verdict}** (the paper: about 6x, on CIFAR-10 with a four-layer net).", "",
              "![training error](figure1.png)", "", "Setting: see `python -m alexnet_cuda.figure1 --help`; the "
              "differences from the paper are listed in `alexnet_cuda/analysis/figure1.py`."]
    files.atomic_write(out / "figure1.md", lambda f: f.write("\n".join(lines).encode()))
    return {"epochs": reached, "ratio": ratio, "verdict": verdict, "page": out / "figure1.md",
            "plot": out / "figure1.png"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} [options] [-- TRAIN_FLAGS...]",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", metavar="PATH",
                   help="CIFAR-10 (cifar-10-batches-py or its binary version); default: the synthetic stand-in")
    p.add_argument("--subset", type=int, metavar="N",
                   help=f"training images per epoch (default: all of --data; {DEFAULT_SUBSET} synthetic ones)")
    p.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, metavar="N",
                   help=f"budget of each run (default {DEFAULT_EPOCHS})")
    p.add_argument("--target", type=float, default=0.25, metavar="E", help="training error to reach (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--out", metavar="DIR", help="default runs/figure1-<time>")
    return p


def main(argv: list[str] | None = None) -> int:
    own, train_flags = split_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(own)
    for f in train_flags:
        if f.split("=")[0] in (*STUDY_FLAGS, "--activation"):
            parser.error(f"{f} after --: the preset sets it")
    if args.subset is not None and args.subset < 1:
        parser.error("--subset must be at least 1")
    out = Path(args.out or f"runs/figure1-{time.strftime('%Y%m%d-%H%M%S')}")
    data = str(Path(args.data).expanduser().resolve()) if args.data else None

    def work() -> str:
        common = [*NO_REGULARIZATION, *train_flags, *_subset_flags(data, args.subset, train_flags),
                  "--seed", str(args.seed), "--epochs", str(args.epochs), *(["--data", data] if data else [])]
        run_study(out, VARIANTS, common)
        result = write_figure(out, args.target)
        return f"{result['page'].read_text()}\nwrote {result['page']} and {result['plot']}"

    return run_command(PROG, out, work)

if __name__ == "__main__":
    sys.exit(main())
