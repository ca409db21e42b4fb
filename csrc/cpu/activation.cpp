// activation: STUB, to be replaced by the real kernels.
#include "cpu/kernels.h"

#include <stdexcept>

namespace alexnet::cpu {

void activation_forward(Activation act, int64_t count, const float* x, float* y) {
  throw std::runtime_error("activation_forward: not implemented on cpu yet");
}

void activation_backward(Activation act, int64_t count, const float* y, const float* dy, float* dx) {
  throw std::runtime_error("activation_backward: not implemented on cpu yet");
}

}  // namespace alexnet::cpu
