// Shared maths of local response normalization (paper Section 3.3) for the CPU and CUDA kernels:
//   scale_i = k + (alpha/size) * sum_{j in window(i)} a_j^2,   b_i = a_i * scale_i^(-beta)
// window(i) = channels [i - size/2, i + (size-1)/2] clipped to [0, c) (shapes.h).
#pragma once

#include <cmath>
#include <type_traits>

#include "philox.h"  // AX_HOST_DEVICE
#include "shapes.h"

namespace alexnet::lrn {

// The window of channel i is [i - before, i + after]. The forward sums over window(i); the backward sums over
// the channels j whose window contains i, i.e. [i - after, i + before]: the mirror image, which differs from
// window(i) only for even sizes.
struct WindowExtent {
  int before, after;
};
inline WindowExtent forward_window(int size) { return {size / 2, (size - 1) / 2}; }
inline WindowExtent backward_window(int size) { return {(size - 1) / 2, size / 2}; }

// scale^(-beta) is the only transcendental per element. powf does not vectorize without -ffast-math (and costs
// ~20 cycles), so the exponents that occur in practice get exact square-root forms: 0.75 is the paper's beta,
// 0.5 and 1 are common alternatives. sqrtf is correctly rounded on both backends, so these agree with powf to a
// few ulps.
enum class PowMode : int { Zero, Half, ThreeQuarters, One, General };

inline PowMode pow_mode(float beta) {
  if (beta == 0.0f) return PowMode::Zero;
  if (beta == 0.5f) return PowMode::Half;
  if (beta == 0.75f) return PowMode::ThreeQuarters;
  if (beta == 1.0f) return PowMode::One;
  return PowMode::General;
}

template <PowMode M>
AX_HOST_DEVICE float pow_neg_beta(float scale, float beta) {
  if constexpr (M == PowMode::Zero) {
    return 1.0f;
  } else if constexpr (M == PowMode::Half) {
    return 1.0f / sqrtf(scale);
  } else if constexpr (M == PowMode::ThreeQuarters) {
    const float root = sqrtf(scale);  // scale^(3/4) = sqrt(scale) * sqrt(sqrt(scale))
    return 1.0f / (root * sqrtf(root));
  } else if constexpr (M == PowMode::One) {
    return 1.0f / scale;
  } else {
    return powf(scale, -beta);
  }
}

// The double-precision redo of one element whose float result left float's range while its exact value may not
// have (parameters at float's edges): b = a * denom^-beta with denom = k + alpha / divisor * window_sum, and
// dx = dy * denom^-beta - (2 alpha beta / divisor) * a * window_sum (window_sum: of dy * b / denom), where divisor
// is size for the cross-map lrn and size^2 for spatial_lrn.
AX_HOST_DEVICE float exact_output(float a, const LrnParams& p, double divisor, float window_sum) {
  const double denom = static_cast<double>(p.k) + static_cast<double>(p.alpha) / divisor * window_sum;
  return static_cast<float>(a * pow(denom, -static_cast<double>(p.beta)));
}
AX_HOST_DEVICE float exact_gradient(float dy, float denom, float a, const LrnParams& p, double divisor,
                                    float window_sum) {
  const double coef = 2.0 * p.alpha * p.beta / divisor;
  return static_cast<float>(dy * pow(static_cast<double>(denom), -static_cast<double>(p.beta)) -
                            coef * a * window_sum);
}

// Calls launch(std::integral_constant<PowMode, M>) for the pow mode of beta: the kernels' dispatch.
template <typename Launch>
void with_pow_mode(float beta, Launch launch) {
  switch (pow_mode(beta)) {
    case PowMode::Zero: return launch(std::integral_constant<PowMode, PowMode::Zero>{});
    case PowMode::Half: return launch(std::integral_constant<PowMode, PowMode::Half>{});
    case PowMode::ThreeQuarters: return launch(std::integral_constant<PowMode, PowMode::ThreeQuarters>{});
    case PowMode::One: return launch(std::integral_constant<PowMode, PowMode::One>{});
    case PowMode::General: return launch(std::integral_constant<PowMode, PowMode::General>{});
  }
}

}  // namespace alexnet::lrn
