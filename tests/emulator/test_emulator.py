"""The emulated CUDA device itself (csrc/cuda/emulation; docs/emulator.md).

Each planted bug of csrc/cuda/emulation/selftest.cu runs in its own process (a kernel fault is sticky for its
device, as on a GPU, and a hang must fail the test rather than the run) and must be caught: launch errors as CUDA
reports them, barrier and shuffle misuse naming the kernel, block and source line, races as results that differ
between thread schedules, memory errors as faults or NaN, a missing stream wait as a stale read. The rest checks
the emulated device's settings (SM count, capacity, index limit), the caching allocator, and that ``auto`` never
picks an emulated device. The device-parametrized op, network and training tests run on the emulated device too
when ALEXNET_CUDA_EMULATED=1 (see conftest.py).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import alexnet_cuda

INFO = alexnet_cuda.build_info()
EMULATED = bool(INFO.get("cuda_emulated"))
SANITIZED = "AddressSanitizer" in INFO.get("emulator", "")
pytestmark = pytest.mark.skipif(
    not EMULATED, reason="needs the emulated build: tools/emulation_build.sh, then ALEXNET_CUDA_EMULATED=1 pytest")

PACKAGE_PARENT = str(Path(alexnet_cuda.__file__).resolve().parents[1])
SELFTEST = Path(__file__).resolve().parents[2] / "csrc" / "cuda" / "emulation" / "selftest.cu"


# The subprocesses load the same emulated build as this process (=1, or =asan for the sanitizer build).
EMULATED_ENV = dict(ALEXNET_CUDA_EMULATED=os.environ.get("ALEXNET_CUDA_EMULATED") or "1",
                    PYTHONPATH=os.pathsep.join([PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]))


def run_python(code: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    full_env = dict(os.environ, **EMULATED_ENV, **env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True, timeout=timeout)


def selftest(name: str, **env: str) -> tuple[dict | None, str]:
    """(results, "") when the planted program ran to the end, else (None, the error it raised or the crash)."""
    r = run_python("import json, alexnet_cuda\n"
                   "from alexnet_cuda import _C\n"
                   "try:\n"
                   f"    print('RESULT', json.dumps(_C.emulator_selftest({name!r})))\n"
                   "except Exception as e:\n"
                   "    print('ERROR', type(e).__name__, e)\n", **env)
    out = r.stdout + r.stderr
    for line in r.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:]), out
    return None, out


def line_of(marker: str) -> int:
    """The line of selftest.cu that contains `marker`."""
    for i, text in enumerate(SELFTEST.read_text().splitlines(), 1):
        if marker in text:
            return i
    raise AssertionError(marker)


# ---- correct programs run, and compute the right thing ---------------------------------------------------------

def test_correct_programs_give_correct_results():
    result, out = selftest("block_sum")
    assert result == {"sum0": float(sum(i % 7 for i in range(128)))}, out
    result, out = selftest("warp_sum")
    assert result == {"out0": float(sum(range(32)))}, out  # lane 0's warp: 0 + 1 + ... + 31
    result, out = selftest("within_launch_bounds")
    assert result == {"out0": 1.0}, out


# ---- launch errors -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, code, words", [
    ("too_many_threads", "cudaErrorInvalidConfiguration", "1025 threads"),
    ("zero_grid", "cudaErrorInvalidConfiguration", "zero grid or block dimension"),
    ("grid_y_too_large", "cudaErrorInvalidConfiguration", "grid 1x65536x1"),
    ("dynamic_shared_over_limit", "cudaErrorInvalidValue", "dynamic shared memory"),
    ("launch_bounds_exceeded", "cudaErrorLaunchOutOfResources", "__launch_bounds__ allows at most 128"),
    ("shared_over_48k", "cudaErrorLaunchOutOfResources", "65536 bytes of shared memory"),
    ("host_pointer_argument", "cudaErrorInvalidValue", "not in any live device allocation"),
    ("stream_of_other_device", "cudaErrorInvalidResourceHandle", "the stream belongs to cuda:1"),
    ("event_of_other_device", "cudaErrorInvalidResourceHandle", "the event belongs to cuda:1"),
])
def test_launch_errors_are_reported_as_cuda_does(name, code, words):
    result, out = selftest(name)
    assert result is None and "ERROR RuntimeError" in out, out
    assert code in out and words in out, out


# ---- barriers and shuffles: a clear error naming the kernel, the block and the line, never a hang ------------------

@pytest.mark.parametrize("name, words, marker", [
    ("divergent_barrier", "exited while 16 thread(s) wait at __syncthreads", "if (threadIdx.x < 16) __syncthreads();"),
    ("barrier_after_exit", "thread (0,0,0) exited while 63 thread(s) wait at __syncthreads", "  __syncthreads();\n"),
    ("divergent_shuffle", "waits for it in the warp shuffle", "v = __shfl_xor_sync(0xffffffffu, v, 1);"),
])
def test_barrier_and_shuffle_misuse_is_an_error_with_its_source_line(name, words, marker):
    result, out = selftest(name)
    assert result is None and "cudaErrorLaunchFailure" in out, out
    assert words in out and "block (0,0,0)" in out, out
    if "\n" not in marker:
        assert f"selftest.cu:{line_of(marker)}" in out, out


# ---- races: a missing __syncthreads changes the result -------------------------------------------------------------

def test_missing_syncthreads_is_caught_by_the_two_schedules():
    result, out = selftest("missing_syncthreads")
    assert result is None, out
    assert "block_sum_kernel" in out and "differ between the forward and reverse thread schedules" in out, out


def test_missing_syncthreads_under_a_seeded_shuffle():
    result, out = selftest("missing_syncthreads", AXEMU_SCHEDULES="reverse,shuffled", AXEMU_SEED="7")
    assert result is None and "reverse and shuffled" in out, out


def test_missing_syncthreads_with_one_schedule_still_shows_as_nan():
    """With the race check off (one schedule), the poisoned shared memory still makes the bug visible."""
    result, out = selftest("missing_syncthreads", AXEMU_SCHEDULES="forward")
    assert result is not None and np.isnan(result["sum0"]), out


def test_every_launch_runs_under_two_schedules():
    from alexnet_cuda import _C, ops

    before = _C.emulator_stats()
    ops.relu_forward(np.ones(1000, np.float32), device="cuda")
    after = _C.emulator_stats()
    assert after["launches"] > before["launches"] and after["race_checked"] > before["race_checked"]


# ---- memory errors ---------------------------------------------------------------------------------------------

def test_out_of_bounds_write_is_an_illegal_address():
    result, out = selftest("out_of_bounds_write")
    if SANITIZED:
        assert "heap-buffer-overflow" in out or "use-after-poison" in out, out
    else:
        assert result is None and "cudaErrorIllegalAddress" in out and "past the end of a 40-byte allocation" in out, out


def test_out_of_bounds_read_reads_nan_or_is_reported():
    result, out = selftest("out_of_bounds_read")
    if SANITIZED:
        assert "ERROR: AddressSanitizer" in out, out
    else:
        assert result is not None and np.isnan(result["read"]), out


@pytest.mark.parametrize("name", ["uninitialized_global", "uninitialized_shared"])
def test_uninitialized_memory_reads_as_nan(name):
    result, out = selftest(name)
    assert result is not None, out
    assert all(np.isnan(v) for v in result.values()), out


def test_use_of_a_tensor_freed_into_the_cache_is_caught():
    result, out = selftest("use_after_release")
    if SANITIZED:
        assert "ERROR: AddressSanitizer: use-after-poison" in out, out
    else:
        assert result is not None and np.isnan(result["read"]), out


def test_misaligned_float4_access_faults():
    result, out = selftest("misaligned_float4")
    if SANITIZED:  # UBSan sees the misaligned reference first
        assert "misaligned address" in out and "float4" in out, out
    else:
        assert result is None and "cudaErrorMisalignedAddress" in out and "address % 16 = 4" in out, out


# ---- stream order ----------------------------------------------------------------------------------------------

def test_missing_stream_wait_changes_the_result():
    with_wait, out = selftest("stream_wait")
    assert with_wait == {"seen": 2.0}, out
    without, out = selftest("missing_stream_wait")
    assert without == {"seen": 1.0}, out  # the copy ran before the producer's kernel: the worst legal order


def test_memory_reused_on_another_stream_too_early_changes_the_result():
    """A buffer overwritten on a second stream while the first stream's queued copy still reads it."""
    ordered, out = selftest("reuse_after_reader")
    assert ordered == {"copied": 5.0}, out
    early, out = selftest("reuse_before_reader")
    assert early == {"copied": 0.0}, out  # the overwrite ran first: the worst legal order


