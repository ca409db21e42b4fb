// dropout (paper Section 4.2), inverted: element i is kept when uniform(seed, offset, i) >= p and kept elements
// are scaled by 1/(1-p), so the network needs no rescaling at test time. The uniforms come from the counter-based
// Philox stream of philox.h, which makes the mask a pure function of (seed, offset, i): the backward pass
// regenerates it instead of storing it, and the CUDA backend draws the very same bits.
#include "cpu/kernels.h"
#include "philox.h"

namespace alexnet::cpu {
namespace {

// y = keep ? x * scale : 0. A select, not a multiply by the mask, so a dropped inf/NaN input gives 0 (like the
// CUDA kernel). Forward and backward are the same masking of different tensors. Element i takes the uniform at
// position first + i of the stream, so a slice of a larger tensor (one rank's share of a global batch) gets the
// slice of that tensor's mask.
void apply_dropout_mask(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* x,
                        float* y) {
  const float scale = 1.0f / (1.0f - p);
  // One Philox call yields the uniforms of 4 consecutive stream positions: the calls covering [first, first+count).
  const int64_t begin = static_cast<int64_t>(first / 4);
  const int64_t blocks = (static_cast<int64_t>(first % 4) + count + 3) / 4;  // no overflow at first near 2^64
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    float u[4];
    const uint64_t block = static_cast<uint64_t>(begin + b);
    philox_uniform4(seed, offset, block, u);
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = static_cast<int64_t>(4 * block + lane - first);  // wraps below first: skipped below
      if (4 * block + lane < first || i >= count) continue;
      y[i] = u[lane] >= p ? x[i] * scale : 0.0f;
    }
  }
}

}  // namespace

void dropout_forward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* x,
                     float* y) {
  apply_dropout_mask(count, p, seed, offset, first, x, y);
}

void dropout_backward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* dy,
                      float* dx) {
  apply_dropout_mask(count, p, seed, offset, first, dy, dx);
}

}  // namespace alexnet::cpu
