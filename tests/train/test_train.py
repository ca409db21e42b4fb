"""The training driver (alexnet_cuda.train): the loop, metrics files, checkpoints, exact resume, Ctrl-C, NaN stop.

Most tests drive the loop with ``fakes.FakeAlexNet`` (same API as the network, NumPy, milliseconds per step) so
the driver's logic is tested in a few seconds; the ``real_`` tests run the same checks on the real network
(alexnet-small on the CPU) and on the mini ImageNet in shared/data when it is present.
"""

from __future__ import annotations

import math
import signal
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeAlexNet
from runs import assert_same_run, real, records, tiny, without_timing

import alexnet_cuda
from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda.cli import ConfigError
from alexnet_cuda.data.sources import open_datasets
from alexnet_cuda.train import config as train_config
from alexnet_cuda.train.config import TrainConfig
from alexnet_cuda.train.inputs import input_statistics
from alexnet_cuda.train.loop import StopRequest
from alexnet_cuda.train.run import train
from alexnet_cuda.train.schedule import LRSchedule
from alexnet_cuda.train.state import TrainingDiverged

try:
    from alexnet_cuda import AlexNet
except ImportError:  # only while the network is not part of the build yet
    AlexNet = None
requires_model = pytest.mark.skipif(AlexNet is None, reason="alexnet_cuda.AlexNet is not available in this build")

IMAGENETTE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "imagenette-mini"
if not IMAGENETTE.is_dir():
    IMAGENETTE = Path("/work/shared/data/imagenette-mini")




# ---------------------------------------------------------------------------------------------------------------------
# The loop and its outputs
# ---------------------------------------------------------------------------------------------------------------------

