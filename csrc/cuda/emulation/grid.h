// Running a whole launch: its blocks spread over the worker threads, under every configured thread schedule, with
// the results compared (a shared-memory or inter-block race makes them differ) and the memory it can reach
// checked for out-of-bounds writes afterwards.
#pragma once

#include "block.h"
#include "info.h"
#include "launch.h"

namespace axemu {

// Validates the configuration as cudaLaunchKernel does (grid and block limits, __launch_bounds__, pointer
// arguments); cudaSuccess or the error code with *detail.
cudaError_t check_launch(const KernelLaunch& launch, int device, std::string* detail);

// Runs the launch to completion on `device`; a Fault with code cudaSuccess when it ran cleanly.
Fault execute(const KernelLaunch& launch, int device);


}  // namespace axemu
