// Global average pooling (Lin, Chen & Yan 2014, "Network in Network", Section 3.2): each (n, c) plane of x is
// replaced by its mean, so a classifier head can be conv -> global_avgpool -> linear. Planes are contiguous; each
// is summed in double, in order, so the result does not depend on the thread count.
#include "cpu/kernels.h"

namespace alexnet::cpu {

void global_avgpool_forward(int n, int c, int64_t spatial, const float* x, float* y) {
  const int64_t planes = static_cast<int64_t>(n) * c;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float* plane = x + p * spatial;
    double sum = 0.0;
    for (int64_t s = 0; s < spatial; ++s) sum += plane[s];
    y[p] = static_cast<float>(sum / static_cast<double>(spatial));
  }
}

// Every position of a plane contributed 1/spatial of its mean, so it gets dy / spatial back.
void global_avgpool_backward(int n, int c, int64_t spatial, const float* dy, float* dx) {
  const int64_t planes = static_cast<int64_t>(n) * c;
  const float inv_spatial = static_cast<float>(1.0 / static_cast<double>(spatial));
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < planes; ++p) {
    const float g = dy[p] * inv_spatial;
    float* plane = dx + p * spatial;
#pragma omp simd
    for (int64_t s = 0; s < spatial; ++s) plane[s] = g;
  }
}

}  // namespace alexnet::cpu