def test_loss_falls_and_run_directory_is_complete(tmp_path, capsys):
    summary = train(tiny(tmp_path, epochs=4, synthetic_images=256, batch_size=32, progress=True),
                    model_class=FakeAlexNet)
    out = Path(summary["out"])
    assert summary["status"] == "completed" and summary["epochs_done"] == 4 and summary["step"] == 4 * 8
    hist = summary["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3, 4]
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    for h in hist:
        for k in ("train_loss", "train_top1", "train_top5", "val_loss", "val_top1", "val_top5", "lr", "time",
                  "images_per_s", "step"):
            assert k in h and h[k] is not None
    assert records(out / "metrics.jsonl") == hist
    steps = records(out / "steps.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 33))
    assert [s["loss"] for s in steps] == summary["step_losses"]
    assert np.load(out / "mean.npy").shape == (3, 36, 36)
    with np.load(out / "pca.npz") as z:
        assert z["eigvals"].shape == (3,) and z["eigvecs"].shape == (3, 3)
    last = ckpt_io.load(out / "last.npz")
    assert last.meta["epoch"] == 4 and last.meta["step"] == 32 and last.meta["batch_in_epoch"] == 0
    assert last.model_config["arch"] == "alexnet-small" and last.model_config["input_size"] == 32
    assert len(last.classes) == 10 and last.meta["image_size"] == 36
    best = ckpt_io.load(out / "best.npz")
    assert best.meta["metrics"]["val_top1"] == max(h["val_top1"] for h in hist)
    captured = capsys.readouterr()
    assert "epoch 4/4" in captured.out and "val loss" in captured.out
    assert "img/s" in captured.err and "run_left" in captured.err  # the progress bar


def test_defaults_without_arguments():
    c = train_config.resolve(TrainConfig())
    assert (c.dataset, c.arch, c.input_size, c.image_size) == ("synthetic", "alexnet-small", 32, 36)
    assert c.epochs == train_config.DEFAULT_EPOCHS["synthetic"]

    small = train_config.RECIPES["alexnet-small"]
    assert (c.batch_size, c.lr, c.weight_std, c.bias_init) == (
        train_config.SYNTHETIC_BATCH_SIZE, small["lr"], small["weight_std"], small["bias_init"])
    assert train_config.resolve(TrainConfig(synthetic_images=64, batch_size=32)).batch_size == 32
    paper = train_config.resolve(TrainConfig(arch="alexnet"))
    assert (paper.batch_size, paper.lr, paper.weight_std, paper.bias_init, paper.input_scale, paper.input_size,
            paper.image_size) == (128, 0.01, 0.01, 1.0, 1.0, 227, 256)
    assert c.out.startswith("runs")


def test_bad_settings_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no such directory"):
        train_config.resolve(TrainConfig(data=str(tmp_path / "nope")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        train_config.resolve(TrainConfig(data=str(tmp_path / "file")))
    with pytest.raises(ConfigError, match="needs --data"):
        train_config.resolve(TrainConfig(dataset="imagenet"))
    with pytest.raises(ConfigError, match="smaller than the network input"):
        train_config.resolve(TrainConfig(image_size=20))
    with pytest.raises(ConfigError, match="smaller than one batch"):
        train(tiny(tmp_path, batch_size=500), model_class=FakeAlexNet)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=str(empty)):
        train(tiny(tmp_path, data=str(empty)), model_class=FakeAlexNet)


def test_existing_run_needs_resume(tmp_path):
    train(tiny(tmp_path, epochs=1), model_class=FakeAlexNet)
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny(tmp_path, epochs=1), model_class=FakeAlexNet)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(tiny(tmp_path, name="other", resume=True), model_class=FakeAlexNet)


def test_resume_from_a_corrupt_checkpoint_names_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "last.npz").write_bytes(b"PK\x03\x04 torn")
    with pytest.raises(ckpt_io.CheckpointError, match=str(run / "last.npz")):
        train(TrainConfig(out=str(run), resume=True, progress=False), model_class=FakeAlexNet)


def test_input_statistics_are_cached(tmp_path, monkeypatch):
    from alexnet_cuda import data

    c = train_config.resolve(tiny(tmp_path))
    Path(c.out).mkdir(parents=True)
    train_set, _ = open_datasets(c)
    first = input_statistics(c, train_set, Path(c.out))

    def fail(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(data, "compute_mean", fail)
    monkeypatch.setattr(data, "compute_pca", fail)
    second = input_statistics(c, train_set, Path(c.out))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_plateau_schedule_divides_by_ten_when_validation_stops_improving():
    s = LRSchedule("plateau", 0.01, patience=2, max_drops=2)
    lrs = [s.epoch_end(i + 1, e) for i, e in enumerate([0.9, 0.8, 0.8, 0.81, 0.7, 0.7, 0.7, 0.6, 0.6, 0.6, 0.6])]
    assert lrs == pytest.approx([0.01, 0.01, 0.01, 0.001, 0.001, 0.001, 1e-4, 1e-4, 1e-4, 1e-4, 1e-4])
    restored = LRSchedule("plateau", 0.01, patience=2, max_drops=2)
    restored.load_state_dict(s.state_dict())
    assert restored.state_dict() == s.state_dict()
    step = LRSchedule("step", 0.01, step_epochs=2)
    assert [step.epoch_end(e, None) for e in range(1, 6)] == pytest.approx([0.01, 0.001, 0.001, 1e-4, 1e-4])
    cosine = LRSchedule("cosine", 0.1, total_epochs=4)
    assert [cosine.epoch_end(e, 0.5) for e in range(1, 5)] == pytest.approx([0.1 * (1 + math.cos(math.pi * e / 4)) / 2
                                                                             for e in range(1, 5)])
    assert cosine.lr == 0.0
    const = LRSchedule("none", 0.01)
    assert [const.epoch_end(e, 0.5) for e in range(1, 4)] == [0.01] * 3


def test_a_run_drops_its_rate_after_the_epochs_of_lr_drop_at(tmp_path):
    """--lr-schedule epochs --lr-drop-at reaches the run (it once built its schedule without the epochs, so the
    rate never dropped), and a resume keeps dropping at them, even from a checkpoint that recorded no epochs."""
    cfg = dict(epochs=3, lr=0.05, lr_schedule="epochs", lr_drop_at=[1, 2])
    train(tiny(tmp_path, "whole", **cfg), model_class=FakeAlexNet)
    lrs = [r["lr"] for r in records(tmp_path / "whole" / "metrics.jsonl")]
    assert lrs == pytest.approx([0.05, 0.005, 0.0005])
    train(tiny(tmp_path, "parts", **{**cfg, "epochs": 1}), model_class=FakeAlexNet)
    last = tmp_path / "parts" / "last.npz"
    saved = ckpt_io.load(last)
    saved.meta["scheduler"]["drop_at"] = []  # as that bug recorded it
    ckpt_io.save(last, saved)
    train(TrainConfig(out=str(tmp_path / "parts"), resume=True, epochs=3, workers=0, progress=False),
          model_class=FakeAlexNet)
    assert [r["lr"] for r in records(tmp_path / "parts" / "metrics.jsonl")] == pytest.approx(lrs)


def test_a_cosine_run_anneals_its_rate_over_its_epochs(tmp_path):
    train(tiny(tmp_path, epochs=3, lr=0.05, lr_schedule="cosine"), model_class=FakeAlexNet)
    lrs = [r["lr"] for r in records(tmp_path / "run" / "metrics.jsonl")]
    assert lrs == pytest.approx([0.05, 0.0375, 0.0125])  # each epoch's rate: base x (1 + cos(pi e / 3)) / 2


# ---------------------------------------------------------------------------------------------------------------------
# Exact resume
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [0, 2])
def test_resume_at_epoch_boundary_is_exact(tmp_path, workers):
    whole = train(tiny(tmp_path, "whole", epochs=3, workers=workers), model_class=FakeAlexNet)
    part1 = train(tiny(tmp_path, "parts", epochs=1, workers=workers), model_class=FakeAlexNet)
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, epochs=3, workers=workers, progress=False),
                  model_class=FakeAlexNet)
    assert part1["step"] == 6 and part2["step"] == 18 and len(part2["step_losses"]) == 12
    assert_same_run(whole, [part1, part2])


