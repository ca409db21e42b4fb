"""The paper's Figure 1, ReLU against tanh: ``python -m alexnet_cuda.figure1`` (``--help``).

Section 3.1: "a four-layer convolutional neural network with ReLUs ... reaches a 25% training error rate on CIFAR-10
six times faster than an equivalent network with tanh neurons. The learning rates for each network were chosen
independently to make training as fast as possible. No regularization of any kind was employed."

With ``--data`` (CIFAR-10, e.g. ``../shared/data/cifar10``), the paper's setting:

* the network is the paper's four-layer net, cuda-convnet's ``conv-local`` net without its normalization layers
  (``conv-local-13pct``: two convolutions with pooling, two locally connected layers, the output layer), built for
  fixed 24x24 patches: the centre 24x24 of each 32x32 image, the same patch every epoch (``--crops centre``);
* no regularization of any kind: every layer's weight decay (cuda-convnet's ``wc``) set to 0, no dropout (the net
  has none), no augmentation (``--crops centre --no-flip --pca-std 0``); a constant learning rate;
* a "learning rate" is one multiplier of every layer's ``epsW`` and ``epsB`` (``--lr``); each activation is trained
  at every rate of ``--lrs`` (at least 4) and its best is the one needing the fewest epochs to reach the target
  (the paper's rule). A run stops at the target (``--stop-at-train-error``), and once it can no longer beat the best
  rate of its activation (it gets the best's epochs, no more), and at ``--max-epochs`` (60: tanh not there by then
  gives the ratio as a lower bound);
* training error is each epoch's running mini-batch error (``metrics.jsonl``'s ``train_top1``), which cuda-convnet
  printed, so an epoch is the finest resolution. The networks files used are written to ``OUT/nets/``.

Without ``--data``: a quick stand-in on the built-in synthetic 32x32 set (``--subset`` images, default 1280) with
``alexnet-small`` (dropout, weight decay and colour noise off; random crops kept), far easier than CIFAR-10, so its
ratio says little about the paper's.

Writes ``OUT/figure1.png`` (the training-error curves against epochs, the target line), ``OUT/figure1.md`` (the
sweep's table, the best rate of each activation, the ratio) and ``OUT/figure1.json``. Killed, the same command
continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from .. import files
from ..nets.builtin import builtin
from ..nets.file_format import format_net
from ..train.described import with_activation
from ..train.lock import RunLock
from ..train.state import TrainingDiverged
from .run_logs import read_run
from .study import STUDY_FLAGS, StudyError, run_command, split_argv, train_variant
from .study_results import RESULT

PROG = "python -m alexnet_cuda.figure1"
ACTIVATIONS = ("relu", "tanh")
PAPER_NET = "conv-local-13pct"
# The paper trained without regularization and the rates were constant; Figure 1's patches are fixed.
PAPER_FLAGS = ["--crops", "centre", "--no-flip", "--pca-std", "0", "--lr-schedule", "none"]
SYNTHETIC_FLAGS = ["--dropout", "0", "--weight-decay", "0", "--pca-std", "0", "--lr-schedule", "none"]
PAPER_LRS = (0.25, 0.5, 1.0, 2.0)  # multiples of the files' epsW/epsB
SYNTHETIC_LRS = (0.01, 0.02)
DEFAULT_SUBSET = 1280
PLAN = "figure1-plan.json"
DIVERGED = "diverged.json"


def epochs_to_reach(epochs: list[dict[str, Any]], target: float) -> int | None:
    """The first epoch whose training error (1 - train_top1) is at most ``target``; None if none is."""
    for r in epochs:
        if 1.0 - r["train_top1"] <= target:
            return int(r["epoch"])
    return None


def paper_net(activation: str):
    """conv-local-13pct with ``activation`` in every layer that had relu or tanh, and no weight decay anywhere."""
    desc = with_activation(builtin(PAPER_NET), activation)
    for layer in desc.layers:
        if layer.kind in ("conv", "local", "linear"):
            layer.settings["weight_decay"] = 0.0
    desc.name = f"{PAPER_NET}-{activation}-no-decay"
    return desc


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


def run_name(activation: str, lr: float) -> str:
    return f"{activation}-lr{lr:g}"


def sweep(out: Path, activation: str, lrs: list[float], common: list[str], net_flags: list[str], target: float,
          max_epochs: int, log=print, train: bool = True) -> list[dict[str, Any]]:
    """Every rate of ``lrs`` for one activation, in order; each run gets the epochs of the best run so far (it must
    reach the target sooner to beat it) and stops at the target. Returns a row per run. ``train=False``: the rows of
    the runs trained so far, as they stand (a partial sweep's report)."""
    rows, best = [], None
    for lr in lrs:
        run_dir = out / run_name(activation, lr)
        budget = max_epochs if best is None else min(max_epochs, best)
        if not train and not (run_dir / "metrics.jsonl").exists():
            continue
        if train:
            log(f"== {activation} at lr x{lr:g}: up to {budget} epochs, until {100 * target:g}% training error")
        diverged = (run_dir / DIVERGED).exists()
        if train and not diverged:
            try:
                train_variant(run_dir, [*common, *net_flags, "--lr", f"{lr:g}", "--epochs", str(budget),
                                        "--stop-at-train-error", f"{target:g}"], log)
            except TrainingDiverged as exc:  # too high a rate: it never reaches the target
                diverged = True
                note = json.dumps({"error": str(exc)}).encode()
                files.atomic_write(run_dir / DIVERGED, lambda f: f.write(note))
        epochs = read_run(run_dir).epochs if (run_dir / "metrics.jsonl").exists() else []
        reached = epochs_to_reach(epochs, target)
        if reached is not None and (best is None or reached < best):
            best = reached
        finished = diverged or (run_dir / RESULT).exists()
        stopped = ("diverged" if diverged else "reached the target" if reached is not None else
                   "not finished (partial)" if not finished else
                   f"{max_epochs}-epoch limit" if budget == max_epochs else f"could not beat {budget} epochs")
        rows.append({"activation": activation, "lr": lr, "reached": reached, "epochs": len(epochs),
                     "stopped": stopped, "errors": [1.0 - r["train_top1"] for r in epochs]})
    return rows


def best_runs(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any] | None]:
    """The fastest run of each activation (fewest epochs to the target; the first rate among equals)."""
    out = {}
    for activation in ACTIVATIONS:
        done = [r for r in rows if r["activation"] == activation and r["reached"] is not None]
        out[activation] = min(done, key=lambda r: r["reached"]) if done else None
    return out


