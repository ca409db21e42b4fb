// Error checking for every CUDA call and kernel launch. A failure throws std::runtime_error (Python's
// RuntimeError) naming the call site's op and CUDA's error string.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "common.h"

namespace alexnet::cuda {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* what, const char* file, int line) {
  throw std::runtime_error(str_cat(what, " failed: ", cudaGetErrorName(err), " (", cudaGetErrorString(err), ") at ",
                                   file, ":", line));
}

}  // namespace alexnet::cuda

// AX_CUDA_CHECK(cudaMemcpyAsync(...)): throws on any error return.
#define AX_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    cudaError_t ax_err_ = (call);                                                        \
    if (ax_err_ != cudaSuccess) ::alexnet::cuda::throw_cuda_error(ax_err_, #call, __FILE__, __LINE__); \
  } while (0)

// After every kernel<<<...>>>: catches bad launch configurations at once. Asynchronous faults surface at the next
// synchronizing call, which is checked too.
#define AX_CUDA_CHECK_LAUNCH(op_name)                                                    \
  do {                                                                                   \
    cudaError_t ax_err_ = cudaGetLastError();                                            \
    if (ax_err_ != cudaSuccess) ::alexnet::cuda::throw_cuda_error(ax_err_, op_name " kernel launch", __FILE__, __LINE__); \
  } while (0)

namespace alexnet::cuda {
// Blocks of `threads` to cover `count` items, capped so huge tensors use a grid-stride loop.
inline unsigned grid_for(int64_t count, int threads, int64_t max_blocks = 65535LL * 16) {
  int64_t blocks = (count + threads - 1) / threads;
  if (blocks < 1) blocks = 1;
  if (blocks > max_blocks) blocks = max_blocks;
  return static_cast<unsigned>(blocks);
}
// The grid-stride loop over a grid_for launch, for (int64_t i = grid_first(); i < count; i += grid_step()): the
// calling thread's first item and the whole grid's width.
__device__ inline int64_t grid_first() { return blockIdx.x * (int64_t)blockDim.x + threadIdx.x; }
__device__ inline int64_t grid_step() { return (int64_t)gridDim.x * blockDim.x; }
}  // namespace alexnet::cuda
