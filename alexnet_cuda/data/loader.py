"""A deterministic, resumable batch loader with worker processes and prefetching.

Order. Epoch ``e`` visits the images in ``permutation(seed, e)`` (or in index order without shuffling), cut
into consecutive batches. Batch ``b`` is a pure function of ``(seed, epoch, b)``, whichever process decodes it,
so the order is the same for any number of workers, and resuming from ``{epoch, position}`` yields exactly the
batches not yet consumed.

Bad images. A file that raises :class:`~alexnet_cuda.data.datasets.BadImage` is skipped with one warning naming
it, counted in ``Loader.skipped``, and its place in the batch is taken by the next images of the epoch's order
(those after the batch, wrapping around), so every batch keeps its shape and stays deterministic. A replacement
image may thus appear twice in that epoch.

Workers. ``workers`` processes (default ``min(4, CPUs)``; 0 decodes in the calling process) take batch tasks
from a queue and decode straight into a ring of shared-memory slots; the loader keeps up to
``max(prefetch, workers)`` batches in flight and hands out a private copy of each batch in order. Workers are
daemons that ignore SIGINT (Ctrl-C is handled by the main process, which then stops them) and exit by
themselves if the main process disappears; the main process waits with timeouts and checks that every worker
is alive, raising a clear RuntimeError if one died. ``close()`` (or the context manager, garbage collection, or
interpreter exit) stops them without hanging. The start method is 'fork' on Linux (cheap, shares the dataset
copy-on-write) and 'spawn' elsewhere; override with ``start_method=`` or ALEXNET_LOADER_START_METHOD.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
import sys
import time
import traceback
import warnings
import weakref

import numpy as np

from .base import BadImage, Dataset


class BadImageWarning(UserWarning):
    """Emitted once per unreadable image file that the loader skips."""


class NoReadableImages(ValueError):
    """Every image the loader tried for a batch was unreadable (a folder of corrupt or non-image files): a problem
    with the data, reported as such (one line) rather than as a worker's traceback."""


# Errors a worker hands to the main process as the same exception type with the same message (unreadable data, no
# memory), instead of as a traceback: they are the data's or the machine's, not a bug in the worker.
_REPORTED_AS_IS = (NoReadableImages, MemoryError)


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """Indices in the order epoch ``epoch`` visits them (int64 (n,))."""
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    return np.random.default_rng([int(seed), int(epoch), 0x5EED]).permutation(n).astype(np.int64)


def shard_span(count: int, rank: int, size: int) -> tuple[int, int]:
    """Rank ``rank`` of ``size``'s share of a batch of ``count`` samples: (first, how many). Consecutive, in rank
    order, so the ranks' shares concatenated are the batch (data-parallel training, alexnet_cuda/train/distributed.py)."""
    lo, hi = count * rank // size, count * (rank + 1) // size
    return lo, hi - lo


def fill_batch(dataset: Dataset, order: np.ndarray, start: int, count: int, out: np.ndarray):
    """Decode images ``order[start:start+count]`` into ``out[:count]``; replace bad ones by
    ``order[start+count]``, ``order[start+count+1]``, ... (wrapping). Returns (labels int32, bad) where ``bad``
    lists (index, description, message) of every skipped image."""
    n = len(order)
    labels = np.empty(count, dtype=np.int32)
    bad = []
    spare = start + count
    for k in range(count):
        idx = int(order[start + k])
        while True:
            try:
                out[k] = dataset.load(idx)
                labels[k] = dataset.label(idx)
                break
            except BadImage as exc:
                bad.append((idx, dataset.describe(idx), str(exc)))
                if len(bad) >= n:
                    raise NoReadableImages(f"none of the {len(bad)} images tried could be decoded (the last: "
                                           f"{exc})") from exc
                idx = int(order[spare % n])
                spare += 1
    return labels, bad


