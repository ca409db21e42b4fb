"""Running ``python -m alexnet_cuda.<command>`` from the tests, shared by the command-line tests.

Subprocesses import the same alexnet_cuda as the test (installed, or the source tree with PYTHONPATH=.), and run in a
temporary directory so that a source checkout without the compiled module is never picked up by accident."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import alexnet_cuda

PACKAGE_PARENT = str(Path(alexnet_cuda.__file__).resolve().parents[1])


def module_env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([PACKAGE_PARENT, os.environ.get("PYTHONPATH", "")]),
                OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))


def module_command(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def run_module(module: str, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(module_command(module, *args), cwd=cwd, env=module_env(), capture_output=True, text=True,
                          timeout=timeout)
