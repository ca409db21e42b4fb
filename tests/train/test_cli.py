"""The command lines: ``python -m alexnet_cuda.train`` / ``.evaluate`` / ``.predict`` (help, bad flags, errors as
one line, evaluation and prediction on a tiny trained checkpoint, Ctrl-C)."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeAlexNet
from subprocesses import module_command, module_env, run_module

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import evaluate as evaluate_mod
from alexnet_cuda import predict as predict_mod
from alexnet_cuda.train.config import TrainConfig
from alexnet_cuda.train.run import train

try:
    from alexnet_cuda import AlexNet
except ImportError:  # only while the network is not part of the build yet
    AlexNet = None
requires_model = pytest.mark.skipif(AlexNet is None, reason="alexnet_cuda.AlexNet is not available in this build")



# ---------------------------------------------------------------------------------------------------------------------
# Help and argument errors
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("module,flags", [
    ("alexnet_cuda.train", ["--data", "--dataset", "--arch", "--epochs", "--batch-size", "--lr", "--momentum",
                            "--weight-decay", "--lr-schedule", "--device", "--gpus", "--workers", "--seed", "--out",
                            "--resume", "--eval-every", "--no-lrn", "--no-overlap-pool", "--activation", "--dropout",
                            "--towers"]),
    ("alexnet_cuda.evaluate", ["--checkpoint", "--data", "--no-ten-crop"]),
    ("alexnet_cuda.predict", ["IMAGE", "--checkpoint", "--top"]),
])
def test_help(module, flags, tmp_path):
    r = run_module(module, "--help", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for f in flags:
        assert f in r.stdout, f


@pytest.mark.parametrize("args,message", [
    (["--bogus"], "unrecognized arguments: --bogus"),
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
    (["--lr", "fast"], "--lr: expected a number"),
    (["--lr", "-1"], "--lr: must be in"),
    (["--lr", "1e39"], "--lr: must be a finite float32"),
    (["--weight-decay", "1e300"], "--weight-decay: must be a finite float32"),
    (["--bias-init=-1e39"], "--bias-init: must be a finite float32"),
    (["--arch", "vgg"], "--arch: invalid choice"),
    (["--dataset", "mnist"], "--dataset: invalid choice"),
    (["--lr-schedule", "linear"], "--lr-schedule: invalid choice"),
    (["--dropout", "1.5"], "--dropout: must be in"),
    (["--towers", "3"], "--towers: invalid choice"),
    (["--gpus", "a,b"], "--gpus: expected GPU ids"),
    (["--resume"], "--resume needs --out"),
])
def test_train_bad_flags_exit_2(args, message, capsys):
    from alexnet_cuda.train import run as train_mod

    with pytest.raises(SystemExit) as info:
        train_mod.main(args)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_flag_messages(tmp_path):
    r = run_module("alexnet_cuda.train", "--batch-size", "0", cwd=tmp_path)
    assert r.returncode == 2 and "--batch-size: must be at least 1, got 0" in r.stderr
    r = run_module("alexnet_cuda.evaluate", "--bogus", cwd=tmp_path)
    assert r.returncode == 2 and "unrecognized arguments" in r.stderr
    r = run_module("alexnet_cuda.predict", cwd=tmp_path)
    assert r.returncode == 2 and "IMAGE" in r.stderr


def test_bad_data_path_is_one_line_not_a_traceback(tmp_path):
    r = run_module("alexnet_cuda.train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o"),
                   cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0, r.stderr
    assert "Traceback" not in r.stderr and "missing: no such directory" in r.stderr
    (tmp_path / "notdata").mkdir()
    (tmp_path / "notdata" / "readme.txt").write_text("hello")
    r = run_module("alexnet_cuda.train", "--data", str(tmp_path / "notdata"), "--out", str(tmp_path / "o"),
                   cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "notdata" in r.stderr


def test_evaluate_and_predict_without_a_checkpoint_say_so(tmp_path):
    for module, args in (("alexnet_cuda.evaluate", []), ("alexnet_cuda.predict", ["x.png"])):
        r = run_module(module, *args, cwd=tmp_path)
        assert r.returncode == 2 and "no checkpoint" in r.stderr and "Traceback" not in r.stderr
    r = run_module("alexnet_cuda.evaluate", "--checkpoint", str(tmp_path / "nope.npz"), cwd=tmp_path)
    assert r.returncode == 1 and "nope.npz: no such file" in r.stderr and "Traceback" not in r.stderr


def test_package_main_prints_build_info(tmp_path):
    r = run_module("alexnet_cuda", cwd=tmp_path)
    assert r.returncode == 0 and '"cpu": true' in r.stdout and "alexnet_cuda.train" in r.stdout


# ---------------------------------------------------------------------------------------------------------------------
# Evaluate and predict on a tiny trained checkpoint (the stand-in network; the real one below)
# ---------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake") / "run"
    train(TrainConfig(out=str(out), epochs=2, batch_size=32, synthetic_images=256, lr=0.05, workers=0,
                      progress=False, stats_images=64), model_class=FakeAlexNet)
    return out


def _image_files(directory: Path, n: int = 3) -> list[str]:
    from PIL import Image

    from alexnet_cuda.data import synthetic_dataset

    ds = synthetic_dataset("val", num_images=n, image_size=50)
    paths = []
    for i in range(n):
        p = directory / f"img{i}.png"
        Image.fromarray(ds.load(i)).save(p)
        paths.append(str(p))
    return paths


@pytest.fixture
def with_fake_network(monkeypatch):
    monkeypatch.setattr(ckpt_io, "build_model", functools.partial(ckpt_io.build_model, model_class=FakeAlexNet))


def test_evaluate_center_and_ten_crop(fake_run, with_fake_network, capsys):
    code = evaluate_mod.main(["--checkpoint", str(fake_run / "best.npz"), "--no-progress", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 51  # the synthetic validation set of a 256-image run
    for view in ("center", "ten_crop"):
        for k in ("top1_error", "top5_error"):
            assert 0.0 <= result[view][k] <= 1.0
        assert result[view]["top5_error"] <= result[view]["top1_error"]
    # The centre-crop numbers agree with the validation the training loop did on the same checkpoint.
    best = ckpt_io.load(fake_run / "best.npz").meta["metrics"]
    assert result["center"]["top1_error"] == pytest.approx(1 - best["val_top1"])
    assert result["center"]["top5_error"] == pytest.approx(1 - best["val_top5"])
    assert result["center"]["loss"] == pytest.approx(best["val_loss"], rel=1e-5)
    code = evaluate_mod.main(["--checkpoint", str(fake_run / "best.npz"), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and "centre crop" in printed and "10-crop average" in printed and "top-5 error" in printed


def test_ten_crop_averages_softmax_of_the_ten_patches(rng):
    from alexnet_cuda.data import synthetic_dataset

    model = FakeAlexNet(num_classes=10, arch="alexnet-small", input_size=32)
    model.params["fc.weight"][:] = rng.normal(0, 1, model.params["fc.weight"].shape)
    ds = synthetic_dataset("val", num_images=20, image_size=36)
    images = np.stack([ds.load(i) for i in range(20)])
    labels = ds.labels
    result = evaluate_mod.evaluate(model, ds, batch_size=8, workers=0)
    # Direct computation: the ten patches (corners, centre, and their mirror images).
    probs = np.zeros((20, 10))
    for y, x in [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2)]:
        for flip in (0, 1):
            probs += model.predict(images, crops=np.tile([[y, x]], (20, 1)).astype(np.int32),
                                   flips=np.full(20, flip, np.int32))
    probs /= 10
    top1 = np.mean(np.argmax(probs, axis=1) == labels)
    assert result["ten_crop"]["top1_error"] == pytest.approx(1 - top1)


def test_predict_top5_with_class_names(fake_run, with_fake_network, tmp_path, capsys):
    paths = _image_files(tmp_path)
    code = predict_mod.main([*paths, "--checkpoint", str(fake_run / "best.npz"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    classes = ckpt_io.load(fake_run / "best.npz").classes
    for p in paths:
        top = result["predictions"][p]
        assert len(top) == 5
        assert all(t["class"] in classes for t in top)
        probs = [t["probability"] for t in top]
        assert probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    code = predict_mod.main([paths[0], str(tmp_path / "broken.jpg"), "--checkpoint", str(fake_run / "best.npz")])
    captured = capsys.readouterr()
    assert code == 1 and "broken.jpg" in captured.err and "Traceback" not in captured.err
    assert paths[0] in captured.out and "%" in captured.out


def test_evaluate_rejects_data_with_other_classes(fake_run, with_fake_network, tmp_path, capsys):
    from PIL import Image

    for split in ("train", "val"):
        for cls in ("ant", "bee"):
            d = tmp_path / "data" / split / cls
            d.mkdir(parents=True)
            Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(d / "a.png")
    code = evaluate_mod.main(["--checkpoint", str(fake_run / "best.npz"), "--data", str(tmp_path / "data")])
    assert code == 2 and "different ones" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------------
# The real network, end to end through the command lines
# ---------------------------------------------------------------------------------------------------------------------

# 40 synthetic training images (8 for validation) in batches of 8: a few seconds with the full alexnet-small.
TINY_REAL = ["--synthetic-images", "40", "--batch-size", "8", "--stats-images", "16", "--workers", "0",
             "--device", "cpu", "--no-progress"]


@requires_model
def test_real_train_evaluate_predict(tmp_path):
    out = tmp_path / "run"
    r = run_module("alexnet_cuda.train", *TINY_REAL, "--epochs", "1", "--out", str(out), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "epoch 1/1" in r.stdout and (out / "best.npz").exists()
    r = run_module("alexnet_cuda.evaluate", "--checkpoint", str(out / "best.npz"), "--max-images", "6",
                   "--no-progress", "--json", "--device", "cpu", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result["images"] == 6 and set(result) >= {"center", "ten_crop"}
    best = ckpt_io.load(out / "best.npz").meta["metrics"]
    r = run_module("alexnet_cuda.evaluate", "--checkpoint", str(out / "best.npz"), "--no-ten-crop", "--no-progress",
                   "--json", "--device", "cpu", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)  # the whole validation set, centre crop: what the training loop measured
    assert result["images"] == 8 and "ten_crop" not in result
    assert result["center"]["top1_error"] == pytest.approx(1 - best["val_top1"])
    assert result["center"]["loss"] == pytest.approx(best["val_loss"], rel=1e-4)
    paths = _image_files(tmp_path)
    r = run_module("alexnet_cuda.predict", *paths, "--checkpoint", str(out / "best.npz"), "--device", "cpu",
                   cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("%") == 5 * len(paths)


@requires_model
def test_real_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen(module_command("alexnet_cuda.train", *TINY_REAL, "--epochs", "50", "--out", str(out)),
                            cwd=tmp_path, env=module_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        steps = out / "steps.jsonl"
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if steps.exists() and steps.read_text().count("\n") >= 2:
                break  # two steps done (steps.jsonl is line-buffered): interrupt during the next
            time.sleep(0.05)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted" in stderr and "--resume" in stderr
    saved = ckpt_io.load(out / "last.npz")
    assert saved.meta["step"] >= 2
    assert len(steps.read_text().splitlines()) == saved.meta["step"]  # every step done is in the checkpoint
    r = run_module("alexnet_cuda.train", "--resume", "--out", str(out), "--epochs", str(saved.meta["epoch"] + 1),
                   "--no-progress", cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
