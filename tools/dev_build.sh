#!/usr/bin/env bash
# Incremental in-place build for development: compiles alexnet_cuda._C into build/dev; the build copies it into
# alexnet_cuda/ (CMake option ALEXNET_COPY_TO_SOURCE), so `pytest` tests the working tree without reinstalling.
#   ALEXNET_CUDA=OFF tools/dev_build.sh     # CPU only (fast)
#   CUDA_ARCHS=90 tools/dev_build.sh         # one GPU architecture
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD_DIR:-build/dev}
args=(-S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DALEXNET_CUDA="${ALEXNET_CUDA:-AUTO}"
      -Dpybind11_DIR="$(python3 -c 'import pybind11; print(pybind11.get_cmake_dir())')"
      -DPython_EXECUTABLE="$(command -v python3)")
if [[ -n "${CUDA_ARCHS:-}" ]]; then args+=(-DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCHS"); fi
cmake "${args[@]}" >/dev/null
cmake --build "$build" -j "${JOBS:-2}"
echo "built $(ls alexnet_cuda/_C*.so)"
