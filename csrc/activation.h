// The activation functions, shared by the standalone activation op and the conv2d/linear fused epilogues, on the
// CPU and in CUDA kernels. ReLU is the paper's non-linearity (Section 3.1); tanh is its saturating baseline.
#pragma once

#include <cmath>

#include "philox.h"  // AX_HOST_DEVICE
#include "shapes.h"

namespace alexnet {

AX_HOST_DEVICE float activate(Activation act, float v) {
  if (act == Activation::ReLU) return v > 0.0f ? v : 0.0f;
  if (act == Activation::Tanh) return tanhf(v);
  return v;
}

// Derivative expressed through the output y = activate(x): relu' = [y > 0], tanh' = 1 - y^2.
AX_HOST_DEVICE float activation_grad_from_output(Activation act, float y) {
  if (act == Activation::ReLU) return y > 0.0f ? 1.0f : 0.0f;
  if (act == Activation::Tanh) return 1.0f - y * y;
  return 1.0f;
}

}  // namespace alexnet
