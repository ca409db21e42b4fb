"""Data-parallel training over MPI: ``mpiexec -n N python -m mpi4py -m alexnet_cuda.train ...`` (or ``srun``).

Every rank holds the whole network and computes the gradients of its consecutive share of each global batch
(``--batch-size`` is the global batch B; rank r of N takes samples [r*B/N, (r+1)*B/N)); the gradients are averaged
across the ranks and every rank applies the same update, so N ranks follow one process with batch B, up to the
order of the float sums (Krizhevsky 2012 trained on two GPUs by model parallelism; this is the data-parallel scheme
of its follow-up, Krizhevsky 2014, "One weird trick for parallelizing convolutional neural networks").

What makes N ranks equal one process:

* the data order, the augmentation draws and the dropout masks are the global batch's, sliced: the loader orders
  and batches the whole set on every rank and yields the rank's share (``data.Loader(shard=...)``); every rank draws
  the augmentation of the whole batch and keeps its share; ``AlexNet.sample_offset`` keys each sample's dropout mask
  by its position in the global batch;
* the gradient average is computed once per element and handed to every rank: the gradients, flattened into a few
  large buffers, go through ``Reduce_scatter_block`` (each rank sums one chunk of every buffer, in the MPI
  library's fixed order) then ``Allgather`` (every rank gets every summed chunk), so all ranks hold the same bits,
  which a plain ``Allreduce`` does not promise;
* rank 0 broadcasts the initial (or resumed) parameters, momentum and step; every decision that could differ (stop
  on Ctrl-C, the loss being NaN, the validation counts the schedule reads) goes through a collective, so no rank is
  left waiting in one the others skipped.

Without a launcher, or with one rank, :func:`setup` returns :class:`SingleProcess` and mpi4py (an optional
dependency: ``pip install ".[dist]"``) is never imported. A rank that fails calls ``MPI_Abort`` after printing its
error (:meth:`MPIWorld.abort`, also the ``sys.excepthook``), which ends every rank instead of leaving them in a
collective forever.

On GPUs the gradients are averaged by NCCL on the devices (csrc/nccl.h: loaded at run time, one communicator per
tower, its unique id broadcast over MPI, each layer's reduction started as backward produces it) when every rank
can load libnccl (:func:`load_nccl`); otherwise through the host with MPI, as on the CPU. ``ALEXNET_NCCL_LIBRARY``
names the library; ``ALEXNET_DIST_BACKEND=nccl`` makes a missing NCCL an error, ``=mpi`` skips it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import _C
from ..data.loader import shard_span
from ..model import StepResult
from ..runtime import visible_gpus

# Set by MPI launchers in every rank's environment: MPICH/Hydra, Intel MPI and Slurm's srun --mpi=pmi2 (PMI_SIZE),
# Open MPI (OMPI_COMM_WORLD_SIZE), MVAPICH (MV2_COMM_WORLD_SIZE), PMIx launchers such as srun --mpi=pmix (PMIX_RANK,
# which gives no size: MPI is then asked).
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_PRESENCE_VARIABLES = ("PMIX_RANK",)
# Ranks on this node, for picking a GPU per rank.
_LOCAL_RANK_VARIABLES = ("MPI_LOCALRANKID", "OMPI_COMM_WORLD_LOCAL_RANK", "MV2_COMM_WORLD_LOCAL_RANK",
                         "SLURM_LOCALID", "PMI_LOCAL_RANK")

# Gradients are averaged in buffers of at most this many float32 values (64 MiB): few calls, bounded extra memory.
BUCKET_FLOATS = 16 * 1024 * 1024


def launched_by_mpi(environ=None) -> bool:
    """True when an MPI launcher started this process with more than one rank (or ``python -m mpi4py`` did)."""
    env = os.environ if environ is None else environ
    if "mpi4py.MPI" in sys.modules:
        return True
    for name in _SIZE_VARIABLES:
        try:
            if int(env.get(name, "1")) > 1:
                return True
        except ValueError:
            continue
    return any(name in env for name in _PRESENCE_VARIABLES)


def _local_rank(environ) -> int | None:
    for name in _LOCAL_RANK_VARIABLES:
        if name in environ:
            try:
                return int(environ[name])
            except ValueError:
                continue
    return None


def nccl_candidates(environ=None) -> list[str]:
    """Where libnccl is looked for, in order: ``ALEXNET_NCCL_LIBRARY`` alone when set; else the nvidia-nccl-cu12
    wheel's copy, then the dynamic loader's search path (LD_LIBRARY_PATH, the system's libraries)."""
    env = os.environ if environ is None else environ
    if env.get("ALEXNET_NCCL_LIBRARY"):
        return [env["ALEXNET_NCCL_LIBRARY"]]
    out = []
    try:
        spec = importlib.util.find_spec("nvidia.nccl")
    except (ImportError, ValueError):
        spec = None
    for where in (spec.submodule_search_locations or []) if spec else []:
        wheel = Path(where) / "lib" / "libnccl.so.2"
        if wheel.exists():
            out.append(str(wheel))
    return out + ["libnccl.so.2", "libnccl.so"]


def load_nccl(environ=None) -> str:
    """Loads libnccl (the first of :func:`nccl_candidates` that loads) and returns its path. RuntimeError listing
    every place tried and why each failed."""
    reasons = []
    for path in nccl_candidates(environ):
        try:
            _C.nccl_load(path)
            return path
        except RuntimeError as exc:
            reasons.append(str(exc))
    raise RuntimeError("NCCL not found: " + "; ".join(reasons) + ". Install it with pip install nvidia-nccl-cu12, "
                       "or set ALEXNET_NCCL_LIBRARY to libnccl.so.2")


class SingleProcess:
    """One process: every collective is the identity. The training loop calls the same methods either way."""

    rank, size, is_root = 0, 1, True
    local_rank = 0

    def shard(self, count: int) -> tuple[int, int]:
        return 0, count

    def train_step(self, model, images, labels, lr, momentum, weight_decay, *, crops, flips, rgb_shift,
                   stop_requested: bool, first_sample: int = 0):
        """One training step; returns (StepResult, whether any rank asked to stop). ``first_sample``: where this
        rank's share starts in the global batch (``shard``'s first), 0 here."""
        r = model.train_step(images, labels, lr, momentum, weight_decay, crops=crops, flips=flips,
                             rgb_shift=rgb_shift)
        return r, bool(stop_requested)

    def sum(self, values: Sequence[float]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)

    def any(self, flag: bool) -> bool:
        return bool(flag)

    def broadcast(self, obj: Any) -> Any:
        return obj

    def broadcast_model(self, model) -> None:
        pass

    def barrier(self) -> None:
        pass

    def choose_gradient_path(self, model, devices: list[str]) -> str | None:
        """Data-parallel only: how gradients are averaged ('nccl' or 'mpi'); None in one process."""
        return None

    def abort(self, message: str, code: int = 1) -> None:
        pass


class MPIWorld(SingleProcess):
    """Rank ``rank`` of ``size`` in ``comm`` (an mpi4py communicator)."""

    def __init__(self, comm, local_rank: int | None = None):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.is_root = self.rank == 0
        self.local_rank = self.rank if local_rank is None else local_rank
        self.nccl = False  # gradients averaged by NCCL inside the network's backward (choose_gradient_path)

    # ---- the batch -------------------------------------------------------------------------------------------------
    def shard(self, count: int) -> tuple[int, int]:
        """This rank's consecutive share [first, first + n) of a batch of ``count`` samples."""
        first, n = shard_span(count, self.rank, self.size)
        return first, first + n

    def train_step(self, model, images, labels, lr, momentum, weight_decay, *, crops, flips, rgb_shift,
                   stop_requested: bool, first_sample: int = 0):
        """Gradients of this rank's share (dropout masks of its global positions: the share starts at sample
        ``first_sample`` of the global batch, ``shard``'s first), their average over the ranks, the update. Returns
        the global batch's (loss, top-1, top-5) and whether any rank asked to stop, both agreed by every rank (a NaN
        loss on one rank is NaN on all). Besides the gradients, one small collective per step (the sums)."""
        n = len(labels)
        model.sample_offset = first_sample
        if self.nccl:  # averaged layer by layer during backward, on the devices (csrc/nccl.h)
            r = model.train_step(images, labels, lr, momentum, weight_decay, crops=crops, flips=flips,
                                 rgb_shift=rgb_shift)
        else:
            r = model.compute_gradients(images, labels, training=True, crops=crops, flips=flips,
                                        rgb_shift=rgb_shift)
            self.average_gradients(model)
            model.apply_update(lr, momentum, weight_decay)
        loss, top1, top5, count, stop = self.sum([r.loss * n, r.top1 * n, r.top5 * n, n, bool(stop_requested)])
        return StepResult(loss / count, top1 / count, top5 / count), stop > 0

    def average_gradients(self, model) -> None:
        """Replaces every gradient by its mean over the ranks, identical bits on every rank (module docstring).
        fc8's gradients first, conv1's last, the order backward produces them; a few large buffers."""
        from mpi4py import MPI

        grads = model.gradients()
        names = list(reversed(list(grads)))
        averaged: dict[str, np.ndarray] = {}
        for bucket in _buckets(names, {k: grads[k].size for k in names}, BUCKET_FLOATS):
            total = sum(grads[k].size for k in bucket)
            chunk = -(-total // self.size)
            flat = np.zeros(chunk * self.size, dtype=np.float32)
            np.concatenate([grads[k].ravel() for k in bucket], out=flat[:total])
            mine = np.empty(chunk, dtype=np.float32)
            self.comm.Reduce_scatter_block(flat, mine, op=MPI.SUM)
            mine *= np.float32(1.0 / self.size)
            self.comm.Allgather(mine, flat)
            at = 0
            for k in bucket:
                averaged[k] = flat[at:at + grads[k].size].reshape(grads[k].shape)
                at += grads[k].size
        model.set_gradients(averaged)

    # ---- agreement -------------------------------------------------------------------------------------------------
    def sum(self, values: Sequence[float]) -> np.ndarray:
        """Sum over the ranks (float64), the same bits on every rank: one Allgather of every rank's values, then
        each rank adds them in rank order (an Allreduce need not give every rank the same bits)."""
        mine = np.asarray(values, dtype=np.float64)
        every = np.empty((self.size, mine.size), dtype=np.float64)
        self.comm.Allgather(mine, every)
        total = every[0].copy()
        for r in range(1, self.size):
            total += every[r]
        return total

    def any(self, flag: bool) -> bool:
        return bool(self.sum([bool(flag)])[0] > 0)

    def barrier(self) -> None:
        self.comm.Barrier()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (a picklable Python object: settings, paths, small arrays)."""
        return self.comm.bcast(obj, root=0)

    def broadcast_model(self, model) -> None:
        """Rank 0's parameters, momentum buffers and dropout step on every rank (a fresh run: the same seed already
        gives the same weights, but not if the builds or devices differ; a resumed run: rank 0's checkpoint)."""
        params, momenta = model.state_dict(), model.optimizer_state_dict()
        for state in (params, momenta):
            for name in state:
                a = np.ascontiguousarray(state[name], dtype=np.float32)
                self.comm.Bcast(a, root=0)
                state[name] = a
        model.load_state_dict(params)
        model.load_optimizer_state_dict(momenta)
        model.step = int(self.broadcast(int(model.step)))

    def choose_gradient_path(self, model, devices: list[str], environ=None) -> str:
        """NCCL when the towers are on GPUs and every rank loads it (all ranks must take the same path), else MPI
        through the host. Returns 'nccl' or 'mpi' and a line saying why, for the log."""
        env = os.environ if environ is None else environ
        wanted = env.get("ALEXNET_DIST_BACKEND", "auto")
        if wanted not in ("auto", "nccl", "mpi"):
            raise ValueError(f"ALEXNET_DIST_BACKEND must be auto, nccl or mpi, got {wanted!r}")
        on_gpus = all(d.startswith("cuda") for d in devices)
        if wanted == "mpi" or (wanted == "auto" and not on_gpus):
            return "mpi"
        if not on_gpus:
            raise ValueError(f"ALEXNET_DIST_BACKEND=nccl needs the towers on GPUs, got {devices}")
        try:
            load_nccl(env)
            why = ""
        except RuntimeError as exc:
            why = str(exc)
        if self.sum([why == ""])[0] < self.size:
            if wanted == "nccl":
                raise RuntimeError(why or "NCCL could not be loaded on every rank")
            if self.is_root:
                print(f"note: averaging gradients through MPI on the host ({why or 'NCCL missing on some rank'})",
                      file=sys.stderr, flush=True)
            return "mpi"
        self.use_nccl(model)
        return "nccl"

    def use_nccl(self, model) -> None:
        """One NCCL communicator per tower: rank 0 creates each unique id and broadcasts it over MPI."""
        ids = [self.broadcast(_C.nccl_unique_id() if self.is_root else None) for _ in range(model.towers)]
        model._net.use_nccl(ids, self.rank, self.size)
        self.nccl = True

    def abort(self, message: str, code: int = 1) -> None:
        """Ends every rank: prints ``message`` and calls MPI_Abort (which mpiexec/srun turn into the end of the
        job), so that ranks waiting in a collective for this one do not hang."""
        print(f"[rank {self.rank}/{self.size}] {message}; aborting all {self.size} ranks", file=sys.stderr,
              flush=True)
        self.comm.Abort(code)


def _buckets(names: list[str], sizes: dict[str, int], limit: int) -> list[list[str]]:
    """Consecutive groups of ``names`` of at most ``limit`` values each (a larger tensor is a group alone)."""
    out: list[list[str]] = [[]]
    filled = 0
    for k in names:
        if out[-1] and filled + sizes[k] > limit:
            out.append([])
            filled = 0
        out[-1].append(k)
        filled += sizes[k]
    return [b for b in out if b]


class AgreedStop:
    """A StopRequest (loop.py) whose ``requested`` is agreed by every rank: a Ctrl-C that reached one rank stops
    them all at the same step. Once true it stays true without further collectives (all ranks saw it true)."""

    def __init__(self, stop, world: SingleProcess):
        self._stop, self._world, self._agreed = stop, world, False

    @property
    def local_requested(self) -> bool:
        """Whether this rank's own Ctrl-C came (to be agreed in the step's collective)."""
        return bool(self._stop.requested)

    @property
    def requested(self) -> bool:
        if not self._agreed:
            self._agreed = self._world.any(self._stop.requested)
        return self._agreed

    def agree(self, value: bool) -> None:
        """Records a decision already agreed by a collective (the step's)."""
        self._agreed = self._agreed or bool(value)

    def __getattr__(self, name: str) -> Any:  # install / uninstall / the raw flag
        return getattr(self._stop, name)


def place_devices(devices: list[str], gpus: list[int] | None, world: SingleProcess) -> list[str]:
    """The towers' devices of this rank: on GPUs without --gpus, the ranks of a node take one GPU each by local rank
    (both towers on it, in two streams); the CPU, one rank, or explicit --gpus: unchanged."""
    if world.size == 1 or gpus or not devices[0].startswith("cuda"):
        return devices
    gpu = world.local_rank % max(1, visible_gpus())
    return [f"cuda:{gpu}", f"cuda:{gpu}"]


_world: SingleProcess | None = None


def setup(environ=None) -> SingleProcess:
    """The process's world: :class:`MPIWorld` under an MPI launcher with more than one rank, otherwise
    :class:`SingleProcess` (mpi4py not imported). Under MPI a failing rank's uncaught exception aborts the job."""
    global _world
    if _world is not None:
        return _world
    env = os.environ if environ is None else environ
    if not launched_by_mpi(env):
        _world = SingleProcess()
        return _world
    try:
        from mpi4py import MPI
    except ImportError:
        raise RuntimeError("started by an MPI launcher but mpi4py is not installed: pip install \".[dist]\" "
                           "(mpi4py and the MPICH wheel), or run without mpiexec/srun") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        _world = SingleProcess()
        return _world
    world = MPIWorld(comm, _local_rank(env))
    previous = sys.excepthook

    def abort_on_uncaught(kind, value, tb):
        previous(kind, value, tb)
        world.abort(f"uncaught {kind.__name__}")

    sys.excepthook = abort_on_uncaught
    _world = world
    return world