class InterruptingFake(FakeAlexNet):
    """Sends itself a real SIGINT during its ``interrupt_at``-th training step (as a Ctrl-C would arrive)."""

    interrupt_at: int | None = None

    def train_step(self, *args, **kwargs):
        result = super().train_step(*args, **kwargs)
        if self.train_calls == type(self).interrupt_at:
            signal.raise_signal(signal.SIGINT)
        return result


@pytest.mark.parametrize("interrupt_at", [4, 6, 9])
def test_ctrl_c_saves_and_resume_is_exact(tmp_path, interrupt_at, monkeypatch, capsys):
    whole = train(tiny(tmp_path, "whole", epochs=2), model_class=FakeAlexNet)
    monkeypatch.setattr(InterruptingFake, "interrupt_at", interrupt_at)
    before = signal.getsignal(signal.SIGINT)
    part1 = train(tiny(tmp_path, "parts", epochs=2), model_class=InterruptingFake)
    assert signal.getsignal(signal.SIGINT) is before  # the handler is restored
    assert part1["status"] == "interrupted" and part1["step"] == interrupt_at
    assert "interrupted" in capsys.readouterr().err
    saved = ckpt_io.load(tmp_path / "parts" / "last.npz")
    assert saved.meta["step"] == interrupt_at
    assert saved.meta["epoch"] * 6 + saved.meta["batch_in_epoch"] == interrupt_at
    monkeypatch.setattr(InterruptingFake, "interrupt_at", None)
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, progress=False), model_class=FakeAlexNet)
    assert part2["status"] == "completed"
    assert_same_run(whole, [part1, part2])


class InterruptDuringValidation(FakeAlexNet):
    """Sends itself a SIGINT during its first validation batch."""

    def evaluate(self, *args, **kwargs):
        result = super().evaluate(*args, **kwargs)
        if not getattr(self, "interrupted", False):
            self.interrupted = True
            signal.raise_signal(signal.SIGINT)
        return result


