// sgd: the paper's momentum + weight-decay update (Section 5), in place; the maths is in cpu/sgd.cpp.
// Purely memory-bound (3 loads, 2 stores per weight), so the body moves float4s when all three pointers are
// 16-byte aligned, then finishes the last count % 4 weights one by one; unaligned pointers take the scalar path.
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ void sgd_step(float lr, float momentum, float decay_lr, float& w, float& v, float dw) {
  v = momentum * v - decay_lr * w - lr * dw;
  w += v;
}

// Vectorized body: elements [0, 4 * vec_count) as float4.
__global__ void sgd_update_vec4_kernel(int64_t vec_count, float lr, float momentum, float decay_lr,
                                       float4* __restrict__ w, float4* __restrict__ v, const float4* __restrict__ dw) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < vec_count; i += stride) {
    float4 wi = w[i], vi = v[i];
    const float4 gi = dw[i];
    sgd_step(lr, momentum, decay_lr, wi.x, vi.x, gi.x);
    sgd_step(lr, momentum, decay_lr, wi.y, vi.y, gi.y);
    sgd_step(lr, momentum, decay_lr, wi.z, vi.z, gi.z);
    sgd_step(lr, momentum, decay_lr, wi.w, vi.w, gi.w);
    w[i] = wi;
    v[i] = vi;
  }
}

// Scalar path: elements [begin, count).
__global__ void sgd_update_scalar_kernel(int64_t begin, int64_t count, float lr, float momentum, float decay_lr,
                                         float* __restrict__ w, float* __restrict__ v, const float* __restrict__ dw) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = begin + static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    float wi = w[i], vi = v[i];
    sgd_step(lr, momentum, decay_lr, wi, vi, dw[i]);
    w[i] = wi;
    v[i] = vi;
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void sgd_update(int64_t count, float lr, float momentum, float weight_decay, float* w, float* v, const float* dw,
                cudaStream_t stream) {
  if (count <= 0) return;
  const float decay_lr = weight_decay * lr;  // the same float expression as the CPU backend
  int64_t scalar_begin = 0;
  if (aligned16(w) && aligned16(v) && aligned16(dw)) {
    const int64_t vec_count = count / 4;
    if (vec_count > 0) {
      sgd_update_vec4_kernel<<<grid_for(vec_count, kThreads), kThreads, 0, stream>>>(
          vec_count, lr, momentum, decay_lr, reinterpret_cast<float4*>(w), reinterpret_cast<float4*>(v),
          reinterpret_cast<const float4*>(dw));
      AX_CUDA_CHECK_LAUNCH("sgd_update");
    }
    scalar_begin = 4 * vec_count;
  }
  if (scalar_begin < count) {
    sgd_update_scalar_kernel<<<grid_for(count - scalar_begin, kThreads), kThreads, 0, stream>>>(
        scalar_begin, count, lr, momentum, decay_lr, w, v, dw);
    AX_CUDA_CHECK_LAUNCH("sgd_update (tail)");
  }
}

}  // namespace alexnet::cuda
