#!/usr/bin/env bash
# Builds alexnet_cuda._C_emulated, the CUDA backend on emulated devices (docs/emulator.md), into
# build/emulated and copies it next to the sources. Use it with ALEXNET_CUDA_EMULATED=1, e.g.
#   tools/emulation_build.sh && tools/emulation_test.sh
#   SANITIZERS=1 tools/emulation_build.sh      # also _C_emulated_asan: AddressSanitizer + UBSan (run it with
#                                              # SANITIZERS=1 tools/emulation_test.sh, which preloads libasan)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${SANITIZERS:-0} == 1 ]]; then sanitizers=ON target=_C_emulated_asan; else sanitizers=OFF target=_C_emulated; fi
build=${BUILD_DIR:-build/emulated}
# RelWithDebInfo without extra flags (the targets set -O2/-O1 and -g1): unlike Release, pybind11 does not strip
# the module, so sanitizer reports name functions and lines.
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-DNDEBUG \
  -DALEXNET_BUILD_MAIN=OFF -DALEXNET_CUDA=OFF -DALEXNET_CUDA_EMULATION=ON -DALEXNET_EMULATION_SANITIZERS=$sanitizers \
  -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')" \
  -DPython_EXECUTABLE="$(command -v python3)" >/dev/null
cmake --build "$build" -j "${JOBS:-2}" --target "$target"
echo "built $(ls alexnet_cuda/$target.*so)"
