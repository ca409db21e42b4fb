// dropout: STUB, to be replaced by the real kernels.
#include "cpu/kernels.h"

#include <stdexcept>

namespace alexnet::cpu {

void dropout_forward(int64_t count, float p, uint64_t seed, uint64_t offset, const float* x, float* y) {
  throw std::runtime_error("dropout_forward: not implemented on cpu yet");
}

void dropout_backward(int64_t count, float p, uint64_t seed, uint64_t offset, const float* dy, float* dx) {
  throw std::runtime_error("dropout_backward: not implemented on cpu yet");
}

}  // namespace alexnet::cpu
