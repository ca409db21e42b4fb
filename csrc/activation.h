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

// Derivative expressed through the output y = activate(x): relu' = [y > 0], tanh' = 1 - y^2, computed as
// (1 - y)(1 + y): near saturation (|y| -> 1) 1 - y*y cancels, and its accuracy then depends on whether the
// compiler fuses it into an FMA (nvcc does, a host compiler may not: the emulated device's sanitizer build showed
// a 1e-4 relative error). 1 - y is exact for y in [0.5, 1] and the product stays within an ulp or two either way.
AX_HOST_DEVICE float activation_grad_from_output(Activation act, float y) {
  if (act == Activation::ReLU) return y > 0.0f ? 1.0f : 0.0f;
  if (act == Activation::Tanh) return (1.0f - y) * (1.0f + y);
  return 1.0f;
}

}  // namespace alexnet
