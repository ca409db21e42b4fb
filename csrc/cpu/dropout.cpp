// dropout (paper Section 4.2), inverted: element i is kept when uniform(seed, offset, i) >= p and kept elements
// are scaled by 1/(1-p), so the network needs no rescaling at test time. The uniforms come from the counter-based
// Philox stream of philox.h, which makes the mask a pure function of (seed, offset, i): the backward pass
// regenerates it instead of storing it, and the CUDA backend draws the very same bits.
#include <algorithm>

#include "cpu/kernels.h"
#include "philox.h"

namespace alexnet::cpu {
namespace {

// y = keep ? x * scale : 0. A select, not a multiply by the mask, so a dropped inf/NaN input gives 0 (like the
// CUDA kernel). Forward and backward are the same masking of different tensors.
void apply_dropout_mask(int64_t count, float p, uint64_t seed, uint64_t offset, const float* x, float* y) {
  const float scale = 1.0f / (1.0f - p);
  const int64_t blocks = (count + 3) / 4;  // one Philox call yields the uniforms of 4 consecutive elements
#pragma omp parallel for schedule(static)
  for (int64_t block = 0; block < blocks; ++block) {
    float u[4];
    philox_uniform4(seed, offset, static_cast<uint64_t>(block), u);
    const int64_t base = 4 * block;
    const int lanes = static_cast<int>(std::min<int64_t>(4, count - base));
    for (int lane = 0; lane < lanes; ++lane) {
      y[base + lane] = u[lane] >= p ? x[base + lane] * scale : 0.0f;
    }
  }
}

}  // namespace

void dropout_forward(int64_t count, float p, uint64_t seed, uint64_t offset, const float* x, float* y) {
  apply_dropout_mask(count, p, seed, offset, x, y);
}

void dropout_backward(int64_t count, float p, uint64_t seed, uint64_t offset, const float* dy, float* dx) {
  apply_dropout_mask(count, p, seed, offset, dy, dx);
}

}  // namespace alexnet::cpu
