// Local response normalization across channels (paper Section 3.3); maths in csrc/lrn.h and cpu/kernels.h.
//
// One thread per (image, V consecutive spatial positions) walks the c channels ONCE with a sliding window sum
// (add the entering channel's term, subtract the leaving one), for the forward and for the backward. Consecutive
// threads own consecutive spatial positions, so every channel step is a coalesced row access across the warp.
// Global traffic is one read of each input and one write of each output: the leaving channel's row (and the
// centre row) were loaded by the same thread a few steps earlier and come back from L1/L2. When the spatial size
// is a multiple of 4 and every pointer is 16-byte aligned, V = 4 and rows move as float4.
//
// The running sums are double, for the reason given in cpu/lrn.cpp: a float sliding sum keeps an error of about
// 2^-24 times the largest square that passed through the window, which can swamp the small remaining terms.
// Two double adds per element are negligible for this memory-bound kernel (FP64 is half rate on sm_90).
#include <algorithm>
#include <cfloat>
#include <type_traits>

#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "lrn.h"

namespace alexnet::cuda {

namespace {

constexpr int kThreads = 256;  // with __launch_bounds__(256, 4): <= 64 registers, 50% occupancy (sm_80/90)

// Channel steps unrolled per thread: with V = 1 four steps' loads can be in flight at once; with V = 4 each load
// already moves 16 bytes, and more unrolling would spill under the 64-register bound.
template <int V>
constexpr int kChannelUnroll = V == 1 ? 4 : 1;

template <int V>
struct Pack {
  float v[V];
};

template <int V>
__device__ __forceinline__ Pack<V> load(const float* __restrict__ p) {
  Pack<V> r;
  if constexpr (V == 4) {
    const float4 t = __ldg(reinterpret_cast<const float4*>(p));
    r.v[0] = t.x, r.v[1] = t.y, r.v[2] = t.z, r.v[3] = t.w;
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q) r.v[q] = __ldg(p + q);
  }
  return r;
}

template <int V>
__device__ __forceinline__ void store(float* __restrict__ p, const Pack<V>& r) {
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(r.v[0], r.v[1], r.v[2], r.v[3]);
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q) p[q] = r.v[q];
  }
}

// Work item t covers image t / groups and spatial positions [(t % groups) * V, +V) with groups = spatial / V.
template <int V, lrn::PowMode M>
__global__ void __launch_bounds__(kThreads, 4)
    lrn_forward_kernel(int n, int c, int64_t spatial, int before, int after, double k, double alpha_over_size,
                       float beta, const float* __restrict__ x, float* __restrict__ y, float* __restrict__ scale) {
  const int64_t groups = spatial / V;
  const int64_t items = static_cast<int64_t>(n) * groups;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < items; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t image = t / groups;
    const int64_t base = image * c * spatial + (t - image * groups) * V;
    double sum[V];
#pragma unroll
    for (int q = 0; q < V; ++q) sum[q] = 0.0;
    // Adds sign * a_ch^2 when 0 <= ch < c, and exactly nothing otherwise. The load is unconditional, from a
    // clamped (valid) row, so the unrolled channel loop below has no branches and the compiler can issue several
    // channels' loads before their results are needed: that memory-level parallelism is what keeps a
    // one-thread-per-position kernel near full bandwidth.
    auto add_squares = [&](int ch, double sign) {
      const bool inside = ch >= 0 && ch < c;
      const Pack<V> a = load<V>(x + base + static_cast<int64_t>(min(max(ch, 0), c - 1)) * spatial);
#pragma unroll
      for (int q = 0; q < V; ++q) sum[q] += inside ? sign * (static_cast<double>(a.v[q]) * a.v[q]) : 0.0;
    };
    // Channel 0's window is [0, after]; pre-load all but its last channel, which the loop adds.
    for (int ch = 0; ch < after; ++ch) add_squares(ch, 1.0);
#pragma unroll(kChannelUnroll<V>)
    for (int i = 0; i < c; ++i) {
      add_squares(i + after, 1.0);         // entering the window
      add_squares(i - before - 1, -1.0);  // leaving it (an L1/L2 hit)
      const int64_t off = base + static_cast<int64_t>(i) * spatial;
      const Pack<V> a = load<V>(x + off);
      Pack<V> s, b;
#pragma unroll
      for (int q = 0; q < V; ++q) {
        const double scale_exact = k + alpha_over_size * sum[q];
        s.v[q] = static_cast<float>(scale_exact);
        b.v[q] = a.v[q] * lrn::pow_neg_beta<M>(s.v[q], beta);
        // As on the CPU (cpu/lrn.cpp): an extreme k or alpha can take scale or scale^-beta past float's range
        // while b is an ordinary number (k = 1e-45: 0 * inf = NaN; alpha = 3e38: scale = inf, b = 0); then b is
        // computed in double. Rare, so the divergent branch costs nothing in practice.
        if (!(fabsf(b.v[q]) <= FLT_MAX) || !(s.v[q] <= FLT_MAX))
          b.v[q] = static_cast<float>(a.v[q] * pow(scale_exact, -static_cast<double>(beta)));
      }
      store<V>(scale + off, s);
      store<V>(y + off, b);
    }
  }
}

// Blocks per SM the backward's launch bounds ask for. With V = 4 the 4 double sums, the 3 x 4 loaded floats and the
// live state around the rare pow() fallback need more than the 64 registers of 4 blocks: ptxas spilled 16-28 bytes
// (issue 22, benchmarks/results/kernel_resources.md), so V = 4 takes 3 blocks (<= 80 registers): 37.5% occupancy
// on sm_80/90 instead of 50%.
template <int V>
constexpr int kBackwardMinBlocks = V == 1 ? 4 : 3;

