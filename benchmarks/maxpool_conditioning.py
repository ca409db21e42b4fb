"""Why a float32 AlexNet's gradients differ from the float64 reference by ~1e-4..1e-3 below a max-pool layer, and
why two float32 trainings drift apart after a few steps (the parity run's 10-step 1e-4 check, docs/benchmarks.md).

Max pooling routes each window's gradient to its largest input. A window whose two largest inputs are closer than
float32's rounding of them may pick the other one in float32 than in float64: that gradient then lands on another
pixel, and every layer below sees it. This script measures it on the float64 reference network itself, with no
float32 code involved: it perturbs the input images by a relative 1e-7, 1e-6 and 1e-5 (float32 activations after a
few layers are that far from float64's) and reports how much the reference's own gradients move, beside how far our
float32 network's gradients are from the unperturbed reference, and how many pooling windows have their two largest
inputs within those relative gaps. With LRN and without, for a few seeds.

    python benchmarks/maxpool_conditioning.py            # writes benchmarks/results/maxpool_conditioning.{json,md}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, command_line, cpu_name, git_commit, markdown_table, utc_now, write_results  # noqa: E402

from alexnet_cuda import AlexNet  # noqa: E402
from alexnet_cuda.reference import network as refnet  # noqa: E402

LAYERS = ("conv1.weight", "conv3.weight", "conv5.weight", "fc6.weight")
PERTURBATIONS = (1e-7, 1e-6, 1e-5)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def near_ties(params: dict, config: dict, images: np.ndarray) -> dict[str, list[int]]:
    """Per pooled block: windows with a positive maximum whose top-2 relative gap is below 1e-6 and 1e-5."""
    net = refnet._Net(params, config, False, 0, 0, False)
    h = np.asarray(images, np.float64)
    for i, layer in enumerate(refnet.CONV_LAYERS):
        h = net.conv_forward(i, layer, h)
    out = {}
    for layer in ("conv1", "conv2", "conv5"):
        p = net.cache[layer]["pool_in"]
        side = (p.shape[2] - 3) // 2 + 1
        windows = np.stack([p[:, :, 2 * y:2 * y + 3, 2 * x:2 * x + 3].reshape(*p.shape[:2], 9)
                            for y in range(side) for x in range(side)])
        top2 = np.sort(windows, axis=-1)[..., -2:]
        positive = top2[..., 1] > 0
        gap = ((top2[..., 1] - top2[..., 0]) / np.where(positive, top2[..., 1], 1.0))[positive]
        out[layer] = [int(positive.sum()), int((gap < 1e-6).sum()), int((gap < 1e-5).sum())]
    return out


def measure(lrn: bool, seed: int, batch: int) -> dict:
    net = AlexNet(10, "cpu", arch="alexnet-small", lrn=lrn, weight_std=0.03, bias_init=0.1, seed=seed, dropout=0.0)
    params = refnet.merge_towers(net.state_dict(), 2)
    rng = np.random.default_rng(seed)
    images = rng.normal(0, 1, (batch, 3, 32, 32))
    labels = rng.integers(0, 10, batch)
    _, _, want = refnet.forward_backward(params, net.config, images, labels, training=False)
    net.compute_gradients(images.astype(np.float32), labels.astype(np.int32), training=False)
    ours = refnet.merge_towers(net.gradients(), 2)
    row = {"lrn": lrn, "seed": seed, "ours_float32": {k: relative(ours[k], want[k]) for k in LAYERS},
           "reference_perturbed": {}, "near_ties": near_ties(params, net.config, images)}
    for eps in PERTURBATIONS:
        moved = images * (1 + eps * rng.standard_normal(images.shape))
        _, _, got = refnet.forward_backward(params, net.config, moved, labels, training=False)
        row["reference_perturbed"][str(eps)] = {k: relative(got[k], want[k]) for k in LAYERS}
    return row


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)
    rows = [measure(lrn, seed, args.batch) for lrn in (True, False) for seed in range(args.seeds)]
    table = []
    for r in rows:
        for what, values in [("ours float32", r["ours_float32"]),
                             *[(f"reference, input x(1 + {eps:g} z)", r["reference_perturbed"][str(eps)])
                               for eps in PERTURBATIONS]]:
            table.append([("LRN" if r["lrn"] else "no LRN"), r["seed"], what,
                          *[f"{values[k]:.1e}" for k in LAYERS]])
    ties = [[("LRN" if r["lrn"] else "no LRN"), r["seed"],
             *[f"{n[1]} / {n[2]} of {n[0]:,}" for n in r["near_ties"].values()]] for r in rows]
    md = ("# Max-pool conditioning: gradient changes against the float64 reference (max relative error)\n\n"
          f"alexnet-small, batch {args.batch}, random N(0, 1) images, dropout off; {cpu_name()}\n\n"
          + markdown_table(["norm", "seed", "gradients of", *LAYERS], table)
          + "\n\nPooling windows whose two largest inputs are within a relative 1e-6 / 1e-5 (of those with a "
            "positive maximum):\n\n" + markdown_table(["norm", "seed", "pool1", "pool2", "pool5"], ties) + "\n")
    payload = {"command": command_line("benchmarks/maxpool_conditioning.py", argv or sys.argv[1:]),
               "commit": git_commit(), "when": utc_now(), "cpu": cpu_name(), "rows": rows}
    write_results(args.out, "maxpool_conditioning", payload, md)
    print(md)
    return payload


if __name__ == "__main__":
    main()
