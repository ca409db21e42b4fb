// elementwise: the few generic element-wise ops the network's plumbing needs.
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {

__global__ void add_inplace_kernel(int64_t count, float* __restrict__ dst, const float* __restrict__ src) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < count; i += (int64_t)gridDim.x * blockDim.x)
    dst[i] += src[i];
}

void add_inplace(int64_t count, float* dst, const float* src, cudaStream_t stream) {
  if (count == 0) return;
  add_inplace_kernel<<<grid_for(count, 256), 256, 0, stream>>>(count, dst, src);
  AX_CUDA_CHECK_LAUNCH("add_inplace");
}

}  // namespace alexnet::cuda
