"""Splits of a folder of class folders without train/ and val/ (alexnet_cuda/data/splits.py, data/sources.py):
deterministic and stratified by seed, tiny classes, recorded in the run directory, reused on resume (refused when
the folder changed), scored by ``evaluate --split test``; validating on training images only when asked, loudly."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeAlexNet

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import evaluate as evaluate_mod
from alexnet_cuda.train import run as train_mod
from alexnet_cuda.cli import ConfigError
from alexnet_cuda.data.splits import missing_splits, split_sizes, stratified_split
from alexnet_cuda.train.config import TrainConfig
from alexnet_cuda.train.run import train


def _folder(root: Path, counts: dict[str, int]) -> Path:
    """ROOT/<class>/<k>.png, small images of one colour per class (the stand-in network can tell them apart)."""
    from PIL import Image

    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for k in range(n):
            colour = np.array([200 * (c == 0) + k, 200 * (c == 1) + k, 60], np.uint8)
            Image.fromarray(np.tile(colour, (8, 8, 1))).save(root / name / f"{k:03d}.png")
    return root


def _config(tmp_path, data, name="run", **kw) -> TrainConfig:
    base = dict(data=str(data), out=str(tmp_path / name), arch="alexnet-small", image_size=36, epochs=1,
                batch_size=4, lr=0.05, workers=0, progress=False, stats_images=16)
    base.update(kw)
    return TrainConfig(**base)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


# ---------------------------------------------------------------------------------------------------------------------
# The split itself
# ---------------------------------------------------------------------------------------------------------------------

def test_sizes_per_class_and_tiny_classes():
    assert split_sizes(60, 0.1, 0.1) == {"train": 48, "val": 6, "test": 6}
    assert split_sizes(100, 0.1, 0.1) == {"train": 80, "val": 10, "test": 10}
    assert split_sizes(5, 0.1, 0.1) == {"train": 3, "val": 1, "test": 1}  # at least one each when possible
    assert split_sizes(3, 0.1, 0.1) == {"train": 1, "val": 1, "test": 1}
    assert split_sizes(2, 0.1, 0.1) == {"train": 1, "val": 1, "test": 0}  # training first, then validation
    assert split_sizes(1, 0.1, 0.1) == {"train": 1, "val": 0, "test": 0}
    assert split_sizes(10, 0.0, 0.2) == {"train": 8, "val": 0, "test": 2}
    assert missing_splits([0] * 10 + [1, 1] + [2], 3, 0.1, 0.1) == {1: ["test"], 2: ["val", "test"]}
    with pytest.raises(ValueError, match="sum below 1"):
        split_sizes(10, 0.5, 0.5)


def test_split_is_deterministic_stratified_and_disjoint():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    a = stratified_split(labels, 3, 0.1, 0.1, seed=4)
    assert stratified_split(labels, 3, 0.1, 0.1, seed=4).keys() == a.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], stratified_split(labels, 3, 0.1, 0.1, seed=4)[name])
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    for name, want in (("val", [5, 3, 2]), ("test", [5, 3, 2]), ("train", [40, 24, 16])):
        assert np.bincount(labels[a[name]], minlength=3).tolist() == want
    b = stratified_split(labels, 3, 0.1, 0.1, seed=5)
    assert not np.array_equal(a["test"], b["test"])
    # More images in class 2 leave the other classes' splits as they were.
    more = np.concatenate([labels, [2] * 10])
    c = stratified_split(more, 3, 0.1, 0.1, seed=4)
    np.testing.assert_array_equal(c["val"][more[c["val"]] < 2], a["val"][labels[a["val"]] < 2])


# ---------------------------------------------------------------------------------------------------------------------
# The training driver
# ---------------------------------------------------------------------------------------------------------------------

def test_training_splits_the_folder_and_records_it(tmp_path, capsys):
    data = _folder(tmp_path / "pets", {"cat": 20, "dog": 20})
    summary = train(_config(tmp_path, data), model_class=FakeAlexNet)
    out = Path(summary["out"])
    log = capsys.readouterr().out
    assert "has no train/ and val/: split each class by seed 0 into 32 training / 4 validation / 4 test images" in log
    assert "32 training / 4 validation images" in log and "WARNING" not in log
    lists = {name: _lines(out / "splits" / f"{name}.txt") for name in ("train", "val", "test")}
    assert [len(v) for v in lists.values()] == [32, 4, 4]
    assert set().union(*lists.values()) == {f"{c}/{k:03d}.png" for c in ("cat", "dog") for k in range(20)}
    assert sum(p.startswith("cat/") for p in lists["test"]) == 2  # stratified
    settings = json.loads((out / "splits" / "split.json").read_text())
    assert settings["split_seed"] == 0 and settings["val_fraction"] == 0.1 and settings["images"]["test"] == 4
    # --split-seed (default --seed) picks another split.
    train(_config(tmp_path, data, "other", split_seed=3), model_class=FakeAlexNet)
    assert _lines(tmp_path / "other" / "splits" / "test.txt") != lists["test"]


def test_resume_reuses_the_split_and_refuses_a_changed_folder(tmp_path, capsys):
    data = _folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    whole = train(_config(tmp_path, data, "whole", epochs=2), model_class=FakeAlexNet)
    part1 = train(_config(tmp_path, data, "parts", epochs=1), model_class=FakeAlexNet)
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, epochs=2, workers=0, progress=False),
                  model_class=FakeAlexNet)
    assert part1["step_losses"] + part2["step_losses"] == whole["step_losses"]
    assert "as recorded in" in capsys.readouterr().out
    (data / "dog" / "extra.png").write_bytes((data / "dog" / "000.png").read_bytes())
    with pytest.raises(ConfigError, match=r"the folder changed since its split was recorded .* \(0 images missing, "
                                          r"1 new\)"):
        train(TrainConfig(out=str(tmp_path / "parts"), resume=True, epochs=3, workers=0, progress=False),
              model_class=FakeAlexNet)


def test_evaluate_scores_the_test_split_from_the_run_directory(tmp_path, monkeypatch, capsys):
    data = _folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    out = Path(train(_config(tmp_path, data), model_class=FakeAlexNet)["out"])
    ckpt = ckpt_io.load(out / "last.npz")
    test_set = evaluate_mod.dataset_for(ckpt, None, None, "test")
    assert sorted(f"{Path(test_set.describe(i)).parent.name}/{Path(test_set.describe(i)).name}"
                  for i in range(len(test_set))) == sorted(_lines(out / "splits" / "test.txt"))
    assert len(evaluate_mod.dataset_for(ckpt, None, None, "val")) == 2
    monkeypatch.setattr(ckpt_io, "build_model", functools.partial(ckpt_io.build_model, model_class=FakeAlexNet))
    capsys.readouterr()
    assert evaluate_mod.main(["--checkpoint", str(out / "last.npz"), "--split", "test", "--json",
                              "--no-progress", "--workers", "0"]) == 0
    assert json.loads(capsys.readouterr().out)["images"] == 2
    assert len(evaluate_mod.dataset_for(ckpt, str(data), None, "val")) == 20  # the folder given: all of it,
    assert "the training ones included" in capsys.readouterr().err  # and evaluate says so
    (out / "splits" / "split.json").unlink()
    with pytest.raises(ConfigError, match="does not hold the split this run used"):
        evaluate_mod.dataset_for(ckpt, None, None, "test")


def test_validating_on_training_images_only_when_asked_and_loudly(tmp_path, capsys):
    data = _folder(tmp_path / "pets", {"cat": 10, "dog": 10})
    summary = train(_config(tmp_path, data, val_on_train=True), model_class=FakeAlexNet)
    log = capsys.readouterr().out
    assert "WARNING: --val-on-train: validating on the 18 training images" in log
    assert "18 training / 18 validation images (the same ones: --val-on-train)" in log
    assert summary["history"][0]["val_top1"] is not None
    assert _lines(Path(summary["out"]) / "splits" / "val.txt") == []


def test_datasets_with_their_own_splits_keep_them(tmp_path, capsys):
    root = tmp_path / "own"
    _folder(root / "train", {"a": 6, "b": 6})
    _folder(root / "val", {"a": 2, "b": 2})
    summary = train(_config(tmp_path, root), model_class=FakeAlexNet)
    assert "12 training / 4 validation images" in capsys.readouterr().out
    assert not (Path(summary["out"]) / "splits").exists()


@pytest.mark.parametrize("args, message", [
    (["--val-fraction", "1.5"], "argument --val-fraction: must be in [0, 1)"),
    (["--test-fraction", "-0.1"], "argument --test-fraction: must be in [0, 1)"),
    (["--split-seed", "x"], "argument --split-seed: invalid int value"),
    (["--val-fraction", "0.2"], "--val-fraction applies only to a folder of class folders without train/ and val/"),
])
def test_bad_split_flags(args, message, capsys):
    code = _main(args)
    assert code == 2 and message in capsys.readouterr().err


def test_bad_split_combinations_on_a_folder(tmp_path, capsys):
    data = str(_folder(tmp_path / "pets", {"cat": 4, "dog": 4}))
    for args, message in ((["--val-fraction", "0.6", "--test-fraction", "0.5"], "leave no training images"),
                          (["--val-fraction", "0"], "--val-fraction 0 leaves no validation images; pass "
                                                    "--val-on-train"),
                          (["--val-on-train", "--val-fraction", "0.2"], "cannot be combined with --val-fraction")):
        assert _main(["--data", data, "--out", str(tmp_path / "o"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0]


def _main(args: list[str]) -> int:
    try:
        return train_mod.main([*args, "--no-progress", "--workers", "0"])
    except SystemExit as exc:
        return exc.code
