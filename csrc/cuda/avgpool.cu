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
  const int64_t total = static_cast<int64_t>(s.n) * s.c * s.h_out * s.w_out;
  for (int64_t o = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; o < total; o += (int64_t)gridDim.x * blockDim.x) {
    const pool::PlaneIndex out = pool::unflatten(o, s.h_out, s.w_out);
    const int64_t plane = out.plane;
    const int oy = out.y, ox = out.x;
    const pool::Span rows = pool::row_window(s, oy), cols = pool::col_window(s, ox);
    const float* w = x + (plane * s.h_in + rows.begin) * s.w_in + cols.begin;
    float sum = 0.0f;
    for (int kx = 0; kx < cols.count(); ++kx) {
      float column = __ldg(w + kx);
      for (int ky = 1; ky < rows.count(); ++ky) column += __ldg(w + static_cast<int64_t>(ky) * s.w_in + kx);
      sum = kx == 0 ? column : sum + column;
    }
    y[o] = sum / static_cast<float>(rows.count() * cols.count());
  }
}

__global__ void avgpool_backward_kernel(PoolShape s, const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t total = static_cast<int64_t>(s.n) * s.c * s.h_in * s.w_in;
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < total; e += (int64_t)gridDim.x * blockDim.x) {
    const pool::PlaneIndex in = pool::unflatten(e, s.h_in, s.w_in);
    const int64_t plane = in.plane;
    const int iy = in.y, ix = in.x;
    const float* dyp = dy + plane * s.h_out * s.w_out;
    const pool::Span oys = pool::covering(iy, s.start, s.stride, s.kernel, s.h_out);
    const pool::Span oxs = pool::covering(ix, s.start, s.stride, s.kernel, s.w_out);
    float grad = 0.0f;
    for (int oy = oys.begin; oy < oys.end; ++oy) {
      const int rows = pool::row_window(s, oy).count();
      float row = 0.0f;
      for (int ox = oxs.begin; ox < oxs.end; ++ox)
        row += __ldg(dyp + static_cast<int64_t>(oy) * s.w_out + ox) /
               static_cast<float>(rows * pool::col_window(s, ox).count());
      grad += row;
    }
    dx[e] = grad;
  }
}

}  // namespace

void avgpool_forward(const PoolShape& s, const float* x, float* y, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(s.n) * s.c * s.h_out * s.w_out;
  if (total == 0) return;
  avgpool_forward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(s, x, y);
  AX_CUDA_CHECK_LAUNCH("avgpool_forward");
}

void avgpool_backward(const PoolShape& s, const float* dy, float* dx, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(s.n) * s.c * s.h_in * s.w_in;
  if (total == 0) return;
  avgpool_backward_kernel<<<grid_for(total, kThreads), kThreads, 0, stream>>>(s, dy, dx);
  AX_CUDA_CHECK_LAUNCH("avgpool_backward");
}

}  // namespace alexnet::cuda
