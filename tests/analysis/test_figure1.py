"""The Figure 1 preset (python -m alexnet_cuda.figure1): a learning-rate sweep per activation, each run stopped at
the target or once it cannot beat its activation's best, the best rates' ratio, the page and the plot; with --data
the paper's four-layer net without weight decay on fixed centre patches."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from pictures import assert_picture
from subprocesses import run_module

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda.analysis import figure1
from alexnet_cuda.analysis.plots import COMPARE_SIZE, DPI
from alexnet_cuda.nets.description import resolved_settings

FAST = ["--batch-size", "8", "--stats-images", "16", "--workers", "0", "--device", "cpu", "--no-progress"]


def test_epochs_to_reach():
    epochs = [{"epoch": 1, "train_top1": 0.5}, {"epoch": 2, "train_top1": 0.74}, {"epoch": 3, "train_top1": 0.75}]
    assert figure1.epochs_to_reach(epochs, 0.25) == 3
    assert figure1.epochs_to_reach(epochs, 0.26) == 2
    assert figure1.epochs_to_reach(epochs, 0.1) is None


def test_the_papers_net_has_no_decay_and_the_chosen_activation():
    for activation in ("relu", "tanh"):
        desc = figure1.paper_net(activation)
        weighted = [resolved_settings(x) for x in desc.layers if x.kind in ("conv", "local", "linear")]
        assert len(weighted) == 5 and all(s["weight_decay"] == 0.0 for s in weighted)
        acts = {s["activation"] for s in weighted[:-1]}
        assert acts == {activation} and weighted[-1]["activation"] == "none"
        assert desc.input_size == 24 and not any(x.kind in ("lrn", "spatial_lrn") for x in desc.layers)


def test_sweep_on_the_synthetic_stand_in(tmp_path):
    """A target every run reaches at once: each activation's first rate is its best, the second gets that one
    epoch and no more."""
    out = tmp_path / "fig1"
    code = figure1.main(["--subset", "16", "--lrs", "0.01,0.02", "--max-epochs", "2", "--target", "1.0", "--out",
                         str(out), "--", *FAST])
    assert code == 0
    assert_picture(out / "figure1.png", (int(COMPARE_SIZE[0] * DPI), int(COMPARE_SIZE[1] * DPI)))
    page = (out / "figure1.md").read_text()
    assert "| relu **best** | 0.01 | 1 | 1 | reached the target |" in page
    assert "| tanh | 0.02 | 1 | 1 | reached the target |" in page and "1x the epochs" in page
    result = json.loads((out / "figure1.json").read_text())
    assert result["ratio"] == 1.0 and result["best"]["tanh"] == {"lr": 0.01, "epochs": 1}
    # The same command again trains nothing and gives the same page; another plan in the folder is refused.
    assert figure1.main(["--subset", "16", "--lrs", "0.01,0.02", "--max-epochs", "2", "--target", "1.0", "--out",
                         str(out), "--", *FAST]) == 0
    assert (out / "figure1.md").read_text() == page
    assert figure1.main(["--subset", "16", "--lrs", "0.05", "--out", str(out), "--", *FAST]) == 2


def test_the_papers_setting_on_a_small_folder(tmp_path):
    """--data: conv-local-13pct's files on 24x24 centre patches of 32x32 images, no flips, no colour noise."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("val", 2)):
        for c in ("cat", "dog"):
            (tmp_path / "data" / split / c).mkdir(parents=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
                    tmp_path / "data" / split / c / f"{k}.png")
    out = tmp_path / "fig1"
    code = figure1.main(["--data", str(tmp_path / "data"), "--lrs", "1,2", "--max-epochs", "2", "--target", "0.0",
                         "--out", str(out), "--", *FAST])
    assert code == 0
    result = json.loads((out / "figure1.json").read_text())
    assert [(r["activation"], r["lr"]) for r in result["runs"]] == [("relu", 1.0), ("relu", 2.0), ("tanh", 1.0),
                                                                     ("tanh", 2.0)]
    assert all(1 <= r["epochs"] <= 2 for r in result["runs"])
    assert (out / "nets" / "tanh.ini").read_text().count("activation = tanh") == 4
    config = ckpt_io.load(out / "tanh-lr2" / "last.npz").meta["config"]
    assert (config["crops"], config["flip"], config["pca_std"], config["lr"]) == ("centre", False, 0.0, 2.0)


def test_ratio_and_lower_bound():
    rows = [{"activation": "relu", "lr": 1.0, "reached": 3, "epochs": 3},
            {"activation": "relu", "lr": 2.0, "reached": 2, "epochs": 2},
            {"activation": "tanh", "lr": 1.0, "reached": 12, "epochs": 12}]
    ratio, text = figure1.verdict(rows, 60)
    assert ratio == 6.0 and "tanh needed 6x the epochs of ReLU" in text and "x2" in text
    ratio, text = figure1.verdict(rows[:2] + [{"activation": "tanh", "lr": 1.0, "reached": None, "epochs": 60}], 60)
    assert ratio is None and "more than 30" in text


def test_command_line(tmp_path):
    r = run_module("alexnet_cuda.figure1", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "four-layer" in r.stdout and "--lrs" in r.stdout and "--max-epochs" in r.stdout
    r = run_module("alexnet_cuda.figure1", "--out", str(tmp_path / "f"), "--", "--activation", "tanh", cwd=tmp_path)
    assert r.returncode == 2 and "the preset sets it" in r.stderr
    r = run_module("alexnet_cuda.figure1", "--lrs", "0,1", cwd=tmp_path)
    assert r.returncode == 2 and "must be positive" in r.stderr