template <int V, lrn::PowMode M>
__global__ void __launch_bounds__(kThreads, kBackwardMinBlocks<V>)
    lrn_backward_kernel(int n, int c, int64_t spatial, int before, int after, double coef, float beta,
                        const float* __restrict__ x, const float* __restrict__ y, const float* __restrict__ scale,
                        const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t groups = spatial / V;
  const int64_t items = static_cast<int64_t>(n) * groups;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < items; t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t image = t / groups;
    const int64_t base = image * c * spatial + (t - image * groups) * V;
    double sum[V];
#pragma unroll
    for (int q = 0; q < V; ++q) sum[q] = 0.0;
    // Adds sign * dy_j * b_j / scale_j, computed identically when channel j enters and when it leaves; nothing
    // for j outside [0, c). Unconditional clamped loads, as in the forward.
    auto add_ratios = [&](int ch, double sign) {
      const bool inside = ch >= 0 && ch < c;
      const int64_t off = base + static_cast<int64_t>(min(max(ch, 0), c - 1)) * spatial;
      const Pack<V> g = load<V>(dy + off), b = load<V>(y + off), s = load<V>(scale + off);
#pragma unroll
      for (int q = 0; q < V; ++q)
        sum[q] += inside ? sign * (static_cast<double>(g.v[q]) * b.v[q] / s.v[q]) : 0.0;
    };
    // Here (before, after) is the mirrored window [i - after, i + before] of backward_window().
    for (int ch = 0; ch < after; ++ch) add_ratios(ch, 1.0);
#pragma unroll(kChannelUnroll<V>)
    for (int i = 0; i < c; ++i) {
      add_ratios(i + after, 1.0);
      add_ratios(i - before - 1, -1.0);
      const int64_t off = base + static_cast<int64_t>(i) * spatial;
      const Pack<V> a = load<V>(x + off), g = load<V>(dy + off), s = load<V>(scale + off);
      Pack<V> d;
#pragma unroll
      for (int q = 0; q < V; ++q) {
        double direct = g.v[q] * lrn::pow_neg_beta<M>(s.v[q], beta);
        if (!(fabs(direct) <= DBL_MAX))  // scale^-beta past float's range (a tiny k); as in the forward
          direct = g.v[q] * pow(static_cast<double>(s.v[q]), -static_cast<double>(beta));
        d.v[q] = static_cast<float>(direct - coef * a.v[q] * sum[q]);
      }
      store<V>(dx + off, d);
    }
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Window extents beyond the c channels add nothing: clamped, so a size near 2^31 does not make every thread loop
// a billion times over channels that are not there.
lrn::WindowExtent clamp_to_channels(lrn::WindowExtent w, int c) {
  return {std::min(w.before, c), std::min(w.after, c)};
}

}  // namespace

void lrn_forward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale,
                 cudaStream_t stream) {
  if (static_cast<int64_t>(n) * c * spatial == 0) return;
  const lrn::WindowExtent win = clamp_to_channels(lrn::forward_window(p.size), c);
  const double k = p.k, alpha_over_size = static_cast<double>(p.alpha) / p.size;
  const bool vec4 = spatial % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(scale);
  lrn::with_pow_mode(p.beta, [&](auto mode) {
    constexpr lrn::PowMode M = decltype(mode)::value;
    if (vec4) {
      const int64_t items = static_cast<int64_t>(n) * (spatial / 4);
      lrn_forward_kernel<4, M><<<grid_for(items, kThreads), kThreads, 0, stream>>>(
          n, c, spatial, win.before, win.after, k, alpha_over_size, p.beta, x, y, scale);
    } else {
      const int64_t items = static_cast<int64_t>(n) * spatial;
      lrn_forward_kernel<1, M><<<grid_for(items, kThreads), kThreads, 0, stream>>>(
          n, c, spatial, win.before, win.after, k, alpha_over_size, p.beta, x, y, scale);
    }
    AX_CUDA_CHECK_LAUNCH("lrn_forward");
  });
}

void lrn_backward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y,
                  const float* scale, const float* dy, float* dx, cudaStream_t stream) {
  if (static_cast<int64_t>(n) * c * spatial == 0) return;
  const lrn::WindowExtent win = clamp_to_channels(lrn::backward_window(p.size), c);
  const double coef = 2.0 * static_cast<double>(p.alpha) * p.beta / p.size;
  const bool vec4 = spatial % 4 == 0 && aligned16(x) && aligned16(y) && aligned16(scale) && aligned16(dy) &&
                    aligned16(dx);
  lrn::with_pow_mode(p.beta, [&](auto mode) {
    constexpr lrn::PowMode M = decltype(mode)::value;
    if (vec4) {
      const int64_t items = static_cast<int64_t>(n) * (spatial / 4);
      lrn_backward_kernel<4, M><<<grid_for(items, kThreads), kThreads, 0, stream>>>(
          n, c, spatial, win.before, win.after, coef, p.beta, x, y, scale, dy, dx);
    } else {
      const int64_t items = static_cast<int64_t>(n) * spatial;
      lrn_backward_kernel<1, M><<<grid_for(items, kThreads), kThreads, 0, stream>>>(
          n, c, spatial, win.before, win.after, coef, p.beta, x, y, scale, dy, dx);
    }
    AX_CUDA_CHECK_LAUNCH("lrn_backward");
  });
}

}  // namespace alexnet::cuda
