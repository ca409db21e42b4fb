// dropout (paper Section 4.2), inverted, on the GPU: the same Philox stream as the CPU backend (philox.h), bit for
// bit. Each thread handles one block of 4 consecutive elements, which is exactly what one Philox-4x32 call yields,
// and moves them as one float4 when the pointers are 16-byte aligned (the tail block and unaligned pointers go
// element by element). The mask is never stored: backward regenerates it from (seed, offset).
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "philox.h"

namespace alexnet::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float keep_or_zero(float u, float p, float v, float scale) {
  return u >= p ? v * scale : 0.0f;  // a select: a dropped inf/NaN gives 0, as on the CPU
}

template <bool kAligned>
__global__ void dropout_mask_kernel(int64_t count, float p, float scale, uint64_t seed, uint64_t offset,
                                    const float* __restrict__ x, float* __restrict__ y) {
  const int64_t blocks = (count + 3) / 4;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t block = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; block < blocks;
       block += stride) {
    float u[4];
    philox_uniform4(seed, offset, static_cast<uint64_t>(block), u);
    const int64_t base = 4 * block;
    if (kAligned && base + 4 <= count) {
      float4 v = reinterpret_cast<const float4*>(x)[block];
      v.x = keep_or_zero(u[0], p, v.x, scale);
      v.y = keep_or_zero(u[1], p, v.y, scale);
      v.z = keep_or_zero(u[2], p, v.z, scale);
      v.w = keep_or_zero(u[3], p, v.w, scale);
      reinterpret_cast<float4*>(y)[block] = v;
    } else {
      for (int lane = 0; lane < 4; ++lane) {
        if (base + lane < count) y[base + lane] = keep_or_zero(u[lane], p, x[base + lane], scale);
      }
    }
  }
}

void apply_dropout_mask(int64_t count, float p, uint64_t seed, uint64_t offset, const float* x, float* y,
                        cudaStream_t stream) {
  if (count <= 0) return;
  const float scale = 1.0f / (1.0f - p);  // the same float expression as the CPU backend
  const unsigned grid = grid_for((count + 3) / 4, kThreads);
  const bool aligned = (reinterpret_cast<uintptr_t>(x) % 16 == 0) && (reinterpret_cast<uintptr_t>(y) % 16 == 0);
  if (aligned) {
    dropout_mask_kernel<true><<<grid, kThreads, 0, stream>>>(count, p, scale, seed, offset, x, y);
  } else {
    dropout_mask_kernel<false><<<grid, kThreads, 0, stream>>>(count, p, scale, seed, offset, x, y);
  }
  AX_CUDA_CHECK_LAUNCH("dropout");
}

}  // namespace

void dropout_forward(int64_t count, float p, uint64_t seed, uint64_t offset, const float* x, float* y,
                     cudaStream_t stream) {
  apply_dropout_mask(count, p, seed, offset, x, y, stream);
}

void dropout_backward(int64_t count, float p, uint64_t seed, uint64_t offset, const float* dy, float* dx,
                      cudaStream_t stream) {
  apply_dropout_mask(count, p, seed, offset, dy, dx, stream);
}

}  // namespace alexnet::cuda
