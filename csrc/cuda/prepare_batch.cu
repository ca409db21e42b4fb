// prepare_batch: STUB, to be replaced by the real kernels.
#include "cuda/kernels.h"

#include <stdexcept>

namespace alexnet::cuda {

void prepare_batch(const BatchShape& s, const uint8_t* images, const float* mean, const int32_t* crop_y, const int32_t* crop_x, const int32_t* flip, const float* rgb_shift, float scale, float* out, cudaStream_t stream) {
  throw std::runtime_error("prepare_batch: not implemented on cuda yet");
}

}  // namespace alexnet::cuda
