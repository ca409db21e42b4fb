"""The PyTorch parity run (benchmarks/parity.py) in miniature: alexnet-small and the four-layer CIFAR-10 net, each
beside its PyTorch twin from the same weights, take 3 steps on the same synthetic batches with the same augmentation
draws and dropout masks, and their losses agree within 1e-4 relative. Skips when PyTorch is absent (it is never a dependency of the package)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.append(str(REPO_ROOT))


@pytest.mark.parametrize("arch", ["alexnet-small", "conv-local-13pct"])
def test_first_steps_agree_with_pytorch(arch):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed")
    from alexnet_cuda import data
    from benchmarks import parity

    torch.set_num_threads(1)
    side = parity.image_side(arch)
    train_set = data.synthetic_dataset("train", num_images=384, image_size=side)
    pair = parity.make_pair(torch, arch, train_set, seed=0, stats_images=96)
    loader = data.Loader(train_set, pair.batch, shuffle=True, drop_last=True, seed=0, workers=0)
    result = parity.train_pair(pair, loader, 3)
    assert len(result["loss_ours"]) == 3
    assert np.isfinite(result["loss_ours"]).all()
    gaps = parity.relative_gaps(result["loss_ours"], result["loss_torch"])
    assert max(gaps) <= parity.REL_TOL, (result["loss_ours"], result["loss_torch"])