def verdict(rows: list[dict[str, Any]], max_epochs: int) -> tuple[float | None, str]:
    best = best_runs(rows)
    relu, tanh = best["relu"], best["tanh"]
    if relu is None:
        return None, "ReLU did not reach the target at any rate: train longer (--max-epochs) or try other rates"
    if tanh is None:
        tried = [r for r in rows if r["activation"] == "tanh"]
        longest = max((r["epochs"] for r in tried), default=0)
        rates = ", ".join(f"x{r['lr']:g}" for r in tried) or "none"
        return None, (f"ReLU reached it in {relu['reached']} epochs (lr x{relu['lr']:g}); tanh not within {longest} "
                      f"epochs at the rates tried ({rates}), so the ratio is more than {longest / relu['reached']:.2g}")
    ratio = tanh["reached"] / relu["reached"]
    text = (f"tanh needed {ratio:.2g}x the epochs of ReLU ({tanh['reached']} at lr x{tanh['lr']:g} against "
            f"{relu['reached']} at lr x{relu['lr']:g})" if ratio >= 1 else
            f"tanh got there first: ReLU needed {1 / ratio:.2g}x the epochs of tanh")
    return ratio, text


def write_figure(out: Path, rows: list[dict[str, Any]], target: float, max_epochs: int,
                 setting: str) -> dict[str, Any]:
    """figure1.png (every run's training-error curve, the target line), figure1.md and figure1.json."""
    from .plots import compare_curves

    curves = {f"{r['activation']} lr x{r['lr']:g}": (list(range(1, len(r["errors"]) + 1)),
                                                     [100 * e for e in r["errors"]]) for r in rows}
    compare_curves(curves, out / "figure1.png", ylabel="training error (%)", hline=100 * target,
                   hline_label=f"{100 * target:g}% training error", title="ReLU vs tanh (Figure 1's setting: see "
                                                                          "figure1.md)")
    ratio, text = verdict(rows, max_epochs)
    best = best_runs(rows)
    lines = [f"# ReLU vs tanh: epochs to {100 * target:g}% training error", "", setting, "",
             "| activation | lr (x the files' rates) | epochs to reach | epochs trained | stopped | training error per "
             "epoch (%) |", "|---|---:|---:|---:|---|---|"]
    for r in rows:
        mark = " **best**" if best[r["activation"]] is r else ""
        errs = ", ".join(f"{100 * e:.0f}" for e in r["errors"])
        lines.append(f"| {r['activation']}{mark} | {r['lr']:g} | {r['reached'] or '-'} | {r['epochs']} | "
                     f"{r['stopped']} | {errs} |")
    lines += ["", f"**{text}** (the paper: about 6x).", "", "![training error](figure1.png)"]
    files.atomic_write(out / "figure1.md", lambda f: f.write(("\n".join(lines) + "\n").encode()))
    result = {"target": target, "ratio": ratio, "verdict": text, "runs": rows,
              "best": {a: (b and {"lr": b["lr"], "epochs": b["reached"]}) for a, b in best.items()}}
    files.atomic_write(out / "figure1.json", lambda f: f.write(json.dumps(result, indent=1).encode()))
    return {**result, "page": out / "figure1.md", "plot": out / "figure1.png"}


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    path = out / PLAN
    if path.exists():
        if json.loads(path.read_text()) != plan:
            raise StudyError(f"{out} holds another Figure 1 run ({path}); rerun it as it was, or choose another --out")
    else:
        files.atomic_write(path, lambda f: f.write(json.dumps(plan, indent=1).encode()))


