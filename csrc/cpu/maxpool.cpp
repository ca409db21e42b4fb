// maxpool: STUB, to be replaced by the real kernels.
#include "cpu/kernels.h"

#include <stdexcept>

namespace alexnet::cpu {

void maxpool_forward(const PoolShape& s, const float* x, float* y) {
  throw std::runtime_error("maxpool_forward: not implemented on cpu yet");
}

void maxpool_backward(const PoolShape& s, const float* x, const float* y, const float* dy, float* dx) {
  throw std::runtime_error("maxpool_backward: not implemented on cpu yet");
}

}  // namespace alexnet::cpu
