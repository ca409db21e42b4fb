// Local response normalization across channels (paper Section 3.3), maths in csrc/lrn.h:
//   scale_i = k + (alpha/size) * sum_{j in window(i)} a_j^2,   b_i = a_i * scale_i^(-beta)
//   dx_i = dy_i * scale_i^(-beta) - (2*alpha*beta/size) * a_i * sum_{j : i in window(j)} dy_j * b_j / scale_j
//
// Layout (n, c, spatial): a channel's spatial positions are contiguous. Work is split into tasks of
// (image, block of kBlock spatial positions), spread over OpenMP threads. Within a task the channels are walked
// ONCE, in order: each channel's term (a^2 forward, dy*b/scale backward) is computed once into a ring of `size`
// rows, and each output sums the rows of its window directly, in channel order. Every inner loop runs over
// contiguous spatial positions in float, so it vectorizes 8 wide; main memory sees each input once and each
// output once.
//
// Why direct sums and not a sliding sum (add the entering term, subtract the leaving one): sliding sums cancel
// (after a large a_j^2 leaves, a float sum keeps an error of about 2^-24 * a_j^2), so they needed double
// accumulators and a second evaluation of each leaving term, a double division per element in the backward. The
// direct sum of `size` (5) float terms has no cancellation forward (all terms >= 0) and costs `size` adds per
// element. With -fno-math-errno (CMakeLists.txt) the square roots of scale^-beta vectorize too. Measured at
// 1 thread (CPU time), forward + backward: 32x48x32x32 (alexnet-small's conv1 maps) 18.1 -> 7.6 ms,
// 32x128x15x15 9.3 -> 2.9 ms.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/kernels.h"
#include "lrn.h"

