"""Data-parallel training over MPI (alexnet_cuda/train/distributed.py): 2 ranks on this machine's loopback, CPU backend.

The 2-rank checks run in three ``mpiexec -n 2`` launches of tests/distributed_worker.py, each under a timeout: one
for everything that ends normally (equivalence with one process, the ranks' shares, resume, a Ctrl-C on one rank,
only rank 0 writing), and one per way a rank can fail (an exception, SIGKILL). They skip, with the reason, without
mpi4py and an mpiexec (``pip install ".[dist]"`` brings both).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from alexnet_cuda import AlexNet
from alexnet_cuda.train import distributed
from alexnet_cuda.train.lock import RunLock
from alexnet_cuda.data.loader import shard_span
from subprocesses import module_env

WORKER = Path(__file__).resolve().parents[1] / "distributed_worker.py"
LAUNCH_TIMEOUT_S = 120  # each launch takes a few seconds; a hang fails the test instead of CI


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the MPICH wheel installs it next to python
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _has_mpi4py() -> bool:
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return False
    return True


requires_mpi = pytest.mark.skipif(not (_has_mpi4py() and _mpiexec()),
                                  reason='needs mpi4py and mpiexec: pip install ".[dist]"')


def launch(scenario: str, out: Path, **env_extra: str) -> tuple[subprocess.CompletedProcess, float]:
    env = {**module_env(), **env_extra}
    env["OMP_NUM_THREADS"] = "1"  # two ranks on two cores
    for k in [k for k in env if k.startswith(("PMI_", "OMPI_", "PMIX_"))]:
        del env[k]  # a test run itself inside mpiexec must not pass its rank on
    start = time.monotonic()
    try:
        proc = subprocess.run([_mpiexec(), "-n", "2", sys.executable, str(WORKER), scenario, str(out)], env=env,
                              capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S, cwd=out)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"mpiexec -n 2 ({scenario}) hung for {LAUNCH_TIMEOUT_S} s:\n{exc.stderr}")
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("dist")
    proc, _ = launch("checks", out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {**json.loads((out / "result.json").read_text()), "out": out}


# ---- 2 ranks ------------------------------------------------------------------------------------------------------
@requires_mpi
def test_two_ranks_of_four_equal_one_process_of_eight(checks):
    """Momentum, weight decay, dropout and augmentation on; three steps."""
    e = checks["equivalence"]
    assert checks["world"] == [0, 2]
    assert e["ranks_identical"], "the two ranks' parameters and momentum differ"
    assert e["param_rel_err"] < 1e-5 and e["momentum_rel_err"] < 1e-5, e
    for two, one in e["losses"]:
        assert abs(two - one) < 1e-5 * max(1.0, abs(one))
    assert e["step"] == [3, 3]


@requires_mpi
def test_union_of_shards_is_the_single_process_batch(checks):
    u = checks["union"]
    assert u["same"] and u["batches"] == 5
    # 40 validation images in batches of 24 over 3 shards: every image exactly once, small last batch included
    assert [sum(s) for s in zip(*u["val_shard_sizes"])] == [24, 16]


@requires_mpi
def test_resumed_two_rank_run_equals_uninterrupted_and_only_rank0_writes(checks):
    r = checks["resume"]
    assert r["stopped_status"] == "interrupted" and r["stopped_step"] == 3  # Ctrl-C on rank 1 only, both stopped
    assert r["whole_step"] == r["resumed_step"] == 8
    assert r["params_equal"] and r["momentum_equal"] and r["losses_equal"]
    assert r["writes_by_rank"][0] > 0 and r["writes_by_rank"][1] == 0


@requires_mpi
def test_two_rank_training_run_equals_a_one_process_run(checks, tmp_path):
    """The whole driver (train()): 2 epochs on 2 ranks x 4 against one process x 8."""
    from alexnet_cuda import checkpoint as ckpt_io

    env = {**module_env(), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(WORKER), "single", str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=LAUNCH_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = ckpt_io.load(checks["out"] / "whole" / "last.npz")
    mine = ckpt_io.load(tmp_path / "one" / "last.npz")
    assert mine.meta["step"] == two.meta["step"] == 8
    for k, v in mine.params.items():
        np.testing.assert_allclose(two.params[k], v, rtol=1e-4, atol=1e-5 * float(np.abs(v).max()))


@requires_mpi
def test_two_ranks_on_emulated_cuda_devices_average_through_the_host(tmp_path):
    """GPUs without NCCL: each rank on its own (emulated) GPU, gradients through the host with MPI; the same
    weights as one CPU process with the whole batch."""
    import alexnet_cuda

    if not list(Path(alexnet_cuda.__file__).parent.glob("_C_emulated.*")):
        pytest.skip("the emulated CUDA device is not built (tools/emulation_build.sh)")
    if os.environ.get("ALEXNET_CUDA_EMULATED") == "asan":
        pytest.skip("not under the sanitizer pass: its LD_PRELOAD would instrument mpiexec too")
    proc, _ = launch("emulated-cuda", tmp_path, ALEXNET_CUDA_EMULATED="1",
                     ALEXNET_NCCL_LIBRARY=str(tmp_path / "no" / "libnccl.so.2"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "note: averaging gradients through MPI on the host (NCCL not found" in proc.stderr
    e = json.loads((tmp_path / "result.json").read_text())["equivalence"]
    assert e["gradient_path"] == "mpi" and e["devices"] == ["cuda:0", "cuda:0"]
    assert e["ranks_identical"] and e["param_rel_err"] < 1e-5 and e["momentum_rel_err"] < 1e-5, e


@requires_mpi
@pytest.mark.parametrize("how", ["raise", "die"])
def test_a_failing_rank_ends_the_job(tmp_path, how):
    proc, seconds = launch(how, tmp_path)
    assert proc.returncode != 0
    assert seconds < LAUNCH_TIMEOUT_S
    if how == "raise":  # the error and who aborted, in one line each
        assert "planted failure on rank 1" in proc.stderr
        assert "[rank 1/2]" in proc.stderr and "aborting all 2 ranks" in proc.stderr


@requires_mpi
def test_a_data_parallel_job_refuses_a_held_run_directory(tmp_path):
    with RunLock(tmp_path / "run"):
        proc, seconds = launch("locked", tmp_path)
    assert proc.returncode != 0 and seconds < LAUNCH_TIMEOUT_S
    assert f"in use by another run (host {socket.gethostname()}, pid {os.getpid()}" in proc.stderr
    assert not (tmp_path / "run" / "last.npz").exists()


# ---- one process --------------------------------------------------------------------------------------------------
def test_without_launcher_mpi4py_is_not_imported():
    env = {k: v for k, v in module_env().items() if not k.startswith(("PMI_", "OMPI_", "PMIX_", "MV2_"))}
    code = ("import sys, alexnet_cuda.train.run, alexnet_cuda.train.distributed as d; w = d.setup(); "
            "print(type(w).__name__, w.size, 'mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["SingleProcess", "1", "False"], out.stderr


def test_launcher_detection_by_environment():
    assert not distributed.launched_by_mpi({}) or "mpi4py.MPI" in sys.modules
    if "mpi4py.MPI" not in sys.modules:
        assert not distributed.launched_by_mpi({"PMI_SIZE": "1"})
        assert distributed.launched_by_mpi({"PMI_SIZE": "2"})
        assert distributed.launched_by_mpi({"OMPI_COMM_WORLD_SIZE": "4"})
        assert distributed.launched_by_mpi({"PMIX_RANK": "0"})


def test_shard_span_covers_the_batch_in_rank_order():
    for count in (0, 1, 5, 8, 13):
        for size in (1, 2, 3, 4):
            spans = [shard_span(count, r, size) for r in range(size)]
            assert spans[0][0] == 0 and sum(n for _, n in spans) == count
            assert all(a + n == b for (a, n), (b, _) in zip(spans, spans[1:]))


def _tiny() -> AlexNet:
    net = AlexNet(num_classes=10, arch="alexnet-small", input_size=32, devices=["cpu", "cpu"], seed=2,
                  widths={"conv": [8, 16, 16, 16, 16], "fc": [32, 32]})
    net.set_normalization(np.full(3, 120, np.float32), 0.02)
    return net


def test_split_step_equals_train_step_bit_for_bit():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 36, 36, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 4).astype(np.int32)
    a, b = _tiny(), _tiny()
    for _ in range(2):
        a.train_step(images, labels, 0.05, 0.9, 5e-4)
        b.compute_gradients(images, labels, training=True)
        b.apply_update(0.05, 0.9, 5e-4)
    assert a.step == b.step == 2
    for k, v in a.state_dict().items():
        np.testing.assert_array_equal(v, b.state_dict()[k])
    with pytest.raises(ValueError, match="apply_update: .*has no gradient"):
        b.apply_update(0.05)


def test_sample_offset_gives_the_global_batch_dropout_masks():
    """Two halves with sample_offset 0 and 4 average to the whole batch's gradient (dropout on)."""
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 36, 36, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 8).astype(np.int32)
    net = _tiny()
    net.compute_gradients(images, labels, training=True)
    whole = net.gradients()
    halves = []
    for r in range(2):
        net.sample_offset = 4 * r
        net.compute_gradients(images[4 * r:4 * r + 4], labels[4 * r:4 * r + 4], training=True)
        halves.append(net.gradients())
    for k, g in whole.items():
        np.testing.assert_allclose((halves[0][k] + halves[1][k]) / 2, g, rtol=1e-4, atol=1e-6 * np.abs(g).max())
    with pytest.raises(ValueError, match="sample_offset"):
        net.sample_offset = -1


