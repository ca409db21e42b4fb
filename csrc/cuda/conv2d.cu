// conv2d: STUB, to be replaced by the real kernels.
#include "cuda/kernels.h"

#include <stdexcept>

namespace alexnet::cuda {

void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y, cudaStream_t stream) {
  throw std::runtime_error("conv2d_forward: not implemented on cuda yet");
}

void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, cudaStream_t stream) {
  throw std::runtime_error("conv2d_backward_input: not implemented on cuda yet");
}

void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw, cudaStream_t stream) {
  throw std::runtime_error("conv2d_backward_weight: not implemented on cuda yet");
}

void bias_backward(int n, int c, int64_t spatial, const float* dy, float* db, cudaStream_t stream) {
  throw std::runtime_error("bias_backward: not implemented on cuda yet");
}

}  // namespace alexnet::cuda
