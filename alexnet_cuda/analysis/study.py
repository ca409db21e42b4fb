"""Variant study: ``python -m alexnet_cuda.study`` (``--help``).

Trains a list of variants (``alexnet_cuda.variants``: the paper's ablations by name, or ``NAME=FLAGS``) on one
dataset with one seed and one budget (``--epochs``), one after another, each in ``OUT/<variant>/`` (an ordinary run
directory: ``python -m alexnet_cuda.report OUT/<variant>`` works on it). Then it writes ``OUT/results.md`` and
``OUT/results.csv`` (variant, parameters, best training error, best validation error and its epoch, change from the
first variant, wall time, images/s) and ``OUT/validation_curves.png``.

Killed or interrupted, the same command continues the study: a finished variant (``OUT/<variant>/result.json``)
is not trained again, a variant with a checkpoint is resumed exactly (``train --resume``), and one killed before
its first checkpoint starts over. ``OUT/study.json`` records the study's settings; running a different study into
the same ``OUT`` is refused.

Flags after ``--`` go to every variant's ``python -m alexnet_cuda.train`` (for instance ``-- --synthetic-images
512 --batch-size 16``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable

from .. import checkpoint as ckpt_io
from .. import files
from ..cli import ConfigError
from ..train import config as train_config
from ..train.lock import RunLock
from ..train.run import train
from ..train.state import TrainingDiverged
from .study_results import RESULT, add_changes, csv_table, markdown_table, validation_curves, variant_row
from .variants import PRESETS, STUDY_FLAGS, parse_variant

PROG = "python -m alexnet_cuda.study"
DEFAULT_VARIANTS = ("baseline", "no-lrn", "no-overlap-pool", "no-dropout", "one-tower", "tanh")
PLAN = "study.json"
WALL = "wall.json"  # seconds spent training the variant so far, over the sessions that ended in order


class StudyError(ValueError):
    """The study cannot run as asked (a different study in --out, a bad variant). One line for the user."""


class StudyInterrupted(RuntimeError):
    """Ctrl-C stopped a variant; its checkpoint is saved and the same command continues."""


def _train_config(args: list[str], resume: bool):
    config = train_config.config_from_args(train_config.build_parser().parse_args(args))
    config.resume = resume
    return config


def _accumulate_wall(run_dir: Path, seconds: float) -> float:
    path = run_dir / WALL
    total = seconds + (json.loads(path.read_text())["seconds"] if path.exists() else 0.0)
    files.atomic_write(path, lambda f: f.write(json.dumps({"seconds": total}).encode()))
    return total


def train_variant(run_dir: Path, flags: list[str], log: Callable[[str], Any] = print) -> bool:
    """Trains (or resumes, or skips when finished) one variant in ``run_dir`` with the trainer's ``flags``
    (``--out`` is added). Returns True when it had already finished. Raises StudyInterrupted on Ctrl-C."""
    if (run_dir / RESULT).exists():
        return True
    resume = (run_dir / "last.npz").exists()
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)  # killed before its first checkpoint: its partial logs would be appended to
    start = time.monotonic()
    summary = train(_train_config([*flags, "--out", str(run_dir)], resume))
    wall = _accumulate_wall(run_dir, time.monotonic() - start)
    if summary["status"] != "completed":
        raise StudyInterrupted(f"stopped in {run_dir.name}; its checkpoint is saved")
    ckpt = ckpt_io.load(run_dir / "last.npz")
    result = {"parameters": int(sum(a.size for a in ckpt.params.values())), "wall_s": wall,
              "epochs": summary["epochs_done"], "flags": flags}
    files.atomic_write(run_dir / RESULT, lambda f: f.write(json.dumps(result, indent=1).encode()))
    return False


def write_results(out: Path, variants: list[tuple[str, list[str]]]) -> dict[str, Path]:
    """results.md, results.csv and validation_curves.png from the finished variants' run directories."""
    from .plots import compare_curves

    finished = [(n, f) for n, f in variants if (out / n / RESULT).exists()]
    rows = add_changes([variant_row(out / n, n, f) for n, f in finished])
    paths = {"markdown": out / "results.md", "csv": out / "results.csv", "plot": out / "validation_curves.png"}
    files.atomic_write(paths["markdown"], lambda f: f.write(markdown_table(rows).encode()))
    files.atomic_write(paths["csv"], lambda f: f.write(csv_table(rows).encode()))
    compare_curves(validation_curves(out, [n for n, _ in finished]), paths["plot"], ylabel="validation top-1 error (%)",
                   title="validation error per epoch")
    return paths


