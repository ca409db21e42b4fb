// Batch normalization (Ioffe & Szegedy 2015), maths in csrc/batchnorm.h. Layout (n, c, spatial): channel ch of
// image i is the contiguous row x[(i * c + ch) * spatial, +spatial); a fully connected layer's (n, c) is spatial = 1.
//
// Each channel is one OpenMP task, walked in a fixed order, so the result does not depend on the thread count.
// Statistics are two-pass sums in double (batchnorm.h says why); the elementwise passes are float.
#include <cmath>

#include "batchnorm.h"
#include "cpu/kernels.h"

namespace alexnet::cpu {

namespace {

// Calls body(row pointer offset, row length) for each of channel ch's n rows, in image order.
template <typename Body>
void for_each_row(int n, int c, int64_t spatial, int ch, Body body) {
  for (int i = 0; i < n; ++i) body((static_cast<int64_t>(i) * c + ch) * spatial);
}

struct ChannelStats {
  double mean, var_biased;
};

ChannelStats channel_stats(int n, int c, int64_t spatial, int ch, const float* x) {
  double sum = 0.0;
  for_each_row(n, c, spatial, ch, [&](int64_t row) {
    for (int64_t s = 0; s < spatial; ++s) sum += x[row + s];
  });
  const double count = static_cast<double>(n) * spatial, mean = sum / count;
  double squares = 0.0;
  for_each_row(n, c, spatial, ch, [&](int64_t row) {
    for (int64_t s = 0; s < spatial; ++s) {
      const double d = x[row + s] - mean;
      squares += d * d;
    }
  });
  return {mean, squares / count};
}

// y = (x - mean) * (gamma * invstd) + beta over channel ch: the mean is subtracted first, so a large mean does not
// cost the small deviations their precision.
void normalize_channel(int n, int c, int64_t spatial, int ch, float mean, float scale, float shift, const float* x,
                       float* y) {
  for_each_row(n, c, spatial, ch, [&](int64_t row) {
#pragma omp simd
    for (int64_t s = 0; s < spatial; ++s) y[row + s] = (x[row + s] - mean) * scale + shift;
  });
}

}  // namespace

void batchnorm_forward_train(int n, int c, int64_t spatial, float momentum, float eps, const float* x,
                             const float* gamma, const float* beta, float* running_mean, float* running_var, float* y,
                             float* saved_mean, float* saved_invstd) {
  const int64_t count = static_cast<int64_t>(n) * spatial;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < c; ++ch) {
    const ChannelStats st = channel_stats(n, c, spatial, ch, x);
    const float mean = static_cast<float>(st.mean);
    const float invstd = static_cast<float>(batchnorm::inverse_std(st.var_biased, eps));
    saved_mean[ch] = mean;
    saved_invstd[ch] = invstd;
    batchnorm::update_running(st.mean, st.var_biased, count, momentum, running_mean[ch], running_var[ch]);
    normalize_channel(n, c, spatial, ch, mean, gamma[ch] * invstd, beta[ch], x, y);
  }
}

void batchnorm_forward_eval(int n, int c, int64_t spatial, float eps, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var, float* y) {
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < c; ++ch) {
    const float invstd = static_cast<float>(batchnorm::inverse_std(running_var[ch], eps));
    normalize_channel(n, c, spatial, ch, running_mean[ch], gamma[ch] * invstd, beta[ch], x, y);
  }
}

void batchnorm_backward(int n, int c, int64_t spatial, const float* x, const float* dy, const float* gamma,
                        const float* saved_mean, const float* saved_invstd, float* dx, float* dgamma, float* dbeta) {
  const int64_t count = static_cast<int64_t>(n) * spatial;
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < c; ++ch) {
    const float mean = saved_mean[ch], invstd = saved_invstd[ch];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    for_each_row(n, c, spatial, ch, [&](int64_t row) {
      for (int64_t s = 0; s < spatial; ++s) {
        sum_dy += dy[row + s];
        sum_dy_xhat += static_cast<double>(dy[row + s]) * ((x[row + s] - mean) * invstd);
      }
    });
    dbeta[ch] = static_cast<float>(sum_dy);
    dgamma[ch] = static_cast<float>(sum_dy_xhat);
    const batchnorm::BackwardCoefficients k =
        batchnorm::backward_coefficients(gamma[ch], invstd, sum_dy, sum_dy_xhat, count);
    for_each_row(n, c, spatial, ch, [&](int64_t row) {
#pragma omp simd
      for (int64_t s = 0; s < spatial; ++s) {
        const float xhat = (x[row + s] - mean) * invstd;
        dx[row + s] = k.dy_scale * dy[row + s] + k.xhat_scale * xhat + k.shift;
      }
    });
  }
}

}  // namespace alexnet::cpu