namespace alexnet::cpu {

namespace {

// Spatial positions per task: the ring of `size` term rows and the window's rows of input stay in L1.
constexpr int64_t kBlock = 256;
// Below this many elements the OpenMP fork/join costs more than the work.
constexpr int64_t kParallelThreshold = 1 << 14;

// Rows of the ring: a window never holds more than min(size, c) channels (a size near 2^31 once asked for a
// 2 TB ring).
int ring_rows(int size, int c) { return std::max(1, std::min(size, c)); }

// Runs body(image, first position, position count, ring) over all tasks; ring is thread-local scratch of
// ring_rows(size, c) * kBlock floats.
template <typename Body>
void for_each_block(int n, int c, int64_t spatial, int size, Body body) {
  const int64_t blocks = (spatial + kBlock - 1) / kBlock;
  const int64_t tasks = static_cast<int64_t>(n) * blocks;
#pragma omp parallel if (tasks > 1 && static_cast<int64_t>(n) * c * spatial >= kParallelThreshold)
  {
    std::vector<float> ring(static_cast<size_t>(ring_rows(size, c)) * kBlock);
#pragma omp for schedule(static)
    for (int64_t t = 0; t < tasks; ++t) {
      const int image = static_cast<int>(t / blocks);
      const int64_t p0 = (t % blocks) * kBlock;
      body(image, p0, std::min(kBlock, spatial - p0), ring.data());
    }
  }
}

// Walks channels i = 0..c-1 of one task: term(j, row) fills channel j's ring row once, before the first window
// that needs it; out(i, sum) receives the sum of the terms of channels [i - win.before, i + win.after] ∩ [0, c),
// added in channel order.
template <typename Term, typename Out>
void sliding_windows(int c, int size, lrn::WindowExtent win, int64_t len, float* ring, float* sum, Term term,
                     Out out) {
  const int rows = ring_rows(size, c);
  auto row = [&](int ch) { return ring + static_cast<int64_t>(ch % rows) * kBlock; };
  for (int ch = 0; ch < std::min(win.after, c); ++ch) term(ch, row(ch));
  for (int i = 0; i < c; ++i) {
    if (i + win.after < c) term(i + win.after, row(i + win.after));
    const int lo = std::max(0, i - win.before), hi = std::min(c - 1, i + win.after);
    const float* first = row(lo);
    for (int64_t q = 0; q < len; ++q) sum[q] = first[q];
    for (int j = lo + 1; j <= hi; ++j) {
      const float* r = row(j);
#pragma omp simd
      for (int64_t q = 0; q < len; ++q) sum[q] += r[q];
    }
    out(i, sum);
  }
}

template <lrn::PowMode M>
void forward_impl(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale) {
  const lrn::WindowExtent win = lrn::forward_window(p.size);
  const float k = p.k, alpha_over_size = p.alpha / static_cast<float>(p.size), beta = p.beta;
  for_each_block(n, c, spatial, p.size, [&](int image, int64_t p0, int64_t len, float* ring) {
    const int64_t base = static_cast<int64_t>(image) * c * spatial + p0;
    auto at = [&](int ch) { return base + static_cast<int64_t>(ch) * spatial; };
    alignas(64) float sum[kBlock];
    auto squares = [&](int ch, float* __restrict__ r) {
      const float* __restrict__ a = x + at(ch);
#pragma omp simd
      for (int64_t q = 0; q < len; ++q) r[q] = a[q] * a[q];
    };
    auto normalize = [&](int i, const float* __restrict__ window_sum) {
      const float* __restrict__ a = x + at(i);
      float* __restrict__ b = y + at(i);
      float* __restrict__ s = scale + at(i);
      float probe = 0.0f;  // stays 0 unless some b or scale is inf or NaN (x * 0 is NaN for those)
#pragma omp simd reduction(+ : probe)
      for (int64_t q = 0; q < len; ++q) {
        const float sq = k + alpha_over_size * window_sum[q];
        const float bq = a[q] * lrn::pow_neg_beta<M>(sq, beta);
        s[q] = sq;
        b[q] = bq;
        probe += bq * 0.0f + sq * 0.0f;
      }
      // An extreme k or alpha can take scale or scale^-beta past float's range while b itself is an ordinary
      // number (k = 1e-45: 1/scale = inf and 0 * inf = NaN; alpha = 3e38: scale = inf, so b = 0 instead of
      // a * 0.003): such elements are redone in double (scale keeps its float rounding, inf).
      if (probe != 0.0f) {
        for (int64_t q = 0; q < len; ++q) {
          if (std::fabs(b[q]) <= std::numeric_limits<float>::max() && s[q] <= std::numeric_limits<float>::max())
            continue;
          const double sd = static_cast<double>(k) + static_cast<double>(p.alpha) / p.size * window_sum[q];
          b[q] = static_cast<float>(a[q] * std::pow(sd, -static_cast<double>(beta)));
        }
      }
    };
    sliding_windows(c, p.size, win, len, ring, sum, squares, normalize);
  });
}

template <lrn::PowMode M>
void backward_impl(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y,
                   const float* scale, const float* dy, float* dx) {
  // The sum over {j : i in window(j)} runs over the mirrored window [i - after, i + before].
  const lrn::WindowExtent win = lrn::backward_window(p.size);
  const double coef_exact = 2.0 * p.alpha * p.beta / p.size;  // for the double redo below
  const float coef = static_cast<float>(coef_exact), beta = p.beta;
  for_each_block(n, c, spatial, p.size, [&](int image, int64_t p0, int64_t len, float* ring) {
    const int64_t base = static_cast<int64_t>(image) * c * spatial + p0;
    auto at = [&](int ch) { return base + static_cast<int64_t>(ch) * spatial; };
    alignas(64) float sum[kBlock];
    auto ratios = [&](int ch, float* __restrict__ r) {  // dy_j * b_j / scale_j
      const float* __restrict__ g = dy + at(ch);
      const float* __restrict__ b = y + at(ch);
      const float* __restrict__ s = scale + at(ch);
#pragma omp simd
      for (int64_t q = 0; q < len; ++q) r[q] = g[q] * b[q] / s[q];
    };
    auto gradient = [&](int i, const float* __restrict__ window_sum) {
      const float* __restrict__ a = x + at(i);
      const float* __restrict__ g = dy + at(i);
      const float* __restrict__ s = scale + at(i);
      float* __restrict__ d = dx + at(i);
      float probe = 0.0f;  // as in the forward
#pragma omp simd reduction(+ : probe)
      for (int64_t q = 0; q < len; ++q) {
        const float dq = g[q] * lrn::pow_neg_beta<M>(s[q], beta) - coef * a[q] * window_sum[q];
        d[q] = dq;
        probe += dq * 0.0f;
      }
      // As in the forward: an intermediate past float's range (coef for an alpha near FLT_MAX, coef * a) while dx
      // is an ordinary number; those elements are redone in double.
      if (probe != 0.0f) {
        for (int64_t q = 0; q < len; ++q) {
          if (std::fabs(d[q]) <= std::numeric_limits<float>::max()) continue;
          d[q] = static_cast<float>(g[q] * std::pow(static_cast<double>(s[q]), -static_cast<double>(beta)) -
                                    coef_exact * a[q] * window_sum[q]);
        }
      }
    };
    sliding_windows(c, p.size, win, len, ring, sum, ratios, gradient);
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
