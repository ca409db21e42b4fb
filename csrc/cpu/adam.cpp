// Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019), in place; the per-element maths and
// the per-tensor coefficients are in csrc/adam.h, shared with cuda/adam.cu so both backends compute the same
// float expression. Purely memory-bound: one fused pass reads w, m, v, dw and writes w, m, v.
#include "cpu/kernels.h"

namespace alexnet::cpu {

void adam_update(int64_t count, const adam::StepCoefficients& k, float* w, float* m, float* v, const float* dw) {
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) adam::step(k, w[i], m[i], v[i], dw[i]);
}

}  // namespace alexnet::cpu