def test_ctrl_c_during_validation_then_resume_is_exact(tmp_path):
    whole = train(tiny(tmp_path, "whole", epochs=2), model_class=FakeAlexNet)
    part1 = train(tiny(tmp_path, "parts", epochs=2), model_class=InterruptDuringValidation)
    assert part1["status"] == "interrupted" and part1["step"] == 6 and part1["epochs_done"] == 0
    saved = ckpt_io.load(tmp_path / "parts" / "last.npz").meta
    assert (saved["epoch"], saved["batch_in_epoch"]) == (0, 6)  # epoch 1 trained, its validation still to do
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, progress=False), model_class=FakeAlexNet)
    assert_same_run(whole, [part1, part2])


class CrashingFake(FakeAlexNet):
    def train_step(self, *args, **kwargs):
        if self.train_calls == 10:  # the process dies in its 11th step
            raise RuntimeError("simulated crash")
        return super().train_step(*args, **kwargs)


def test_crash_resumes_exactly_from_the_periodic_checkpoint(tmp_path):
    whole = train(tiny(tmp_path, "whole", epochs=2), model_class=FakeAlexNet)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(tiny(tmp_path, "parts", epochs=2, save_every=4), model_class=CrashingFake)
    saved = ckpt_io.load(tmp_path / "parts" / "last.npz").meta
    assert saved["step"] == 8 and (saved["epoch"], saved["batch_in_epoch"]) == (1, 2)  # saved every 4 steps
    assert len(records(tmp_path / "parts" / "steps.jsonl")) == 10  # steps 9 and 10 are redone after the resume
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, progress=False), model_class=FakeAlexNet)
    assert part2["step_losses"] == whole["step_losses"][8:]
    assert records(tmp_path / "parts" / "steps.jsonl") == records(tmp_path / "whole" / "steps.jsonl")
    assert without_timing(records(tmp_path / "parts" / "metrics.jsonl")) == \
        without_timing(records(tmp_path / "whole" / "metrics.jsonl"))


def test_second_ctrl_c_aborts_at_once():
    stop = StopRequest()
    stop(signal.SIGINT, None)
    assert stop.requested
    with pytest.raises(KeyboardInterrupt):
        stop(signal.SIGINT, None)


# ---------------------------------------------------------------------------------------------------------------------
# Divergence
# ---------------------------------------------------------------------------------------------------------------------

class NaNFake(FakeAlexNet):
    """Reports a NaN loss from its 9th training step on (the third step of epoch 2)."""

    def train_step(self, *args, **kwargs):
        r = super().train_step(*args, **kwargs)
        return r._replace(loss=float("nan")) if self.train_calls >= 9 else r


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"nan at step 9 \(epoch 2, batch 3\)") as info:
        train(tiny(tmp_path, epochs=3), model_class=NaNFake)
    last = tmp_path / "run" / "last.npz"
    assert str(last) in str(info.value)
    good = ckpt_io.load(last)
    assert good.meta["epoch"] == 1 and good.meta["step"] == 6
    assert all(np.isfinite(v).all() for v in good.params.values())
    assert len(records(tmp_path / "run" / "metrics.jsonl")) == 1


