// Kernel-side CUDA for the emulated device: the qualifiers, threadIdx/blockIdx/blockDim/gridDim, __syncthreads,
// warp shuffles, atomics, __ldg and the device maths the kernels use.
//
// Every CUDA thread of a block runs as a fiber on one host thread (block.cpp). threadIdx and friends read the
// running fiber's own copy, so they cost a thread-local load. __syncthreads and the shuffles switch back to the
// block's scheduler, which releases a barrier only when every thread of the block has arrived at the same one
// and a shuffle only when every lane its mask names has arrived: mismatches are reported, never hung on.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "types.h"

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __constant__ static
#define __align__(n) __attribute__((aligned(n)))
// The build-time rewrite (rewrite.py) turns `__shared__ T x[...];` into a per-block declaration plus a call that
// poisons it at the start of every block, and moves __launch_bounds__ into a check at the kernel's entry; these
// plain definitions only serve code that the rewrite did not see.
#define __shared__ static thread_local
#define __launch_bounds__(...)

namespace axemu {

// What a running CUDA thread sees as its built-in variables.
struct Builtins {
  uint3 thread_idx;
  uint3 block_idx;
  dim3 block_dim;
  dim3 grid_dim;
};
// The running fiber's built-ins (null outside kernels). The default (dynamic) TLS model: the module's thread-local
// block is large (every kernel's __shared__ arrays live in it), too large for the static TLS that initial-exec
// would force on the whole module when Python loads it.
inline thread_local Builtins* t_builtins = nullptr;

// Returns true when the launch is only being probed for its __launch_bounds__ (the kernel then returns at once).
bool kernel_entry(int max_threads_per_block = 0, int min_blocks_per_sm = 0);
void shared_declared(void* address, size_t bytes, const char* file, int line);
void syncthreads(const char* file, int line);
void syncwarp(unsigned mask, const char* file, int line);

enum class ShuffleKind { Index, Up, Down, Xor };
uint64_t shuffle_bits(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t bits, int param,
                      int width);
template <class T>
T shuffle(ShuffleKind kind, const char* file, int line, unsigned mask, T value, int param, int width = 32) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "shuffles move at most 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &value, sizeof(T));
  bits = shuffle_bits(kind, file, line, mask, bits, param, width);
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}

}  // namespace axemu

#define AXEMU_KERNEL_ENTRY(...) \
  if (::axemu::kernel_entry(__VA_ARGS__)) return
#define __syncthreads() ::axemu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) ::axemu::syncwarp((0xffffffffu, ##__VA_ARGS__), __FILE__, __LINE__)
#define __shfl_sync(mask, v, lane, ...) \
  ::axemu::shuffle(::axemu::ShuffleKind::Index, __FILE__, __LINE__, mask, v, lane, ##__VA_ARGS__)
#define __shfl_up_sync(mask, v, delta, ...) \
  ::axemu::shuffle(::axemu::ShuffleKind::Up, __FILE__, __LINE__, mask, v, delta, ##__VA_ARGS__)
#define __shfl_down_sync(mask, v, delta, ...) \
  ::axemu::shuffle(::axemu::ShuffleKind::Down, __FILE__, __LINE__, mask, v, delta, ##__VA_ARGS__)
#define __shfl_xor_sync(mask, v, lane_mask, ...) \
  ::axemu::shuffle(::axemu::ShuffleKind::Xor, __FILE__, __LINE__, mask, v, lane_mask, ##__VA_ARGS__)

#define threadIdx (::axemu::t_builtins->thread_idx)
#define blockIdx (::axemu::t_builtins->block_idx)
#define blockDim (::axemu::t_builtins->block_dim)
#define gridDim (::axemu::t_builtins->grid_dim)
constexpr int warpSize = 32;

// Read-only loads: a plain load (the vector types check their own alignment when copied).
template <class T>
inline T __ldg(const T* p) {
  return *p;
}

inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }

// Atomics are atomic: blocks run concurrently on several host threads.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
template <class F, class Bits>
inline F atomic_float_add(F* p, F v) {
  Bits* bits = reinterpret_cast<Bits*>(p);
  Bits old = __atomic_load_n(bits, __ATOMIC_SEQ_CST), next;
  F old_value;
  do {
    std::memcpy(&old_value, &old, sizeof(F));
    const F sum = old_value + v;
    std::memcpy(&next, &sum, sizeof(F));
  } while (!__atomic_compare_exchange_n(bits, &old, next, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST));
  return old_value;
}
inline float atomicAdd(float* p, float v) { return atomic_float_add<float, uint32_t>(p, v); }
inline double atomicAdd(double* p, double v) { return atomic_float_add<double, uint64_t>(p, v); }
inline int atomicMax(int* p, int v) {
  int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline int atomicMin(int* p, int v) {
  int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline int atomicCAS(int* p, int compare, int v) {
  __atomic_compare_exchange_n(p, &compare, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return compare;
}

// Device maths: CUDA's overloads of min/max for the integer and floating types, and the intrinsics. The results
// are the host libm's (a GPU's expf/tanhf may differ in the last ulp; see the README).
#define AXEMU_MINMAX(T)                                  \
  inline T min(T a, T b) { return b < a ? b : a; }       \
  inline T max(T a, T b) { return a < b ? b : a; }
AXEMU_MINMAX(int)
AXEMU_MINMAX(unsigned)
AXEMU_MINMAX(long)
AXEMU_MINMAX(unsigned long)
AXEMU_MINMAX(long long)
AXEMU_MINMAX(unsigned long long)
#undef AXEMU_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<uint64_t>(a) * b) >> 32);
}
inline float __fdividef(float a, float b) { return a / b; }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __powf(float a, float b) { return powf(a, b); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
