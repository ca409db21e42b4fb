// Max pooling (paper Section 3.4: overlapping pooling, 3x3 windows at stride 2, which the paper found to reduce
// top-1/top-5 error by 0.4%/0.3% over non-overlapping 2x2/2 pooling and to overfit slightly less), with
// cuda-convnet's geometry (shapes.h, pool_geometry.h): output (oy, ox) of a plane is the maximum of x over its
// window, rows [start + oy*stride, + kernel) and the same columns, clipped to the plane. With the defaults (start 0,
// windows that fit whole) nothing is clipped and the result is bit-identical to the unclipped kernel this replaced.
// cuda-convnet's MaxPooler (include/cudaconv2/conv_util.cuh) takes fmaxf over the clipped window from -2e38; for
// inputs above -2e38 and without NaN that is the same maximum.
//
// Backward: each output gradient goes to ONE element of its window, the first maximum in scan order (row by row,
// left to right), found as the first element equal to y. (cuda-convnet's kLocalMaxUndo gives it to EVERY element
// equal to the maximum, (img == ma) * mg in conv_util.cu; on tied maxima that multiplies the gradient, so this
// project keeps one subgradient.) With overlapping windows an input can receive gradient from several outputs;
// they are added in the outputs' row-major order, which makes the result deterministic and identical to the CUDA
// gather (cuda/maxpool.cu), which sums in the same order.
//
// Planes (image, channel) are independent, so OpenMP splits the n*c planes; nothing is shared between threads.
// The forward's window size is a template parameter for the paper's 3x3 and the 2x2 ablation (unrolled windows;
// the vertical maxima vectorize across a row), and a run-time value for any other size and for clipped windows.
#include <algorithm>
#include <vector>

#include "cpu/kernels.h"
#include "pool_geometry.h"

namespace alexnet::cpu {

namespace {
// Below this many input elements the OpenMP fork/join costs more than the pooling.
constexpr int64_t kParallelThreshold = 1 << 14;

// Window side: the compile-time K when K > 0, else the shape's.
template <int K>
inline int window(const PoolShape& s) {
  return K > 0 ? K : s.kernel;
}

// One plane. Separable: the maximum down each input column of the window's rows (contiguous, so it vectorizes),
// then across each window's columns. With m = v > m ? v : m starting from the window's top-left element, this
// takes the same maximum as a row-major scan of the window, NaN included (a NaN propagates only from the
// top-left element, as in the scan), since every comparison keeps its earlier operand on a tie or a NaN.
template <int K>
void forward_plane(const PoolShape& s, const float* __restrict__ xp, float* __restrict__ yp, float* colmax) {
  const int k = window<K>(s);
  const pool::Span cols = pool::covered_columns(s);  // input columns the windows of a row cover
  for (int oy = 0; oy < s.h_out; ++oy) {
    const pool::Span rows = pool::row_window(s, oy);
    const float* top = xp + static_cast<int64_t>(rows.begin) * s.w_in;
    for (int ix = cols.begin; ix < cols.end; ++ix) colmax[ix] = top[ix];
    if (rows.count() == k) {  // a whole window: K unrolls
      for (int ky = 1; ky < k; ++ky) {
        const float* row = top + static_cast<int64_t>(ky) * s.w_in;
#pragma omp simd
        for (int ix = cols.begin; ix < cols.end; ++ix) colmax[ix] = row[ix] > colmax[ix] ? row[ix] : colmax[ix];
      }
    } else {
      for (int ky = 1; ky < rows.count(); ++ky) {
        const float* row = top + static_cast<int64_t>(ky) * s.w_in;
#pragma omp simd
        for (int ix = cols.begin; ix < cols.end; ++ix) colmax[ix] = row[ix] > colmax[ix] ? row[ix] : colmax[ix];
      }
    }
    float* out = yp + static_cast<int64_t>(oy) * s.w_out;
    for (int ox = 0; ox < s.w_out; ++ox) {
      const pool::Span w = pool::col_window(s, ox);
      const float* c = colmax + w.begin;
      float m = c[0];
      if (w.count() == k) {
        for (int kx = 1; kx < k; ++kx) m = c[kx] > m ? c[kx] : m;
      } else {
        for (int kx = 1; kx < w.count(); ++kx) m = c[kx] > m ? c[kx] : m;
      }
      out[ox] = m;
    }
  }
}

template <int K>
void forward_impl(const PoolShape& s, const float* x, float* y) {
  const int64_t planes = static_cast<int64_t>(s.n) * s.c;
  const int64_t in_plane = static_cast<int64_t>(s.h_in) * s.w_in, out_plane = static_cast<int64_t>(s.h_out) * s.w_out;
#pragma omp parallel if (planes > 1 && planes * in_plane >= kParallelThreshold)
  {
    std::vector<float> colmax(static_cast<size_t>(s.w_in));
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane)
      forward_plane<K>(s, x + plane * in_plane, y + plane * out_plane, colmax.data());
  }
}

}  // namespace

void maxpool_forward(const PoolShape& s, const float* x, float* y) {
  if (s.h_out <= 0 || s.w_out <= 0) return;
  if (s.kernel == 3) return forward_impl<3>(s, x, y);
  if (s.kernel == 2) return forward_impl<2>(s, x, y);
  forward_impl<0>(s, x, y);
}

void maxpool_backward(const PoolShape& s, const float* x, const float* y, const float* dy, float* dx) {
  const int64_t planes = static_cast<int64_t>(s.n) * s.c;
  const int64_t in_plane = static_cast<int64_t>(s.h_in) * s.w_in, out_plane = static_cast<int64_t>(s.h_out) * s.w_out;
#pragma omp parallel for schedule(static) if (planes > 1 && planes * in_plane >= kParallelThreshold)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const float* xp = x + plane * in_plane;
    const float* yp = y + plane * out_plane;
    const float* dyp = dy + plane * out_plane;
    float* dxp = dx + plane * in_plane;
    // Inputs outside every window (the remainder rows/columns when the windows do not tile the input, the gaps
    // when stride > kernel, the rows before a positive start) get zero.
    std::fill(dxp, dxp + in_plane, 0.0f);
    for (int oy = 0; oy < s.h_out; ++oy) {
      const pool::Span rows = pool::row_window(s, oy);
      for (int ox = 0; ox < s.w_out; ++ox) {
        const pool::Span cols = pool::col_window(s, ox);
        const int64_t o = static_cast<int64_t>(oy) * s.w_out + ox;
        const float target = yp[o];
        // The first element of the window (row-major) equal to the maximum: scanning backwards and keeping the last
        // match seen is branch-free (a conditional move), unlike an early-exit search, which mispredicts on real data.
        // (Unrolled for a fixed 3x3 window, or with restrict-qualified pointers, GCC 12 compiles this slower.)
        int64_t first = -1;  // stays -1 only if y is not this window's maximum (not the forward's output)
        for (int iy = rows.end - 1; iy >= rows.begin; --iy)
          for (int ix = cols.end - 1; ix >= cols.begin; --ix) {
            const int64_t at = static_cast<int64_t>(iy) * s.w_in + ix;
            first = xp[at] == target ? at : first;
          }
        if (first >= 0) dxp[first] += dyp[o];
      }
    }
  }
}

}  // namespace alexnet::cpu
