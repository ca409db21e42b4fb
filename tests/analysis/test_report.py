"""The run report (python -m alexnet_cuda.report): PNGs of the expected size that are not blank, and a page that
shows them, on a finished run, a resumed one and one still running; train points at it; training never imports
matplotlib."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from pictures import assert_picture
from subprocesses import module_command, module_env, run_module

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda.analysis.filters import conv1_kernels, filter_grid
from alexnet_cuda.analysis.plots import CONFUSION_SIZE, CURVES_SIZE, DPI
from alexnet_cuda.analysis.report import make_report
from alexnet_cuda.train.config import TrainConfig
from alexnet_cuda.train.run import train

CURVES_PX = (int(CURVES_SIZE[0] * DPI), int(CURVES_SIZE[1] * DPI))
CONFUSION_PX = (int(CONFUSION_SIZE[0] * DPI), int(CONFUSION_SIZE[1] * DPI))
TINY = dict(synthetic_images=64, batch_size=16, stats_images=32, workers=0, progress=False, val_batches=2,
            widths={"conv": [16, 16, 16, 16, 16], "fc": [32, 32]})


@pytest.fixture(scope="module")
def resumed_run(tmp_path_factory):
    """A real two-tower run of 2 epochs, then resumed for a third."""
    out = tmp_path_factory.mktemp("report") / "run"
    train(TrainConfig(out=str(out), epochs=2, **TINY))
    train(TrainConfig(out=str(out), epochs=3, resume=True, progress=False))
    return out


def test_report_of_a_resumed_run(resumed_run):
    result = make_report(resumed_run)
    report = resumed_run / "report"
    assert_picture(report / "curves.png", CURVES_PX)
    assert_picture(report / "confusion.png", CONFUSION_PX)
    ckpt = ckpt_io.load(resumed_run / "best.npz")
    expected = filter_grid(conv1_kernels(ckpt.params))
    pixels = assert_picture(report / "conv1_filters.png", (expected.shape[1], expected.shape[0]))
    assert np.array_equal(pixels, expected)
    page = (resumed_run / "report.md").read_text()
    for name in ("curves.png", "conv1_filters.png", "confusion.png"):
        assert f"report/{name}" in page
    epoch_rows = [int(m.group(1)) for m in re.finditer(r"^\| (\d+)(?: \(best\))? \| \d", page, re.M)]
    assert epoch_rows == [1, 2, 3]  # one table row per epoch, the resumed one included
    assert set(result["images"]) == {report / "curves.png", report / "conv1_filters.png", report / "confusion.png"}


def test_filter_grid_puts_tower_0_above_tower_1():
    t0, t1 = np.zeros((4, 3, 5, 5), np.float32), np.zeros((4, 3, 5, 5), np.float32)
    t0[:, 0, 0, 0] = 1  # tower 0: a red pixel on black; tower 1: a blue one
    t1[:, 2, 0, 0] = 1
    grid = filter_grid([t0, t1], zoom=2, gap=1, tower_gap=4)
    assert grid.shape == (2 * (1 * 11 + 1) + 4, 4 * 11 + 1, 3)
    top, bottom = grid[:12], grid[16:]
    assert top[1, 1, 0] == 255 and top[1, 1, 2] == 0
    assert bottom[1, 1, 2] == 255 and bottom[1, 1, 0] == 0


def test_many_classes_list_the_most_confused_pairs(resumed_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(resumed_run, run)
    make_report(run, max_classes=5)  # 10 classes > 5: no matrix picture, a table of pairs
    assert not (run / "report" / "confusion.png").exists()
    assert "Most confused pairs" in (run / "report.md").read_text()


def test_report_while_training_runs(tmp_path):
    out = tmp_path / "run"
    args = ["--synthetic-images", "40", "--batch-size", "8", "--stats-images", "16", "--workers", "0", "--device",
            "cpu", "--no-progress", "--epochs", "30", "--out", str(out)]
    proc = subprocess.Popen(module_command("alexnet_cuda.train", *args), cwd=tmp_path, env=module_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not (out / "best.npz").exists():
            time.sleep(0.5)
        assert (out / "best.npz").exists(), "the training did not finish an epoch"
        with open(out / "metrics.jsonl", "a") as f:
            f.write('{"epoch": 99, "train_lo')  # what a reader can see while a line is being written
        result = make_report(out, max_images=8)
    finally:
        proc.kill()
        proc.wait()
    assert_picture(out / "report" / "curves.png", CURVES_PX)
    assert any("still running" in n for n in result["notes"])


def test_command_line_and_train_points_at_it(resumed_run, tmp_path):
    r = run_module("alexnet_cuda.report", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "RUN_DIR" in r.stdout and "Figure 3" in r.stdout
    r = run_module("alexnet_cuda.report", str(tmp_path / "nothing"), cwd=tmp_path)
    assert r.returncode == 2 and "no such run directory" in r.stderr
    r = run_module("alexnet_cuda.report", str(resumed_run), "--no-confusion", cwd=tmp_path)
    assert r.returncode == 0 and "report.md" in r.stdout
    from alexnet_cuda.train.run import report_hint
    assert f"python -m alexnet_cuda.report {resumed_run}" in report_hint(str(resumed_run))


def test_training_never_imports_matplotlib(tmp_path):
    code = ("import sys, alexnet_cuda.train.run, alexnet_cuda.evaluate, alexnet_cuda.summary, alexnet_cuda.analysis.run_logs; "
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('matplotlib'))))")
    r = subprocess.run([sys.executable, "-c", "import json; " + code], cwd=tmp_path, env=module_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
