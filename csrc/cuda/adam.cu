// Adam (Kingma & Ba 2015, Algorithm 1) / AdamW (Loshchilov & Hutter 2019): one fused kernel per tensor, in place;
// the per-element maths is adam::step (csrc/adam.h), the same code the CPU runs, with the per-tensor bias
// corrections computed once on the host. Memory-bound: 4 loads and 3 stores per weight, coalesced grid-stride.
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    adam_update_kernel(int64_t count, adam::StepCoefficients k, float* __restrict__ w, float* __restrict__ m,
                       float* __restrict__ v, const float* __restrict__ dw) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += stride) {
    float wi = w[i], mi = m[i], vi = v[i];
    adam::step(k, wi, mi, vi, __ldg(dw + i));
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
  }
}

}  // namespace

void adam_update(int64_t count, const adam::StepCoefficients& k, float* w, float* m, float* v, const float* dw,
                 cudaStream_t stream) {
  if (count <= 0) return;
  adam_update_kernel<<<grid_for(count, kThreads), kThreads, 0, stream>>>(count, k, w, m, v, dw);
  AX_CUDA_CHECK_LAUNCH("adam_update");
}

}  // namespace alexnet::cuda
