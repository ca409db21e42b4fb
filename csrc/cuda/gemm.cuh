// The tiled FP32 matrix product under conv2d.cu and linear.cu:
//
//     C[batch][m][n] = sum_k A[batch][m][k] * B[batch][k][n]      (m < M, n < N, k < K; batch: conv groups)
//
// A and B are never passed as matrices. Each operand is a "loader": a small struct whose per-thread Tile<ROWS, NT>
// fetches the thread's share of one BK-deep slice of the operand from global memory into registers (load) and
// then writes it into shared memory, transposed to k-major order (store). The main loop below never sees how an
// element is addressed, so the same loop serves the linear layer (Matrix<...> in gemm_matrix.cuh: explicit
// row-major matrices, transposed or not) and the convolutions (conv2d.cu: loaders that gather im2col / col2im
// elements straight from the NCHW tensors, so im2col is never materialized). The output goes through an
// "epilogue" functor (store(batch, m, n, v, count): up to 4 consecutive columns) that maps (m, n) to memory and
// fuses bias and activation.
//
// Tiling (the classic register-blocked SGEMM; FP32 FFMA only, no TF32, no tensor cores):
//   * A block computes a BM x BN tile of C with BM/TM x BN/TN threads; each thread owns a TM x TN register tile
//     (8x8 = 64 accumulators, or 6x8 for the BM = 48 tile) and per k reads TM + TN values from shared memory for
//     TM * TN FMAs. With 8x8 that is 4 LDS.128 per 64 FFMA, so the FMA pipe, not shared memory, is the limit.
//   * A thread's rows/columns are not contiguous: it owns chunks of 4 (or 2) at ty*4 + {0, BM/2} (and tx*4 +
//     {0, BN/2}). Consecutive threads then read consecutive 16-byte words, which is conflict-free for LDS.128
//     (contiguous 8-wide fragments would put threads tx and tx+4 in the same banks).
//   * BK = 8: two shared-memory buffers of (BM + BN) x 8 floats (17 KB for 128x128); registers, not shared
//     memory, bound the blocks per SM (see the tile configurations below: no tile may spill).
//   * Double buffering with register staging: while the block multiplies tile t out of shared buffer t&1, every
//     thread already has the global loads for tile t+1 in flight into registers; after the FMAs it writes them
//     to the other buffer. One __syncthreads per BK step suffices (a buffer is rewritten only after the barrier
//     that ends the step which read it).
//   * Rows of the shared tiles are padded by 4 floats: it keeps 16-byte alignment and makes the transposing
//     stores of the loaders (k-lanes x rows) conflict-free.
//   * Every edge is checked in the loaders (zero fill past M, N, K) and in the epilogue, so any M, N, K works;
//     float4 global loads/stores are used only where a runtime check proved alignment (scalar fallback).
//   * Split-K: for skinny products (few output tiles, long K) the K range is cut into `splits` contiguous
//     ranges; each writes raw sums to its own slice of a partial buffer and a second kernel adds the slices in
//     fixed order (deterministic, no atomics) and applies the epilogue. A small cost model (plan_gemm) picks the
//     tile shape and the split count from the SM count and the kernels' occupancy.
//
// What would make it faster on Hopper (all would keep FP32 exactness except where noted):
//   * cp.async (sm_80+) or TMA (sm_90) for the explicit-matrix operands, with a 3-4 stage pipeline instead of
//     register staging; the gathers could use 4-byte cp.async with zero-fill for the padding.
//   * Thread-block clusters / distributed shared memory (sm_90) to share the A tile between blocks of a column.
//   * Winograd F(2x2, 3x3) for the 3x3 stride-1 convolutions (2.25x fewer multiplies; exact in exact arithmetic,
//     but FP32 rounding differs slightly from direct summation) - the main lever if conv3-5 fall short.
//   (TF32/tensor-core MMA would be far faster but is excluded: the comparison is against cuDNN with TF32 off.)
//
// Testing without a GPU: the emulated device (csrc/cuda/emulation) runs these very kernels, thread by thread,
// with a settable SM count (so the planner's split-K and single-pass plans both run) and a settable index limit
// (index_limit below, so the chunked paths run at small sizes).
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <climits>
#include <cstdint>
#include <cstdlib>

