// linear: STUB, to be replaced by the real kernels.
#include "cpu/kernels.h"

#include <stdexcept>

namespace alexnet::cpu {

void linear_forward(int n, int in, int out, const float* x, const float* w, const float* bias, Activation act, float* y) {
  throw std::runtime_error("linear_forward: not implemented on cpu yet");
}

void linear_backward_input(int n, int in, int out, const float* dy, const float* w, float* dx) {
  throw std::runtime_error("linear_backward_input: not implemented on cpu yet");
}

void linear_backward_weight(int n, int in, int out, const float* x, const float* dy, float* dw) {
  throw std::runtime_error("linear_backward_weight: not implemented on cpu yet");
}

}  // namespace alexnet::cpu
