// Average pooling with cuda-convnet's geometry (pool=avg): windows clipped to the input, each mean divided by its
// clipped size (shapes.h, pool_geometry.h); contract in cpu/kernels.h, conventions and sources in cpu/avgpool.cpp.
//
// Forward: one thread per output; consecutive threads take consecutive outputs of a row, so a warp's window rows
// are contiguous runs of input (coalesced) and the re-reads of overlapping windows hit L1.
// Backward, without atomics, as a GATHER: one thread per input element adds dy / size over the windows that hold
// it; consecutive threads take consecutive elements of a row and read neighbouring dy (coalesced, cached). Each dx
// is written once (0 for elements in no window), so dx needs no clearing pass.
//
// Both add their terms in the CPU kernels' order (forward: down each window column, then the columns left to
// right; backward: across each window row's windows left to right, then the rows top to bottom), so the two
// backends agree bit for bit: only additions and one division, nothing an FMA could contract.
#include "cuda/check.cuh"
#include "cuda/kernels.h"
#include "pool_geometry.h"

namespace alexnet::cuda {

namespace {

constexpr int kThreads = 256;

__global__ void avgpool_forward_kernel(PoolShape s, const float* __restrict__ x, float* __restrict__ y) {
  for (int64_t o = grid_first(); o < pool::output_count(s); o += grid_step()) {
    const pool::OutputWindow win = pool::output_window(s, o);
    const float* w = x + (win.plane * s.h_in + win.rows.begin) * s.w_in + win.cols.begin;
    float sum = 0.0f;
    for (int kx = 0; kx < win.cols.count(); ++kx) {
      float column = __ldg(w + kx);
      for (int ky = 1; ky < win.rows.count(); ++ky) column += __ldg(w + static_cast<int64_t>(ky) * s.w_in + kx);
      sum = kx == 0 ? column : sum + column;
    }
    y[o] = sum / static_cast<float>(win.rows.count() * win.cols.count());
  }
}

__global__ void avgpool_backward_kernel(PoolShape s, const float* __restrict__ dy, float* __restrict__ dx) {
  for (int64_t e = grid_first(); e < pool::input_count(s); e += grid_step()) {
    const pool::InputCover in = pool::input_cover(s, e);
    const float* dyp = dy + in.plane * s.h_out * s.w_out;
    float grad = 0.0f;
    for (int oy = in.oys.begin; oy < in.oys.end; ++oy) {
      const int rows = pool::row_window(s, oy).count();
      float row = 0.0f;
      for (int ox = in.oxs.begin; ox < in.oxs.end; ++ox)
        row += __ldg(dyp + static_cast<int64_t>(oy) * s.w_out + ox) /
               static_cast<float>(rows * pool::col_window(s, ox).count());
      grad += row;
    }
    dx[e] = grad;
  }
}

}  // namespace

void avgpool_forward(const PoolShape& s, const float* x, float* y, cudaStream_t stream) {
  const int64_t total = pool::output_count(s);
  if (total == 0) return;
  avgpool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(s, x, y);
  AX_CUDA_CHECK_LAUNCH("avgpool_forward");
}

void avgpool_backward(const PoolShape& s, const float* dy, float* dx, cudaStream_t stream) {
  const int64_t total = pool::input_count(s);
  if (total == 0) return;
  avgpool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(s, dy, dx);
  AX_CUDA_CHECK_LAUNCH("avgpool_backward");
}

}  // namespace alexnet::cuda
