// Average pooling with cuda-convnet's geometry (pool=avg; shapes.h, pool_geometry.h): output (oy, ox) is the mean
// of its window, rows [start + oy*stride, + kernel) and the same columns, CLIPPED to the plane, and the mean divides
// by the clipped window's size (AvgPooler::output(sum, regionSize) in include/cudaconv2/conv_util.cuh, regionSize
// from kLocalPool's clipped loop bounds). So a window hanging over the edge averages only the elements it holds:
// layers-18pct's 3x3/2 pools make 16x16 -> 8x8, and each window of the last row and column holds 3x2, 2x3 or 2x2.
//
// Backward: dx = the sum, over the windows that hold an element, of dy / that window's clipped size, as
// cuda-convnet's kLocalAvgUndo (conv_util.cu) computes it.
//
// Both passes are separable, plane by plane (OpenMP splits the n*c planes):
//   forward:  colsum[ix] = the window's rows added down each column (contiguous: vectorizes), then each output adds
//             its columns' colsums left to right and divides by its size;
//   backward: for each output row, g[ix] = the dy / size of that row's windows holding column ix (added left to
//             right), then g is added to each input row of the window (contiguous: vectorizes).
// The CUDA kernels (cuda/avgpool.cu) add the same terms in the same order, so the two backends agree bit for bit
// (additions and one division only: nothing a compiler may contract into an FMA).
#include <algorithm>
#include <vector>

#include "cpu/kernels.h"
#include "pool_geometry.h"

namespace alexnet::cpu {

namespace {

// Below this many input elements the OpenMP fork/join costs more than the pooling.
constexpr int64_t kParallelThreshold = 1 << 14;

// The window size K and stride S: compile-time when > 0 (layers-18pct's 3/2), else the shape's. The whole windows
// of a row are then summed with a fixed, unrolled column count, so the loop over them vectorizes (the divisions
// too); the clipped ones at the edges are summed one by one. Same additions in the same order either way. Measured
// at 1 thread (CPU time), layers-18pct pool2 (128x32x16x16 -> 8x8): 1.8 -> 1.1 ms.
template <int K, int S>
void forward_plane(const PoolShape& s, const float* __restrict__ xp, float* __restrict__ yp, float* colsum) {
  const int k = K > 0 ? K : s.kernel, stride = S > 0 ? S : s.stride;
  const pool::Span cols = pool::covered_columns(s), whole = pool::whole_windows(s);
  for (int oy = 0; oy < s.h_out; ++oy) {
    const pool::Span rows = pool::row_window(s, oy);
    const float* top = xp + static_cast<int64_t>(rows.begin) * s.w_in;
    for (int ix = cols.begin; ix < cols.end; ++ix) colsum[ix] = top[ix];
    for (int ky = 1; ky < rows.count(); ++ky) {
      const float* row = top + static_cast<int64_t>(ky) * s.w_in;
#pragma omp simd
      for (int ix = cols.begin; ix < cols.end; ++ix) colsum[ix] += row[ix];
    }
    float* out = yp + static_cast<int64_t>(oy) * s.w_out;
    auto clipped = [&](int ox) {
      const pool::Span w = pool::col_window(s, ox);
      float sum = colsum[w.begin];
      for (int ix = w.begin + 1; ix < w.end; ++ix) sum += colsum[ix];
      out[ox] = sum / static_cast<float>(rows.count() * w.count());
    };
    for (int ox = 0; ox < whole.begin; ++ox) clipped(ox);
    const float size = static_cast<float>(rows.count() * k);
#pragma omp simd
    for (int ox = whole.begin; ox < whole.end; ++ox) {
      const float* c = colsum + (s.start + static_cast<int64_t>(ox) * stride);  // window ox's first column
      float sum = c[0];
      for (int kx = 1; kx < k; ++kx) sum += c[kx];
      out[ox] = sum / size;
    }
    for (int ox = whole.end; ox < s.w_out; ++ox) clipped(ox);
  }
}

void backward_plane(const PoolShape& s, const float* __restrict__ dyp, float* __restrict__ dxp, float* g) {
  const pool::Span cols = pool::covered_columns(s);
  // Elements outside every window (gaps when stride > kernel, rows and columns before a positive start or after
  // the last window) get zero.
  std::fill(dxp, dxp + static_cast<int64_t>(s.h_in) * s.w_in, 0.0f);
  for (int oy = 0; oy < s.h_out; ++oy) {
    const pool::Span rows = pool::row_window(s, oy);
    std::fill(g + cols.begin, g + cols.end, 0.0f);
    const float* grad = dyp + static_cast<int64_t>(oy) * s.w_out;
    for (int ox = 0; ox < s.w_out; ++ox) {
      const pool::Span w = pool::col_window(s, ox);
      const float share = grad[ox] / static_cast<float>(rows.count() * w.count());
      for (int ix = w.begin; ix < w.end; ++ix) g[ix] += share;
    }
    for (int iy = rows.begin; iy < rows.end; ++iy) {
      float* row = dxp + static_cast<int64_t>(iy) * s.w_in;
#pragma omp simd
      for (int ix = cols.begin; ix < cols.end; ++ix) row[ix] += g[ix];
    }
  }
}

// Runs body(plane, scratch) over the n*c planes; scratch is a thread-local row of w_in floats.
template <typename Body>
void for_each_plane(const PoolShape& s, Body body) {
  const int64_t planes = static_cast<int64_t>(s.n) * s.c;
  const int64_t in_plane = static_cast<int64_t>(s.h_in) * s.w_in;
#pragma omp parallel if (planes > 1 && planes * in_plane >= kParallelThreshold)
  {
    std::vector<float> scratch(static_cast<size_t>(s.w_in));
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) body(plane, scratch.data());
  }
}

}  // namespace

void avgpool_forward(const PoolShape& s, const float* x, float* y) {
  if (s.h_out <= 0 || s.w_out <= 0) return;
  const int64_t in_plane = static_cast<int64_t>(s.h_in) * s.w_in, out_plane = static_cast<int64_t>(s.h_out) * s.w_out;
  auto run = [&](auto plane_kernel) {
    for_each_plane(s, [&](int64_t plane, float* colsum) {
      plane_kernel(s, x + plane * in_plane, y + plane * out_plane, colsum);
    });
  };
  if (s.kernel == 3 && s.stride == 2) return run(forward_plane<3, 2>);
  run(forward_plane<0, 0>);
}

void avgpool_backward(const PoolShape& s, const float* dy, float* dx) {
  const int64_t in_plane = static_cast<int64_t>(s.h_in) * s.w_in, out_plane = static_cast<int64_t>(s.h_out) * s.w_out;
  for_each_plane(s, [&](int64_t plane, float* g) {
    backward_plane(s, dy + plane * out_plane, dx + plane * in_plane, g);
  });
}

}  // namespace alexnet::cpu
