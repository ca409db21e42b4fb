#!/usr/bin/env bash
# Everything that needs a GPU, in one go (for a device machine: few, full calls):
#   1. build for this GPU's architecture only, install;
#   2. the op/network tests on CUDA;
#   3. compute-sanitizer memcheck over the op tests, racecheck over the shared-memory kernels;
#   4. the kernel, network and loader benchmarks (they write their own results files);
#   5. the kernel resource report for this GPU's architecture (benchmarks/kernel_resources.py: registers, spills,
#      occupancy per kernel) with each kernel's measured time beside them, from an Nsight Systems profile of the
#      kernel benchmark when nsys is installed (logs/kernel_resources.md).
# Logs go to benchmarks/results/gpu-verify-<gpu>/; when $OUT is set, benchmarks/results/ is also packed into
# $OUT/gpu-verify.tgz (unpack it over the checkout and commit the files the scripts wrote).
#   tools/gpu_verify.sh [--skip-build] [--quick]
set -uo pipefail
cd "$(dirname "$0")/.."
skip_build=0; quick=0
for a in "$@"; do
  case "$a" in
    --skip-build) skip_build=1 ;;
    --quick) quick=1 ;;
    *) echo "usage: $0 [--skip-build] [--quick]" >&2; exit 2 ;;
  esac
done
export PYTHONUNBUFFERED=1
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr ' /' '__')
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d '.')
logs=benchmarks/results/gpu-verify-${gpu:-unknown}
mkdir -p "$logs"
status=0
step() {  # step NAME COMMAND...: runs, logs to $logs/NAME.log, records pass/fail
  local name=$1; shift
  echo "== $name: $*" | tee -a "$logs/summary.txt"
  if "$@" >"$logs/$name.log" 2>&1; then echo "   pass" | tee -a "$logs/summary.txt"
  else echo "   FAIL (exit $?), see $logs/$name.log" | tee -a "$logs/summary.txt"; status=1; fi
  tail -5 "$logs/$name.log"
}
{ date -u +%FT%TZ; git rev-parse HEAD; nvidia-smi; } >"$logs/device.txt" 2>&1
: >"$logs/summary.txt"
if [[ $skip_build == 0 ]]; then
  step build pip install --no-build-isolation -v . -Ccmake.define.CMAKE_CUDA_ARCHITECTURES="${arch:-90}" \
    -Ccmake.define.ALEXNET_PTXAS_LOG=ON
fi
step pytest python -m pytest -ra -q tests
op_tests=$(ls tests/ops/test_{conv2d,local,linear,activation,lrn,maxpool,avgpool,spatial_lrn,dropout,softmax_xent,sgd,prepare_batch}.py)
step memcheck compute-sanitizer --tool memcheck --error-exitcode 1 python -m pytest -q -k cuda $op_tests
step racecheck compute-sanitizer --tool racecheck --error-exitcode 1 python -m pytest -q -k cuda \
  $(ls tests/ops/test_{conv2d,linear,lrn,softmax_xent}.py)
if [[ $quick == 0 ]]; then
  step bench-kernels python benchmarks/kernels.py --device cuda
  [[ -f benchmarks/network.py ]] && step bench-network python benchmarks/network.py --device cuda
  [[ -f benchmarks/loader.py ]] && step bench-loader python benchmarks/loader.py
fi
# Registers and occupancy beside measured time: the build's own ptxas logs (else a device-only compile), and the
# per-kernel times of one short kernel benchmark run under Nsight Systems (mangled names join the two exactly).
resources=(python benchmarks/kernel_resources.py --arch "${arch:-90}" --out "$logs")
if [[ $skip_build == 0 ]]; then resources+=(--from-build build); fi
if command -v nsys >/dev/null && [[ $quick == 0 ]]; then
  step nsys-kernels nsys profile --force-overwrite true -o "$logs/kernels" \
    python benchmarks/kernels.py --device cuda --no-torch --reps 3 --out "$logs/nsys-run"
  step nsys-stats nsys stats --force-overwrite true --report cuda_gpu_kern_sum:mangled --format csv \
    --output "$logs/kernels" "$logs/kernels.nsys-rep"
  csv=$(ls "$logs"/kernels*cuda_gpu_kern_sum*.csv 2>/dev/null | head -1)
  if [[ -n $csv ]]; then resources+=(--timings "$csv"); fi
else
  echo "   (no nsys, or --quick: the resource report has no measured times)" | tee -a "$logs/summary.txt"
fi
step kernel-resources "${resources[@]}"
if [[ -n "${OUT:-}" ]]; then  # the device tool brings back at most 8 files: one archive of logs and results
  tar czf "$OUT/gpu-verify.tgz" benchmarks/results && cp "$logs/summary.txt" "$OUT/"
fi
cat "$logs/summary.txt"
exit $status
