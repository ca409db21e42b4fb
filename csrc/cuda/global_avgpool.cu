// Global average pooling (Lin, Chen & Yan 2014, Network in Network, Section 3.2); contract in cpu/kernels.h.
// Forward: one warp per (image, channel) plane, grid-stride over planes; the lanes read the plane coalesced, each
// summing its strided share in double, then a fixed shuffle tree, so the mean agrees with the CPU's double sum.
// AlexNet's planes are small (conv5: 13x13 = 169, or 6x6 after the pool), so a warp per plane wastes little.
// Backward: one thread per element of dx, dy[plane] / spatial (the same float expression as the CPU).
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {

namespace {

constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kWarpsPerBlock = kThreads / kWarp;

__global__ void __launch_bounds__(kThreads)
    global_avgpool_forward_kernel(int64_t planes, int64_t spatial, const float* __restrict__ x, float* __restrict__ y) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t p = first; p < planes; p += stride) {  // warp-uniform: every shuffle sees all 32 lanes
    const float* plane = x + p * spatial;
    double sum = 0.0;
    for (int64_t s = lane; s < spatial; s += kWarp) sum += __ldg(plane + s);
    for (int delta = kWarp / 2; delta > 0; delta /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, delta);
    if (lane == 0) y[p] = static_cast<float>(sum / static_cast<double>(spatial));
  }
}

__global__ void global_avgpool_backward_kernel(int64_t total, int64_t spatial, float inv_spatial,
                                               const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    dx[i] = __ldg(dy + i / spatial) * inv_spatial;
  }
}

}  // namespace

void global_avgpool_forward(int n, int c, int64_t spatial, const float* x, float* y, cudaStream_t stream) {
  const int64_t planes = static_cast<int64_t>(n) * c;
  if (planes == 0) return;
  const unsigned blocks = grid_for(planes, kWarpsPerBlock);
  global_avgpool_forward_kernel<<<blocks, kThreads, 0, stream>>>(planes, spatial, x, y);
  AX_CUDA_CHECK_LAUNCH("global_avgpool_forward");
}

void global_avgpool_backward(int n, int c, int64_t spatial, const float* dy, float* dx, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(n) * c * spatial;
  if (total == 0) return;
  const float inv_spatial = static_cast<float>(1.0 / static_cast<double>(spatial));
  global_avgpool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, spatial, inv_spatial, dy,
                                                                                     dx);
  AX_CUDA_CHECK_LAUNCH("global_avgpool_backward");
}

}  // namespace alexnet::cuda
