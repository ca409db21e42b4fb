// Shared maths of batch normalization (Ioffe & Szegedy 2015, Algorithm 1 and Section 3.1) for the CPU and CUDA
// kernels, so both backends round the per-channel quantities identically:
//   mean = (1/M) sum x,  var = (1/M) sum (x - mean)^2 (biased),  invstd = 1 / sqrt(var + eps),
//   y = gamma * (x - mean) * invstd + beta,
// with M = n * spatial elements per channel. The statistics are accumulated in double by both backends (two
// passes: the mean, then the squared deviations from it), so a channel with a large mean and a small variance
// keeps its variance: the one-pass E[x^2] - E[x]^2 in float would cancel to noise or even go negative.
#pragma once

#include <cmath>
#include <cstdint>

#include "philox.h"  // AX_HOST_DEVICE

namespace alexnet::batchnorm {

AX_HOST_DEVICE double inverse_std(double var_biased, float eps) { return 1.0 / sqrt(var_biased + eps); }

// The running statistics for inference, updated like PyTorch's BatchNorm: an exponential moving average with
// weight `momentum` on the new batch, using the UNBIASED variance (M / (M - 1) times the batch's) as Ioffe &
// Szegedy's Algorithm 2 does for inference. count >= 2 is checked by the op layer.
AX_HOST_DEVICE void update_running(double mean, double var_biased, int64_t count, float momentum,
                                   float& running_mean, float& running_var) {
  const double unbiased = var_biased * static_cast<double>(count) / static_cast<double>(count - 1);
  running_mean = static_cast<float>((1.0 - momentum) * running_mean + momentum * mean);
  running_var = static_cast<float>((1.0 - momentum) * running_var + momentum * unbiased);
}

// The backward of the training-mode forward (the paper's Section 3, chain rule through the batch statistics):
//   dbeta = sum dy,  dgamma = sum dy * xhat,  dx = gamma * invstd / M * (M * dy - dbeta - xhat * dgamma)
// with xhat = (x - mean) * invstd. Per channel, the coefficients of dx = a * dy + b * xhat + c (computed once in
// double, applied in float):
struct BackwardCoefficients {
  float dy_scale, xhat_scale, shift;
};
AX_HOST_DEVICE BackwardCoefficients backward_coefficients(float gamma, float invstd, double sum_dy,
                                                          double sum_dy_xhat, int64_t count) {
  const double g = static_cast<double>(gamma) * invstd, m = static_cast<double>(count);
  return {static_cast<float>(g), static_cast<float>(-g * sum_dy_xhat / m), static_cast<float>(-g * sum_dy / m)};
}

}  // namespace alexnet::batchnorm
