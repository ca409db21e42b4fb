"""One run directory, one run (alexnet_cuda/train/lock.py), and a failed write that says what was kept.

Two trainings or two studies into one directory: the second refuses at once naming the holder; a lock left by a
killed process on this host is taken over with a warning; one naming another host is never taken over. A checkpoint
or log write that fails (a full disk, in a real tmpfs where the machine lets us mount one, and by an injected fault
everywhere) ends the run with one line: what failed, the intact checkpoint and its epoch, and how to resume.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fakes import FakeAlexNet
from runs import records, tiny
from subprocesses import module_command, module_env, run_module

from alexnet_cuda import checkpoint as ckpt_io
from alexnet_cuda import files
from alexnet_cuda.analysis.run_logs import read_run
from alexnet_cuda.analysis.study import run_study
from alexnet_cuda.analysis.variants import parse_variant
from alexnet_cuda.train import log as train_log
from alexnet_cuda.train.lock import LOCK_NAME, RunLock, RunLocked
from alexnet_cuda.train.run import train
from alexnet_cuda.train.state import RunWriteFailed

TINY_REAL = ["--synthetic-images", "40", "--batch-size", "8", "--stats-images", "16", "--workers", "0",
             "--device", "cpu", "--no-progress"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _write_holder(directory: Path, **holder) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / LOCK_NAME).write_text(json.dumps({"what": "run", "since": "2026-01-01T00:00:00", **holder}))


# ---- the lock ---------------------------------------------------------------------------------------------------

def test_a_held_directory_refuses_a_second_training(tmp_path):
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLocked, match=rf"in use by another run \(host {socket.gethostname()}, pid {os.getpid()}"):
            train(tiny(tmp_path), model_class=FakeAlexNet)
        assert not (tmp_path / "run" / "last.npz").exists()  # refused before anything was written
    summary = train(tiny(tmp_path), model_class=FakeAlexNet)  # released: the directory is free again
    assert summary["status"] == "completed"
    assert (tmp_path / "run" / LOCK_NAME).read_text() == ""  # released means: nobody named


def test_a_held_directory_refuses_resume_before_reading_the_checkpoint(tmp_path):
    train(tiny(tmp_path, epochs=1), model_class=FakeAlexNet)
    (tmp_path / "run" / "last.npz").write_bytes(b"not a checkpoint")  # the lock must refuse before reading it
    with RunLock(tmp_path / "run"):
        with pytest.raises(RunLocked, match="in use by another run"):
            train(tiny(tmp_path, epochs=2, resume=True), model_class=FakeAlexNet)


def test_a_lock_left_by_a_dead_process_on_this_host_is_taken_over(tmp_path, capsys):
    pid = _dead_pid()
    _write_holder(tmp_path / "run", host=socket.gethostname(), pid=pid)
    summary = train(tiny(tmp_path, epochs=1), model_class=FakeAlexNet)
    assert summary["status"] == "completed"
    out = capsys.readouterr()
    assert f"WARNING: taking over {tmp_path / 'run' / LOCK_NAME}, left by host {socket.gethostname()}, pid {pid}" in (
        out.out + out.err)


def test_a_lock_of_another_host_is_never_taken_over(tmp_path):
    _write_holder(tmp_path / "run", host="node-b.example", pid=4242)
    with pytest.raises(RunLocked, match=r"another machine \(host node-b.example, pid 4242.*delete .*\.lock"):
        train(tiny(tmp_path, epochs=1), model_class=FakeAlexNet)
    assert json.loads((tmp_path / "run" / LOCK_NAME).read_text())["host"] == "node-b.example"  # left as it was


def test_a_study_holds_its_folder(tmp_path):
    flags = ["--synthetic-images", "32", "--batch-size", "16", "--epochs", "1", "--workers", "0", "--no-progress",
             "--device", "cpu", "--arch", "alexnet-small"]
    with RunLock(tmp_path / "study", what="study"):
        with pytest.raises(RunLocked, match="in use by another study"):
            run_study(tmp_path / "study", [parse_variant("baseline")], flags, log=lambda msg: None)
    assert not (tmp_path / "study" / "baseline").exists()


def test_two_trainings_in_two_terminals(tmp_path):
    """The issue's case: the second command refuses at once; the first run's logs and checkpoint are exactly those of
    the same run alone."""
    args = [*TINY_REAL, "--epochs", "3"]
    first = subprocess.Popen(module_command("alexnet_cuda.train", *args, "--out", "same"), cwd=tmp_path,
                             env=module_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / "same" / LOCK_NAME
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text().strip()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    second = run_module("alexnet_cuda.train", *args, "--out", "same", "--seed", "5", cwd=tmp_path)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert second.returncode == 2
    assert f"in use by another run (host {socket.gethostname()}, pid {first.pid}" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1
    alone = run_module("alexnet_cuda.train", *args, "--out", "alone", cwd=tmp_path, timeout=300)
    assert alone.returncode == 0, alone.stderr
    assert records(tmp_path / "same" / "steps.jsonl") == records(tmp_path / "alone" / "steps.jsonl")
    assert len(records(tmp_path / "same" / "metrics.jsonl")) == 3
    a, b = ckpt_io.load(tmp_path / "same" / "last.npz"), ckpt_io.load(tmp_path / "alone" / "last.npz")
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])


def test_readers_skip_a_torn_last_line(tmp_path):
    train(tiny(tmp_path, epochs=2), model_class=FakeAlexNet)
    run_dir = tmp_path / "run"
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"epoch": 3, "step": 1')  # a line being written, or torn by a crash
    with open(run_dir / "steps.jsonl", "a") as f:
        f.write('{"step": 13, "lo')
    assert [r["epoch"] for r in train_log.read_history(run_dir)] == [1, 2]
    logs = read_run(run_dir)
    assert [r["epoch"] for r in logs.epochs] == [1, 2] and len(logs.steps) == 12


# ---- a failed write ---------------------------------------------------------------------------------------------

def _assert_kept_epoch_1(message: str, run_dir: Path, failed: str) -> None:
    assert f"writing {run_dir / failed} failed" in message, message
    assert f"{run_dir / 'last.npz'} is intact (saved after epoch 1" in message
    assert f"python -m alexnet_cuda.train --out {run_dir} --resume" in message
    assert ckpt_io.load(run_dir / "last.npz").meta["epoch"] == 1
    assert not list(run_dir.glob(".*.tmp"))  # no half-written temporary file is left behind


def test_a_failed_checkpoint_write_says_what_was_kept_and_resume_continues(tmp_path, monkeypatch):
    real_write, calls = files.atomic_write, []

    def full_at_the_second_last_npz(path, write):
        calls.append(Path(path).name)
        if Path(path).name == "last.npz" and calls.count("last.npz") == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(path, write)

    monkeypatch.setattr(files, "atomic_write", full_at_the_second_last_npz)
    with pytest.raises(RunWriteFailed) as failed:
        train(tiny(tmp_path, epochs=3), model_class=FakeAlexNet)
    _assert_kept_epoch_1(str(failed.value), tmp_path / "run", "last.npz")
    assert "No space left on device" in str(failed.value)
    monkeypatch.setattr(files, "atomic_write", real_write)
    summary = train(tiny(tmp_path, epochs=3, resume=True), model_class=FakeAlexNet)
    assert summary["epochs_done"] == 3


def test_a_failed_log_write_says_what_was_kept(tmp_path, monkeypatch):
    real_append = train_log.append_metrics

    def read_only_after_epoch_1(out, record):
        if record["epoch"] == 2:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(out / "metrics.jsonl"))
        real_append(out, record)

    monkeypatch.setattr(train_log, "append_metrics", read_only_after_epoch_1)
    with pytest.raises(RunWriteFailed) as failed:
        train(tiny(tmp_path, epochs=3), model_class=FakeAlexNet)
    assert "Read-only file system" in str(failed.value)
    # last.npz of epoch 2 was written before the metrics line: that is the checkpoint to resume from
    message = str(failed.value)
    assert f"writing {tmp_path / 'run' / 'metrics.jsonl'} failed" in message
    assert f"{tmp_path / 'run' / 'last.npz'} is intact (saved after epoch 2" in message


def test_the_command_ends_a_failed_write_with_one_line(tmp_path):
    """The CLI prints the message as one line and exits 1 (a run that failed, not unusable settings)."""
    code = ("import errno, os, sys\n"
            "from alexnet_cuda import files\n"
            "from alexnet_cuda.train import run\n"
            "real = files.atomic_write\n"
            "def full(path, write):\n"
            "    if str(path).endswith('best.npz'):\n"
            "        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))\n"
            "    real(path, write)\n"
            "files.atomic_write = full\n"
            f"sys.exit(run.main({[*TINY_REAL, '--epochs', '1', '--out', 'r']!r}))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=module_env(), capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 1, r.stderr
    [line] = [x for x in r.stderr.strip().splitlines()]
    assert line.startswith("python -m alexnet_cuda.train: error: writing r/best.npz failed (No space left on device)")
    assert "r/last.npz is intact (saved after epoch 1, step 5)" in line and "--out r --resume" in line


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 4 MiB tmpfs: a disk that really fills up. Skipped where mounting is not allowed (not root, a container)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'mount failed'}); the injected faults above "
                    f"cover the same paths")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_really_full_disk(small_tmpfs, monkeypatch):
    real_append = train_log.append_metrics
    filler = small_tmpfs / "filler"

    def fill_the_disk_after_epoch_1(out, record):
        real_append(out, record)
        if record["epoch"] == 1:
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC

    monkeypatch.setattr(train_log, "append_metrics", fill_the_disk_after_epoch_1)
    config = tiny(small_tmpfs, epochs=2)
    with pytest.raises(RunWriteFailed) as failed:
        train(config, model_class=FakeAlexNet)
    message = str(failed.value)
    assert "No space left on device" in message
    failed_file = message.split("writing ", 1)[1].split(" failed", 1)[0]
    _assert_kept_epoch_1(message, small_tmpfs / "run", Path(failed_file).name)
    filler.unlink()  # room again: the printed command continues the run
    monkeypatch.setattr(train_log, "append_metrics", real_append)
    summary = train(tiny(small_tmpfs, epochs=2, resume=True), model_class=FakeAlexNet)
    assert summary["epochs_done"] == 2


def test_a_failed_step_log_write_says_what_was_kept(tmp_path, monkeypatch):
    """steps.jsonl, written line by line: a disk that fills in the second epoch."""
    from alexnet_cuda.train import loop

    class FillingFile:
        def __init__(self, f):
            self.f, self.lines = f, 0

        def write(self, text):
            self.lines += 1
            if self.lines > 8:  # 6 steps per epoch: in epoch 2
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return self.f.write(text)

        def __getattr__(self, name):
            return getattr(self.f, name)

    monkeypatch.setattr(loop, "open", lambda *a, **kw: FillingFile(open(*a, **kw)), raising=False)
    with pytest.raises(RunWriteFailed) as failed:
        train(tiny(tmp_path, epochs=3), model_class=FakeAlexNet)
    _assert_kept_epoch_1(str(failed.value), tmp_path / "run", "steps.jsonl")


def test_a_failed_statistics_write_names_the_file(tmp_path, monkeypatch):
    """Before the first checkpoint (the input statistics): the error names the file; there is nothing to resume."""
    real_write = files.atomic_write

    def no_space(f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as np.save on a full disk: no file name

    def full(path, write):
        real_write(path, no_space if Path(path).name == "mean.npy" else write)

    monkeypatch.setattr(files, "atomic_write", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*mean\.npy'"):
        train(tiny(tmp_path, epochs=1), model_class=FakeAlexNet)
    assert not (tmp_path / "run" / "last.npz").exists()


def test_a_killed_runs_forked_workers_do_not_keep_its_lock(tmp_path):
    """A data-loader worker forked by the run shares its flock; killing the run with SIGKILL must free the
    directory at once, though the orphaned worker is still alive."""
    import signal

    from alexnet_cuda.train.lock import RunLock, RunLocked

    code = (f"import os, sys, time\nfrom alexnet_cuda.train.lock import RunLock\n"
            f"RunLock({str(tmp_path / 'run')!r}).acquire()\n"
            f"if os.fork() == 0:\n    print('worker', flush=True)\n    time.sleep(60)\n    os._exit(0)\n"
            f"print('run', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=module_env(), stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert {proc.stdout.readline().strip(), proc.stdout.readline().strip()} == {"run", "worker"}
        with pytest.raises(RunLocked):
            RunLock(tmp_path / "run").acquire()
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 5  # at once, not when the worker's 60 s are over
        while True:
            try:
                RunLock(tmp_path / "run", log=lambda msg: None).acquire().release()
                break
            except RunLocked:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert proc.poll() is not None and os.killpg(proc.pid, 0) is None  # the worker still runs
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