#include "activation.h"
#include "common.h"
#include "cuda/check.cuh"
#include "cuda/runtime.h"

#define AX_HD __device__ __forceinline__
#define AX_UNROLL _Pragma("unroll")
#define AX_PRAGMA(x) _Pragma(#x)
#define AX_UNROLL_N(n) AX_PRAGMA(unroll n)

// AX_CUDA_CHECK_LAUNCH with the op's name known only at run time (the GEMM launches serve several ops).
#define AX_GEMM_CHECK_LAUNCH(op_name)                                                                         \
  do {                                                                                                        \
    cudaError_t ax_err_ = cudaGetLastError();                                                                 \
    if (ax_err_ != cudaSuccess)                                                                               \
      ::alexnet::cuda::throw_cuda_error(ax_err_, ::alexnet::str_cat(op_name, " kernel launch").c_str(), __FILE__, \
                                        __LINE__);                                                            \
  } while (0)

namespace alexnet::cuda::gemm {

constexpr int kBK = 8;  // depth of one k-tile

AX_HD int imin(int a, int b) { return a < b ? a : b; }

// Read-only global loads (through the non-coherent texture path).
AX_HD float ldg(const float* p) { return __ldg(p); }
AX_HD float4 ldg4(const float* p) { return __ldg(reinterpret_cast<const float4*>(p)); }

// ---- fast integer division ------------------------------------------------------------------------------------
// n / d for 0 <= n < 2^31 by a multiply-high and a shift (Granlund & Montgomery 1994): with l = ceil(log2 d),
// p = 31 + l and m = ceil(2^p / d), floor(n * m / 2^p) = floor(n / d) because the error n * (m*d - 2^p) /
// (d * 2^p) < 2^31 / 2^p <= 1/d. The loaders decompose flattened indices (k -> channel, tap; n -> image, pixel)
// several times per k-step, where a hardware-less 32-bit division would cost ~20 instructions.
struct FastDivmod {
  int divisor = 1;
  unsigned multiplier = 0;
  unsigned shift = 0;

