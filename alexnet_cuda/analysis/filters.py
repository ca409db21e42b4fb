"""The first layer's kernels as one picture, laid out like the paper's Figure 3: tower 0's kernels in the rows
above, tower 1's below (in the paper the towers were GPU 1 and GPU 2, and one learned largely colour-agnostic
kernels, the other colour-specific ones). NumPy and Pillow only: no plotting library is needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONV1 = "features.0"  # conv1's parameter prefix (model.py lists the names)


def conv1_kernels(state: dict[str, np.ndarray], prefix: str = CONV1) -> list[np.ndarray]:
    """The first convolution's weights of each tower, (kernels, 3, k, k), in tower order; ``prefix``: its parameter
    prefix (AlexNet's ``features.0``; a described network's first conv layer's module or name)."""
    towers = []
    t = 0
    while f"{prefix}.tower{t}.weight" in state:
        towers.append(np.asarray(state[f"{prefix}.tower{t}.weight"], np.float32))
        t += 1
    if not towers:
        raise ValueError(f"no conv1 weights ({prefix}.tower0.weight) in this state")
    return towers


def filter_grid(towers: list[np.ndarray], columns: int = 16, zoom: int | None = None, gap: int = 1,
                tower_gap: int = 4) -> np.ndarray:
    """(H, W, 3) uint8: each kernel scaled on its own to [0, 255] (its RGB channels together, so its colour shows),
    enlarged ``zoom`` times (default: to about 44 pixels a side), ``columns`` to a row; each tower's kernels start a
    new row, ``tower_gap`` white pixels below the previous tower's."""
    k = towers[0].shape[-1]
    zoom = zoom or max(1, round(44 / k))
    cell = k * zoom
    columns = min(columns, max(len(w) for w in towers))
    blocks = []
    for w in towers:
        rows = -(-len(w) // columns)
        block = np.full((rows * (cell + gap) + gap, columns * (cell + gap) + gap, 3), 255, np.uint8)
        for i, kernel in enumerate(w):
            lo, hi = float(kernel.min()), float(kernel.max())
            img = (kernel - lo) / (hi - lo) if hi > lo else np.full_like(kernel, 0.5)
            img = np.kron(img.transpose(1, 2, 0), np.ones((zoom, zoom, 1), np.float32))  # (cell, cell, 3)
            y, x = gap + (i // columns) * (cell + gap), gap + (i % columns) * (cell + gap)
            block[y:y + cell, x:x + cell] = np.round(255 * img).astype(np.uint8)
        blocks.append(block)
    spacer = np.full((tower_gap, blocks[0].shape[1], 3), 255, np.uint8)
    out = [blocks[0]]
    for b in blocks[1:]:
        out += [spacer, b]
    return np.concatenate(out, axis=0)


def save_filter_grid(state: dict[str, np.ndarray], path: str | Path, prefix: str = CONV1) -> Path:
    from PIL import Image

    path = Path(path)
    Image.fromarray(filter_grid(conv1_kernels(state, prefix))).save(path)
    return path
