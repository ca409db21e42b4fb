// lrn: STUB, to be replaced by the real kernels.
#include "cpu/kernels.h"

#include <stdexcept>

namespace alexnet::cpu {

void lrn_forward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale) {
  throw std::runtime_error("lrn_forward: not implemented on cpu yet");
}

void lrn_backward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y, const float* scale, const float* dy, float* dx) {
  throw std::runtime_error("lrn_backward: not implemented on cpu yet");
}

}  // namespace alexnet::cpu
