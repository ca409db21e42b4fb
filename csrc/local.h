// Window arithmetic of the locally connected layer, shared by its CPU (cpu/local.cpp) and CUDA (cuda/local.cu)
// kernels; the layouts are in shapes.h.
#pragma once

#include "philox.h"  // AX_HOST_DEVICE

namespace alexnet::local {

// The output row (or column) whose window reads input row i at kernel offset r, i.e. o with
// o * stride - pad + r = i and 0 <= o < out; -1 when there is none. The sum over r of the windows that return
// o >= 0 is what the backward pass adds into dx[i].
AX_HOST_DEVICE int window_reading(int i, int r, int pad, int stride, int out) {
  const int t = i + pad - r;
  if (t < 0 || t % stride != 0 || t / stride >= out) return -1;
  return t / stride;
}

}  // namespace alexnet::local
