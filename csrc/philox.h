// Philox-4x32-10 (Salmon et al., "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011), shared by the CPU and
// CUDA backends so both draw bit-identical dropout masks. A counter-based generator: the i-th random number is a
// pure function of (key, counter), so any thread can draw any element without shared state.
//
// The convention used everywhere in alexnet_cuda (the NumPy reference implements it independently):
//   key     = (seed & 0xffffffff, seed >> 32)
//   counter = (block & 0xffffffff, block >> 32, offset & 0xffffffff, offset >> 32), block = i / 4
//   element i takes output word i % 4 of philox4x32_10(counter, key)
//   uniform(i) = (word >> 8) * 2^-24, in [0, 1)
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define AX_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define AX_HOST_DEVICE inline
#endif

namespace alexnet {

struct Philox4 {
  uint32_t v[4];
};

AX_HOST_DEVICE void philox_mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  hi = static_cast<uint32_t>(product >> 32);
  lo = static_cast<uint32_t>(product);
}

AX_HOST_DEVICE Philox4 philox4x32_10(Philox4 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;  // round multipliers
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u; // key schedule increments
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    philox_mulhilo(kMul0, ctr.v[0], hi0, lo0);
    philox_mulhilo(kMul1, ctr.v[2], hi1, lo1);
    Philox4 next;
    next.v[0] = hi1 ^ ctr.v[1] ^ key0;
    next.v[1] = lo1;
    next.v[2] = hi0 ^ ctr.v[3] ^ key1;
    next.v[3] = lo0;
    ctr = next;
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// Four uniforms in [0, 1) for elements 4*block .. 4*block+3 of stream (seed, offset).
AX_HOST_DEVICE void philox_uniform4(uint64_t seed, uint64_t offset, uint64_t block, float out[4]) {
  Philox4 ctr{{static_cast<uint32_t>(block), static_cast<uint32_t>(block >> 32), static_cast<uint32_t>(offset),
               static_cast<uint32_t>(offset >> 32)}};
  const Philox4 r = philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  for (int lane = 0; lane < 4; ++lane) out[lane] = static_cast<float>(r.v[lane] >> 8) * (1.0f / 16777216.0f);
}

}  // namespace alexnet
