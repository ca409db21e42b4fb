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
// Layout: planes of h x w, independent, split over OpenMP threads. Each plane is done in four flat passes over
// thread-local scratch (each one loop over the whole plane, so it vectorizes 8 wide even on 8x8 maps): the terms
// (a^2, or dy*b/denom), their sums along each row's window, those sums down each column's window, the output.
// The box sums are direct sums of at most size terms in a fixed order (window rows top to bottom of window columns
// left to right), as the CUDA kernel adds them; no sliding sums (cpu/lrn.cpp says why they lose precision).
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

// out = the sums of `in` over each element's window along the rows: columns [x - win.before, x + win.after]
// clipped to [0, w), added left to right. The unclipped positions are done for the whole plane in one flat loop
// (long enough to vectorize well even for 8-wide rows); the positions near the left and right edges, whose flat
// window would wrap into the neighbouring row, are redone clipped.
void row_window_sums(const float* __restrict__ in, float* __restrict__ out, int h, int w, lrn::WindowExtent win) {
  const int64_t area = int64_t{h} * w;
  if (int64_t{win.before} + win.after < w) {  // (a window wider than the row has no unclipped position)
#pragma omp simd
    for (int64_t q = win.before; q < area - win.after; ++q) out[q] = in[q - win.before];
    for (int j = 1 - win.before; j <= win.after; ++j) {
#pragma omp simd
      for (int64_t q = win.before; q < area - win.after; ++q) out[q] += in[q + j];
    }
  }
  const int lo = std::min(w, win.before), hi = std::max(lo, w - win.after);  // [lo, hi): unclipped columns
  for (int y = 0; y < h; ++y) {
    const float* row = in + int64_t{y} * w;
    float* sums = out + int64_t{y} * w;
    auto clipped = [&](int x) {
      const int c0 = std::max(0, x - win.before), c1 = std::min(w - 1, x + win.after);
      float sum = row[c0];
      for (int c = c0 + 1; c <= c1; ++c) sum += row[c];
      sums[x] = sum;
    };
    for (int x = 0; x < lo; ++x) clipped(x);
    for (int x = hi; x < w; ++x) clipped(x);
  }
}

// out = the sums of `in` over each element's window down the columns: rows [y - win.before, y + win.after]
// clipped to [0, h), added top to bottom. The rows whose window is whole are one flat loop over the plane.
void column_window_sums(const float* __restrict__ in, float* __restrict__ out, int h, int w, lrn::WindowExtent win) {
  const int lo = std::min(h, win.before), hi = std::max(lo, h - win.after);  // [lo, hi): unclipped rows
  if (lo < hi) {
    const int64_t begin = int64_t{lo} * w, end = int64_t{hi} * w;
#pragma omp simd
    for (int64_t q = begin; q < end; ++q) out[q] = in[q - int64_t{win.before} * w];
    for (int j = 1 - win.before; j <= win.after; ++j) {
      const int64_t shift = int64_t{j} * w;
#pragma omp simd
      for (int64_t q = begin; q < end; ++q) out[q] += in[q + shift];
    }
  }
  auto clipped = [&](int y) {
    const int r0 = std::max(0, y - win.before), r1 = std::min(h - 1, y + win.after);
    float* sums = out + int64_t{y} * w;
    const float* first = in + int64_t{r0} * w;
    for (int x = 0; x < w; ++x) sums[x] = first[x];
    for (int r = r0 + 1; r <= r1; ++r) {
      const float* row = in + int64_t{r} * w;
#pragma omp simd
      for (int x = 0; x < w; ++x) sums[x] += row[x];
    }
  };
  for (int y = 0; y < lo; ++y) clipped(y);
  for (int y = hi; y < h; ++y) clipped(y);
}

// Runs body(plane offset, box) for each plane: box = the window sums of the plane's terms, where term(at, t)
// fills t with the plane's terms. Thread-local scratch of three planes.
template <typename Term, typename Body>
void for_each_plane(int64_t planes, int h, int w, lrn::WindowExtent win, Term term, Body body) {
  const int64_t area = static_cast<int64_t>(h) * w;
#pragma omp parallel if (planes > 1 && planes * area >= kParallelThreshold)
  {
    std::vector<float> scratch(static_cast<size_t>(3 * area));
    float* terms = scratch.data();
    float* row_sums = terms + area;
    float* box = row_sums + area;
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      term(plane * area, terms);
      row_window_sums(terms, row_sums, h, w, win);
      column_window_sums(row_sums, box, h, w, win);
      body(plane * area, box);
    }
  }
}

