"""Run report: ``python -m alexnet_cuda.report RUN_DIR`` (``--help``).

Writes into the run directory ``report.md``, a page that shows ``report/curves.png`` (loss, top-1 and top-5 error
per epoch, the learning rate, images/s, from metrics.jsonl and steps.jsonl), ``report/conv1_filters.png`` (conv1's
kernels, tower 0 above tower 1 as in the paper's Figure 3) and ``report/confusion.png`` (the best checkpoint on the
validation split; with more than ``--max-classes`` classes a table of the most confused pairs instead).

It reads only what the trainer has written, so it works on a finished run, a resumed one, and one still running
(it shows the epochs done so far, and the newest best.npz; run it again later for more).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from .. import checkpoint as ckpt_io
from .. import files
from ..cli import ConfigError
from .run_logs import read_run

PROG = "python -m alexnet_cuda.report"
REPORT_DIR = "report"
PAGE = "report.md"
MAX_MATRIX_CLASSES = 50


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _checkpoint_path(run_dir: Path) -> Path | None:
    for name in ("best.npz", "last.npz"):
        if (run_dir / name).is_file():
            return run_dir / name
    return None


def _network_section(ckpt: ckpt_io.Checkpoint) -> tuple[list[str], str | None, str | None]:
    """The layer table of the checkpoint's network (its recorded description; the alexnet family's from its
    constructor arguments), the parameter prefix of its first convolution on the images (for the kernel picture),
    and a note when the layers cannot be listed."""
    from ..nets.description import layer_table
    from ..nets.table import format_table
    from .filters import CONV1

    try:
        desc = ckpt_io.network_description(ckpt.model_config)
        rows = layer_table(desc)
    except (ValueError, TypeError) as exc:
        return [], CONV1, f"the network's layers could not be listed ({str(exc).splitlines()[0]})"
    title = f"{desc.name}, {desc.classes} classes, {desc.towers} tower(s)"
    lines = ["## The network", "", "```text", format_table(rows, title), "```", ""]
    candidates = [CONV1] + [getattr(x, "module", None) or x.name for x in desc.layers if x.kind == "conv"]
    for prefix in candidates:
        w = ckpt.params.get(f"{prefix}.tower0.weight")
        if w is not None and w.ndim == 4 and w.shape[1] == 3:
            return lines, prefix, None
    return lines, None, None


def _confusion_section(ckpt_path: Path, ckpt: ckpt_io.Checkpoint, out_dir: Path, *, device: str,
                       max_images: int | None, max_classes: int, batch_size: int) -> list[str]:
    from .confusion import confusion_matrix, most_confused
    from ..evaluate import check_classes, dataset_for
    from .plots import confusion_chart
    from ..runtime import resolve_devices

    towers = int(ckpt.model_config.get("towers", 2))
    model = ckpt_io.build_model(ckpt, devices=resolve_devices(device, None, towers))
    dataset = dataset_for(ckpt, None, None, "val")
    check_classes(ckpt, dataset)
    matrix = confusion_matrix(model, dataset, batch_size=batch_size, workers=0, max_images=max_images)
    n = int(matrix.sum())
    classes = ckpt.classes or [str(i) for i in range(len(matrix))]
    accuracy = float(matrix.trace() / max(1, n))
    lines = ["## Confusion on the validation split", "",
             f"`{ckpt_path.name}` (epoch {ckpt.meta.get('epoch')}), centre crop, {n} images: top-1 error "
             f"{_pct(1 - accuracy)}.", ""]
    if len(classes) <= max_classes:
        confusion_chart(matrix, classes, out_dir / "confusion.png",
                        f"confusion matrix, {n} validation images (rows sum to 1)")
        lines += [f"![confusion matrix]({REPORT_DIR}/confusion.png)", ""]
    else:
        (out_dir / "confusion.png").unlink(missing_ok=True)  # an earlier report's, for fewer classes
    pairs = most_confused(matrix, classes, 20)
    if pairs:
        lines += ["Most confused pairs:", "", "| true class | predicted as | images | of the class |", "|---|---|---|---|"]
        lines += [f"| {p['true']} | {p['predicted']} | {p['count']} | {_pct(p['fraction'])} |" for p in pairs]
        lines.append("")
    return lines


def make_report(run_dir: str | Path, *, confusion: bool = True, device: str = "cpu", max_images: int | None = None,
                max_classes: int = MAX_MATRIX_CLASSES, batch_size: int = 64) -> dict[str, Any]:
    """Writes the report of ``run_dir``; returns {"page": path, "images": [paths], "notes": [what was left out]}."""
    from .filters import save_filter_grid
    from .plots import training_curves

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    logs = read_run(run_dir)
    ckpt_path = _checkpoint_path(run_dir)
    if not logs.epochs and not logs.steps and ckpt_path is None:
        raise FileNotFoundError(f"{run_dir}: no metrics.jsonl, steps.jsonl or checkpoint: not a training run "
                                f"directory (python -m alexnet_cuda.train writes them)")
    out_dir = run_dir / REPORT_DIR
    out_dir.mkdir(exist_ok=True)
    images, notes = [], []
    ckpt = ckpt_io.load(ckpt_path) if ckpt_path is not None else None
    config = (ckpt.meta.get("config") or {}) if ckpt is not None else {}
    title = f"{config.get('arch', '?')} on {config.get('dataset', '?')}" if config else run_dir.name
    lines = [f"# Run report: {run_dir.name}", "", f"{title}; {len(logs.epochs)} epochs"
             f"{' of ' + str(config['epochs']) if config.get('epochs') else ''} logged, {len(logs.steps)} steps.", ""]

    if logs.epochs or logs.steps:
        images.append(training_curves(logs.epochs, logs.steps, out_dir / "curves.png", title))
        lines += ["## Training curves", "", f"![training curves]({REPORT_DIR}/curves.png)", ""]
    if logs.epochs:
        best = logs.best_validation()
        last = logs.epochs[-1]
        lines += ["| epoch | train loss | train top-1 err | val loss | val top-1 err | val top-5 err | lr | images/s |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in logs.epochs:
            mark = " (best)" if best is not None and r["epoch"] == best["epoch"] else ""
            lines.append(f"| {r['epoch']}{mark} | {r['train_loss']:.4f} | {_pct(1 - r['train_top1'])} | "
                         f"{'-' if r.get('val_loss') is None else format(r['val_loss'], '.4f')} | "
                         f"{_pct(None if r.get('val_top1') is None else 1 - r['val_top1'])} | "
                         f"{_pct(None if r.get('val_top5') is None else 1 - r['val_top5'])} | {r['lr']:g} | "
                         f"{r['images_per_s']:.0f} |")
        lines.append("")
        if last["epoch"] != (config.get("epochs") or last["epoch"]):
            notes.append(f"the run has done {last['epoch']} of {config['epochs']} epochs (still running, or stopped)")

    if ckpt is not None:
        section, conv1, note = _network_section(ckpt)
        lines += section
        notes += [note] if note else []
        towers = int(ckpt.model_config.get("towers", 2))
        if conv1 is not None:
            images.append(save_filter_grid(ckpt.params, out_dir / "conv1_filters.png", conv1))
            lines += ["## conv1 kernels", "",
                      f"`{ckpt_path.name}` (epoch {ckpt.meta.get('epoch')}), `{conv1}`, each kernel scaled to its "
                      f"own range" + (": tower 0 above, tower 1 below, as in the paper's Figure 3." if towers == 2
                                      else "."), "", f"![conv1 kernels]({REPORT_DIR}/conv1_filters.png)", ""]
        else:
            notes.append("the network's first layer is not a convolution of the RGB images: no kernel picture")
        if confusion:
            section = _confusion_section(ckpt_path, ckpt, out_dir, device=device, max_images=max_images,
                                         max_classes=max_classes, batch_size=batch_size)
            lines += section
            if (out_dir / "confusion.png").exists() and any("confusion.png" in x for x in section):
                images.append(out_dir / "confusion.png")
    else:
        notes.append("no checkpoint yet: no conv1 kernels or confusion matrix")
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    page = run_dir / PAGE
    files.atomic_write(page, lambda f: f.write("\n".join(lines).encode()))
    return {"page": page, "images": images, "notes": notes}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description="Pictures of a training run, written into its directory: report.md showing report/curves.png "
                    "(loss, top-1/top-5 error, learning rate, images/s), report/conv1_filters.png (the paper's "
                    "Figure 3 layout: tower 0 above tower 1) and report/confusion.png (best checkpoint, validation "
                    "split). Works on finished, resumed and running runs.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by python -m alexnet_cuda.train --out")
    p.add_argument("--no-confusion", dest="confusion", action="store_false",
                   help="skip the confusion matrix (it runs the network over the validation split)")
    p.add_argument("--max-images", type=int, metavar="N", help="confusion matrix on the first N validation images")
    p.add_argument("--max-classes", type=int, default=MAX_MATRIX_CLASSES, metavar="K",
                   help=f"draw the matrix up to K classes, beyond that list the most confused pairs (default "
                        f"{MAX_MATRIX_CLASSES})")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="cpu",
                   help="where the confusion matrix is computed (default cpu, so a running training keeps its GPUs)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="default 64")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result = make_report(args.run_dir, confusion=args.confusion, device=args.device, max_images=args.max_images,
                             max_classes=args.max_classes, batch_size=args.batch_size)
    except (FileNotFoundError, ConfigError, ckpt_io.CheckpointError) as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    for path in result["images"]:
        print(f"wrote {path}")
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"report: {result['page']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
