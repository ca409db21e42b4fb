// lrn: STUB, to be replaced by the real kernels.
#include "cuda/kernels.h"

#include <stdexcept>

namespace alexnet::cuda {

void lrn_forward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale, cudaStream_t stream) {
  throw std::runtime_error("lrn_forward: not implemented on cuda yet");
}

void lrn_backward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y, const float* scale, const float* dy, float* dx, cudaStream_t stream) {
  throw std::runtime_error("lrn_backward: not implemented on cuda yet");
}

}  // namespace alexnet::cuda