def test_ranks_of_a_node_take_one_gpu_each_by_local_rank(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setattr(distributed, "visible_gpus", lambda *a, **k: 2)
    rank3 = SimpleNamespace(size=4, local_rank=3)
    assert distributed.place_devices(["cuda:0", "cuda:1"], None, rank3) == ["cuda:1", "cuda:1"]
    assert distributed.place_devices(["cuda:0", "cuda:1"], [0, 1], rank3) == ["cuda:0", "cuda:1"]  # --gpus wins
    assert distributed.place_devices(["cpu", "cpu"], None, rank3) == ["cpu", "cpu"]
    assert distributed.place_devices(["cuda:0", "cuda:1"], None, distributed.SingleProcess()) == ["cuda:0", "cuda:1"]


def test_agreed_stop_asks_the_ranks_until_one_said_stop():
    class World(distributed.SingleProcess):
        asked = 0
        others_stop = False

        def any(self, flag):
            self.asked += 1
            return flag or self.others_stop

    class Stop:
        requested = False

    world = World()
    stop = distributed.AgreedStop(Stop(), world)
    assert not stop.requested and world.asked == 1
    world.others_stop = True  # a Ctrl-C reached another rank only
    assert stop.requested and not stop.local_requested
    assert stop.requested and world.asked == 2  # agreed true stays true without another collective
