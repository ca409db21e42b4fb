// Max pooling (paper Section 3.4: overlapping 3x3 windows at stride 2) with cuda-convnet's geometry of windows
// clipped to the input (shapes.h, pool_geometry.h); contract and conventions in cpu/kernels.h and cpu/maxpool.cpp.
//
// Forward: one thread per output; consecutive threads take consecutive outputs of a row, so a warp's window rows
// are contiguous runs of input (coalesced), and the (kernel/stride)^2 re-reads of overlapping windows hit L1.
//
// Backward, deterministic and without atomics, as a GATHER: one thread per input element visits every window
// that contains it and adds that window's dy when the element is the window's first maximum in scan order (row
// by row, left to right), i.e. equal to y and preceded in the scan by no other element equal to y. Windows are
// visited in row-major output order, the same order in which the CPU kernel scatters, so both backends produce
// bit-identical gradients. Each dx is written once (elements outside every window get 0), so dx needs no
// clearing pass. The "earlier equal element" scan runs only when the element equals y (rare except in windows
// with ties, e.g. all-zero regions after ReLU) and reads neighbours that the warp has just loaded (L1).
//
// Vector loads do not fit either kernel: windows start at stride-spaced, generally unaligned columns and rows
// have arbitrary (usually odd) widths; coalesced scalar accesses already use each fetched sector fully.
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "pool_geometry.h"

namespace alexnet::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void maxpool_forward_kernel(PoolShape s, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t o = grid_first(); o < pool::output_count(s); o += grid_step()) {
    const pool::OutputWindow win = pool::output_window(s, o);
    const float* w = x + (win.plane * s.h_in + win.rows.begin) * s.w_in + win.cols.begin;
    float m = __ldg(w);
    for (int ky = 0; ky < win.rows.count(); ++ky)
      for (int kx = 0; kx < win.cols.count(); ++kx) {
        const float v = __ldg(w + static_cast<int64_t>(ky) * s.w_in + kx);
        m = v > m ? v : m;
      }
    y[o] = m;
  }
}

__global__ void maxpool_backward_kernel(PoolShape s, const float* __restrict__ x, const float* __restrict__ y,
                                        const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t e = grid_first(); e < pool::input_count(s); e += grid_step()) {
    const pool::InputCover in = pool::input_cover(s, e);
    const float* xp = x + in.plane * s.h_in * s.w_in;
    const int64_t out_base = in.plane * s.h_out * s.w_out;
    const float value = __ldg(x + e);
    float grad = 0.0f;
    for (int oy = in.oys.begin; oy < in.oys.end; ++oy) {
      const pool::Span rows = pool::row_window(s, oy);
      for (int ox = in.oxs.begin; ox < in.oxs.end; ++ox) {
        const int64_t o = out_base + static_cast<int64_t>(oy) * s.w_out + ox;
        const float target = __ldg(y + o);
        if (value != target) continue;
        // This element is a maximum of window (oy, ox); it takes the gradient only if no element before it in
        // the window's scan order is also a maximum: the rows above it in full, then its row up to its column.
        const pool::Span cols = pool::col_window(s, ox);
        bool earlier = false;
        for (int ry = rows.begin; ry <= in.iy && !earlier; ++ry) {
          const int end = ry < in.iy ? cols.end : in.ix;
          const float* row = xp + static_cast<int64_t>(ry) * s.w_in;
          for (int rx = cols.begin; rx < end; ++rx)
            if (__ldg(row + rx) == target) {
              earlier = true;
              break;
            }
        }
        if (!earlier) grad += __ldg(dy + o);
      }
    }
    dx[e] = grad;
  }
}

}  // namespace

void maxpool_forward(const PoolShape& s, const float* x, float* y, cudaStream_t stream) {
  const int64_t total = pool::output_count(s);
  if (total == 0) return;
  maxpool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(s, x, y);
  AX_CUDA_CHECK_LAUNCH("maxpool_forward");
}

void maxpool_backward(const PoolShape& s, const float* x, const float* y, const float* dy, float* dx,
                      cudaStream_t stream) {
  const int64_t total = pool::input_count(s);
  if (total == 0) return;
  maxpool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(s, x, y, dy, dx);
  AX_CUDA_CHECK_LAUNCH("maxpool_backward");
}

}  // namespace alexnet::cuda
