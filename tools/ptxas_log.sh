#!/usr/bin/env bash
# CUDA compiler launcher of a build configured with -DALEXNET_PTXAS_LOG=ON (CMakeLists.txt): runs the nvcc command
# it is given with -Xptxas=-v, keeps ptxas's report in DIR/<source>.ptxas.log and the PTX (whose .maxntid and
# .minnctapersm are the launch bounds) in DIR/<source stem>/, and passes every other line of nvcc's output through.
# benchmarks/kernel_resources.py --from-build reads them (issue 22: CI checks the package build's own ptxas
# output for spills instead of compiling every kernel a second time).
#   tools/ptxas_log.sh DIR nvcc ARGS...
set -uo pipefail
dir=$1
shift
src=""
for arg in "$@"; do
  if [[ $arg == *.cu ]]; then src=$arg; fi
done
if [[ -z $src ]]; then exec "$@"; fi
name=$(basename "$src")
keep="$dir/${name%.cu}"
rm -rf "$keep"
mkdir -p "$keep"
"$@" -Xptxas=-v --keep --keep-dir="$keep" >"$dir/$name.ptxas.log" 2>&1
status=$?
grep -v -e '^ptxas info' -e '^    [0-9]* bytes stack frame' "$dir/$name.ptxas.log" >&2
find "$keep" -type f ! -name '*.ptx' -delete  # --keep also leaves the host-side intermediates (tens of MB)
exit $status
