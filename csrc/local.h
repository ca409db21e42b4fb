// Window arithmetic of the locally connected layer, shared by its CPU (cpu/local.cpp) and CUDA (cuda/local.cu)
// kernels; the layouts are in shapes.h.
#pragma once

#include "philox.h"  // AX_HOST_DEVICE
#include "shapes.h"

namespace alexnet::local {

// The output row (or column) whose window reads input row i at kernel offset r, i.e. o with
// o * stride - pad + r = i and 0 <= o < out; -1 when there is none. The sum over r of the windows that return
// o >= 0 is what the backward pass adds into dx[i].
AX_HOST_DEVICE int window_reading(int i, int r, int pad, int stride, int out) {
  const int t = i + pad - r;
  if (t < 0 || t % stride != 0 || t / stride >= out) return -1;
  return t / stride;
}

// Calls visit(position, rq) for every window that reads input pixel (iy, ix): position = oy * w_out + ox, and
// rq = r * kw + q the kernel offset at which it reads it (a tap is (c, r, q) = c * kh * kw + rq). The order is
// fixed (r, then q), so sums over the windows are deterministic.
template <class Visit>
AX_HOST_DEVICE void for_each_window_reading(const ConvShape& s, int iy, int ix, Visit&& visit) {
  for (int r = 0; r < s.kh; ++r) {
    const int oy = window_reading(iy, r, s.pad, s.stride, s.h_out);
    if (oy < 0) continue;
    for (int q = 0; q < s.kw; ++q) {
      const int ox = window_reading(ix, q, s.pad, s.stride, s.w_out);
      if (ox >= 0) visit(oy * s.w_out + ox, r * s.kw + q);
    }
  }
}

}  // namespace alexnet::local