  FastDivmod() = default;
  explicit FastDivmod(int d) : divisor(d) {
    if (d > 1) {
      int l = 0;
      while ((int64_t{1} << l) < d) ++l;
      const unsigned p = 31u + static_cast<unsigned>(l);
      multiplier = static_cast<unsigned>(((uint64_t{1} << p) + static_cast<uint64_t>(d) - 1) / static_cast<uint64_t>(d));
      shift = p - 32u;
    }
  }
  AX_HD int div(int n) const {
    if (divisor == 1) return n;
    return static_cast<int>(__umulhi(static_cast<unsigned>(n), multiplier) >> shift);
  }
  AX_HD void divmod(int n, int& q, int& r) const {
    q = div(n);
    r = n - q * divisor;
  }
};

// ---- tile configurations --------------------------------------------------------------------------------------
template <int BM_, int BN_, int TM_, int TN_, int MIN_BLOCKS_>
struct TileConfig {
  static constexpr int BM = BM_, BN = BN_, BK = kBK, TM = TM_, TN = TN_;
  static constexpr int kThreadsM = BM / TM, kThreadsN = BN / TN, kThreads = kThreadsM * kThreadsN;
  static constexpr int kMinBlocks = MIN_BLOCKS_;  // blocks per SM the register budget must allow
  static constexpr int VM = (TM % 4 == 0) ? 4 : 2;  // width of one fragment read from shared memory
  static constexpr int VN = 4;
  static constexpr int kChunksM = TM / VM, kChunksN = TN / VN;
  static constexpr int kChunkStrideM = kThreadsM * VM;  // distance between a thread's row chunks
  static constexpr int kChunkStrideN = kThreadsN * VN;
  static constexpr int kLdA = BM + 4, kLdB = BN + 4;  // padded shared rows (see the header comment)
  static_assert(BM % TM == 0 && BN % TN == 0, "tile must split evenly into thread tiles");
  static_assert(TM % VM == 0 && TN % 4 == 0, "thread tile must split into 4- (or 2-) wide chunks");
  static_assert(kChunksM * kChunkStrideM == BM && kChunksN * kChunkStrideN == BN, "chunks must cover the tile");
  static_assert(kThreads % 32 == 0 && kThreads <= 1024, "whole warps");
  static_assert(kLdA % 4 == 0 && kLdB % 4 == 0, "shared rows must stay 16-byte aligned");
};

// 128x128: the workhorse for large products (8 warps). 64x128: for M <= 64 or when 128x128 gives too few blocks
// (e.g. M = 192 = 3 x 64 exactly: AlexNet conv3/conv4). 48x128 with 6x8 thread tiles: M = 48 (AlexNet conv1's
// 48 filters per tower, conv2's 48 input channels in backward-data) without wasting a quarter of a 64-row tile.
// 64x64: small products (tests, batch 1), more blocks for the same work.
//
// The blocks per SM of the launch bounds are what the register file allows without spilling (ptxas -v,
// benchmarks/kernel_resources.py, checked in CI): unbounded, the 8x8 and 6x8 thread tiles take 150-170
// registers, so 128x128 asks for 1 block (<= 255 registers) and 48x128 for 3 (<= 168), like 64x128. The
// 128-register bounds they had before (2 and 4 blocks: twice and 4/3 the warps) spilled up to 76 / 148 bytes per
// thread (issue 22; the main loop alone fits in 128, the output stage with its split-K path does not).
// Defining ALEXNET_GEMM_SPILLING_BOUNDS builds those old bounds, so that a GPU run can time both
// (benchmarks/results/kernel_resources_before-issue22.md has their ptxas numbers).
#ifdef ALEXNET_GEMM_SPILLING_BOUNDS
using Tile128x128 = TileConfig<128, 128, 8, 8, 2>;
using Tile48x128 = TileConfig<48, 128, 6, 8, 4>;
#else
using Tile128x128 = TileConfig<128, 128, 8, 8, 1>;
using Tile48x128 = TileConfig<48, 128, 6, 8, 3>;
#endif
using Tile64x128 = TileConfig<64, 128, 8, 8, 3>;
using Tile64x64 = TileConfig<64, 64, 8, 8, 6>;

// ---- the kernel -----------------------------------------------------------------------------------------------
struct GemmArgs {
  int M, N, K;
  int batches;            // total independent products (conv groups); partial slices hold all of them
  int batch0;             // first batch of this launch (grid.z is limited to 65535)
  int m_tiles;            // ceil(M / BM)
  int k_tiles;            // ceil(K / BK)
  int k_tiles_per_split;  // split s covers k-tiles [s * k_tiles_per_split, (s + 1) * k_tiles_per_split)
  int splits;
  float* partial;  // null: apply the epilogue. Else raw sums go to partial + ((split0 + split) * batches +
                   // batch) * M * N + m * N + n and splitk_reduce_kernel applies the epilogue.
  int split0;      // first partial slice of this launch (conv2d_backward_weight's image chunks)
};

struct BlockCoord {
  int batch, split, m0, n0, kt_begin, kt_count;
};

template <class Cfg>
AX_HD BlockCoord block_coord(const GemmArgs& g, int block_x, int block_z) {
  BlockCoord c;
  // M tiles vary fastest: consecutive blocks share the B tile (for the convolutions the gathered activations,
  // the larger operand), so it is fetched from DRAM once and then hit in L2.
  c.m0 = (block_x % g.m_tiles) * Cfg::BM;
  c.n0 = (block_x / g.m_tiles) * Cfg::BN;
  c.split = block_z % g.splits;
  c.batch = g.batch0 + block_z / g.splits;
  c.kt_begin = c.split * g.k_tiles_per_split;
  const int end = imin(g.k_tiles, c.kt_begin + g.k_tiles_per_split);
  c.kt_count = end > c.kt_begin ? end - c.kt_begin : 0;
  return c;
}

template <int V>
AX_HD void load_fragment(const float* s, float* dst) {
  if (V == 4) {
    const float4 q = *reinterpret_cast<const float4*>(s);
    dst[0] = q.x;
    dst[1] = q.y;
    dst[2] = q.z;
    dst[3] = q.w;
  } else {
    const float2 q = *reinterpret_cast<const float2*>(s);
    dst[0] = q.x;
    dst[1] = q.y;
  }
}

// One BK-deep step of the register tile: acc += As^T Bs over the thread's rows and columns.
template <class Cfg>
AX_HD void multiply_tile(float (&acc)[Cfg::TM][Cfg::TN], const float (*As)[Cfg::kLdA], const float (*Bs)[Cfg::kLdB],
                         int tx, int ty) {
  AX_UNROLL
  for (int kk = 0; kk < Cfg::BK; ++kk) {
    float a[Cfg::TM], b[Cfg::TN];
    AX_UNROLL
    for (int c = 0; c < Cfg::kChunksM; ++c) {
      load_fragment<Cfg::VM>(&As[kk][c * Cfg::kChunkStrideM + ty * Cfg::VM], &a[c * Cfg::VM]);
    }
    AX_UNROLL
    for (int c = 0; c < Cfg::kChunksN; ++c) {
      load_fragment<Cfg::VN>(&Bs[kk][c * Cfg::kChunkStrideN + tx * Cfg::VN], &b[c * Cfg::VN]);
    }
    AX_UNROLL
    for (int i = 0; i < Cfg::TM; ++i) {
      AX_UNROLL
      for (int j = 0; j < Cfg::TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
  }
}

// Tile row of the thread's accumulator row i (and column j): chunks of VM rows, kChunkStrideM apart.
template <class Cfg>
AX_HD int thread_row(int i, int ty) {
  return (i / Cfg::VM) * Cfg::kChunkStrideM + ty * Cfg::VM + i % Cfg::VM;
}
template <class Cfg>
AX_HD int thread_col(int j, int tx) {
  return (j / Cfg::VN) * Cfg::kChunkStrideN + tx * Cfg::VN + j % Cfg::VN;
}

template <class Cfg, class Ep>
AX_HD void store_tile(const float (&acc)[Cfg::TM][Cfg::TN], const Ep& ep, const GemmArgs& g, const BlockCoord& bc,
                      int tx, int ty) {
  const int64_t slice = static_cast<int64_t>(g.M) * g.N;
  float* partial = g.partial
                       ? g.partial + (static_cast<int64_t>(g.split0 + bc.split) * g.batches + bc.batch) * slice
                       : nullptr;
  const bool partial_vec4 = (g.N % 4) == 0;  // the partial buffer itself is 256-byte aligned
  AX_UNROLL
  for (int i = 0; i < Cfg::TM; ++i) {
    const int m = bc.m0 + thread_row<Cfg>(i, ty);
    if (m >= g.M) continue;
    AX_UNROLL
    for (int c = 0; c < Cfg::kChunksN; ++c) {
      const int n = bc.n0 + thread_col<Cfg>(c * Cfg::VN, tx);
      if (n >= g.N) continue;
      const int count = imin(Cfg::VN, g.N - n);
      const float* v = &acc[i][c * Cfg::VN];
      if (partial) {
        float* dst = partial + static_cast<int64_t>(m) * g.N + n;
        if (count == 4 && partial_vec4) {
          *reinterpret_cast<float4*>(dst) = make_float4(v[0], v[1], v[2], v[3]);
        } else {
          for (int j = 0; j < count; ++j) dst[j] = v[j];
        }
      } else {
        ep.store(bc.batch, m, n, v, count);
      }
    }
  }
}

// grid: x = m_tiles * n_tiles (M fastest), z = batches_in_launch * splits; block: Cfg::kThreads.
template <class Cfg, class LA, class LB, class Ep>
__global__ void __launch_bounds__(Cfg::kThreads, Cfg::kMinBlocks)
    gemm_kernel(const LA a, const LB b, const Ep ep, const GemmArgs g) {
  __shared__ __align__(16) float As[2][Cfg::BK][Cfg::kLdA];
  __shared__ __align__(16) float Bs[2][Cfg::BK][Cfg::kLdB];

  const int tid = threadIdx.x;
  const int tx = tid % Cfg::kThreadsN, ty = tid / Cfg::kThreadsN;
  const BlockCoord bc = block_coord<Cfg>(g, blockIdx.x, blockIdx.z);

  typename LA::template Tile<Cfg::BM, Cfg::kThreads> la(a, bc.batch, bc.m0, tid);
  typename LB::template Tile<Cfg::BN, Cfg::kThreads> lb(b, bc.batch, bc.n0, tid);

  float acc[Cfg::TM][Cfg::TN];
  AX_UNROLL
  for (int i = 0; i < Cfg::TM; ++i) {
    AX_UNROLL
    for (int j = 0; j < Cfg::TN; ++j) acc[i][j] = 0.0f;
  }

  if (bc.kt_count > 0) {
    la.load(bc.kt_begin * Cfg::BK);
    lb.load(bc.kt_begin * Cfg::BK);
    la.store(As[0]);
    lb.store(Bs[0]);
  }
  __syncthreads();
  for (int t = 0; t < bc.kt_count; ++t) {
    const int cur = t & 1;
    const bool more = t + 1 < bc.kt_count;
    if (more) {  // next tile's global loads are in flight during the FMAs below
      la.load((bc.kt_begin + t + 1) * Cfg::BK);
      lb.load((bc.kt_begin + t + 1) * Cfg::BK);
    }
    multiply_tile<Cfg>(acc, As[cur], Bs[cur], tx, ty);
    if (more) {
      la.store(As[cur ^ 1]);
      lb.store(Bs[cur ^ 1]);
    }
    __syncthreads();
  }
  store_tile<Cfg>(acc, ep, g, bc, tx, ty);
}

// Split-K reduction: out[idx] = epilogue(sum over slices of partial[slice * total + idx]) with a fixed summation
// order (deterministic, independent of timing). A block covers 32 consecutive outputs (coalesced) x 8 slice
// groups: group ty adds slices ty, ty + 8, ... in order, then a fixed tree adds the 8 groups. Splitting the slices
// over 8 threads keeps enough loads in flight when there are few outputs and many slices (conv1's weight gradient:
// 17K outputs x 176 slices). Faster: no second pass - the last block of each tile (found with a per-tile
// counter) adds the slices in order itself ("serial split-K" / stream-K fix-up), saving a launch and a
// round trip of the partials through L2.
constexpr int kReduceX = 32, kReduceY = 8;

AX_HD float sum_slice_group(const float* partial, int64_t total, int64_t idx, int group, int slices) {
  float sum = 0.0f;
  AX_UNROLL_N(4)
  for (int s = group; s < slices; s += kReduceY) sum += partial[s * total + idx];
  return sum;
}

template <class Ep>
AX_HD void store_reduced(const Ep& ep, int64_t idx, int64_t mn, int N, float value) {
  const int batch = static_cast<int>(idx / mn);
  const int64_t rem = idx - batch * mn;
  const int m = static_cast<int>(rem / N), n = static_cast<int>(rem - static_cast<int64_t>(m) * N);
  ep.store(batch, m, n, &value, 1);
}

template <class Ep>
__global__ void __launch_bounds__(kReduceX * kReduceY)
    splitk_reduce_kernel(const float* __restrict__ partial, int slices, int batches, int M, int N, const Ep ep) {
  __shared__ float sums[kReduceY][kReduceX + 1];
  const int64_t mn = static_cast<int64_t>(M) * N;
  const int64_t total = mn * batches;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * kReduceX; base < total;
       base += static_cast<int64_t>(gridDim.x) * kReduceX) {
    const int64_t idx = base + threadIdx.x;
    sums[threadIdx.y][threadIdx.x] = idx < total ? sum_slice_group(partial, total, idx, threadIdx.y, slices) : 0.0f;
    __syncthreads();
    for (int width = kReduceY / 2; width > 0; width /= 2) {
      if (threadIdx.y < width) sums[threadIdx.y][threadIdx.x] += sums[threadIdx.y + width][threadIdx.x];
      __syncthreads();
    }
    if (threadIdx.y == 0 && idx < total) store_reduced(ep, idx, mn, N, sums[0][threadIdx.x]);
    __syncthreads();  // sums is rewritten by the next iteration
  }
}

// ---- planning -------------------------------------------------------------------------------------------------
struct ConfigCost {
  int bm, bn, threads, occupancy;  // occupancy: resident blocks per SM of this kernel
  double efficiency;               // relative FMA throughput of the tile shape at full occupancy
};

struct GemmPlan {
  int config = 0;
  int splits = 1;
  int k_tiles_per_split = 0;
};

// Relative efficiency of the tile shapes: smaller tiles load more bytes per FMA and spend a larger share of
// instructions on loads, address arithmetic and barriers.
template <class Cfg>
constexpr double tile_efficiency() {
  return Cfg::BM * Cfg::BN >= 128 * 128 ? 1.0 : Cfg::BM * Cfg::BN >= 64 * 128 ? 0.92 : Cfg::BM * Cfg::BN >= 48 * 128 ? 0.88 : 0.8;
}

// Estimated time (in SM clock cycles) of one candidate. Blocks are spread over the SMs; a full wave runs
// `occupancy` blocks per SM sharing the SM's 128 FMA/clk, and a partial last wave runs fewer blocks per SM, each
// faster, but an SM with few warps cannot hide latency (utilization below). Split-K adds the partial traffic
// (write + read of every slice) and the reduce launch.
inline double gemm_cost(const ConfigCost& c, int sms, int64_t M, int64_t N, int batches, int k_tiles, int splits,
                        int k_tiles_per_split, bool partial) {
  const int64_t tiles = ((M + c.bm - 1) / c.bm) * ((N + c.bn - 1) / c.bn) * batches;
  const int64_t blocks = tiles * splits;
  const int64_t slots = static_cast<int64_t>(sms) * c.occupancy;
  const double block_fmas = static_cast<double>(c.bm) * c.bn * (k_tiles_per_split * kBK + 2 * kBK);
  const int warps_per_block = c.threads / 32;
  // Resident warps per SM -> fraction of peak: the FMA loop has ample ILP, but the barrier per k-step and the
  // global loads need a second block (or more warps) to overlap.
  auto utilization = [](int warps) {
    return warps >= 16 ? 1.0 : warps >= 12 ? 0.95 : warps >= 8 ? 0.85 : warps >= 4 ? 0.6 : warps >= 2 ? 0.35 : 0.2;
  };
  const double rate = 128.0 * c.efficiency;
  const int64_t full_waves = blocks / slots, rest = blocks % slots;
  double t = static_cast<double>(full_waves) * c.occupancy * block_fmas / (rate * utilization(c.occupancy * warps_per_block));
  if (rest > 0) {
    const int per_sm = static_cast<int>((rest + sms - 1) / sms);
    t += per_sm * block_fmas / (rate * utilization(per_sm * warps_per_block));
  }
  if (partial) {
    const double bytes_per_clock = 15.0 * sms;  // ~2 KB/clk on a 132-SM H100 (3.3 TB/s at 1.7 GHz)
    const double slice_bytes = 4.0 * static_cast<double>(M) * N * batches;
    t += (2.0 * splits + 1.0) * slice_bytes / bytes_per_clock + 5000.0;  // + launch of the reduce kernel
  }
  return t;
}

// Picks the tile shape and the split count with the lowest estimated time. force_partial: the caller needs the
// result in the partial buffer anyway (conv2d_backward_weight over several image chunks).
inline GemmPlan plan_gemm(const ConfigCost* configs, int n_configs, int sms, int64_t M, int64_t N, int64_t K,
                          int batches, bool force_partial) {
  const int k_tiles = static_cast<int>((K + kBK - 1) / kBK);
  GemmPlan best;
  double best_cost = -1.0;
  for (int ci = 0; ci < n_configs; ++ci) {
    const ConfigCost& c = configs[ci];
    const int64_t tiles = ((M + c.bm - 1) / c.bm) * ((N + c.bn - 1) / c.bn) * batches;
    // Split only while it adds parallelism: beyond ~4 waves of blocks it just adds partial traffic. Also bound
    // grid.z (batches * splits <= 65535) and the partial buffer (<= 256 MiB).
    int max_splits = static_cast<int>(std::min<int64_t>(256, std::max<int64_t>(1, k_tiles)));
    max_splits = static_cast<int>(std::min<int64_t>(max_splits, std::max<int64_t>(1, 65535 / batches)));
    const int64_t slice = M * N * batches;
    max_splits = static_cast<int>(std::min<int64_t>(max_splits, std::max<int64_t>(1, (int64_t{64} << 20) / std::max<int64_t>(1, slice))));
    const int64_t enough = 4 * static_cast<int64_t>(sms) * c.occupancy;
    for (int s = 1; s <= max_splits; ++s) {
      const int per = k_tiles > 0 ? (k_tiles + s - 1) / s : 0;
      if (s > 1 && (k_tiles + per - 1) / per != s) continue;  // same as a smaller split count
      if (s > 1 && tiles * (s - 1) >= enough) break;
      const double cost = gemm_cost(c, sms, M, N, batches, k_tiles, s, per, force_partial || s > 1);
      if (best_cost < 0 || cost < best_cost * 0.999) {
        best_cost = cost;
        best.config = ci;
        best.splits = s;
        best.k_tiles_per_split = per;
      }
    }
  }
  return best;
}

constexpr int kMaxDevices = 64;

inline int sm_count(int device) {
  static std::atomic<int> cache[kMaxDevices];
  const int slot = device >= 0 && device < kMaxDevices ? device : 0;
  int v = cache[slot].load(std::memory_order_relaxed);
  if (v > 0) return v;
  AX_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, device));
  v = std::max(v, 1);
  cache[slot].store(v, std::memory_order_relaxed);
  return v;
}