def _worker_main(worker_id, dataset, config, task_q, result_q, buffer, generation, parent_pid):
    """Worker process: decode batch tasks into shared-memory slots, report (labels, bad images) or errors."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    n, batch_size, seed, shuffle, slot_bytes = config
    s = dataset.image_size
    orders: dict[int, np.ndarray] = {}
    while True:
        try:
            task = task_q.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:  # the main process is gone: do not linger as an orphan
                return
            continue
        except (EOFError, OSError):
            return
        if task is None:
            return
        gen, epoch, batch, slot, start, count = task
        if gen != generation.value:  # the iteration that asked for it was abandoned
            result_q.put(("stale", gen, batch, slot))
            continue
        try:
            if epoch not in orders:
                orders.clear()
                orders[epoch] = epoch_order(n, seed, epoch, shuffle)
            out = np.frombuffer(buffer, dtype=np.uint8, count=slot_bytes, offset=slot * slot_bytes)
            out = out.reshape(batch_size, s, s, 3)
            labels, bad = fill_batch(dataset, orders[epoch], start, count, out)
            result_q.put(("ok", gen, batch, slot, labels, bad))
        except _REPORTED_AS_IS as exc:  # not a bug in the worker: the message is enough
            result_q.put(("reraise", gen, batch, slot, type(exc).__name__, str(exc)))
        except BaseException:  # report anything (a bug, MemoryError) instead of dying silently
            result_q.put(("error", gen, batch, slot, f"worker {worker_id} (pid {os.getpid()}) failed on batch "
                                                      f"{batch}:\n{traceback.format_exc()}"))


def _stop_workers(procs, queues) -> None:
    """Stop worker processes without ever blocking for long (used by close(), GC and interpreter exit)."""
    task_q = queues[0]
    for _ in procs:
        try:
            task_q.put_nowait(None)
        except Exception:
            break
    deadline = time.monotonic() + 0.2  # idle workers exit at once; busy ones are terminated: results are discarded
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=1.0)
        if p.is_alive():  # pragma: no cover - SIGTERM ignored
            p.kill()
            p.join(timeout=1.0)
    for q in queues:
        try:
            q.cancel_join_thread()  # never wait at exit for data nobody will read
            q.close()
        except Exception:  # pragma: no cover
            pass


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return min(4, cpus)


def _default_start_method() -> str:
    method = os.environ.get("ALEXNET_LOADER_START_METHOD")
    if method:
        return method
    return "fork" if sys.platform.startswith("linux") else "spawn"


class Loader:
    """Batches ``(images uint8 (B, S, S, 3), labels int32 (B,))`` of a dataset; see the module docstring.

    ``position`` counts the batches already yielded in the current ``epoch``. When an epoch's batches are all
    consumed the loader moves on to the next epoch by itself (so ``for epoch ...: loader.set_epoch(epoch);
    for batch in loader`` and plain repeated ``for batch in loader`` both work). Starting a new iteration ends
    the previous one. ``timeout`` (seconds, optional) bounds the wait for one batch.

    ``shard=(rank, size)``: data-parallel training. The order and the batches are those of ``batch_size`` (the
    global batch) on every rank, and each batch yields only this rank's consecutive share of it (``shard_span``),
    so the ranks' batches together are exactly one process's batch.
    """

    POLL_S = 0.25

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool = True, drop_last: bool = True,
                 seed: int = 0, workers: int | None = None, prefetch: int = 4, epoch: int = 0, *,
                 start_method: str | None = None, timeout: float | None = None, shard: tuple[int, int] = (0, 1)):
        self.dataset = dataset
        self.shard = (int(shard[0]), int(shard[1]))
        if not 0 <= self.shard[0] < self.shard[1]:
            raise ValueError(f"Loader: shard must be (rank, size) with 0 <= rank < size, got {shard}")
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"Loader: batch_size must be >= 1, got {batch_size}")
        self.shuffle, self.drop_last, self.seed = bool(shuffle), bool(drop_last), int(seed)
        self.workers = _default_workers() if workers is None else int(workers)
        if self.workers < 0:
            raise ValueError(f"Loader: workers must be >= 0, got {workers}")
        self.prefetch = int(prefetch)
        if self.prefetch < 1:
            raise ValueError(f"Loader: prefetch must be >= 1, got {prefetch}")
        self.n = len(dataset)
        if self.n == 0:
            raise ValueError("Loader: the dataset is empty")
        if self.drop_last and self.n < self.batch_size:
            raise ValueError(f"Loader: the dataset has {self.n} images, fewer than one batch of {self.batch_size} "
                             "(use drop_last=False or a smaller batch)")
        self.epoch, self.position = int(epoch), 0
        self.skipped = 0
        self.bad_files: set[str] = set()
        self.timeout = timeout
        self.start_method = start_method or _default_start_method()
        self._generation = 0
        self._procs: list = []
        self._finalizer = None
        self._nslots = max(self.prefetch, self.workers)

    # ---------------------------------------------------------------------------------------- bookkeeping

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def _count(self, batch: int) -> int:
        return min(self.batch_size, self.n - batch * self.batch_size)

    def _span(self, batch: int) -> tuple[int, int]:
        """Where this rank's share of ``batch`` starts in the epoch's order, and its length."""
        first, count = shard_span(self._count(batch), *self.shard)
        return batch * self.batch_size + first, count

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch to iterate (its order is ``permutation(seed, epoch)``); the same epoch keeps the
        position (so it is safe to call after ``load_state_dict``), another starts at batch 0."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch, self.position = epoch, 0
            self._generation += 1

    def state_dict(self) -> dict:
        return {"epoch": int(self.epoch), "position": int(self.position), "seed": int(self.seed)}

    def load_state_dict(self, state: dict) -> None:
        position = int(state["position"])
        if not 0 <= position <= len(self):
            raise ValueError(f"Loader.load_state_dict: position {position} outside 0..{len(self)} batches")
        seed = int(state.get("seed", self.seed))
        if seed != self.seed and self._procs:  # workers compute orders from the seed they were started with
            self.close()
        self.epoch, self.position, self.seed = int(state["epoch"]), position, seed
        self._generation += 1

    def _record_bad(self, bad) -> None:
        for _, where, message in bad:
            self.skipped += 1
            if where not in self.bad_files:
                self.bad_files.add(where)
                text = message if where in message else f"{where}: {message}"
                warnings.warn(f"skipping unreadable image: {text}", BadImageWarning, stacklevel=3)

    # ------------------------------------------------------------------------------------------ iteration

    def __iter__(self):
        if self.position >= len(self):  # the last epoch was fully consumed: continue with the next one
            self.epoch, self.position = self.epoch + 1, 0
        self._generation += 1
        gen = self._generation
        if self.workers == 0:
            return self._iterate_inline(gen)
        self._start()
        self._gen_value.value = gen
        for msg in self._ready.values():  # batches that arrived for an abandoned iteration: free their slots
            self._free_slots.append(msg[3])
        self._ready.clear()
        return self._iterate_workers(gen)

    def _finish_epoch(self, gen: int) -> None:
        if gen == self._generation and self.position >= len(self):
            self.epoch, self.position = self.epoch + 1, 0

    def _iterate_inline(self, gen: int):
        epoch = self.epoch
        order = epoch_order(self.n, self.seed, epoch, self.shuffle)
        s = self.dataset.image_size
        while gen == self._generation and self.position < len(self):
            b = self.position
            start, count = self._span(b)
            images = np.empty((count, s, s, 3), dtype=np.uint8)
            labels, bad = fill_batch(self.dataset, order, start, count, images)
            self._record_bad(bad)
            self.position = b + 1
            yield images, labels
        self._finish_epoch(gen)

    def _iterate_workers(self, gen: int):
        epoch, nb = self.epoch, len(self)
        next_submit = self.position
        s = self.dataset.image_size
        while gen == self._generation and self.position < nb:
            b = self.position
            while b not in self._ready:
                while (self._free_slots and next_submit < nb and next_submit < b + self._nslots):
                    slot = self._free_slots.pop()
                    self._task_q.put((gen, epoch, next_submit, slot, *self._span(next_submit)))
                    self._in_flight += 1
                    next_submit += 1
                msg = self._receive()
                self._in_flight -= 1
                kind, mgen, mbatch, slot = msg[:4]
                if kind in ("error", "reraise") and mgen == gen:
                    self.close()
                    if kind == "reraise":
                        raise {t.__name__: t for t in _REPORTED_AS_IS}[msg[4]](msg[5])
                    raise RuntimeError(f"Loader: a worker raised an exception\n{msg[4]}")
                if kind != "ok" or mgen != gen:  # stale result of an abandoned iteration: just free its slot
                    self._free_slots.append(slot)
                    continue
                self._ready[mbatch] = msg
            _, _, _, slot, labels, bad = self._ready.pop(b)
            count = self._span(b)[1]
            view = np.frombuffer(self._buffer, dtype=np.uint8, count=count * s * s * 3,
                                 offset=slot * self._slot_bytes)
            images = view.reshape(count, s, s, 3).copy()
            self._free_slots.append(slot)
            self._record_bad(bad)
            self.position = b + 1
            yield images, labels
        self._finish_epoch(gen)

    def _receive(self):
        if self._in_flight <= 0:  # pragma: no cover - would be a bookkeeping bug; never wait forever for it
            raise RuntimeError("Loader: internal error: waiting for a batch while none is being decoded")
        waited = 0.0
        while True:
            # Check liveness on every wait, not only after a timeout: a dead worker may hold a task (its batch never
            # comes) or the task queue's lock (the others then starve), while the survivors keep results flowing.
            dead = [p for p in self._procs if not p.is_alive()]
            if dead:
                p = dead[0]
                self.close()
                raise RuntimeError(f"Loader: worker process {p.name} (pid {p.pid}) died unexpectedly with exit code "
                                   f"{p.exitcode} (killed, out of memory, or a crash in a decoder)")
            try:
                return self._result_q.get(timeout=self.POLL_S)
            except queue.Empty:
                waited += self.POLL_S
            if self.timeout is not None and waited >= self.timeout:
                self.close()
                raise RuntimeError(f"Loader: no batch arrived within {self.timeout} s (workers alive but stuck)")

    # ------------------------------------------------------------------------------------------- workers

    def _start(self) -> None:
        if self._procs:
            return
        ctx = mp.get_context(self.start_method)
        s = self.dataset.image_size
        self._slot_bytes = self.batch_size * s * s * 3
        self._buffer = ctx.RawArray("B", self._nslots * self._slot_bytes)
        self._free_slots = list(range(self._nslots))
        self._ready: dict[int, tuple] = {}  # results received ahead of their turn, by batch number
        self._in_flight = 0  # tasks sent and not yet answered
        self._task_q, self._result_q = ctx.Queue(), ctx.Queue()
        self._gen_value = ctx.RawValue("q", self._generation)
        config = (self.n, self.batch_size, self.seed, self.shuffle, self._slot_bytes)
        procs = []
        try:
            for k in range(self.workers):
                p = ctx.Process(target=_worker_main, name=f"alexnet-loader-{k}", daemon=True,
                                args=(k, self.dataset, config, self._task_q, self._result_q, self._buffer,
                                      self._gen_value, os.getpid()))
                p.start()
                procs.append(p)
        except BaseException:
            _stop_workers(procs, (self._task_q, self._result_q))
            raise
        self._procs = procs
        self._finalizer = weakref.finalize(self, _stop_workers, procs, (self._task_q, self._result_q))

    def close(self) -> None:
        """Stop the workers (idempotent). The loader can be iterated again afterwards (workers restart)."""
        self._generation += 1
        if self._finalizer is not None:
            self._finalizer()  # runs _stop_workers once
            self._finalizer = None
        self._procs = []
        self._buffer = None  # the shared-memory ring is freed; a later iteration makes a new one

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"Loader({self.dataset!r}, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"drop_last={self.drop_last}, seed={self.seed}, workers={self.workers}, epoch={self.epoch}, "
                f"position={self.position})")