def test_absurd_learning_rate_diverges(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at step \d+ .*no checkpoint had been saved yet.*--lr"):
        train(tiny(tmp_path, lr=1e30, dropout=0.0), model_class=FakeAlexNet)
    assert not (tmp_path / "run" / "last.npz").exists()


class HiddenNaN(FakeAlexNet):
    """From step ``poison_at`` on, a parameter the loss never sees holds NaN: what ReLU does to conv1's NaN weights
    in the real network (its outputs become 0, so the loss stays finite)."""

    poison_at = 8

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.params["conv1.weight"] = np.zeros(4, np.float32)
        self.momentum["conv1.weight"] = np.zeros(4, np.float32)

    def train_step(self, *args, **kw):
        hidden = self.params.pop("conv1.weight"), self.momentum.pop("conv1.weight")
        try:
            result = super().train_step(*args, **kw)
        finally:
            self.params["conv1.weight"], self.momentum["conv1.weight"] = hidden
        if self.step >= self.poison_at:
            self.params["conv1.weight"][:] = np.nan
        return result


@pytest.mark.parametrize("save_every", [0, 4])
def test_non_finite_parameters_stop_training_and_are_never_saved(tmp_path, save_every):
    # Issue 9: a run whose weights became NaN behind a finite loss kept training and saved them as best.npz.
    # 6 steps per epoch: epoch 1 is saved (and, with save_every=4, step 4); step 8 poisons the weights.
    with pytest.raises(TrainingDiverged, match=r"parameter tensors \(conv1.weight\) hold NaN or inf after step \d+.*"
                                               r"the last good checkpoint is .*last.npz"):
        train(tiny(tmp_path, save_every=save_every), model_class=HiddenNaN)
    for name in ("last.npz", "best.npz"):
        ckpt = ckpt_io.load(tmp_path / "run" / name)
        assert ckpt.meta["step"] <= 6
        assert all(np.isfinite(a).all() for a in ckpt.params.values())


@requires_model
def test_non_finite_input_batch_is_refused_naming_the_batch(tmp_path, monkeypatch):
    from alexnet_cuda.data import Augmenter

    draw, calls = Augmenter.draw, []

    def nan_on_third(self, n):
        out = draw(self, n)
        calls.append(n)
        if len(calls) == 3:
            out["rgb_shift"][1, 2] = np.nan
        return out

    monkeypatch.setattr(Augmenter, "draw", nan_on_third)
    with pytest.raises(ConfigError, match=r"step 3 \(epoch 1, batch 3\) refused: "
                                          r"AlexNet.train_step: rgb_shift of image 1 of the batch contain NaN"):
        train(real(tmp_path))


def test_out_naming_an_existing_file_is_a_config_error(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(ConfigError, match="--out .*taken: exists and is not a directory"):
        train_config.resolve(TrainConfig(out=str(tmp_path / "taken")))


def test_sizes_beyond_the_machines_memory_are_refused_up_front(tmp_path):
    with pytest.raises(ConfigError, match=r"--batch-size 16 with --image-size 100000 .* needs at least .* GiB"):
        train_config.resolve(TrainConfig(image_size=100000, out=str(tmp_path / "o")))
    with pytest.raises(ConfigError, match=r"--synthetic-images 100000000000 needs at least"):
        train_config.resolve(TrainConfig(synthetic_images=10**11, out=str(tmp_path / "o")))


# ---------------------------------------------------------------------------------------------------------------------
# The real network (alexnet-small on the CPU)
# ---------------------------------------------------------------------------------------------------------------------

@requires_model
def test_real_training_loss_falls(tmp_path):
    # weight_std 0.08: the narrow layers' fan-ins are small, so they need larger weights to pass the signal on.
    summary = train(real(tmp_path, epochs=3, synthetic_images=256, batch_size=32, lr=0.02, weight_std=0.08,
                         dropout=0.0, synthetic_classes=4))
    losses = summary["step_losses"]
    assert all(math.isfinite(x) for x in losses)
    first, last = np.mean(losses[:4]), np.mean(losses[-4:])
    assert last < first - 0.1, (first, last)
    assert summary["history"][-1]["val_top1"] > 0.35  # 4 classes: chance is 0.25


@requires_model
def test_real_resume_is_exact(tmp_path, device):
    """On the CPU, and with --device cuda on a GPU or the emulated device (both towers on cuda:0 and cuda:1)."""
    whole = train(real(tmp_path, "whole", epochs=2, device=device))
    part1 = train(real(tmp_path, "parts", epochs=1, device=device))
    part2 = train(TrainConfig(out=str(tmp_path / "parts"), resume=True, epochs=2, progress=False, device=device))
    assert_same_run(whole, [part1, part2])


@requires_model
def test_real_absurd_learning_rate_diverges(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"at step \d+"):
        train(real(tmp_path, lr=1e8, epochs=3))


@requires_model
@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason=f"the mini ImageNet is not present ({IMAGENETTE})")
def test_real_imagenette_mini_smoke(tmp_path):
    summary = train(TrainConfig(data=str(IMAGENETTE), out=str(tmp_path / "inet"), arch="alexnet-small",
                                input_size=64, image_size=72, epochs=1, batch_size=16, train_batches=3,
                                val_batches=1, stats_images=40, workers=0, progress=False, device="cpu"))
    assert summary["status"] == "completed" and summary["step"] == 3
    assert summary["config"]["dataset"] in ("folder", "imagenet")
    ck = ckpt_io.load(Path(summary["out"]) / "last.npz")
    assert len(ck.classes) == 10 and "tench" in ck.classes
    assert all(math.isfinite(x) for x in summary["step_losses"])


def test_alexnet_is_exported_or_skipped_with_reason():
    # Reminder in the test log while the network is missing from the build (the real_ tests above skip then).
    if AlexNet is None:
        pytest.skip("alexnet_cuda.AlexNet is not available in this build: the real-network tests were skipped")
    assert "AlexNet" in alexnet_cuda.__all__


def test_config_round_trips_through_the_checkpoint(tmp_path):
    c = tiny(tmp_path, epochs=1)
    summary = train(c, model_class=FakeAlexNet)
    saved = ckpt_io.load(Path(summary["out"]) / "last.npz").meta["config"]
    assert TrainConfig(**saved) == train_config.resolve(c)


@pytest.mark.skipif(not IMAGENETTE.is_dir(), reason=f"the mini ImageNet is not present ({IMAGENETTE})")
def test_imagenette_mini_with_the_stand_in_network(tmp_path):
    # The folder-dataset path of the driver (JPEG decoding, class names from classes.txt), in a second or two.
    summary = train(TrainConfig(data=str(IMAGENETTE), out=str(tmp_path / "inet"), arch="alexnet-small",
                                input_size=32, image_size=40, epochs=1, batch_size=16, train_batches=3,
                                val_batches=2, stats_images=20, workers=0, progress=False), model_class=FakeAlexNet)
    assert summary["status"] == "completed" and summary["step"] == 3
    assert summary["history"][0]["val_top1"] is not None
    ck = ckpt_io.load(Path(summary["out"]) / "last.npz")
    assert len(ck.classes) == 10 and "tench" in ck.classes and ck.class_ids[0] == "n01440764"


def test_stop_at_train_error_ends_the_run_and_a_resume_trains_no_further(tmp_path):
    """Figure 1's stopping rule: the first epoch whose running training error is at most the target ends the run
    (1.0 is reached by any epoch), and resuming it with more epochs trains nothing more."""
    summary = train(tiny(tmp_path, epochs=4, stop_train_error=1.0), model_class=FakeAlexNet)
    assert summary["status"] == "completed" and summary["epochs_done"] == 1
    assert len(records(tmp_path / "run" / "metrics.jsonl")) == 1
    again = train(tiny(tmp_path, epochs=6, stop_train_error=1.0, resume=True), model_class=FakeAlexNet)
    assert again["epochs_done"] == 1 and len(records(tmp_path / "run" / "metrics.jsonl")) == 1
    full = train(tiny(tmp_path, name="full", epochs=2, stop_train_error=0.0), model_class=FakeAlexNet)
    assert full["epochs_done"] == 2  # 0% training error is never reached here


def test_centre_crops_are_the_same_patch_every_epoch():
    from alexnet_cuda.data import Augmenter, center_crop

    fixed = Augmenter(36, 32, random_crops=False, flip=False, seed=3)
    for _ in range(3):
        np.testing.assert_array_equal(fixed.draw(5)["crops"], center_crop(36, 32, 5)["crops"])
    moving = Augmenter(36, 32, seed=3)
    assert len({tuple(moving.draw(5)["crops"].ravel()) for _ in range(3)}) == 3
    r = train_config.build_parser().parse_args(["--crops", "centre", "--stop-at-train-error", "0.25"])
    c = train_config.config_from_args(r)
    assert c.crops == "centre" and c.stop_train_error == 0.25