template <lrn::PowMode M>
void forward_impl(int64_t planes, int h, int w, const LrnParams& p, const float* x, float* y, float* denom) {
  const int64_t area = static_cast<int64_t>(h) * w;
  const float k = p.k, beta = p.beta;
  const float alpha_over_area = p.alpha / (static_cast<float>(p.size) * static_cast<float>(p.size));
  auto squares = [&](int64_t at, float* __restrict__ t) {
    const float* __restrict__ a = x + at;
#pragma omp simd
    for (int64_t q = 0; q < area; ++q) t[q] = a[q] * a[q];
  };
  auto normalize = [&](int64_t at, const float* __restrict__ box) {
    const float* __restrict__ a = x + at;
    float* __restrict__ b = y + at;
    float* __restrict__ d = denom + at;
    float probe = 0.0f;  // stays 0 unless some b or denom is inf or NaN (x * 0 is NaN then)
#pragma omp simd reduction(+ : probe)
    for (int64_t q = 0; q < area; ++q) {
      const float dq = k + alpha_over_area * box[q];
      d[q] = dq;
      b[q] = a[q] * lrn::pow_neg_beta<M>(dq, beta);
      probe += b[q] * 0.0f + dq * 0.0f;
    }
    // Parameters at float's edges can take denom or denom^-beta past float's range while b itself is an ordinary
    // number (k = 1e-45: denom^-1 = inf, and 0 * inf = NaN; alpha = 3e38: denom = inf, so b = 0 instead of
    // a * 0.004): those elements are redone in double (denom keeps its float rounding, inf).
    if (probe != 0.0f) {
      for (int64_t q = 0; q < area; ++q)
        if (!std::isfinite(b[q]) || !std::isfinite(d[q])) b[q] = lrn::exact_output(a[q], p, area_of(p), box[q]);
    }
  };
  for_each_plane(planes, h, w, lrn::forward_window(p.size), squares, normalize);
}

template <lrn::PowMode M>
void backward_impl(int64_t planes, int h, int w, const LrnParams& p, const float* x, const float* y,
                   const float* denom, const float* dy, float* dx) {
  const int64_t area = static_cast<int64_t>(h) * w;
  const float beta = p.beta;
  const float coef = 2.0f * p.alpha * p.beta / (static_cast<float>(p.size) * static_cast<float>(p.size));
  auto ratios = [&](int64_t at, float* __restrict__ t) {  // dy * b / denom
    const float* __restrict__ g = dy + at;
    const float* __restrict__ b = y + at;
    const float* __restrict__ d = denom + at;
#pragma omp simd
    for (int64_t q = 0; q < area; ++q) t[q] = g[q] * b[q] / d[q];
  };
  auto gradient = [&](int64_t at, const float* __restrict__ box) {
    const float* __restrict__ a = x + at;
    const float* __restrict__ g = dy + at;
    const float* __restrict__ d = denom + at;
    float* __restrict__ out = dx + at;
    float probe = 0.0f;  // as in the forward
#pragma omp simd reduction(+ : probe)
    for (int64_t q = 0; q < area; ++q) {
      out[q] = g[q] * lrn::pow_neg_beta<M>(d[q], beta) - coef * a[q] * box[q];
      probe += out[q] * 0.0f;
    }
    if (probe != 0.0f) {
      for (int64_t q = 0; q < area; ++q)
        if (!std::isfinite(out[q])) out[q] = lrn::exact_gradient(g[q], d[q], a[q], p, area_of(p), box[q]);
    }
  };
  // The sum over {j : i in window(j)} runs over the mirrored window.
  for_each_plane(planes, h, w, lrn::backward_window(p.size), ratios, gradient);
}

}  // namespace

void spatial_lrn_forward(int64_t planes, int h, int w, const LrnParams& p, const float* x, float* y, float* denom) {
  if (planes * h * w == 0) return;
  lrn::with_pow_mode(p.beta, [&](auto mode) { forward_impl<decltype(mode)::value>(planes, h, w, p, x, y, denom); });
}

void spatial_lrn_backward(int64_t planes, int h, int w, const LrnParams& p, const float* x, const float* y,
                          const float* denom, const float* dy, float* dx) {
  if (planes * h * w == 0) return;
  lrn::with_pow_mode(p.beta, [&](auto mode) {
    backward_impl<decltype(mode)::value>(planes, h, w, p, x, y, denom, dy, dx);
  });
}

}  // namespace alexnet::cpu
