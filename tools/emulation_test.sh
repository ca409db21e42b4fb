#!/usr/bin/env bash
# Runs pytest on the emulated CUDA device (build it first with tools/emulation_build.sh). Arguments go to pytest.
#   tools/emulation_test.sh                      # the whole suite: CUDA tests run on the emulated devices
#   SANITIZERS=1 tools/emulation_test.sh tests/ops/test_conv2d.py
#       the AddressSanitizer + UBSan build (_C_emulated_asan, from SANITIZERS=1 tools/emulation_build.sh), with
#       the sanitizer runtimes preloaded into Python; any report aborts the run
set -euo pipefail
cd "$(dirname "$0")/.."
export ALEXNET_CUDA_EMULATED=1
if [[ ${SANITIZERS:-0} == 1 ]]; then
  export ALEXNET_CUDA_EMULATED=asan  # alexnet_cuda._C_emulated_asan
  cxx=${CXX:-g++}
  export LD_PRELOAD="$($cxx -print-file-name=libasan.so) $($cxx -print-file-name=libubsan.so)"
  # Python itself leaks by design at exit; fibers switch stacks (annotated), so no fake stacks.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:detect_stack_use_after_return=0:abort_on_error=1:halt_on_error=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  python -c "import alexnet_cuda, sys; info = alexnet_cuda.build_info(); \
sys.exit(0 if 'AddressSanitizer' in info.get('emulator', '') else 'not the sanitizer build')"
fi
exec python -m pytest "$@"
