// Response normalization within each map: cuda-convnet's `rnorm` layer (ResponseNormLayer in src/layer.cu, which
// calls convResponseNorm = convContrastNorm(images, images, ...) in src/cudaconv2/conv_util.cu, kernels kCNorm_*):
//   denom(y, x) = k + (alpha / size^2) * sum of a^2 over the size x size window at (y, x), clipped to the map,
//   b(y, x)     = a(y, x) * denom^(-beta)
// The window of (y, x) is rows [y - size/2, y - size/2 + size) and the same columns (kCNorm_fewfilter: startPxY =
// -sizeX/2 + pxIdxY, loop to startPxY + sizeX, clipped to [0, imgSize)): centred for odd sizes, reaching one
// further up/left for even ones -- the same placement as the cross-map lrn's channel window (lrn.h), so lrn.h's
// WindowExtent describes both. The divisor stays size^2 at the edges: cuda-convnet's python parser (layer.py,
// NormLayerParser.add_params) stores scale / size^2 and the kernel multiplies the clipped window's sum by it. Its
// constant is 1 (prod = 1 + addScale * prod); k is a parameter here (default 1 in ops.py) as in the lrn op.
//
// Backward (the chain rule, as kRNormUndo computes it from acts = -2 scale pow * dy * b / denom):
//   dx_i = dy_i * denom_i^(-beta) - (2 alpha beta / size^2) * a_i * sum_{j : i in window(j)} dy_j * b_j / denom_j
// where {j : i in window(j)} is the mirrored window (lrn::backward_window), which differs only for even sizes.
//
// Layout: planes of h x w, independent, split over OpenMP threads. Each plane is done in three passes over a
// thread-local copy: the terms (a^2, or dy*b/denom), their sums along each row's window, then those sums down
// each column's window (contiguous rows: vectorizes 8 wide) fused with the output. The box sums are direct sums
// of at most size terms in a fixed order (window rows top to bottom of window columns left to right), as the CUDA
// kernel adds them; no sliding sums (cpu/lrn.cpp says why they lose precision).
#include <algorithm>
#include <cmath>
#include <vector>

#include "cpu/kernels.h"
#include "lrn.h"