def run_study(out: Path, variants: list[tuple[str, list[str]]], common: list[str],
              log: Callable[[str], Any] = print) -> dict[str, Path]:
    """Trains every variant in turn with ``common + its flags`` (common holds the dataset, seed and budget), skipping
    the finished ones, then writes the results. Raises StudyError / StudyInterrupted."""
    if len({n for n, _ in variants}) != len(variants):
        raise StudyError("two variants have the same name")
    with RunLock(out, what="study", log=log):  # two studies into one folder: the second refuses at once
        return _run_study(out, variants, common, log)


def _run_study(out: Path, variants: list[tuple[str, list[str]]], common: list[str],
               log: Callable[[str], Any]) -> dict[str, Path]:
    plan = {"variants": [[n, f] for n, f in variants], "common": common}
    if (out / PLAN).exists():
        saved = json.loads((out / PLAN).read_text())
        if saved != plan:
            raise StudyError(f"{out} holds a different study ({out / PLAN}): its variants {[v[0] for v in saved['variants']]}"
                             f" with {' '.join(saved['common']) or 'no common flags'}; rerun it as it was, or choose "
                             f"another --out")
    else:
        files.atomic_write(out / PLAN, lambda f: f.write(json.dumps(plan, indent=1).encode()))
    for i, (name, flags) in enumerate(variants):
        log(f"== variant {i + 1}/{len(variants)}: {name} {' '.join(flags)}".rstrip())
        if train_variant(out / name, [*common, *flags], log):
            log(f"   {name}: finished earlier, not trained again")
    return write_results(out, variants)


def build_parser() -> argparse.ArgumentParser:
    presets = ", ".join(f"{n} ({' '.join(f) or 'the paper'})" for n, f in PRESETS.items())
    p = argparse.ArgumentParser(
        prog=PROG, usage=f"{PROG} [options] [-- TRAIN_FLAGS...]",
        description="Train several variants of AlexNet on one dataset with one seed and one budget, then write "
                    "results.md / results.csv (variant, parameters, best train error, best validation error and "
                    "its epoch, change from the first variant, wall time, images/s) and validation_curves.png into "
                    "--out. Run the same command again to continue a killed study: finished variants are not "
                    "retrained. Flags after -- go to every variant's python -m alexnet_cuda.train.",
        epilog=f"presets: {presets}")
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), metavar="A,B,...",
                   help=f"comma-separated preset names (default {','.join(DEFAULT_VARIANTS)}); the first is the "
                        f"reference of the 'change' column")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="an extra variant, e.g. 'lr-0.02=--lr 0.02' (repeatable; after the --variants ones)")
    p.add_argument("--data", metavar="PATH", help="dataset directory (default: the built-in synthetic dataset)")
    p.add_argument("--epochs", type=int, metavar="N", help="the budget of every variant (default: the trainer's)")
    p.add_argument("--seed", type=int, default=0, help="the one seed of every variant (default 0)")
    p.add_argument("--out", metavar="DIR", help="study directory (default runs/study-<time>); locked while the study "
                                                "runs, so a second study into it refuses")
    return p


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """(the study's own arguments, the trainer flags after '--')."""
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def main(argv: list[str] | None = None) -> int:
    own, train_flags = split_argv(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    args = parser.parse_args(own)
    for f in train_flags:
        if f.split("=")[0] in STUDY_FLAGS:
            parser.error(f"{f} after --: the study sets it (use the study's own --data/--epochs/--seed/--out)")
    try:
        variants = [parse_variant(v) for v in args.variants.split(",") if v.strip()]
        variants += [parse_variant(v) for v in args.variant]
    except ValueError as exc:
        parser.error(str(exc))
    if not variants:
        parser.error("no variants")
    common = [*train_flags, "--seed", str(args.seed)]
    if args.data:
        common += ["--data", str(Path(args.data).expanduser().resolve())]
    if args.epochs:
        common += ["--epochs", str(args.epochs)]
    out = Path(args.out or f"runs/study-{time.strftime('%Y%m%d-%H%M%S')}")

    def work() -> str:
        paths = run_study(out, variants, common)
        return f"{paths['markdown'].read_text()}\nwrote {paths['markdown']}, {paths['csv']}, {paths['plot']}"

    return run_command(PROG, out, work)


def run_command(prog: str, out: Path, work: Callable[[], str]) -> int:
    """Runs a study command's ``work`` (which returns what to print) and turns its errors into one line and an exit
    status: 2 unusable settings, 1 a diverged run or a bad checkpoint, 130 interrupted (the same command goes on)."""

    try:
        text = work()
    except (StudyError, ConfigError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except (TrainingDiverged, ckpt_io.CheckpointError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    except StudyInterrupted as exc:
        print(f"{prog}: {exc}. Continue with the same command (--out {out}).", file=sys.stderr)
        return 130
    print(text)
    return 0

if __name__ == "__main__":
    sys.exit(main())