template <class Cfg, class LA, class LB, class Ep>
int kernel_occupancy(int device) {
  static std::atomic<int> cache[kMaxDevices];
  const int slot = device >= 0 && device < kMaxDevices ? device : 0;
  int v = cache[slot].load(std::memory_order_relaxed);
  if (v > 0) return v;
  AX_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&v, gemm_kernel<Cfg, LA, LB, Ep>, Cfg::kThreads, 0));
  v = std::max(v, 1);
  cache[slot].store(v, std::memory_order_relaxed);
  return v;
}

// ---- launching ------------------------------------------------------------------------------------------------
template <class... Cfgs>
struct TileList {
  static constexpr int kCount = sizeof...(Cfgs);
};

// Everything one product needs: its size, operands and epilogue.
template <class LA, class LB, class Ep>
struct Problem {
  int M, N, K, batches;
  LA a;
  LB b;
  Ep ep;
};

template <class LA, class LB, class Ep, class... Cfgs>
GemmPlan plan_problem(TileList<Cfgs...>, const Problem<LA, LB, Ep>& pr, int device, bool force_partial) {
  const ConfigCost costs[] = {ConfigCost{Cfgs::BM, Cfgs::BN, Cfgs::kThreads, kernel_occupancy<Cfgs, LA, LB, Ep>(device),
                                         tile_efficiency<Cfgs>()}...};
  return plan_gemm(costs, static_cast<int>(sizeof...(Cfgs)), sm_count(device), pr.M, pr.N, pr.K, pr.batches,
                   force_partial);
}

