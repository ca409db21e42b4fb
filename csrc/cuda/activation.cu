// activation: STUB, to be replaced by the real kernels.
#include "cuda/kernels.h"

#include <stdexcept>

namespace alexnet::cuda {

void activation_forward(Activation act, int64_t count, const float* x, float* y, cudaStream_t stream) {
  throw std::runtime_error("activation_forward: not implemented on cuda yet");
}

void activation_backward(Activation act, int64_t count, const float* y, const float* dy, float* dx, cudaStream_t stream) {
  throw std::runtime_error("activation_backward: not implemented on cuda yet");
}

}  // namespace alexnet::cuda
