// Local response normalization across channels (paper Section 3.3), maths in csrc/lrn.h:
//   scale_i = k + (alpha/size) * sum_{j in window(i)} a_j^2,   b_i = a_i * scale_i^(-beta)
//   dx_i = dy_i * scale_i^(-beta) - (2*alpha*beta/size) * a_i * sum_{j : i in window(j)} dy_j * b_j / scale_j
//
// Layout (n, c, spatial): a channel's spatial positions are contiguous. Work is split into tasks of
// (image, block of kBlock spatial positions), spread over OpenMP threads. Within a task the channels are walked
// ONCE, in order, keeping a running window sum per spatial position: the entering channel's term is added and the
// leaving channel's term subtracted, so each position costs O(1) per channel whatever the size. Every inner loop
// runs over contiguous spatial positions, so it vectorizes; the leaving channel's row was touched `size` steps
// earlier and is still in L1/L2, so main memory sees each input once and each output once.
//
// Why the running sums are double: sliding sums cancel. After a large a_j^2 leaves the window, a float sum keeps
// an error of about 2^-24 * a_j^2, which can swamp the small squares that remain (and k, when k is small). Squares
// of floats are exact in double and each add/subtract errs by only ~1e-16 of the largest partial sum, far below
// float32 resolution of the result for any realistic dynamic range. The leaving term is recomputed from the same
// inputs with the same operations as when it entered, so it cancels exactly what was added. Double costs nothing
// measurable here: the kernel is memory-bound.
#include <algorithm>
#include <vector>

#include "cpu/kernels.h"
#include "lrn.h"

namespace alexnet::cpu {

namespace {

// Spatial positions per task: the running sums (2 KB of doubles) and the window's rows of input stay in L1/L2.
constexpr int64_t kBlock = 256;
// Below this many elements the OpenMP fork/join costs more than the work.
constexpr int64_t kParallelThreshold = 1 << 14;

// Runs body(image, first position, position count, thread-local double scratch of kBlock) over all tasks.
template <typename Body>
void for_each_block(int n, int c, int64_t spatial, Body body) {
  const int64_t blocks = (spatial + kBlock - 1) / kBlock;
  const int64_t tasks = static_cast<int64_t>(n) * blocks;
#pragma omp parallel if (tasks > 1 && static_cast<int64_t>(n) * c * spatial >= kParallelThreshold)
  {
    std::vector<double> scratch(static_cast<size_t>(kBlock));
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int image = static_cast<int>(t / blocks);
      const int64_t p0 = (t % blocks) * kBlock;
      body(image, p0, std::min(kBlock, spatial - p0), scratch.data());
    }
  }
}

template <lrn::PowMode M>
void forward_impl(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale) {
  const lrn::WindowExtent win = lrn::forward_window(p.size);
  const double k = p.k, alpha_over_size = static_cast<double>(p.alpha) / p.size;
  const float beta = p.beta;
  for_each_block(n, c, spatial, [&](int image, int64_t p0, int64_t len, double* sum) {
    const int64_t base = static_cast<int64_t>(image) * c * spatial + p0;
    auto row = [&](int ch) { return base + static_cast<int64_t>(ch) * spatial; };
    auto add_squares = [&](int ch, double sign) {
      const float* __restrict__ a = x + row(ch);
#pragma omp simd
      for (int64_t q = 0; q < len; ++q) sum[q] += sign * (static_cast<double>(a[q]) * a[q]);
    };
    std::fill(sum, sum + len, 0.0);
    // Channel 0's window is [0, after]; pre-load all but its last channel, which the loop below adds.
    for (int ch = 0; ch < std::min(win.after, c); ++ch) add_squares(ch, 1.0);
    for (int i = 0; i < c; ++i) {
      if (i + win.after < c) add_squares(i + win.after, 1.0);       // entering the window
      if (i - win.before - 1 >= 0) add_squares(i - win.before - 1, -1.0);  // leaving it
      const float* __restrict__ a = x + row(i);
      float* __restrict__ b = y + row(i);
      float* __restrict__ s = scale + row(i);
#pragma omp simd
      for (int64_t q = 0; q < len; ++q) {
        const float sq = static_cast<float>(k + alpha_over_size * sum[q]);
        s[q] = sq;
        b[q] = a[q] * lrn::pow_neg_beta<M>(sq, beta);
      }
    }
  });
}

template <lrn::PowMode M>
void backward_impl(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y,
                   const float* scale, const float* dy, float* dx) {
  // The sum over {j : i in window(j)} slides over the mirrored window [i - after, i + before].
  const lrn::WindowExtent win = lrn::backward_window(p.size);
  const double coef = 2.0 * static_cast<double>(p.alpha) * p.beta / p.size;
  const float beta = p.beta;
  for_each_block(n, c, spatial, [&](int image, int64_t p0, int64_t len, double* sum) {
    const int64_t base = static_cast<int64_t>(image) * c * spatial + p0;
    auto row = [&](int ch) { return base + static_cast<int64_t>(ch) * spatial; };
    // Adds sign * dy_j * b_j / scale_j of channel j, computed identically on entering and leaving.
    auto add_ratios = [&](int ch, double sign) {
      const float* __restrict__ g = dy + row(ch);
      const float* __restrict__ b = y + row(ch);
      const float* __restrict__ s = scale + row(ch);
#pragma omp simd
      for (int64_t q = 0; q < len; ++q) sum[q] += sign * (static_cast<double>(g[q]) * b[q] / s[q]);
    };
    std::fill(sum, sum + len, 0.0);
    for (int ch = 0; ch < std::min(win.after, c); ++ch) add_ratios(ch, 1.0);
    for (int i = 0; i < c; ++i) {
      if (i + win.after < c) add_ratios(i + win.after, 1.0);
      if (i - win.before - 1 >= 0) add_ratios(i - win.before - 1, -1.0);
      const float* __restrict__ a = x + row(i);
      const float* __restrict__ g = dy + row(i);
      const float* __restrict__ s = scale + row(i);
      float* __restrict__ d = dx + row(i);
#pragma omp simd
      for (int64_t q = 0; q < len; ++q) {
        const double direct = g[q] * lrn::pow_neg_beta<M>(s[q], beta);
        d[q] = static_cast<float>(direct - coef * a[q] * sum[q]);
      }
    }
  });
}

}  // namespace

