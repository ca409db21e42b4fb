"""Loader: deterministic order for any worker count, exact resume, bad-image skipping, clean shutdown."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from alexnet_cuda.data import BadImage, Dataset, Loader, open_dataset, synthetic_dataset
from alexnet_cuda.data.loader import BadImageWarning, NoReadableImages

REPO = Path(__file__).resolve().parents[2]


class IndexDataset(Dataset):
    """Image i is filled with i (mod 256) in channel 0 and i // 256 in channel 1; label i % 7."""

    def __init__(self, n=50, size=4, bad=(), fail_at=None, delay=0.0):
        self.n, self.image_size, self.bad, self.fail_at, self.delay = n, size, set(bad), fail_at, delay
        self.classes = self.class_ids = [str(c) for c in range(7)]

    def __len__(self):
        return self.n

    def label(self, i):
        return i % 7

    def load(self, i):
        if self.delay:
            time.sleep(self.delay)
        if i in self.bad:
            raise BadImage(f"item{i}.jpg: cannot decode image")
        if i == self.fail_at:
            raise ZeroDivisionError("a bug in the dataset")
        img = np.zeros((self.image_size, self.image_size, 3), np.uint8)
        img[..., 0], img[..., 1] = i % 256, i // 256
        return img

    def describe(self, i):
        return f"item{i}.jpg"


def ids(images):
    return images[:, 0, 0, 0].astype(int) + 256 * images[:, 0, 0, 1].astype(int)


def run_epoch(loader):
    return [(ids(x), y) for x, y in loader]


def assert_same(a, b):
    assert len(a) == len(b)
    for (ia, la), (ib, lb) in zip(a, b):
        np.testing.assert_array_equal(ia, ib)
        np.testing.assert_array_equal(la, lb)


def test_order_is_a_permutation_and_independent_of_workers():
    ds = IndexDataset(50)
    with Loader(ds, 8, seed=5, workers=0) as l0, Loader(ds, 8, seed=5, workers=2, prefetch=3) as l2:
        assert len(l0) == 6
        e0, e1 = run_epoch(l0), run_epoch(l0)
        assert l0.epoch == 2 and l0.position == 0
        assert_same(e0, run_epoch(l2))
        assert_same(e1, run_epoch(l2))
    seen = np.concatenate([i for i, _ in e0])
    assert len(set(seen)) == 48 and not np.array_equal(seen, np.arange(48))  # shuffled, no repeats
    assert not np.array_equal(seen, np.concatenate([i for i, _ in e1]))  # a new order each epoch
    for i, lab in e0:
        assert lab.dtype == np.int32 and np.array_equal(lab, i % 7)
    # Another seed, another order; no shuffle, index order.
    assert not np.array_equal(run_epoch(Loader(ds, 8, seed=6, workers=0))[0][0], e0[0][0])
    flat = run_epoch(Loader(ds, 8, shuffle=False, drop_last=False, workers=0))
    assert len(flat) == 7 and np.array_equal(np.concatenate([i for i, _ in flat]), np.arange(50))
    assert flat[-1][0].shape == (2,)


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_gives_exactly_the_remaining_batches(workers):
    ds = IndexDataset(60)
    full = Loader(ds, 7, seed=1, workers=0, epoch=3)
    reference = run_epoch(full) + run_epoch(full)
    with Loader(ds, 7, seed=1, workers=workers, epoch=3) as loader:
        it = iter(loader)
        got = [(ids(x), y) for x, y in (next(it) for _ in range(3))]
        state = json.loads(json.dumps(loader.state_dict()))  # survives JSON
    assert state == {"epoch": 3, "position": 3, "seed": 1}
    with Loader(ds, 7, seed=0, workers=workers) as resumed:
        resumed.load_state_dict(state)
        resumed.set_epoch(3)  # a trainer calls this at the top of its epoch loop: must not rewind
        got += run_epoch(resumed)
        assert resumed.epoch == 4 and resumed.position == 0
        got += run_epoch(resumed)
    assert_same(got, reference)


def test_abandoned_iteration_and_set_epoch():
    ds = IndexDataset(40, delay=0.002)
    ref = Loader(ds, 5, seed=2, workers=0)
    epoch0, epoch1 = run_epoch(ref), run_epoch(ref)
    with Loader(ds, 5, seed=2, workers=2, prefetch=4) as loader:
        it = iter(loader)
        first = [next(it) for _ in range(2)]
        rest = run_epoch(loader)  # a new iteration supersedes the old one and continues at position 2
        assert next(it, None) is None
        assert_same([(ids(x), y) for x, y in first] + rest, epoch0)
        loader.set_epoch(0)  # same epoch as... the loader moved on to epoch 1; going back restarts epoch 0
        assert (loader.epoch, loader.position) == (0, 0)
        assert_same(run_epoch(loader), epoch0)
        loader.set_epoch(1)
        assert_same(run_epoch(loader), epoch1)


def test_bad_images_are_skipped_warned_once_and_counted():
    ds = IndexDataset(30, bad={3, 11})
    with pytest.warns(BadImageWarning) as record:
        loader = Loader(ds, 6, shuffle=False, workers=0)
        batches = run_epoch(loader)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2 and "item11.jpg" in messages[0] and "item3.jpg" in messages[1]
    assert loader.skipped == 2 and loader.bad_files == {"item3.jpg", "item11.jpg"}
    # Shapes stay fixed: the bad images' places go to the next images of the order (after the batch).
    assert [len(i) for i, _ in batches] == [6] * 5
    np.testing.assert_array_equal(batches[0][0], [0, 1, 2, 6, 4, 5])
    np.testing.assert_array_equal(batches[1][0], [6, 7, 8, 9, 10, 12])
    # Same result with workers, warned again by that loader, deterministic.
    with pytest.warns(BadImageWarning), Loader(ds, 6, shuffle=False, workers=2) as lw:
        assert_same(run_epoch(lw), batches)
        assert lw.skipped == 2


