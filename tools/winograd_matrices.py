#!/usr/bin/env python3
"""Derives and checks the Winograd matrices in csrc/cpu/winograd_tiles.h.

For F(M x M, R x R) with A = M + R - 1 it takes Toom-Cook interpolation at A - 1 finite points plus infinity:
AT[i][j] = p_j^i, G[j][k] = p_j^k / prod_{l != j} (p_j - p_l) (the last column of AT and row of G stand for
infinity), and solves for the B^T that makes A^T [(G g) .* (B^T d)] the exact 1-D correlation (unique). It prints
the three matrices as exact fractions, then the float32 error of the 2-D algorithm against a float64 direct
convolution over 48 input channels, relative to the largest output (what tests/ops/test_conv2d.py bounds by 1e-5).

    python3 tools/winograd_matrices.py
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

# (M, R, points): the variants the CPU backend runs, with the points that gave the least float32 error here, and
# F(4x4, 3x3), which was measured and not used (see winograd_tiles.h).
VARIANTS = [(2, 3, ["0", "1", "-1"]), (4, 3, ["0", "1", "-1", "1/2", "-2"]), (2, 5, ["0", "1", "-1", "2", "-1/2"])]


def matrices(m: int, r: int, points: list[Fraction]) -> tuple[np.ndarray, np.ndarray, list[list[Fraction]]]:
    a = m + r - 1
    at = np.zeros((m, a))
    g = np.zeros((a, r))
    for j, p in enumerate(points):
        f = np.prod([float(p - q) for q in points if q != p])
        for i in range(m):
            at[i, j] = float(p ** i)
        for k in range(r):
            g[j, k] = float(p ** k) / f
    at[m - 1, a - 1] = 1.0
    g[a - 1, r - 1] = 1.0
    rows, rhs = [], []
    for i in range(m):  # sum_j AT[i,j] G[j,k] BT[j,l] = [l == i + k]
        for k in range(r):
            for l in range(a):
                row = np.zeros(a * a)
                for j in range(a):
                    row[j * a + l] = at[i, j] * g[j, k]
                rows.append(row)
                rhs.append(1.0 if l == i + k else 0.0)
    bt = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0].reshape(a, a)
    exact = [[Fraction(x).limit_denominator(64) for x in row] for row in bt]
    assert np.abs(np.array(exact, dtype=float) - bt).max() < 1e-9, "B^T is not a matrix of small fractions"
    return at, g, exact


def float32_error(m: int, r: int, at: np.ndarray, g: np.ndarray, bt: np.ndarray, rng: np.random.Generator) -> float:
    a, channels, outs, tiles = m + r - 1, 48, 16, 200
    d = rng.standard_normal((tiles, channels, a, a))
    w = rng.standard_normal((outs, channels, r, r)) / np.sqrt(channels * r * r)
    exact = np.zeros((tiles, outs, m, m))
    for i in range(m):
        for j in range(m):
            exact[:, :, i, j] = np.einsum("tcab,ocab->to", d[:, :, i:i + r, j:j + r], w)
    f = np.float32
    u = np.einsum("ia,ocab,jb->ocij", g.astype(f), w.astype(f), g.astype(f)).astype(f)  # as the backend: float32
    v = np.einsum("ia,tcab,jb->tcij", bt.astype(f), d.astype(f), bt.astype(f)).astype(f)
    y = np.einsum("ai,toij,bj->toab", at.astype(f), np.einsum("ocij,tcij->toij", u, v).astype(f), at.astype(f))
    return float(np.abs(y - exact).max() / np.abs(exact).max())


def main() -> None:
    rng = np.random.default_rng(0)
    for m, r, names in VARIANTS:
        points = [Fraction(p) for p in names]
        at, g, bt = matrices(m, r, points)
        print(f"F({m}x{m}, {r}x{r}), points {', '.join(names)}, infinity")
        print("  BT =", [[str(x) for x in row] for row in bt])
        print("  G  =", np.array2string(g, precision=6, separator=", ").replace("\n", "\n        "))
        print("  AT =", np.array2string(at, separator=", ").replace("\n", "\n        "))
        print(f"  float32 error / largest output: {float32_error(m, r, at, g, np.array(bt, dtype=float), rng):.1e}")


if __name__ == "__main__":
    main()