template <class Cfg, class LA, class LB, class Ep>
void launch_with(const char* op, const Problem<LA, LB, Ep>& pr, const GemmPlan& plan, float* partial, int split0,
                 cudaStream_t stream) {
  GemmArgs g;
  g.M = pr.M;
  g.N = pr.N;
  g.K = pr.K;
  g.batches = pr.batches;
  g.m_tiles = (pr.M + Cfg::BM - 1) / Cfg::BM;
  const int n_tiles = (pr.N + Cfg::BN - 1) / Cfg::BN;
  g.k_tiles = (pr.K + kBK - 1) / kBK;
  g.k_tiles_per_split = plan.k_tiles_per_split;
  g.splits = plan.splits;
  g.partial = partial;
  g.split0 = split0;
  const int64_t blocks_x = static_cast<int64_t>(g.m_tiles) * n_tiles;
  AX_CHECK(blocks_x <= 0x7fffffff, op, ": product of ", pr.M, " x ", pr.N, " is too large for one grid");
  const int batches_per_launch = std::max(1, 65535 / plan.splits);
  for (int b0 = 0; b0 < pr.batches; b0 += batches_per_launch) {
    g.batch0 = b0;
    const int nb = std::min(batches_per_launch, pr.batches - b0);
    dim3 grid(static_cast<unsigned>(blocks_x), 1, static_cast<unsigned>(nb * plan.splits));
    gemm_kernel<Cfg, LA, LB, Ep><<<grid, Cfg::kThreads, 0, stream>>>(pr.a, pr.b, pr.ep, g);
    AX_GEMM_CHECK_LAUNCH(op);
  }
}

