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

// Element i takes stream position first + i; the thread of Philox block b covers positions [4b, 4b + 4). kAligned:
// the pointers are 16-byte aligned and first % 4 == 0, so a whole block is one float4 of x and y.
template <bool kAligned>
__global__ void dropout_mask_kernel(int64_t count, float p, float scale, uint64_t seed, uint64_t offset,
                                    uint64_t first, const float* __restrict__ x, float* __restrict__ y) {
  const uint64_t begin = first / 4;
  const int64_t blocks = (static_cast<int64_t>(first % 4) + count + 3) / 4;  // no overflow at first near 2^64
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; b < blocks; b += stride) {
    float u[4];
    const uint64_t block = begin + static_cast<uint64_t>(b);
    philox_uniform4(seed, offset, block, u);
    const int64_t base = static_cast<int64_t>(4 * block) - static_cast<int64_t>(first);  // may be < 0 at b = 0
    if (kAligned && base + 4 <= count) {
      const int64_t v4 = base / 4;
      float4 v = reinterpret_cast<const float4*>(x)[v4];
      v.x = keep_or_zero(u[0], p, v.x, scale);
      v.y = keep_or_zero(u[1], p, v.y, scale);
      v.z = keep_or_zero(u[2], p, v.z, scale);
      v.w = keep_or_zero(u[3], p, v.w, scale);
      reinterpret_cast<float4*>(y)[v4] = v;
    } else {
      for (int lane = 0; lane < 4; ++lane) {
        const int64_t i = base + lane;
        if (i >= 0 && i < count) y[i] = keep_or_zero(u[lane], p, x[i], scale);
      }
    }
  }
}

void apply_dropout_mask(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* x,
                        float* y, cudaStream_t stream) {
  if (count <= 0) return;
  const float scale = 1.0f / (1.0f - p);  // the same float expression as the CPU backend
  const unsigned grid = grid_for((count + 3) / 4 + 1, kThreads);  // + 1: a first % 4 != 0 straddles one more block
  const bool aligned = (reinterpret_cast<uintptr_t>(x) % 16 == 0) && (reinterpret_cast<uintptr_t>(y) % 16 == 0) &&
                       first % 4 == 0;
  if (aligned) {
    dropout_mask_kernel<true><<<grid, kThreads, 0, stream>>>(count, p, scale, seed, offset, first, x, y);
  } else {
    dropout_mask_kernel<false><<<grid, kThreads, 0, stream>>>(count, p, scale, seed, offset, first, x, y);
  }
  AX_CUDA_CHECK_LAUNCH("dropout");
}

}  // namespace

void dropout_forward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* x,
                     float* y, cudaStream_t stream) {
  apply_dropout_mask(count, p, seed, offset, first, x, y, stream);
}

void dropout_backward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* dy,
                      float* dx, cudaStream_t stream) {
  apply_dropout_mask(count, p, seed, offset, first, dy, dx, stream);
}

}  // namespace alexnet::cuda
