// sgd: STUB, to be replaced by the real kernels.
#include "cuda/kernels.h"

#include <stdexcept>

namespace alexnet::cuda {

void sgd_update(int64_t count, float lr, float momentum, float weight_decay, float* w, float* v, const float* dw, cudaStream_t stream) {
  throw std::runtime_error("sgd_update: not implemented on cuda yet");
}

}  // namespace alexnet::cuda