# ---- settings: SM count (the GEMM planner), capacity (out of memory), index limit (chunked launches) ------------

LINEAR = """
import json, numpy as np, alexnet_cuda
from alexnet_cuda import _C, ops
rng = np.random.default_rng(0)
x = rng.standard_normal((128, 256)).astype(np.float32); w = rng.standard_normal((512, 256)).astype(np.float32)
y = np.asarray(ops.linear_forward(x, w, None, device='cuda'))
ref = np.asarray(ops.linear_forward(x, w, None, device='cpu'))
print(json.dumps({'err': float(np.abs(y - ref).max()), 'kernels': _C.emulator_stats()['by_kernel']}))
"""


@pytest.mark.parametrize("sms, split", [("1", False), ("132", True)])
def test_sm_count_steers_the_gemm_planner(sms, split):
    """The same product runs as one pass on a 1-SM device and split over K (plus the reduction) on 132 SMs."""
    r = run_python(LINEAR, AXEMU_SMS=sms)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.splitlines()[-1])
    assert result["err"] < 1e-3
    assert any(k.startswith("splitk_reduce_kernel") for k in result["kernels"]) == split, result


def test_out_of_device_memory_is_a_memory_error():
    r = run_python("import numpy as np, alexnet_cuda\n"
                   "try:\n"
                   "    alexnet_cuda.tensor(np.zeros(16 << 20, np.float32), 'cuda')\n"
                   "except MemoryError as e:\n"
                   "    print('MemoryError', e)\n", AXEMU_MEMORY_MB="32")
    assert "MemoryError" in r.stdout and "out of memory" in r.stdout, r.stdout + r.stderr


