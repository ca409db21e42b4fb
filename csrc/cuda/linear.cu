// linear: STUB, to be replaced by the real kernels.
#include "cuda/kernels.h"

#include <stdexcept>

namespace alexnet::cuda {

void linear_forward(int n, int in, int out, const float* x, const float* w, const float* bias, Activation act, float* y, cudaStream_t stream) {
  throw std::runtime_error("linear_forward: not implemented on cuda yet");
}

void linear_backward_input(int n, int in, int out, const float* dy, const float* w, float* dx, cudaStream_t stream) {
  throw std::runtime_error("linear_backward_input: not implemented on cuda yet");
}

void linear_backward_weight(int n, int in, int out, const float* x, const float* dy, float* dw, cudaStream_t stream) {
  throw std::runtime_error("linear_backward_weight: not implemented on cuda yet");
}

}  // namespace alexnet::cuda
