// Response normalization within each map (cuda-convnet's `rnorm`); maths, window placement and sources in
// cpu/spatial_lrn.cpp, contract in cpu/kernels.h.
//
// One thread per element, for the forward and the backward: it adds the size x size (clipped) window's terms
// directly, row by row, each row left to right -- the CPU kernel's order. Consecutive threads take consecutive
// elements of a row, so each window row is a coalesced run across the warp, and the size^2 re-reads of the
// overlapping windows hit L1 (cuda-convnet's sizes are 3 to 9; planes of 8x8 to 32x32 are 256 B to 4 KB). The
// backward computes its terms dy * b / denom on the fly from the three inputs rather than in a separate pass.
#include <cfloat>

#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "lrn.h"

namespace alexnet::cuda {

namespace {

constexpr int kThreads = 256;

// The element e = (plane, row, col) of planes of h x w, and its window [r0, r1] x [c0, c1] (inclusive, clipped).
struct Window {
  int64_t plane_base;
  int r0, r1, c0, c1;
};

__device__ __forceinline__ Window window_of(int64_t e, int h, int w, lrn::WindowExtent win) {
  const int col = static_cast<int>(e % w);
  const int64_t t = e / w;
  const int row = static_cast<int>(t % h);
  Window r;
  r.plane_base = (t / h) * h * w;
  r.r0 = max(0, row - win.before), r.r1 = min(h - 1, row + win.after);
  r.c0 = max(0, col - win.before), r.c1 = min(w - 1, col + win.after);
  return r;
}

template <lrn::PowMode M>
__global__ void forward_kernel(int64_t total, int h, int w, lrn::WindowExtent win, LrnParams p, float alpha_over_area,
                               const float* __restrict__ x, float* __restrict__ y,
                               float* __restrict__ denom) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const Window win_e = window_of(e, h, w, win);
    float box = 0.0f;
    for (int r = win_e.r0; r <= win_e.r1; ++r) {
      const float* row = x + win_e.plane_base + static_cast<int64_t>(r) * w;
      float sum = 0.0f;
      for (int c = win_e.c0; c <= win_e.c1; ++c) {
        const float a = __ldg(row + c);
        sum = c == win_e.c0 ? a * a : sum + a * a;
      }
      box = r == win_e.r0 ? sum : box + sum;
    }
    const float d = p.k + alpha_over_area * box;
    denom[e] = d;
    const float a = __ldg(x + e);
    const float b = a * lrn::pow_neg_beta<M>(d, p.beta);
    // Parameters at float's edges: redone in double, as on the CPU (cpu/spatial_lrn.cpp).
    y[e] = fabsf(b) <= FLT_MAX && d <= FLT_MAX ? b : lrn::exact_output(a, p, static_cast<double>(p.size) * p.size, box);
  }
}

template <lrn::PowMode M>
__global__ void backward_kernel(int64_t total, int h, int w, lrn::WindowExtent win, LrnParams p, float coef,
                                const float* __restrict__ x, const float* __restrict__ y,
                                const float* __restrict__ denom, const float* __restrict__ dy,
                                float* __restrict__ dx) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const Window win_e = window_of(e, h, w, win);  // the mirrored window: the j whose window holds e
    float box = 0.0f;
    for (int r = win_e.r0; r <= win_e.r1; ++r) {
      const int64_t at = win_e.plane_base + static_cast<int64_t>(r) * w;
      float sum = 0.0f;
      for (int c = win_e.c0; c <= win_e.c1; ++c) {
        const float term = __ldg(dy + at + c) * __ldg(y + at + c) / __ldg(denom + at + c);
        sum = c == win_e.c0 ? term : sum + term;
      }
      box = r == win_e.r0 ? sum : box + sum;
    }
    const float g = __ldg(dy + e), d = __ldg(denom + e), a = __ldg(x + e);
    const float grad = g * lrn::pow_neg_beta<M>(d, p.beta) - coef * a * box;
    dx[e] = fabsf(grad) <= FLT_MAX ? grad : lrn::exact_gradient(g, d, a, p, static_cast<double>(p.size) * p.size, box);
  }
}

// A window wider than the plane adds nothing beyond it: clamped, so a size near 2^31 cannot overflow row + after.
lrn::WindowExtent clamp_to_plane(lrn::WindowExtent win, int h, int w) {
  const int side = h > w ? h : w;
  return {win.before < side ? win.before : side, win.after < side ? win.after : side};
}

}  // namespace

void spatial_lrn_forward(int64_t planes, int h, int w, const LrnParams& p, const float* x, float* y, float* denom,
                         cudaStream_t stream) {
  const int64_t total = planes * h * w;
  if (total == 0) return;
  const lrn::WindowExtent win = clamp_to_plane(lrn::forward_window(p.size), h, w);
  const float alpha_over_area = p.alpha / (static_cast<float>(p.size) * static_cast<float>(p.size));
  lrn::with_pow_mode(p.beta, [&](auto mode) {
    constexpr lrn::PowMode M = decltype(mode)::value;
    forward_kernel<M><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, h, w, win, p, alpha_over_area, x,
                                                                          y, denom);
    AX_CUDA_CHECK_LAUNCH("spatial_lrn_forward");
  });
}

void spatial_lrn_backward(int64_t planes, int h, int w, const LrnParams& p, const float* x, const float* y,
                          const float* denom, const float* dy, float* dx, cudaStream_t stream) {
  const int64_t total = planes * h * w;
  if (total == 0) return;
  const lrn::WindowExtent win = clamp_to_plane(lrn::backward_window(p.size), h, w);
  const float coef = 2.0f * p.alpha * p.beta / (static_cast<float>(p.size) * static_cast<float>(p.size));
  lrn::with_pow_mode(p.beta, [&](auto mode) {
    constexpr lrn::PowMode M = decltype(mode)::value;
    backward_kernel<M><<<grid_for(total, kThreads), kThreads, 0, stream>>>(total, h, w, win, p, coef, x, y, denom,
                                                                           dy, dx);
    AX_CUDA_CHECK_LAUNCH("spatial_lrn_backward");
  });
}

}  // namespace alexnet::cuda