template <class LA, class LB, class Ep, class Cfg, class... Rest>
void launch_config(const char* op, int index, const Problem<LA, LB, Ep>& pr, const GemmPlan& plan, float* partial,
                   int split0, cudaStream_t stream) {
  if (index == 0) {
    launch_with<Cfg>(op, pr, plan, partial, split0, stream);
    return;
  }
  if constexpr (sizeof...(Rest) > 0) launch_config<LA, LB, Ep, Rest...>(op, index - 1, pr, plan, partial, split0, stream);
}

// Runs the planned GEMM; partial (with room for (split0 + plan.splits) * batches * M * N floats) receives raw
// sums when non-null.
template <class LA, class LB, class Ep, class... Cfgs>
void launch_planned(TileList<Cfgs...>, const char* op, const Problem<LA, LB, Ep>& pr, const GemmPlan& plan,
                    float* partial, int split0, cudaStream_t stream) {
  launch_config<LA, LB, Ep, Cfgs...>(op, plan.config, pr, plan, partial, split0, stream);
}

template <class Ep>
void launch_reduce(const char* op, const float* partial, int slices, int batches, int M, int N, const Ep& ep,
                   cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(M) * N * batches;
  const unsigned blocks = grid_for(total, kReduceX);
  splitk_reduce_kernel<Ep><<<blocks, dim3(kReduceX, kReduceY), 0, stream>>>(partial, slices, batches, M, N, ep);
  AX_GEMM_CHECK_LAUNCH(op);
}

