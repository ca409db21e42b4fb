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
// The backward's search runs one tap at a time across a whole output row of windows (first_maxima), with the 3/2
// and 2/2 windows and strides as template parameters.
#include <algorithm>
#include <limits>
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

// The stride: the compile-time S when S > 0, else the shape's.
template <int S>
inline int stride_of(const PoolShape& s) {
  return S > 0 ? S : s.stride;
}

// One plane. Separable: the maximum down each input column of the window's rows (contiguous, so it vectorizes),
// then across each window's columns. With m = v > m ? v : m starting from the window's top-left element, this
// takes the same maximum as a row-major scan of the window, NaN included (a NaN propagates only from the
// top-left element, as in the scan), since every comparison keeps its earlier operand on a tie or a NaN.
template <int K, int S>
void forward_plane(const PoolShape& s, const float* __restrict__ xp, float* __restrict__ yp, float* colmax) {
  const int k = window<K>(s), stride = stride_of<S>(s);
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
    auto clipped = [&](int ox) {
      const pool::Span w = pool::col_window(s, ox);
      const float* c = colmax + w.begin;
      float m = c[0];
      for (int kx = 1; kx < w.count(); ++kx) m = c[kx] > m ? c[kx] : m;
      out[ox] = m;
    };
    // The whole windows of the row together (compile-time K and S: the loop vectorizes; it was a scalar loop per
    // window, most of pool1's 2.2 ms at batch 128), the clipped ones at the edges alone; the same comparisons.
    const pool::Span whole = pool::whole_windows(s);
    for (int ox = 0; ox < whole.begin; ++ox) clipped(ox);
#pragma omp simd
    for (int ox = whole.begin; ox < whole.end; ++ox) {
      const float* c = colmax + (s.start + static_cast<int64_t>(ox) * stride);
      float m = c[0];
      for (int kx = 1; kx < k; ++kx) m = c[kx] > m ? c[kx] : m;
      out[ox] = m;
    }
    for (int ox = whole.end; ox < s.w_out; ++ox) clipped(ox);
  }
}

template <int K, int S>
void forward_impl(const PoolShape& s, const float* x, float* y) {
  const int64_t planes = static_cast<int64_t>(s.n) * s.c;
  const int64_t in_plane = static_cast<int64_t>(s.h_in) * s.w_in, out_plane = static_cast<int64_t>(s.h_out) * s.w_out;
#pragma omp parallel if (planes > 1 && planes * in_plane >= kParallelThreshold)
  {
    std::vector<float> colmax(static_cast<size_t>(s.w_in));
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane)
      forward_plane<K, S>(s, x + plane * in_plane, y + plane * out_plane, colmax.data());
  }
}


// Scratch of one thread for the backward's search, for one plane:
//   phases     = every input row as if no window were clipped, split by column phase: column start + c of row iy
//                is phases[(iy * stride + c % stride) * per_phase + c / stride], NaN outside the plane (a NaN
//                equals nothing, so a clipped tap never matches). Tap kx of windows ox = 0, 1, ... of a row is then
//                the contiguous run at (kx % stride) * per_phase + kx / stride, which loads whole vectors. Split
//                once per plane (split_plane), not once per output row (overlapping windows share rows);
//   target[ox] = y[oy, ox], NaN past w_out (lanes that round the row up to whole vectors: they match nothing);
//   first[ox]  = the result (first_maxima).
struct SearchScratch {
  static constexpr int kLanes = 16;  // one AVX-512 vector of floats: the search loops run whole vectors only
  int width;                         // w_out rounded up to kLanes
  int64_t span;                      // padded row length: (width - 1) * stride + kernel
  int64_t per_phase;                 // ceil(span / stride)
  std::vector<float> row, phases, target;  // row: one padded row in column order, before the split
  std::vector<int> first;
  explicit SearchScratch(const PoolShape& s)
      : width((s.w_out + kLanes - 1) / kLanes * kLanes),
        span(static_cast<int64_t>(width - 1) * s.stride + s.kernel),
        per_phase((span + s.stride - 1) / s.stride),
        row(static_cast<size_t>(per_phase * s.stride)),
        phases(static_cast<size_t>(per_phase * s.stride * s.h_in)),
        target(static_cast<size_t>(width)),
        first(static_cast<size_t>(width)) {}
};

template <int S>
void split_plane(const PoolShape& s, const float* __restrict__ xp, SearchScratch& scratch) {
  const int stride = stride_of<S>(s);
  const int64_t per_phase = scratch.per_phase, padded = per_phase * stride;
  float* __restrict__ row = scratch.row.data();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  // The padded row's columns [lo, hi) lie inside the plane: c with 0 <= start + c < w_in.
  const int64_t lo = std::min<int64_t>(scratch.span, std::max<int64_t>(0, -static_cast<int64_t>(s.start)));
  const int64_t hi = std::max<int64_t>(lo, std::min<int64_t>(scratch.span, static_cast<int64_t>(s.w_in) - s.start));
  std::fill(row, row + lo, nan);
  std::fill(row + hi, row + padded, nan);
  for (int iy = 0; iy < s.h_in; ++iy) {
    const float* src = xp + static_cast<int64_t>(iy) * s.w_in + s.start;
    for (int64_t c = lo; c < hi; ++c) row[c] = src[c];  // row's NaN edges stay
    float* __restrict__ phases = scratch.phases.data() + iy * padded;
    for (int p = 0; p < stride; ++p)
      for (int64_t j = 0; j < per_phase; ++j) phases[p * per_phase + j] = row[j * stride + p];
  }
}

