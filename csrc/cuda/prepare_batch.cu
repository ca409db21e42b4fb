// prepare_batch on the GPU: uint8 NHWC images -> float NCHW crops with mean subtraction, crop, mirror and the
// per-image PCA colour shift and a per-channel scale; the maths and the paper's sections are in cpu/prepare_batch.cpp.
//
// One thread per output pixel (image i, row y, column x) computes its three channels. Consecutive threads take
// consecutive x, so each of the three channel-plane writes is coalesced (the output is 12 of every 15 bytes moved);
// the input reads are 3 contiguous bytes per thread, also contiguous across a warp (reversed when mirrored).
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {
namespace {

constexpr int kThreads = 256;

template <bool kPerPixelMean>
__global__ void prepare_batch_kernel(BatchShape s, const uint8_t* __restrict__ images, const float* __restrict__ mean,
                                     const int32_t* __restrict__ crop_y, const int32_t* __restrict__ crop_x,
                                     const int32_t* __restrict__ flip, const float* __restrict__ rgb_shift,
                                     ChannelScale scale, float* __restrict__ out) {
  const int crop = s.crop;
  const int64_t plane = static_cast<int64_t>(crop) * crop;
  const int64_t mean_plane = static_cast<int64_t>(s.h_in) * s.w_in;
  const int64_t total = static_cast<int64_t>(s.n) * plane;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t i = idx / plane;
    const int64_t pixel = idx - i * plane;  // y * crop + x
    const int y = static_cast<int>(pixel / crop);
    const int x = static_cast<int>(pixel - static_cast<int64_t>(y) * crop);
    const int sy = crop_y[i] + y;
    const int sx = crop_x[i] + (flip[i] ? crop - 1 - x : x);
    const int64_t src_pixel = static_cast<int64_t>(sy) * s.w_in + sx;
    const uint8_t* src = images + (i * mean_plane + src_pixel) * 3;
    float* dst = out + i * 3 * plane + pixel;
#pragma unroll
    for (int c = 0; c < 3; ++c) {
      const float m = kPerPixelMean ? mean[c * mean_plane + src_pixel] : mean[c];
      dst[c * plane] = (static_cast<float>(src[c]) - m + rgb_shift[i * 3 + c]) * scale.c[c];
    }
  }
}

}  // namespace

void prepare_batch(const BatchShape& s, const uint8_t* images, const float* mean, const int32_t* crop_y,
                   const int32_t* crop_x, const int32_t* flip, const float* rgb_shift, ChannelScale scale, float* out,
                   cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(s.n) * s.crop * s.crop;
  if (total <= 0) return;
  const unsigned grid = grid_for(total, kThreads);
  if (s.per_pixel_mean) {
    prepare_batch_kernel<true><<<grid, kThreads, 0, stream>>>(s, images, mean, crop_y, crop_x, flip, rgb_shift,
                                                              scale, out);
  } else {
    prepare_batch_kernel<false><<<grid, kThreads, 0, stream>>>(s, images, mean, crop_y, crop_x, flip, rgb_shift,
                                                               scale, out);
  }
  AX_CUDA_CHECK_LAUNCH("prepare_batch");
}

}  // namespace alexnet::cuda
