#!/usr/bin/env bash
# Builds alexnet_cuda._C_emulated, the CUDA backend on emulated devices (README: "The emulated CUDA device"), into
# build/emulated and copies it next to the sources. Use it with ALEXNET_CUDA_EMULATED=1, e.g.
#   tools/emulation_build.sh && ALEXNET_CUDA_EMULATED=1 pytest
#   SANITIZERS=1 tools/emulation_build.sh      # AddressSanitizer + UBSan (then run python with libasan preloaded:
#                                              # tools/emulation_test.sh does it)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${SANITIZERS:-0} == 1 ]]; then sanitizers=ON suffix=-asan; else sanitizers=OFF suffix=; fi
build=${BUILD_DIR:-build/emulated$suffix}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DALEXNET_BUILD_MAIN=OFF -DALEXNET_CUDA=OFF \
  -DALEXNET_CUDA_EMULATION=ON -DALEXNET_EMULATION_SANITIZERS=$sanitizers \
  -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
echo "built $(ls alexnet_cuda/_C_emulated*.so)"