// The first maximum of every window of output row oy, as first[ox] = (iy - rows.begin) * w_in + (ix - window
// origin), the origin being column start + ox * stride before clipping, or -1 if y is not the window's maximum (y
// is not this forward's output). The taps are scanned backwards keeping the last match: the first match in scan
// order (row by row, left to right). One tap at a time across the whole output row, on the NaN-padded split rows,
// so every window looks whole and the compares vectorize with no clipped or leftover windows to treat apart (a
// scalar search per window was 4-5x the forward's time: layers-18pct's pool1 at batch 128, 9.7 ms against 2.2 ms
// at 1 thread).
template <int K, int S>
void first_maxima(const PoolShape& s, const float* __restrict__ yrow, int oy, SearchScratch& scratch) {
  const int k = window<K>(s), stride = stride_of<S>(s), width = scratch.width;
  const int64_t per_phase = scratch.per_phase;
  const pool::Span rows = pool::row_window(s, oy);
  float* __restrict__ target = scratch.target.data();
  int* __restrict__ first = scratch.first.data();
  std::copy(yrow, yrow + s.w_out, target);
  std::fill(target + s.w_out, target + width, std::numeric_limits<float>::quiet_NaN());
  std::fill(first, first + width, -1);
  for (int ky = rows.count() - 1; ky >= 0; --ky) {
    const float* phases = scratch.phases.data() + static_cast<int64_t>(rows.begin + ky) * per_phase * stride;
    for (int kx = k - 1; kx >= 0; --kx) {
      const int offset = ky * s.w_in + kx;
      const float* tap = phases + (kx % stride) * per_phase + kx / stride;  // tap[ox]: this tap of window ox
      // Fixed-length blocks of lanes: whole vectors and no scalar remainder (left to the compiler, most of a
      // 16-window row ran one branchy lane at a time).
      for (int base = 0; base < width; base += SearchScratch::kLanes) {
#pragma omp simd
        for (int lane = 0; lane < SearchScratch::kLanes; ++lane) {
          const int ox = base + lane;
          first[ox] = tap[ox] == target[ox] ? offset : first[ox];
        }
      }
    }
  }
}

// Each output's gradient is added to its window's first maximum, outputs in row-major order (the CUDA gather's
// order, so the sums agree bit for bit).
template <int K, int S>
void backward_impl(const PoolShape& s, const float* x, const float* y, const float* dy, float* dx) {
  const int64_t planes = static_cast<int64_t>(s.n) * s.c;
  const int64_t in_plane = static_cast<int64_t>(s.h_in) * s.w_in, out_plane = static_cast<int64_t>(s.h_out) * s.w_out;
#pragma omp parallel if (planes > 1 && planes * in_plane >= kParallelThreshold)
  {
    SearchScratch scratch(s);
#pragma omp for schedule(static)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const float* xp = x + plane * in_plane;
      const float* yp = y + plane * out_plane;
      const float* dyp = dy + plane * out_plane;
      float* dxp = dx + plane * in_plane;
      // Inputs outside every window (the remainder rows/columns when the windows do not tile the input, the gaps
      // when stride > kernel, the rows before a positive start) get zero.
      std::fill(dxp, dxp + in_plane, 0.0f);
      split_plane<S>(s, xp, scratch);
      for (int oy = 0; oy < s.h_out; ++oy) {
        const int64_t o = static_cast<int64_t>(oy) * s.w_out;
        first_maxima<K, S>(s, yp + o, oy, scratch);
        // dx of window ox's origin row and (unclipped) origin column: a match is always inside the plane.
        float* origin = dxp + static_cast<int64_t>(pool::row_window(s, oy).begin) * s.w_in + s.start;
        const int* first = scratch.first.data();
        for (int ox = 0; ox < s.w_out; ++ox)
          if (first[ox] >= 0) origin[static_cast<int64_t>(ox) * s.stride + first[ox]] += dyp[o + ox];
      }
    }
  }
}

}  // namespace

void maxpool_forward(const PoolShape& s, const float* x, float* y) {
  if (s.h_out <= 0 || s.w_out <= 0) return;
  if (s.kernel == 3 && s.stride == 2) return forward_impl<3, 2>(s, x, y);
  if (s.kernel == 3) return forward_impl<3, 0>(s, x, y);
  if (s.kernel == 2 && s.stride == 2) return forward_impl<2, 2>(s, x, y);
  forward_impl<0, 0>(s, x, y);
}

void maxpool_backward(const PoolShape& s, const float* x, const float* y, const float* dy, float* dx) {
  if (s.h_out <= 0 || s.w_out <= 0) {
    std::fill(dx, dx + static_cast<int64_t>(s.n) * s.c * s.h_in * s.w_in, 0.0f);
    return;
  }
  if (s.kernel == 3 && s.stride == 2) return backward_impl<3, 2>(s, x, y, dy, dx);
  if (s.kernel == 2 && s.stride == 2) return backward_impl<2, 2>(s, x, y, dy, dx);
  backward_impl<0, 0>(s, x, y, dy, dx);
}

}  // namespace alexnet::cpu
