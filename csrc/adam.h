// Shared maths of Adam (Kingma & Ba 2015, Algorithm 1) and AdamW (Loshchilov & Hutter 2019, Algorithm 2) for the
// CPU and CUDA kernels. Per element, at 1-based step t:
//   g = dw + weight_decay * w                 (Adam with an L2 penalty; AdamW leaves g = dw)
//   m = beta1 * m + (1 - beta1) * g
//   v = beta2 * v + (1 - beta2) * g^2
//   w = w - lr * weight_decay * w             (AdamW only: decay decoupled from the adaptive step)
//   w = w - lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t)
// The last line is written as in Kingma & Ba's Section 2 "more efficient" form (and PyTorch):
//   w -= (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// so the bias corrections are two scalars computed once per tensor on the host, in double (ops.cpp).
#pragma once

#include <cmath>

#include "philox.h"  // AX_HOST_DEVICE

namespace alexnet::adam {

// The per-tensor scalars of one step, all float32 so both backends compute the same expression.
struct StepCoefficients {
  float beta1, beta2, eps;
  float l2_decay;           // weight_decay for Adam's L2 penalty, 0 for AdamW
  float decoupled_keep;     // 1 - lr * weight_decay for AdamW, 1 for Adam
  float step_size;          // lr / (1 - beta1^t)
  float inv_sqrt_bias2;     // 1 / sqrt(1 - beta2^t)
};

inline StepCoefficients step_coefficients(float lr, float beta1, float beta2, float eps, float weight_decay,
                                          bool decoupled, int64_t step) {
  const double bias1 = 1.0 - std::pow(static_cast<double>(beta1), static_cast<double>(step));
  const double bias2 = 1.0 - std::pow(static_cast<double>(beta2), static_cast<double>(step));
  StepCoefficients k{};
  k.beta1 = beta1;
  k.beta2 = beta2;
  k.eps = eps;
  k.l2_decay = decoupled ? 0.0f : weight_decay;
  k.decoupled_keep = decoupled ? static_cast<float>(1.0 - static_cast<double>(lr) * weight_decay) : 1.0f;
  k.step_size = static_cast<float>(lr / bias1);
  k.inv_sqrt_bias2 = static_cast<float>(1.0 / std::sqrt(bias2));
  return k;
}

// One element, in place. fmaf and sqrtf are correctly rounded on both backends, and explicit fmaf leaves the
// compilers nothing to contract differently.
AX_HOST_DEVICE void step(const StepCoefficients& k, float& w, float& m, float& v, float dw) {
  const float g = fmaf(k.l2_decay, w, dw);
  m = fmaf(k.beta1, m, (1.0f - k.beta1) * g);
  v = fmaf(k.beta2, v, (1.0f - k.beta2) * (g * g));
  const float denom = fmaf(sqrtf(v), k.inv_sqrt_bias2, k.eps);
  w = fmaf(-k.step_size, m / denom, w * k.decoupled_keep);
}

}  // namespace alexnet::adam