namespace alexnet::cpu {

namespace {

// Below this many elements the OpenMP fork/join costs more than the work.
constexpr int64_t kParallelThreshold = 1 << 14;

// The window's nominal size, size^2, the divisor of alpha (in double: size may be up to 2^31 - 1).
double area_of(const LrnParams& p) { return static_cast<double>(p.size) * p.size; }

// out[x] = sum of in[c] for c in [x - win.before, x + win.after] clipped to [0, w), added left to right.
void row_window_sums(const float* __restrict__ in, float* __restrict__ out, int w, lrn::WindowExtent win) {
  const int lo = std::min(w, win.before), hi = std::max(lo, w - win.after);  // [lo, hi): unclipped windows
  auto clipped = [&](int x) {
    const int c0 = std::max(0, x - win.before), c1 = std::min(w - 1, x + win.after);
    float sum = in[c0];
    for (int c = c0 + 1; c <= c1; ++c) sum += in[c];
    out[x] = sum;
  };
  for (int x = 0; x < lo; ++x) clipped(x);
  if (lo < hi) {  // (a window wider than the row has no unclipped position: skip its size-long loop)
#pragma omp simd
    for (int x = lo; x < hi; ++x) out[x] = in[x - win.before];
    for (int j = 1 - win.before; j <= win.after; ++j) {
#pragma omp simd
      for (int x = lo; x < hi; ++x) out[x] += in[x + j];
    }
  }
  for (int x = hi; x < w; ++x) clipped(x);
}

// For each row y: sum[x] = the row sums of rows [y - win.before, y + win.after] (clipped), top to bottom; then
// finish(y, sum) writes that row's output.
template <typename Finish>
void column_window_sums(const float* rows, int h, int w, lrn::WindowExtent win, float* sum, Finish finish) {
  for (int y = 0; y < h; ++y) {
    const int r0 = std::max(0, y - win.before), r1 = std::min(h - 1, y + win.after);
    const float* first = rows + static_cast<int64_t>(r0) * w;
    for (int x = 0; x < w; ++x) sum[x] = first[x];
    for (int r = r0 + 1; r <= r1; ++r) {
      const float* row = rows + static_cast<int64_t>(r) * w;
#pragma omp simd
      for (int x = 0; x < w; ++x) sum[x] += row[x];
    }
    finish(y, sum);
  }
}

// Runs body(plane offset, term plane, row-sum plane, column sum row) for each plane, with thread-local scratch.
template <typename Body>
void for_each_plane(int64_t planes, int h, int w, Body body) {
  const int64_t area = static_cast<int64_t>(h) * w;
#pragma omp parallel if (planes > 1 && planes * area >= kParallelThreshold)
  {
    std::vector<float> scratch(static_cast<size_t>(2 * area + w));
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane)
      body(plane * area, scratch.data(), scratch.data() + area, scratch.data() + 2 * area);
  }
}

template <lrn::PowMode M>
void forward_impl(int64_t planes, int h, int w, const LrnParams& p, const float* x, float* y, float* denom) {
  const lrn::WindowExtent win = lrn::forward_window(p.size);
  const int64_t area = static_cast<int64_t>(h) * w;
  const float k = p.k, beta = p.beta;
  const float alpha_over_area = p.alpha / (static_cast<float>(p.size) * static_cast<float>(p.size));
  for_each_plane(planes, h, w, [&](int64_t at, float* term, float* row_sums, float* sum) {
    const float* __restrict__ a = x + at;
#pragma omp simd
    for (int64_t q = 0; q < area; ++q) term[q] = a[q] * a[q];
    for (int r = 0; r < h; ++r) row_window_sums(term + int64_t{r} * w, row_sums + int64_t{r} * w, w, win);
    column_window_sums(row_sums, h, w, win, sum, [&](int r, const float* __restrict__ box) {
      const int64_t base = at + int64_t{r} * w;
      const float* __restrict__ ar = x + base;
      float* __restrict__ b = y + base;
      float* __restrict__ d = denom + base;
      float probe = 0.0f;  // stays 0 unless some b is inf or NaN (b * 0 is NaN then)
#pragma omp simd reduction(+ : probe)
      for (int q = 0; q < w; ++q) {
        const float dq = k + alpha_over_area * box[q];
        d[q] = dq;
        b[q] = ar[q] * lrn::pow_neg_beta<M>(dq, beta);
        probe += b[q] * 0.0f;
      }
      // Parameters at float's edges (k = 1e-45: denom^-1 = inf, and 0 * inf = NaN; alpha = 3e38: denom = inf)
      // can leave b outside float while its exact value is an ordinary number: those elements are redone in double.
      if (probe != 0.0f) {
        for (int q = 0; q < w; ++q)
          if (!std::isfinite(b[q])) b[q] = lrn::exact_output(ar[q], p, area_of(p), box[q]);
      }
    });
  });
}

template <lrn::PowMode M>
void backward_impl(int64_t planes, int h, int w, const LrnParams& p, const float* x, const float* y,
                   const float* denom, const float* dy, float* dx) {
  const lrn::WindowExtent win = lrn::backward_window(p.size);
  const int64_t area = static_cast<int64_t>(h) * w;
  const float beta = p.beta;
  const float coef = 2.0f * p.alpha * p.beta / (static_cast<float>(p.size) * static_cast<float>(p.size));
  for_each_plane(planes, h, w, [&](int64_t at, float* term, float* row_sums, float* sum) {
    const float* __restrict__ g = dy + at;
    const float* __restrict__ b = y + at;
    const float* __restrict__ d = denom + at;
#pragma omp simd
    for (int64_t q = 0; q < area; ++q) term[q] = g[q] * b[q] / d[q];
    for (int r = 0; r < h; ++r) row_window_sums(term + int64_t{r} * w, row_sums + int64_t{r} * w, w, win);
    column_window_sums(row_sums, h, w, win, sum, [&](int r, const float* __restrict__ box) {
      const int64_t base = at + int64_t{r} * w;
      const float* __restrict__ ar = x + base;
      const float* __restrict__ gr = dy + base;
      const float* __restrict__ dr = denom + base;
      float* __restrict__ out = dx + base;
      float probe = 0.0f;  // as in the forward
#pragma omp simd reduction(+ : probe)
      for (int q = 0; q < w; ++q) {
        out[q] = gr[q] * lrn::pow_neg_beta<M>(dr[q], beta) - coef * ar[q] * box[q];
        probe += out[q] * 0.0f;
      }
      if (probe != 0.0f) {
        for (int q = 0; q < w; ++q)
          if (!std::isfinite(out[q])) out[q] = lrn::exact_gradient(gr[q], dr[q], ar[q], p, area_of(p), box[q]);
      }
    });
  });
}

}  // namespace

void spatial_lrn_forward(int64_t planes, int h, int w, const LrnParams& p, const float* x, float* y, float* denom) {
  if (planes * h * w == 0) return;
  switch (lrn::pow_mode(p.beta)) {
    case lrn::PowMode::Zero: return forward_impl<lrn::PowMode::Zero>(planes, h, w, p, x, y, denom);
    case lrn::PowMode::Half: return forward_impl<lrn::PowMode::Half>(planes, h, w, p, x, y, denom);
    case lrn::PowMode::ThreeQuarters: return forward_impl<lrn::PowMode::ThreeQuarters>(planes, h, w, p, x, y, denom);
    case lrn::PowMode::One: return forward_impl<lrn::PowMode::One>(planes, h, w, p, x, y, denom);
    case lrn::PowMode::General: return forward_impl<lrn::PowMode::General>(planes, h, w, p, x, y, denom);
  }
}

void spatial_lrn_backward(int64_t planes, int h, int w, const LrnParams& p, const float* x, const float* y,
                          const float* denom, const float* dy, float* dx) {
  if (planes * h * w == 0) return;
  switch (lrn::pow_mode(p.beta)) {
    case lrn::PowMode::Zero: return backward_impl<lrn::PowMode::Zero>(planes, h, w, p, x, y, denom, dy, dx);
    case lrn::PowMode::Half: return backward_impl<lrn::PowMode::Half>(planes, h, w, p, x, y, denom, dy, dx);
    case lrn::PowMode::ThreeQuarters:
      return backward_impl<lrn::PowMode::ThreeQuarters>(planes, h, w, p, x, y, denom, dy, dx);
    case lrn::PowMode::One: return backward_impl<lrn::PowMode::One>(planes, h, w, p, x, y, denom, dy, dx);
    case lrn::PowMode::General: return backward_impl<lrn::PowMode::General>(planes, h, w, p, x, y, denom, dy, dx);
  }
}

}  // namespace alexnet::cpu