def test_bad_files_on_disk_are_skipped(tmp_path):
    d = tmp_path / "train" / "cls"
    d.mkdir(parents=True)
    for k in range(6):
        Image.new("RGB", (20, 20), (40 * k, 0, 0)).save(d / f"img{k}.jpg")
    (d / "img2.jpg").write_bytes(b"not a jpeg")
    data = (d / "img4.jpg").read_bytes()
    (d / "img4.jpg").write_bytes(data[: len(data) // 2])
    ds = open_dataset(tmp_path, image_size=8)
    with pytest.warns(BadImageWarning) as record, Loader(ds, 3, shuffle=False, workers=0) as loader:
        batches = [x for x, _ in loader]
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert messages[0].startswith(f"skipping unreadable image: {d / 'img2.jpg'}: cannot decode image")
    assert "img4.jpg" in messages[1] and "runcated" in messages[1]
    assert loader.skipped == 2 and [b.shape for b in batches] == [(3, 8, 8, 3)] * 2


@pytest.mark.parametrize("workers", [0, 2])
def test_every_image_bad_raises(workers):
    # A data error, with the same one-line message from a worker as inline (it used to be a worker's traceback).
    with pytest.raises(NoReadableImages, match=r"^none of the 6 images tried could be decoded \(the last: "):
        run_epoch(Loader(IndexDataset(6, bad=range(6)), 2, workers=workers))


def test_worker_exception_is_reported():
    with Loader(IndexDataset(20, fail_at=5), 4, shuffle=False, workers=2) as loader:
        with pytest.raises(RuntimeError, match="(?s)worker raised.*ZeroDivisionError: a bug in the dataset"):
            run_epoch(loader)


def test_dead_worker_is_detected():
    loader = Loader(IndexDataset(400, delay=0.05), 4, workers=2, prefetch=2)
    it = iter(loader)
    next(it)
    os.kill(loader._procs[0].pid, signal.SIGKILL)
    time.sleep(0.1)
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match="died unexpectedly with exit code -9"):
        for _ in it:
            pass
    assert time.monotonic() - t0 < 2
    assert loader._procs == []
    # The loader can be used again: workers restart.
    x, _ = next(iter(loader))
    assert x.shape == (4, 4, 4, 3)
    loader.close()


def test_close_gc_and_exit_do_not_hang():
    loader = Loader(IndexDataset(100, delay=0.01), 4, workers=2)
    next(iter(loader))
    procs = list(loader._procs)
    del loader
    gc.collect()
    for p in procs:
        p.join(timeout=5)
        assert not p.is_alive()
    with Loader(IndexDataset(10), 2, workers=2) as loader:
        next(iter(loader))
    loader.close()  # idempotent
    assert loader._procs == []


def test_errors_in_arguments():
    with pytest.raises(ValueError, match="fewer than one batch"):
        Loader(IndexDataset(3), 4)
    with pytest.raises(ValueError, match="batch_size"):
        Loader(IndexDataset(3), 0)
    loader = Loader(IndexDataset(10), 2, workers=0)
    with pytest.raises(ValueError, match="position 9 outside 0..5"):
        loader.load_state_dict({"epoch": 0, "position": 9, "seed": 0})


def test_spawn_start_method_matches_fork():
    ds = synthetic_dataset(num_images=48, image_size=16)
    with Loader(ds, 8, seed=3, workers=0) as l0, Loader(ds, 8, seed=3, workers=1, start_method="spawn") as ls:
        a = [(x, y) for x, y in l0]
        b = [(x, y) for x, y in ls]
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return not any(line.startswith("State:") and "Z" in line.split()[1] for line in f)
    except FileNotFoundError:
        return False


def _wait_gone(pids, seconds=10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    return [p for p in pids if _alive(p)]


LOOP_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from alexnet_cuda.data import Loader, synthetic_dataset
loader = Loader(synthetic_dataset(num_images=100000, image_size=64), 32, workers=2)
it = iter(loader)
next(it)
print(" ".join(str(p.pid) for p in loader._procs), flush=True)
for epoch in range(100):
    for x, y in it:
        time.sleep(0.01)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_ctrl_c_or_kill_leaves_no_workers(tmp_path, sig):
    """Ctrl-C: the main process raises KeyboardInterrupt and stops its workers. SIGKILL of the main process:
    the orphaned workers notice and exit by themselves."""
    proc = subprocess.Popen([sys.executable, "-c", LOOP_SCRIPT.format(repo=str(REPO))], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(p) for p in pids)
        time.sleep(0.5)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    if sig == signal.SIGINT:
        assert "KeyboardInterrupt" in err
    assert _wait_gone(pids) == []


class SlowEvenBatches(IndexDataset):
    """Batches (of 2, in index order) with an even number are slow, so odd ones arrive out of order."""

    def load(self, i):
        if (i // 2) % 2 == 0:
            time.sleep(0.02)
        return super().load(i)


def test_many_abandoned_iterations_do_not_leak_slots():
    """Batches prefetched for an iteration that is dropped must give their shared-memory slots back, also
    those that had already arrived out of order."""
    ds = SlowEvenBatches(40)
    ref = run_epoch(Loader(ds, 2, shuffle=False, workers=0))
    got = []
    with Loader(ds, 2, shuffle=False, workers=2, prefetch=3, timeout=10) as loader:
        for _ in range(len(ref)):
            it = iter(loader)
            x, y = next(it)
            got.append((ids(x), y))
            assert len(loader._free_slots) + len(loader._ready) + loader._in_flight == loader._nslots
        del it
    assert_same(got, ref)