def run_figure(out: Path, data: str | None, lrs: list[float], target: float, max_epochs: int, seed: int,
               subset: int | None, train_flags: list[str], log=print, train: bool = True) -> dict[str, Any]:
    """Trains the sweep (or, ``train=False``, reports the runs trained so far) and writes the figure."""
    common = [*train_flags, *_subset_flags(data, subset, train_flags), "--seed", str(seed),
              *(["--data", data] if data else [])]
    with RunLock(out, what="figure1", log=log):
        _check_plan(out, {"data": data, "lrs": lrs, "target": target, "max_epochs": max_epochs, "common": common})
        rows = []
        for activation in ACTIVATIONS:
            if data and train:
                net = out / "nets" / f"{activation}.ini"
                net.parent.mkdir(parents=True, exist_ok=True)
                text = format_net(paper_net(activation))
                files.atomic_write(net, lambda f: f.write(text.encode()))
                net_flags = [*PAPER_FLAGS, "--net", str(net)]
            elif data:
                net_flags = []  # reporting only
            else:
                net_flags = [*SYNTHETIC_FLAGS, "--activation", activation]
            rows += sweep(out, activation, lrs, common, net_flags, target, max_epochs, log, train)
        partial = "" if train else "**A partial sweep** (the runs trained so far; continue with the same command " \
                                   "without --report). "
        setting = partial + (f"{PAPER_NET} without weight decay, fixed 24x24 centre patches of {data}, no augmentation, "
                   f"constant rates; seed {seed}" if data else
                   f"alexnet-small on {subset or DEFAULT_SUBSET} synthetic images (a stand-in, not the paper's "
                   f"setting); seed {seed}")
        return write_figure(out, rows, target, max_epochs, setting)


def _lr_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not v > 0 or not math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"learning rates must be positive, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} [options] [-- TRAIN_FLAGS...]",
        formatter_class=argparse.RawDescriptionHelpFormatter, description=__doc__.split("\n\n", 1)[1])
    p.add_argument("--data", metavar="PATH", help="CIFAR-10 (a folder such as ../shared/data/cifar10); default: the "
                                                  "synthetic stand-in")
    p.add_argument("--lrs", type=_lr_list, metavar="X,Y,...",
                   help=f"the rates tried for each activation: multipliers of the layers' own rates with --data "
                        f"(default {','.join(f'{v:g}' for v in PAPER_LRS)}), plain rates on the synthetic set "
                        f"(default {','.join(f'{v:g}' for v in SYNTHETIC_LRS)})")
    p.add_argument("--max-epochs", type=int, default=60, metavar="N",
                   help="the longest any run trains (default 60: tanh not at the target by then gives a lower bound)")
    p.add_argument("--subset", type=int, metavar="N",
                   help=f"training images per epoch (default: all of --data; {DEFAULT_SUBSET} synthetic ones)")
    p.add_argument("--target", type=float, default=0.25, metavar="E", help="training error to reach (default 0.25)")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--out", metavar="DIR", help="default runs/figure1-<time>")
    p.add_argument("--report", action="store_true",
                   help="train nothing: write the page from the runs trained so far (a stopped sweep's partial "
                        "result; give the same options as the sweep)")
    return p


def main(argv: list[str] | None = None) -> int:
    own, train_flags = split_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(own)
    for f in train_flags:
        if f.split("=")[0] in (*STUDY_FLAGS, "--activation", "--lr", "--net", "--stop-at-train-error"):
            parser.error(f"{f} after --: the preset sets it")
    if args.subset is not None and args.subset < 1:
        parser.error("--subset must be at least 1")
    if args.max_epochs < 1 or not 0 <= args.target <= 1:
        parser.error("--max-epochs must be at least 1 and --target in [0, 1]")
    out = Path(args.out or f"runs/figure1-{time.strftime('%Y%m%d-%H%M%S')}")
    data = str(Path(args.data).expanduser().resolve()) if args.data else None
    lrs = args.lrs or list(PAPER_LRS if data else SYNTHETIC_LRS)

    def work() -> str:
        if args.report and not (out / PLAN).exists():
            raise StudyError(f"{out} holds no Figure 1 sweep to report")
        result = run_figure(out, data, lrs, args.target, args.max_epochs, args.seed, args.subset, train_flags,
                            train=not args.report)
        return f"{result['page'].read_text()}\nwrote {result['page']} and {result['plot']}"

    return run_command(PROG, out, work)


if __name__ == "__main__":
    sys.exit(main())
