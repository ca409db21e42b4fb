// bias_backward on the GPU: db[c] = sum over images and positions of dy[img][c][:], for conv2d (dy planes) and
// the fully connected layers (spatial = 1). Deterministic: fixed-order per-thread sums and shared-memory trees, and
// chunk partials added in a fixed order; no float atomics.
#include <algorithm>
#include <climits>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/gemm.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {
namespace {

// Bandwidth-bound (conv1: 74 MB of dy per tower, ~25 us at 3 TB/s). Faster: float4 loads where a plane is
// 16-byte aligned, or no separate pass at all (fused into backward-weight, which already reads dy).
constexpr int kBiasThreads = 256;

// Block (c, chunk) sums dy[img][c][:] over the images [chunk * per_chunk, ...): each thread a fixed strided subset
// in a fixed order, then a tree in shared memory. out[c * chunks + chunk] (partials, or db when chunks == 1).
__global__ void __launch_bounds__(kBiasThreads)
    bias_backward_planes_kernel(int n, int c, int64_t spatial, int images_per_chunk, int chunks,
                                const float* __restrict__ dy, float* __restrict__ out) {
  __shared__ float partial[kBiasThreads];
  const int ch = blockIdx.x / chunks, chunk = blockIdx.x % chunks;
  const int img_begin = chunk * images_per_chunk, img_end = min(n, img_begin + images_per_chunk);
  float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // 4 independent chains: more loads in flight
  for (int img = img_begin; img < img_end; ++img) {
    const float* plane = dy + (static_cast<int64_t>(img) * c + ch) * spatial;
    int64_t s = threadIdx.x;
    for (; s + 3 * kBiasThreads < spatial; s += 4 * kBiasThreads) {
#pragma unroll
      for (int u = 0; u < 4; ++u) acc[u] += __ldg(plane + s + u * kBiasThreads);
    }
    for (; s < spatial; s += kBiasThreads) acc[0] += __ldg(plane + s);
  }
  partial[threadIdx.x] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  __syncthreads();
#pragma unroll
  for (int width = kBiasThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// db[c] = sum of the chunk partials of channel c, in chunk order.
__global__ void bias_backward_chunks_kernel(int c, int chunks, const float* __restrict__ partial,
                                            float* __restrict__ db) {
  const int ch = blockIdx.x * blockDim.x + threadIdx.x;
  if (ch >= c) return;
  float sum = 0.0f;
  for (int j = 0; j < chunks; ++j) sum += partial[static_cast<int64_t>(ch) * chunks + j];
  db[ch] = sum;
}

// Small planes (the linear layer: spatial = 1): a block covers 32 channels x 8 row groups, so a warp reads 32
// consecutive channels (coalesced); row group ty sums rows ty, ty + 8, ...; a tree over ty in shared memory.
constexpr int kColumnsX = 32, kColumnsY = 8;
__global__ void __launch_bounds__(kColumnsX * kColumnsY)
    bias_backward_columns_kernel(int n, int c, int64_t spatial, const float* __restrict__ dy, float* __restrict__ db) {
  __shared__ float partial[kColumnsY][kColumnsX + 1];
  const int ch = blockIdx.x * kColumnsX + threadIdx.x;
  float acc = 0.0f;
  if (ch < c) {
    // Row e = (img, s) walks as a pair: a 64-bit e / spatial per element is a call on sm_90 that made ptxas spill
    // (issue 22); spatial < 32 here, so the carry from s into img is one 32-bit division.
    const int sp = static_cast<int>(spatial);
    int64_t img = threadIdx.y / sp;
    int s = threadIdx.y % sp;
    while (img < n) {
      acc += __ldg(dy + (img * c + ch) * sp + s);
      s += kColumnsY;
      const int carry = s / sp;
      img += carry;
      s -= carry * sp;
    }
  }
  partial[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
#pragma unroll
  for (int width = kColumnsY / 2; width > 0; width /= 2) {
    if (threadIdx.y < width) partial[threadIdx.y][threadIdx.x] += partial[threadIdx.y + width][threadIdx.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && ch < c) db[ch] = partial[0][threadIdx.x];
}

}  // namespace

void bias_backward(int n, int c, int64_t spatial, const float* dy, float* db, cudaStream_t stream) {
  if (c == 0) return;
  if (n == 0 || spatial == 0) {
    AX_CUDA_CHECK(cudaMemsetAsync(db, 0, sizeof(float) * static_cast<size_t>(c), stream));
    return;
  }
  if (spatial < 32) {
    dim3 block(kColumnsX, kColumnsY);
    bias_backward_columns_kernel<<<(c + kColumnsX - 1) / kColumnsX, block, 0, stream>>>(n, c, spatial, dy, db);
    AX_CUDA_CHECK_LAUNCH("bias_backward");
    return;
  }
  // One block per (channel, image chunk). With few channels (conv1: 48) a block per channel would leave most SMs
  // idle on a bandwidth-bound sum, so images are chunked until there are ~4 blocks per SM; each chunk still has
  // >= ~16K elements so the partials stay small. The chunk partials are added in a fixed order.
  const int device = gemm::current_device();
  const int64_t want_blocks = 4 * static_cast<int64_t>(gemm::sm_count(device));
  int chunks = static_cast<int>(std::min<int64_t>(n, (want_blocks + c - 1) / c));
  chunks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(chunks, static_cast<int64_t>(n) * spatial / 16384)));
  const int per_chunk = (n + chunks - 1) / chunks;
  chunks = (n + per_chunk - 1) / per_chunk;  // no empty chunks
  AX_CHECK(static_cast<int64_t>(c) * chunks <= INT_MAX, "bias_backward: too many channels");
  if (chunks == 1) {
    bias_backward_planes_kernel<<<c, kBiasThreads, 0, stream>>>(n, c, spatial, per_chunk, 1, dy, db);
    AX_CUDA_CHECK_LAUNCH("bias_backward");
    return;
  }
  gemm::Scratch partial(device, stream, sizeof(float) * static_cast<size_t>(c) * chunks);
  bias_backward_planes_kernel<<<c * chunks, kBiasThreads, 0, stream>>>(n, c, spatial, per_chunk, chunks, dy,
                                                                       partial.get());
  AX_CUDA_CHECK_LAUNCH("bias_backward");
  bias_backward_chunks_kernel<<<(c + 255) / 256, 256, 0, stream>>>(c, chunks, partial.get(), db);
  AX_CUDA_CHECK_LAUNCH("bias_backward");
}

}  // namespace alexnet::cuda
