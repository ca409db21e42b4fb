// sgd: the paper's update rule (Section 5), in place,
//   v <- momentum * v - weight_decay * lr * w - lr * dw
//   w <- w + v
// with momentum 0.9 and weight decay 0.0005 in the paper. The decay term is scaled by the learning rate, as in
// the paper's equation, so it shrinks with the learning-rate schedule.
#include "cpu/kernels.h"

namespace alexnet::cpu {

void sgd_update(int64_t count, float lr, float momentum, float weight_decay, float* w, float* v, const float* dw) {
  const float decay_lr = weight_decay * lr;  // computed once, the same way on the GPU
#pragma omp parallel for simd schedule(static)
  for (int64_t i = 0; i < count; ++i) {
    const float velocity = momentum * v[i] - decay_lr * w[i] - lr * dw[i];
    v[i] = velocity;
    w[i] += velocity;
  }
}

}  // namespace alexnet::cpu
