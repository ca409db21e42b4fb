// sgd: STUB, to be replaced by the real kernels.
#include "cpu/kernels.h"

#include <stdexcept>

namespace alexnet::cpu {

void sgd_update(int64_t count, float lr, float momentum, float weight_decay, float* w, float* v, const float* dw) {
  throw std::runtime_error("sgd_update: not implemented on cpu yet");
}

}  // namespace alexnet::cpu
