"""Issue 9: every user error ends a command line with one line on stderr and a non-zero status, never a traceback
(``--debug`` shows it), and ``predict`` does not hang on a FIFO."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from test_cli import run_module

from alexnet_cuda import AlexNet, cli
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda.train import run as train_mod

TINY = dict(arch="alexnet-small", input_size=32, widths={"conv": [4, 4, 4, 4, 4], "fc": [8, 8]})


def _one_line_error(err: str, prog: str) -> str:
    """The single stderr line of a failed command, checked to be one and not a traceback."""
    lines = [x for x in err.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"python -m alexnet_cuda.{prog}: error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def mismatched_checkpoint(tmp_path_factory):
    """A checkpoint that loads but whose parameters are for 4 classes while its configuration says 6."""
    net = AlexNet(4, "cpu", **TINY)
    path = tmp_path_factory.mktemp("ckpt") / "mismatched.npz"
    meta = {"model": dict(num_classes=6, **TINY), "image_size": 36, "classes": list("abcdef")}
    ckpt_io.save(path, ckpt_io.Checkpoint(params=net.state_dict(), arrays={"mean": np.zeros(3, np.float32)},
                                          meta=meta))
    return path


def test_checkpoint_that_does_not_match_its_network(mismatched_checkpoint, tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((36, 36, 3), np.uint8)).save(image)
    for prog, args in (("evaluate", []), ("predict", [str(image)])):
        r = run_module(f"alexnet_cuda.{prog}", "--checkpoint", str(mismatched_checkpoint), "--device", "cpu", *args,
                       cwd=tmp_path)
        line = _one_line_error(r.stderr, prog)
        assert r.returncode == 1
        assert f"checkpoint {mismatched_checkpoint}: does not match the network it describes" in line


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_predict_does_not_hang_on_a_fifo(tmp_path):
    # Opening a FIFO blocks until someone writes to it: predict must refuse it without opening it blockingly.
    net = AlexNet(4, "cpu", **TINY)
    good = tmp_path / "good.npz"
    ckpt_io.save(good, ckpt_io.Checkpoint(params=net.state_dict(), meta={"model": dict(num_classes=4, **TINY),
                                                                          "image_size": 36}))
    fifo = tmp_path / "fifo.png"
    os.mkfifo(fifo)
    try:
        r = run_module("alexnet_cuda.predict", "--checkpoint", str(good), "--device", "cpu", str(fifo), cwd=tmp_path,
                       timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("predict blocked on a FIFO")
    line = _one_line_error(r.stderr, "predict")
    assert r.returncode == 1 and "fifo.png: not a regular file" in line


def _train_error(capsys, *args: str) -> tuple[int, str]:
    code = train_mod.main([*args, "--no-progress", "--workers", "0"])
    return code, _one_line_error(capsys.readouterr().err, "train")


def _image_folder(root, classes, write):
    for split in ("train", "val"):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(3):
                write(root / split / c / f"{i}.png")


def test_train_on_a_folder_of_undecodable_images(tmp_path, capsys):
    _image_folder(tmp_path / "junk", "ab", lambda p: p.write_bytes(b"not an image"))
    code, line = _train_error(capsys, "--data", str(tmp_path / "junk"), "--out", str(tmp_path / "o"),
                              "--image-size", "36", "--arch", "alexnet-small")
    assert code == 1 and "none of the 6 images tried could be decoded" in line


def test_train_on_a_dataset_with_one_class(tmp_path, capsys):
    from PIL import Image

    _image_folder(tmp_path / "one", "a", lambda p: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p))
    code, line = _train_error(capsys, "--data", str(tmp_path / "one"), "--out", str(tmp_path / "o"))
    assert code == 2 and "found 1 class (a); a classifier needs at least 2" in line


@pytest.mark.parametrize("args, message", [
    (["--image-size", "1000000"], "needs at least"),
    (["--synthetic-images", "100000000000"], "needs at least"),
])
def test_train_absurd_sizes_and_existing_out_file(tmp_path, capsys, args, message):
    code, line = _train_error(capsys, *args, "--out", str(tmp_path / "o"))
    assert code == 2 and message in line
    (tmp_path / "file").write_text("x")
    code, line = _train_error(capsys, "--out", str(tmp_path / "file"))
    assert code == 2 and "exists and is not a directory" in line


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "file").write_text("x")
    r = run_module("alexnet_cuda.train", "--out", str(tmp_path / "file"), "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr and "ConfigError" in r.stderr


def test_unexpected_errors_are_one_line_naming_their_type():
    assert cli.describe(RuntimeError("worker died\nmore")) == (
        "RuntimeError: worker died (run again with --debug for the traceback)")
    assert cli.describe(MemoryError("Unable to allocate 74 GiB")).startswith("out of memory (Unable to allocate")
    assert cli.describe(ValueError("\n  first line\nsecond")) == "first line"
