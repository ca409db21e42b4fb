"""A layer table as text (``python -m alexnet_cuda.summary``, ``AlexNet.summary()``): the rows of
a description's :func:`~alexnet_cuda.nets.description.layer_table`, with the
fields (name, tower, input, output, parameters, mult_adds, detail)."""

from __future__ import annotations

from typing import Any


def totals(layers: list[dict[str, Any]]) -> dict[str, int]:
    """Parameters and forward multiply-adds per image, summed over every layer of every tower."""
    return {"parameters": sum(int(x["parameters"]) for x in layers),
            "mult_adds": sum(int(x["mult_adds"]) for x in layers)}


def _shape(shape) -> str:
    return "x".join(str(d) for d in shape)


def format_table(layers: list[dict[str, Any]], title: str = "") -> str:
    """The table as text: one row per layer and tower, then the totals and what the counts mean."""
    header = ("layer", "tower", "output", "parameters", "mult-adds", "")
    rows = [(x["name"], str(x["tower"]), _shape(x["output"]), f"{x['parameters']:,}" if x["parameters"] else "-",
             f"{x['mult_adds']:,}" if x["mult_adds"] else "-", x["detail"]) for x in layers]
    t = totals(layers)
    total = ("total", "", "", f"{t['parameters']:,}", f"{t['mult_adds']:,}", "")
    widths = [max(len(r[i]) for r in [header, *rows, total]) for i in range(len(header))]
    right = (False, True, True, True, True, False)

    def line(r) -> str:
        cells = [c.rjust(w) if rj else c.ljust(w) for c, w, rj in zip(r, widths, right)]
        return "  ".join(cells).rstrip()

    rule = "-" * max(len(line(r)) for r in [header, *rows])
    first_input = _shape(layers[0]["input"]) if layers else "?"
    out = [title] if title else []
    out += [f"input {first_input} per image", line(header), rule, *map(line, rows), rule, line(total),
            f"{t['parameters'] / 1e6:.2f} million parameters; {t['mult_adds'] / 1e6:.1f} million multiply-adds per "
            f"image forward (weights of conv and fc layers only; a training step is about 3x)"]
    return "\n".join(out)
