// elementwise: the few generic element-wise ops the network's plumbing needs.
#include "cpu/kernels.h"

namespace alexnet::cpu {

void add_inplace(int64_t count, float* dst, const float* src) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) dst[i] += src[i];
}

}  // namespace alexnet::cpu