def test_chunked_convolution_launches_agree_with_the_cpu():
    code = """
import numpy as np, alexnet_cuda
from alexnet_cuda import ops
rng = np.random.default_rng(1)
x = rng.standard_normal((5, 4, 9, 9)).astype(np.float32); w = rng.standard_normal((6, 2, 3, 3)).astype(np.float32)
dy = rng.standard_normal((5, 6, 9, 9)).astype(np.float32)
for dev in ('cuda', 'cpu'):
    y = np.asarray(ops.conv2d_forward(x, w, None, stride=1, padding=1, groups=2, device=dev))
    dx = np.asarray(ops.conv2d_backward_input(dy, w, (9, 9), stride=1, padding=1, groups=2, device=dev))
    dw = np.asarray(ops.conv2d_backward_weight(x, dy, (3, 3), stride=1, padding=1, groups=2, device=dev))
    if dev == 'cuda':
        got = (y, dx, dw)
for a, b in zip(got, (y, dx, dw)):
    assert np.abs(a - b).max() < 1e-3 * max(1.0, np.abs(b).max()), np.abs(a - b).max()
print('ok')
"""
    r = run_python(code, ALEXNET_CUDA_INDEX_LIMIT="1000")  # 4*81*... per image: one or two images per launch
    assert r.returncode == 0 and "ok" in r.stdout, r.stdout + r.stderr


# ---- the caching allocator -----------------------------------------------------------------------------------

def test_destroyed_networks_leave_no_cached_blocks_behind():
    """A Network's streams die with it; blocks cached under them could never be reused (reserved memory grew by
    megabytes per Network created and destroyed)."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
    labels = np.arange(4, dtype=np.int32) % 10
    reserved = []
    for _ in range(3):
        net = alexnet_cuda.AlexNet(num_classes=10, arch="alexnet-small", devices=["cuda:0", "cuda:0"],
                                   widths={"conv": [8, 16, 16, 16, 8], "fc": [32, 32]})
        net.train_step(images, labels, lr=0.01)
        del net
        gc.collect()
        alexnet_cuda.synchronize("cuda:0")
        reserved.append(alexnet_cuda.memory_stats("cuda:0")["reserved"])
    assert reserved[2] <= reserved[1], reserved


# ---- opt-in: 'auto' never picks an emulated device -----------------------------------------------------------

def test_auto_never_picks_an_emulated_device():
    from alexnet_cuda import model, runtime

    assert alexnet_cuda.visible_gpus() == 2 and alexnet_cuda.visible_gpus(emulated=False) == 0
    assert model.resolve_devices("auto") == ["cpu", "cpu"]
    assert runtime.resolve_devices("auto", None) == ["cpu", "cpu"]
    assert runtime.resolve_devices("cuda", None) == ["cuda:0", "cuda:1"]
    assert INFO["gpus"][0].startswith("Emulated CUDA device")


def test_train_cli_on_the_emulated_device(tmp_path):
    env = dict(os.environ, **EMULATED_ENV, OMP_NUM_THREADS="2")
    args = ["--synthetic-images", "24", "--batch-size", "8", "--stats-images", "8", "--workers", "0", "--epochs",
            "1", "--no-progress", "--device", "cuda", "--out", str(tmp_path / "run")]
    r = subprocess.run([sys.executable, "-m", "alexnet_cuda.train", *args], env=env, capture_output=True, text=True,
                       timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "epoch 1/1" in r.stdout and (tmp_path / "run" / "best.npz").exists()
    assert "emulated" in r.stdout.lower()