// Scratch from the caching allocator, tied to `stream` (the allocator reuses blocks per stream, so releasing
// right after queuing the kernels that use it is safe: later users on this stream run after them).
class Scratch {
 public:
  Scratch(int device, cudaStream_t stream, size_t bytes) : device_(device) {
    StreamGuard guard(device, stream);
    ptr_ = static_cast<float*>(allocate(device, bytes));
  }
  ~Scratch() {
    if (ptr_) release(device_, ptr_);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  float* get() const { return ptr_; }

 private:
  int device_;
  float* ptr_ = nullptr;
};

inline int current_device() {
  int device = 0;
  AX_CUDA_CHECK(cudaGetDevice(&device));
  return device;
}

// The largest element count of one launch's tensors, for the kernels' 32-bit index arithmetic: 2^31 - 1.
// ALEXNET_CUDA_INDEX_LIMIT (read once) lowers it, on a GPU as on the emulated device, so that tests reach the
// paths that split a batch into several launches, which AlexNet's own shapes never need.
inline int64_t index_limit() {
  static const int64_t limit = [] {
    const char* v = std::getenv("ALEXNET_CUDA_INDEX_LIMIT");
    const long long parsed = v && *v ? std::atoll(v) : 0;
    return parsed > 0 && parsed < INT_MAX ? static_cast<int64_t>(parsed) : static_cast<int64_t>(INT_MAX);
  }();
  return limit;
}

// Plans, launches and (for split-K) reduces one GEMM on `stream`.
template <class LA, class LB, class Ep, class... Cfgs>
void run(TileList<Cfgs...> tiles, const char* op, const Problem<LA, LB, Ep>& pr, cudaStream_t stream) {
  if (pr.M <= 0 || pr.N <= 0 || pr.batches <= 0) return;
  const int device = current_device();
  const GemmPlan plan = plan_problem(tiles, pr, device, false);
  if (plan.splits == 1) {
    launch_planned(tiles, op, pr, plan, nullptr, 0, stream);
    return;
  }
  const size_t slice = static_cast<size_t>(pr.M) * pr.N * pr.batches;
  Scratch partial(device, stream, slice * plan.splits * sizeof(float));
  launch_planned(tiles, op, pr, plan, partial.get(), 0, stream);
  launch_reduce(op, partial.get(), plan.splits, pr.batches, pr.M, pr.N, pr.ep, stream);
}

// The tile shapes every product chooses from.
using AllTiles = TileList<Tile128x128, Tile64x128, Tile48x128, Tile64x64>;

}  // namespace alexnet::cuda::gemm
