"""The Figure 1 preset (python -m alexnet_cuda.figure1): epochs to the target training error, their ratio, the
plot, and how the subset flag reaches the trainer."""

from __future__ import annotations

from pictures import assert_picture
from subprocesses import run_module

from alexnet_cuda.analysis import figure1
from alexnet_cuda.analysis.plots import COMPARE_SIZE, DPI


def test_epochs_to_reach():
    epochs = [{"epoch": 1, "train_top1": 0.3}, {"epoch": 2, "train_top1": 0.74}, {"epoch": 3, "train_top1": 0.8}]
    assert figure1.epochs_to_reach(epochs, 0.25) == 3
    assert figure1.epochs_to_reach(epochs, 0.26) == 2
    assert figure1.epochs_to_reach(epochs, 0.1) is None


def test_subset_flags(tmp_path):
    assert figure1._subset_flags(None, None, []) == ["--synthetic-images", str(figure1.DEFAULT_SUBSET)]
    assert figure1._subset_flags(None, 64, []) == ["--synthetic-images", "64"]
    folder = tmp_path / "cifar"
    folder.mkdir()
    assert figure1._subset_flags(str(folder), 100, ["--batch-size", "32", "--dataset", "cifar10"]) == [
        "--train-batches", "4"]


def test_preset_writes_the_figure_and_the_ratio(tmp_path):
    out = tmp_path / "fig1"
    # A target every run reaches at once (100% error): the ratio is then 1.
    code = figure1.main(["--subset", "16", "--epochs", "2", "--target", "1.0", "--out", str(out), "--",
                         "--batch-size", "8", "--stats-images", "16", "--workers", "0", "--device", "cpu",
                         "--no-progress"])
    assert code == 0
    assert_picture(out / "figure1.png", (int(COMPARE_SIZE[0] * DPI), int(COMPARE_SIZE[1] * DPI)))
    page = (out / "figure1.md").read_text()
    assert "| relu | 1 |" in page and "| tanh | 1 |" in page and "1x the epochs" in page
    result = figure1.write_figure(out, 0.0)  # a target nothing reaches
    assert result["ratio"] is None and "did not reach" in result["verdict"]


def test_command_line(tmp_path):
    r = run_module("alexnet_cuda.figure1", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "four-layer" in r.stdout and "--subset" in r.stdout
    r = run_module("alexnet_cuda.figure1", "--out", str(tmp_path / "f"), "--", "--activation", "tanh", cwd=tmp_path)
    assert r.returncode == 2 and "the preset sets it" in r.stderr


def test_ratio_from_the_logs(tmp_path):
    for name, errors in (("relu", [0.5, 0.2]), ("tanh", [0.6, 0.5, 0.4, 0.24])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text("".join(
            f'{{"epoch": {i + 1}, "train_top1": {1 - e}}}\n' for i, e in enumerate(errors)))
    result = figure1.write_figure(tmp_path, 0.25)
    assert result["epochs"] == {"relu": 2, "tanh": 4} and result["ratio"] == 2.0
    assert "tanh needed 2x the epochs of ReLU" in result["verdict"]
