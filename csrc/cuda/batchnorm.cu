// Batch normalization (Ioffe & Szegedy 2015); maths in csrc/batchnorm.h, shared with cpu/batchnorm.cpp.
//
// One block per channel: the block walks the channel's n * spatial values (image by image, plane by plane) as one
// flat sequence, so small planes (conv5's 13x13, a fully connected layer's spatial = 1) still keep every thread busy.
// The statistics are double sums, per thread in a fixed strided order and then a fixed tree in shared memory, so
// they are deterministic and agree with the CPU's double sums far below float32 resolution; the mean is found
// first and the squared deviations summed in a second pass over the (L2-resident) channel, so a large mean with a
// small variance keeps its variance (batchnorm.h). A channel holds at most a few MB at AlexNet's shapes, and there
// are 96..384 channels (4096 features after a linear layer), enough blocks to fill the GPU.
//
// Known cost: with spatial = 1 neighbouring threads read values c floats apart (uncoalesced). The fc layers' BN
// moves only n * 4096 floats, so that is microseconds; a transposed scheme would pay off only for wide batches.
#include "batchnorm.h"
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {

namespace {

constexpr int kThreads = 256;

// Calls body(index) for each element of channel ch that this thread owns: flat elements e = threadIdx.x,
// + kThreads, ... of the channel's n * spatial, i.e. image e / spatial, position e % spatial, at index
// (image * c + ch) * spatial + position. The (image, position) pair advances by a fixed step instead of dividing
// for every element (a 64-bit division is dozens of instructions on a GPU).
template <typename Body>
__device__ __forceinline__ void for_each_owned(int n, int c, int64_t spatial, int ch, Body body) {
  const int64_t step_images = kThreads / spatial, step_positions = kThreads % spatial;
  int64_t image = threadIdx.x / spatial, position = threadIdx.x % spatial;
  while (image < n) {
    body((image * c + ch) * spatial + position);
    image += step_images;
    position += step_positions;
    if (position >= spatial) {
      position -= spatial;
      ++image;
    }
  }
}

// The block's sum of v, returned to every thread; partial is the block's kThreads doubles of shared memory.
__device__ double block_sum(double v, double* partial) {
  partial[threadIdx.x] = v;
  __syncthreads();
#pragma unroll
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  const double total = partial[0];
  __syncthreads();  // partial is reused by the next call
  return total;
}

// y = (x - mean) * scale + shift over the block's channel (the mean subtracted first, as on the CPU).
__device__ __forceinline__ void normalize_channel(int n, int c, int64_t spatial, int ch, float mean, float scale,
                                                  float shift, const float* __restrict__ x, float* __restrict__ y) {
  for_each_owned(n, c, spatial, ch, [&](int64_t i) { y[i] = (__ldg(x + i) - mean) * scale + shift; });
}

__global__ void __launch_bounds__(kThreads)
    batchnorm_forward_train_kernel(int n, int c, int64_t spatial, float momentum, float eps,
                                   const float* __restrict__ x, const float* __restrict__ gamma,
                                   const float* __restrict__ beta, float* __restrict__ running_mean,
                                   float* __restrict__ running_var, float* __restrict__ y,
                                   float* __restrict__ saved_mean, float* __restrict__ saved_invstd) {
  __shared__ double partial[kThreads];
  const int ch = blockIdx.x;
  const int64_t count = static_cast<int64_t>(n) * spatial;
  double sum = 0.0;
  for_each_owned(n, c, spatial, ch, [&](int64_t i) { sum += __ldg(x + i); });
  const double mean = block_sum(sum, partial) / static_cast<double>(count);
  double squares = 0.0;
  for_each_owned(n, c, spatial, ch, [&](int64_t i) {
    const double d = __ldg(x + i) - mean;
    squares += d * d;
  });
  const double var = block_sum(squares, partial) / static_cast<double>(count);
  const float mean_f = static_cast<float>(mean);
  const float invstd = static_cast<float>(batchnorm::inverse_std(var, eps));
  if (threadIdx.x == 0) {
    saved_mean[ch] = mean_f;
    saved_invstd[ch] = invstd;
    batchnorm::update_running(mean, var, count, momentum, running_mean[ch], running_var[ch]);
  }
  normalize_channel(n, c, spatial, ch, mean_f, gamma[ch] * invstd, beta[ch], x, y);
}

__global__ void __launch_bounds__(kThreads)
    batchnorm_forward_eval_kernel(int n, int c, int64_t spatial, float eps, const float* __restrict__ x,
                                  const float* __restrict__ gamma, const float* __restrict__ beta,
                                  const float* __restrict__ running_mean, const float* __restrict__ running_var,
                                  float* __restrict__ y) {
  const int ch = blockIdx.x;
  const float invstd = static_cast<float>(batchnorm::inverse_std(running_var[ch], eps));
  normalize_channel(n, c, spatial, ch, running_mean[ch], gamma[ch] * invstd, beta[ch], x, y);
}

__global__ void __launch_bounds__(kThreads)
    batchnorm_backward_kernel(int n, int c, int64_t spatial, const float* __restrict__ x,
                              const float* __restrict__ dy, const float* __restrict__ gamma,
                              const float* __restrict__ saved_mean, const float* __restrict__ saved_invstd,
                              float* __restrict__ dx, float* __restrict__ dgamma, float* __restrict__ dbeta) {
  __shared__ double partial[kThreads];
  const int ch = blockIdx.x;
  const int64_t count = static_cast<int64_t>(n) * spatial;
  const float mean = saved_mean[ch], invstd = saved_invstd[ch];
  double sum_dy = 0.0, sum_dy_xhat = 0.0;
  for_each_owned(n, c, spatial, ch, [&](int64_t i) {
    const float g = __ldg(dy + i);
    sum_dy += g;
    sum_dy_xhat += static_cast<double>(g) * ((__ldg(x + i) - mean) * invstd);
  });
  sum_dy = block_sum(sum_dy, partial);
  sum_dy_xhat = block_sum(sum_dy_xhat, partial);
  if (threadIdx.x == 0) {
    dbeta[ch] = static_cast<float>(sum_dy);
    dgamma[ch] = static_cast<float>(sum_dy_xhat);
  }
  const batchnorm::BackwardCoefficients k =
      batchnorm::backward_coefficients(gamma[ch], invstd, sum_dy, sum_dy_xhat, count);
  for_each_owned(n, c, spatial, ch, [&](int64_t i) {
    const float xhat = (__ldg(x + i) - mean) * invstd;
    dx[i] = k.dy_scale * __ldg(dy + i) + k.xhat_scale * xhat + k.shift;
  });
}

}  // namespace

void batchnorm_forward_train(int n, int c, int64_t spatial, float momentum, float eps, const float* x,
                             const float* gamma, const float* beta, float* running_mean, float* running_var, float* y,
                             float* saved_mean, float* saved_invstd, cudaStream_t stream) {
  if (c == 0) return;
  batchnorm_forward_train_kernel<<<c, kThreads, 0, stream>>>(n, c, spatial, momentum, eps, x, gamma, beta,
                                                              running_mean, running_var, y, saved_mean, saved_invstd);
  AX_CUDA_CHECK_LAUNCH("batchnorm_forward_train");
}

void batchnorm_forward_eval(int n, int c, int64_t spatial, float eps, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var, float* y,
                            cudaStream_t stream) {
  if (c == 0 || n == 0 || spatial == 0) return;
  batchnorm_forward_eval_kernel<<<c, kThreads, 0, stream>>>(n, c, spatial, eps, x, gamma, beta, running_mean,
                                                             running_var, y);
  AX_CUDA_CHECK_LAUNCH("batchnorm_forward_eval");
}

void batchnorm_backward(int n, int c, int64_t spatial, const float* x, const float* dy, const float* gamma,
                        const float* saved_mean, const float* saved_invstd, float* dx, float* dgamma, float* dbeta,
                        cudaStream_t stream) {
  if (c == 0) return;
  batchnorm_backward_kernel<<<c, kThreads, 0, stream>>>(n, c, spatial, x, dy, gamma, saved_mean, saved_invstd, dx,
                                                         dgamma, dbeta);
  AX_CUDA_CHECK_LAUNCH("batchnorm_backward");
}

}  // namespace alexnet::cuda