void lrn_forward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale) {
  if (static_cast<int64_t>(n) * c * spatial == 0) return;
  switch (lrn::pow_mode(p.beta)) {
    case lrn::PowMode::Zero: return forward_impl<lrn::PowMode::Zero>(n, c, spatial, p, x, y, scale);
    case lrn::PowMode::Half: return forward_impl<lrn::PowMode::Half>(n, c, spatial, p, x, y, scale);
    case lrn::PowMode::ThreeQuarters: return forward_impl<lrn::PowMode::ThreeQuarters>(n, c, spatial, p, x, y, scale);
    case lrn::PowMode::One: return forward_impl<lrn::PowMode::One>(n, c, spatial, p, x, y, scale);
    case lrn::PowMode::General: return forward_impl<lrn::PowMode::General>(n, c, spatial, p, x, y, scale);
  }
}

void lrn_backward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y,
                  const float* scale, const float* dy, float* dx) {
  if (static_cast<int64_t>(n) * c * spatial == 0) return;
  switch (lrn::pow_mode(p.beta)) {
    case lrn::PowMode::Zero: return backward_impl<lrn::PowMode::Zero>(n, c, spatial, p, x, y, scale, dy, dx);
    case lrn::PowMode::Half: return backward_impl<lrn::PowMode::Half>(n, c, spatial, p, x, y, scale, dy, dx);
    case lrn::PowMode::ThreeQuarters:
      return backward_impl<lrn::PowMode::ThreeQuarters>(n, c, spatial, p, x, y, scale, dy, dx);
    case lrn::PowMode::One: return backward_impl<lrn::PowMode::One>(n, c, spatial, p, x, y, scale, dy, dx);
    case lrn::PowMode::General: return backward_impl<lrn::PowMode::General>(n, c, spatial, p, x, y, scale, dy, dx);
  }
}

}  // namespace alexnet::cpu
