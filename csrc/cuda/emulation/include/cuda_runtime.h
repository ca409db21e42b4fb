// The emulated device's stand-in for CUDA's <cuda_runtime.h>. The emulated build (CMake option
// ALEXNET_CUDA_EMULATION) compiles the very same csrc/cuda sources with the host C++ compiler; this header gives
// them the CUDA types, the runtime API (emulation/api.cpp), the kernel-side built-ins (threadIdx, __syncthreads,
// warp shuffles, atomics: emulation/device.h) and the launch helper that the build-time rewrite of `<<<...>>>`
// calls (emulation/launch.h). Nothing here is used by the real CUDA build.
#pragma once

#include "../types.h"
#include "../api.h"
#include "../device.h"
#include "../launch.h"
