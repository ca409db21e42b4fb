"""The study's results: one row per variant from its run directory, the Markdown and CSV tables, and the plot of
every variant's validation curve. Reads only what the trainer and the study wrote, so it can be redrawn at any time.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from .run_logs import read_run

RESULT = "result.json"  # in a variant's directory once its training has finished
COLUMNS = ("variant", "flags", "parameters", "best_train_error", "best_val_error", "best_val_epoch",
           "change_from_first", "wall_s", "images_per_s")


def variant_row(run_dir: Path, name: str, flags: list[str]) -> dict[str, Any]:
    """The table row of one finished variant. Errors are top-1 error fractions; ``change_from_first`` is filled in
    by :func:`add_changes`."""
    logs = read_run(run_dir)
    result = json.loads((run_dir / RESULT).read_text())
    best = logs.best_validation()
    timed = [r for r in logs.epochs if r.get("time")]
    seconds = sum(r["time"] for r in timed)
    images = sum(r["images_per_s"] * r["time"] for r in timed)
    return {"variant": name, "flags": " ".join(flags), "parameters": result["parameters"],
            "best_train_error": min((1 - r["train_top1"] for r in logs.epochs), default=None),
            "best_val_error": None if best is None else 1 - best["val_top1"],
            "best_val_epoch": None if best is None else best["epoch"],
            "change_from_first": None, "wall_s": result["wall_s"],
            "images_per_s": images / seconds if seconds else None}


def add_changes(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """change_from_first: best validation error minus the first variant's (a fraction; negative is better)."""
    first = rows[0]["best_val_error"] if rows else None
    for r in rows:
        if first is not None and r["best_val_error"] is not None:
            r["change_from_first"] = r["best_val_error"] - first
    return rows


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.1f} pts" if signed else f"{100 * x:.1f}%"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    out = ["| variant | flags | parameters | best train error | best val error (epoch) | change from "
           f"{rows[0]['variant'] if rows else 'first'} | wall time | images/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        epoch = f" ({r['best_val_epoch']})" if r["best_val_epoch"] is not None else ""
        out.append(f"| {r['variant']} | {('`' + r['flags'] + '`') if r['flags'] else '-'} | {r['parameters']:,} | "
                   f"{_pct(r['best_train_error'])} | {_pct(r['best_val_error'])}{epoch} | "
                   f"{_pct(r['change_from_first'], signed=True)} | {r['wall_s']:.0f} s | "
                   f"{'-' if r['images_per_s'] is None else format(r['images_per_s'], '.0f')} |")
    return "\n".join(out) + "\n"


def csv_table(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r[k] is None else r[k] for k in COLUMNS})
    return buf.getvalue()


def validation_curves(study_dir: Path, names: list[str]) -> dict[str, tuple[list[int], list[float]]]:
    """{variant: (epochs, validation top-1 error in %)} of the variants that have validated epochs."""
    curves = {}
    for name in names:
        epochs = [r for r in read_run(study_dir / name).epochs if r.get("val_top1") is not None]
        if epochs:
            curves[name] = ([r["epoch"] for r in epochs], [100 * (1 - r["val_top1"]) for r in epochs])
    return curves
