"""The variant study (python -m alexnet_cuda.study): presets and NAME=FLAGS variants, the results table and plot,
and a study killed between variants continuing without retraining the finished ones."""

from __future__ import annotations

import csv
import signal
import subprocess
import time

import pytest
from pictures import assert_picture
from subprocesses import module_command, module_env, run_module

from alexnet_cuda.analysis import study as study_mod
from alexnet_cuda.analysis.plots import COMPARE_SIZE, DPI
from alexnet_cuda.analysis.study_results import COLUMNS
from alexnet_cuda.analysis.variants import PRESETS, parse_variant

# The smallest real runs: 2 steps of 8 synthetic images per epoch, one epoch.
TRAIN_FLAGS = ["--synthetic-images", "16", "--batch-size", "8", "--stats-images", "16", "--workers", "0",
               "--device", "cpu", "--no-progress"]
STUDY_ARGS = ["--variants", "baseline,no-dropout", "--variant", "lr-0.02=--lr 0.02", "--epochs", "1"]


def test_presets_and_custom_variants():
    assert parse_variant("no-lrn") == ("no-lrn", ["--no-lrn"])
    assert parse_variant("big-lr=--lr 0.1 --momentum 0.8") == ("big-lr", ["--lr", "0.1", "--momentum", "0.8"])
    for bad, message in (("nonsense", "unknown variant"), ("x=--no-such-flag", "does not accept"),
                         ("x=--epochs 3", "set by the study"), ("a/b=--no-lrn", "variant name")):
        with pytest.raises(ValueError, match=message):
            parse_variant(bad)
    assert {"baseline", "no-lrn", "no-overlap-pool", "no-dropout", "one-tower", "tanh"} <= set(PRESETS)


def test_killed_study_continues_without_retraining(tmp_path):
    out = tmp_path / "study"
    argv = [*STUDY_ARGS, "--out", str(out), "--", *TRAIN_FLAGS]
    proc = subprocess.Popen(module_command("alexnet_cuda.study", *argv), cwd=tmp_path, env=module_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (out / "baseline" / "result.json").exists():
            time.sleep(0.2)
        assert (out / "baseline" / "result.json").exists(), "the first variant did not finish"
    finally:
        proc.send_signal(signal.SIGKILL)  # no chance to clean up: between variants, or early in the second
        proc.wait()
    assert not (out / "results.csv").exists()
    first = (out / "baseline" / "metrics.jsonl").read_bytes(), (out / "baseline" / "last.npz").stat().st_mtime_ns

    lines: list[str] = []
    paths = study_mod.run_study(out, [parse_variant(v) for v in ("baseline", "no-dropout", "lr-0.02=--lr 0.02")],
                                [*TRAIN_FLAGS, "--seed", "0", "--epochs", "1"], log=lines.append)
    assert "baseline: finished earlier, not trained again" in " ".join(lines)
    assert ((out / "baseline" / "metrics.jsonl").read_bytes(),
            (out / "baseline" / "last.npz").stat().st_mtime_ns) == first
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["variant"] for r in rows] == ["baseline", "no-dropout", "lr-0.02"]
    assert list(rows[0]) == list(COLUMNS)
    assert float(rows[0]["change_from_first"]) == 0.0 and int(rows[0]["parameters"]) > 0
    table = paths["markdown"].read_text()
    assert "| no-dropout | `--dropout 0` |" in table and "change from baseline" in table
    assert_picture(paths["plot"], (int(COMPARE_SIZE[0] * DPI), int(COMPARE_SIZE[1] * DPI)))

    with pytest.raises(study_mod.StudyError, match="different study"):
        study_mod.run_study(out, [parse_variant("tanh")], TRAIN_FLAGS)


def test_command_line(tmp_path):
    r = run_module("alexnet_cuda.study", "--help", cwd=tmp_path)
    assert r.returncode == 0 and "--variants" in r.stdout and "no-overlap-pool" in r.stdout
    r = run_module("alexnet_cuda.study", "--variants", "nonsense", "--out", str(tmp_path / "s"), cwd=tmp_path)
    assert r.returncode == 2 and "unknown variant" in r.stderr
    r = run_module("alexnet_cuda.study", "--out", str(tmp_path / "s"), "--", "--epochs", "2", cwd=tmp_path)
    assert r.returncode == 2 and "the study sets it" in r.stderr
