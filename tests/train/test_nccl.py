"""The NCCL gradient path (csrc/nccl.h, alexnet_cuda/train/distributed.py) as far as it runs without GPUs: the library
search and its errors, and, with a fake libnccl (tests/fake_nccl.c, one rank, logging every call), the reducer's
communicators and the order in which backward starts the reductions (fc8 first, conv1 last), on the CPU build and
on the emulated CUDA device. Real NCCL on real GPUs is not tested here (docs/distributed.md).

Each check runs in a child process: a loaded libnccl stays loaded for the process.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from subprocesses import module_env

FAKE_SOURCE = Path(__file__).resolve().parents[1] / "fake_nccl.c"


def run_child(code: str, env_extra: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in module_env().items() if not k.startswith(("PMI_", "OMPI_", "PMIX_"))}
    env["OMP_NUM_THREADS"] = "1"  # a tiny net: threads only wait for each other on a busy machine
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def fake_nccl(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the fake libnccl")
    lib = tmp_path_factory.mktemp("nccl") / "libnccl.so.2"
    subprocess.run([cc, "-shared", "-fPIC", "-O1", "-o", str(lib), str(FAKE_SOURCE)], check=True, timeout=60)
    return lib


def test_missing_library_is_a_clear_error(tmp_path):
    missing = tmp_path / "nowhere" / "libnccl.so.2"
    out = run_child("from alexnet_cuda.train import distributed\ndistributed.load_nccl()",
                    {"ALEXNET_NCCL_LIBRARY": str(missing)})
    assert out.returncode != 0
    assert f"NCCL not found: NCCL: cannot load {missing}" in out.stderr
    assert "pip install nvidia-nccl-cu12" in out.stderr


def test_a_library_that_is_not_nccl_is_refused():
    out = run_child("from alexnet_cuda.train import distributed\ndistributed.load_nccl()",
                    {"ALEXNET_NCCL_LIBRARY": "libm.so.6"})
    assert out.returncode != 0 and "libm.so.6 has no symbol ncclGetVersion" in out.stderr


def test_search_order_wheel_then_loader_path():
    from alexnet_cuda.train import distributed

    assert distributed.nccl_candidates({"ALEXNET_NCCL_LIBRARY": "/x/libnccl.so.2"}) == ["/x/libnccl.so.2"]
    assert distributed.nccl_candidates({})[-2:] == ["libnccl.so.2", "libnccl.so"]


# Two identical tiny nets: one with the NCCL reducer (fake, one rank: the average is the gradient itself), one
# without. Prints the reducer's result: equal weights, and the log.
REDUCER_CHECK = """
import json, sys
import numpy as np
from alexnet_cuda import AlexNet, _C
from alexnet_cuda.train import distributed
device = sys.argv[1] if len(sys.argv) > 1 else "cpu"
path = distributed.load_nccl()
def net():
    n = AlexNet(num_classes=10, arch="alexnet-small", input_size=32, devices=[device, device], seed=4,
                widths={"conv": [8, 16, 16, 16, 16], "fc": [32, 32]})
    n.set_normalization(np.full(3, 120, np.float32), 0.02)
    return n
a, b = net(), net()
b._net.use_nccl([_C.nccl_unique_id()] * b.towers, 0, 1)
rng = np.random.default_rng(0)
for _ in range(2):
    x = rng.integers(0, 256, (4, 36, 36, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 4).astype(np.int32)
    a.train_step(x, y, 0.05)
    b.train_step(x, y, 0.05)
equal = all(np.array_equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
sizes = {k: int(v.size) for k, v in a.state_dict().items()}
print(json.dumps({"version": _C.nccl_version(), "path": path, "equal": equal, "sizes": sizes}))
"""


def expected_order(sizes: dict[str, int]) -> list[tuple[int, int]]:
    """(communicator, count) of every reduction of one step, in the order backward produces the gradients:
    layer by layer from fc8 to conv1, tower 0 then tower 1 within a layer (each tower's communicator sees its own
    tower's layers in backward order, the same on every rank)."""
    def layer(name: str) -> tuple[str, int]:
        kind, index = name.split(".")[:2]
        return kind, int(index)

    fcs = sorted({layer(n)[1] for n in sizes if n.startswith("classifier.")}, reverse=True)
    convs = sorted({layer(n)[1] for n in sizes if n.startswith("features.")}, reverse=True)

    def grads(kind: str, index: int, t: int) -> list[tuple[int, int]]:
        return [(t + 1, sizes[f"{kind}.{index}.tower{t}.{p}"]) for p in ("weight", "bias")]

    order = [g for i in fcs for t in (0, 1) for g in grads("classifier", i, t)]
    order += [g for i in convs for t in (0, 1) for g in grads("features", i, t)]
    return order


def check_reducer(fake_nccl: Path, tmp_path: Path, env: dict[str, str], device: str) -> None:
    log = tmp_path / "nccl.log"
    out = run_child(REDUCER_CHECK, {"ALEXNET_NCCL_LIBRARY": str(fake_nccl), "FAKE_NCCL_LOG": str(log), **env}, device)
    assert out.returncode == 0, out.stderr[-3000:]
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["version"] == "2.21.5" and r["path"] == str(fake_nccl)
    assert r["equal"], "one rank's NCCL average changed the weights"
    lines = [line.split() for line in log.read_text().splitlines()]
    assert [x[0] for x in lines[:2]] == ["init", "init"]  # a communicator per tower
    calls = [(int(x[1]), int(x[2])) for x in lines[2:]]
    step = expected_order(r["sizes"])
    assert calls == step + step  # two steps, each reduction once, fully connected layers first


def test_reductions_start_layer_by_layer_fc_first(fake_nccl, tmp_path):
    check_reducer(fake_nccl, tmp_path, {}, "cpu")


def test_reducer_on_the_emulated_cuda_device(fake_nccl, tmp_path):
    """The same on the emulated CUDA device: the reductions are issued with the towers' streams."""
    import alexnet_cuda

    # Not imported here: the child imports it (ALEXNET_CUDA_EMULATED=1); both modules in one process would clash.
    if not list(Path(alexnet_cuda.__file__).parent.glob("_C_emulated.*")):
        pytest.skip("the emulated CUDA device is not built (tools/emulation_build.sh)")
    if os.environ.get("ALEXNET_CUDA_EMULATED") == "asan":
        pytest.skip("not under the sanitizer pass: its LD_PRELOAD would instrument the C compiler too")
    check_reducer(fake_nccl, tmp_path, {"ALEXNET_CUDA_EMULATED": "1", "AXEMU_STREAMS": "eager"}, "cuda:0")
