// Shared maths of Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019, Algorithm 2) for the
// CPU and CUDA kernels. Per element, at 1-based step t:
//   g = dw + weight_decay * w                 (Adam with an L2 penalty; AdamW leaves g = dw)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   w = w - lr * weight_decay * w             (AdamW only: decay decoupled from the adaptive step)
//   w = w - lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
// The last line is written as in Kingma & Ba's Section 2 "more efficient" form (and PyTorch):
//   w -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// so the bias corrections are two scalars computed once per tensor on the host (ops_optimizers.cpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "philox.h"  // AX_HOST_DEVICE

namespace alexnet::adam {

// The per-tensor scalars of one step. Every intermediate is double, on both backends, and only the stored w, m, v
// are rounded to float32: in float, g^2 or weight_decay * w can overflow to inf (and m / sqrt(v) become inf / inf =
// NaN) for weights whose true update is an ordinary number. The step stays memory-bound (7 floats moved per
// weight), so the double arithmetic costs nothing measurable on the CPU or on GPUs with fast FP64.
struct StepCoefficients {
  double beta1, beta2, eps;
  double l2_decay;        // weight_decay for Adam's L2 penalty, 0 for AdamW
  double decoupled_keep;  // 1 - lr * weight_decay for AdamW, 1 for Adam
  double step_size;       // lr / (1 - beta1^t)
  double inv_sqrt_bias2;  // 1 / sqrt(1 - beta2^t)
};

inline StepCoefficients step_coefficients(float lr, float beta1, float beta2, float eps, float weight_decay,
                                          bool decoupled, int64_t step) {
  const double bias1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  StepCoefficients k{};
  k.beta1 = beta1;
  k.beta2 = beta2;
  k.eps = eps;
  k.l2_decay = decoupled ? 0.0 : weight_decay;
  k.decoupled_keep = decoupled ? 1.0 - static_cast<double>(lr) * weight_decay : 1.0;
  k.step_size = lr / bias1;
  k.inv_sqrt_bias2 = 1.0 / std::sqrt(bias2);
  return k;
}

// One element, in place.
AX_HOST_DEVICE void step(const StepCoefficients& k, float& w, float& m, float& v, float dw) {
  const double w0 = w, g = dw + k.l2_decay * w0;
  const double m1 = k.beta1 * m + (1.0 - k.beta1) * g;
  const double v1 = k.beta2 * v + (1.0 - k.beta2) * (g * g);
  m = static_cast<float>(m1);
  v = static_cast<float>(v1);
  w = static_cast<float>(w0 * k.decoupled_keep - k.step_size * (m1 / (sqrt(v1) * k.inv_sqrt_bias2 + k.eps)));
}

}  // namespace alexnet::adam
