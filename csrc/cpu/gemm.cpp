// Blocked SGEMM (see gemm.h for the contract). The serial loop nest, outermost first (Goto & van de Geijn,
// "Anatomy of high-performance matrix multiplication", 2008; the BLIS layout):
//   jc over N in NC columns   - pack the KC x NC block of op(B) (lives in L3) ...
//   pc over K in KC steps     - ... for each KC slice of K
//   ic over M in MC rows      - pack the MC x KC block of op(A) (lives in L2)
//     jr over NR-wide panels  - one KC x NR panel of B stays in L1 across the ir loop
//       ir over MR-high panels
//         micro-kernel: MR x NR outer products accumulated in registers over kc
// Threads each take one block of C (gemm() at the bottom).
#include "cpu/gemm.h"

#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "activation.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define AX_GEMM_AVX2 1
#endif

namespace alexnet::cpu {
namespace {

#ifdef AX_GEMM_AVX2
// Micro-tile: 6 x 16 floats = 12 AVX2 accumulators, plus 2 registers for the B row and 1 for the broadcast A
// value: 15 of the 16 ymm registers, and 12 independent FMA chains hide the FMA latency on two FMA pipes.
constexpr int MR = 6;
constexpr int NR = 16;
#else
// Portable micro-tile: 4 rows x 2 native vectors (8 accumulators), small enough to stay in registers on SSE/AVX
// without FMA or on NEON.
#if defined(__AVX__)
constexpr int VW = 8;
#else
constexpr int VW = 4;
#endif
constexpr int MR = 4;
constexpr int NR = 2 * VW;
#endif
// Cache blocks: a KC x NR panel of B is 16 KiB (half of L1d), an MC x KC block of A is 144 KiB (within a 512 KiB+
// L2), a KC x NC block of B is 4 MiB (L3).
constexpr int64_t KC = 256;
constexpr int64_t MC = 144;  // a multiple of MR
constexpr int64_t NC = 4096;  // a multiple of NR
static_assert(MC % MR == 0 && NC % NR == 0, "cache blocks must hold whole micro-panels");
// Below this many multiply-adds the OpenMP fork/join costs more than it saves.
constexpr double kParallelMinMacs = 1 << 18;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Grow-only 64-byte aligned scratch, one per thread (OpenMP keeps its worker threads, so this is a cache).
struct AlignedBuffer {
  float* data = nullptr;
  size_t capacity = 0;
  float* get(size_t count) {
    if (count > capacity) {
      std::free(data);
      const size_t bytes = ((count * sizeof(float) + 63) / 64) * 64;
      data = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data) {
        capacity = 0;
        throw std::bad_alloc();
      }
      capacity = count;
    }
    return data;
  }
  ~AlignedBuffer() { std::free(data); }
};
thread_local AlignedBuffer tls_packed_a, tls_packed_b;

// Packs rows [i0, i0+mr) x columns [p0, p0+kc) of op(A) as dst[k*MR + i], zero-padding rows mr..MR-1 so the
// micro-kernel never needs a row count.
void pack_a_panel(Trans trans, const float* a, int64_t lda, int64_t i0, int mr, int64_t p0, int64_t kc, float* dst) {
  if (trans == Trans::No) {
    for (int i = 0; i < mr; ++i) {
      const float* src = a + (i0 + i) * lda + p0;
      for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k];
    }
  } else {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = a + (p0 + k) * lda + i0;
      for (int i = 0; i < mr; ++i) dst[k * MR + i] = src[i];
    }
  }
  for (int i = mr; i < MR; ++i)
    for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = 0.0f;
}

#ifdef AX_GEMM_AVX2
// In-register transpose of the 8x8 block r[0..7] (rows in, columns out).
inline void transpose_8x8(__m256 r[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(r[0], r[1]), t1 = _mm256_unpackhi_ps(r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps(r[2], r[3]), t3 = _mm256_unpackhi_ps(r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps(r[4], r[5]), t5 = _mm256_unpackhi_ps(r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps(r[6], r[7]), t7 = _mm256_unpackhi_ps(r[6], r[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 s7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  r[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  r[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  r[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  r[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  r[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  r[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  r[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  r[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}
#endif

// Packs rows [p0, p0+kc) x columns [j0, j0+nr) of op(B) as dst[k*NR + j], zero-padding columns nr..NR-1.
void pack_b_panel(Trans trans, const float* b, int64_t ldb, int64_t p0, int64_t kc, int64_t j0, int nr, float* dst) {
  if (trans == Trans::No) {
    for (int64_t k = 0; k < kc; ++k) {
      const float* src = b + (p0 + k) * ldb + j0;
      float* d = dst + k * NR;
      if (nr == NR) {
        std::memcpy(d, src, NR * sizeof(float));
      } else {
        for (int j = 0; j < nr; ++j) d[j] = src[j];
        for (int j = nr; j < NR; ++j) d[j] = 0.0f;
      }
    }
    return;
  }
  // Transposed: column j of the panel is a contiguous run of row j0 + j of b.
  int64_t k_done = 0;
#ifdef AX_GEMM_AVX2
  if (nr == NR) {  // 8x8 blocks through registers: contiguous 32-byte loads and stores
    for (; k_done + 8 <= kc; k_done += 8) {
      for (int jh = 0; jh < NR; jh += 8) {
        __m256 r[8];
        for (int t = 0; t < 8; ++t) r[t] = _mm256_loadu_ps(b + (j0 + jh + t) * ldb + p0 + k_done);
        transpose_8x8(r);
        for (int t = 0; t < 8; ++t) _mm256_store_ps(dst + (k_done + t) * NR + jh, r[t]);
      }
    }
  }
#endif
  for (int j = 0; j < nr; ++j) {
    const float* src = b + (j0 + j) * ldb + p0;
    for (int64_t k = k_done; k < kc; ++k) dst[k * NR + j] = src[k];
  }
  for (int j = nr; j < NR; ++j)
    for (int64_t k = k_done; k < kc; ++k) dst[k * NR + j] = 0.0f;
}

// c[0..MR) x [0..NR) (+)= sum_k a[k*MR + i] * b[k*NR + j]; c has row stride ldc.
#ifdef AX_GEMM_AVX2
inline void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                         bool add) {
  __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
  __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
  __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
  __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
  __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
  __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
  // The C tile is far from anything recently touched: start its cache misses now, under the k loop.
  for (int i = 0; i < MR; ++i) {
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc), _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(c + i * ldc + NR - 1), _MM_HINT_T0);
  }
  for (int64_t k = 0; k < kc; ++k) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
    __m256 av = _mm256_broadcast_ss(a + 0);
    c00 = _mm256_fmadd_ps(av, b0, c00);
    c01 = _mm256_fmadd_ps(av, b1, c01);
    av = _mm256_broadcast_ss(a + 1);
    c10 = _mm256_fmadd_ps(av, b0, c10);
    c11 = _mm256_fmadd_ps(av, b1, c11);
    av = _mm256_broadcast_ss(a + 2);
    c20 = _mm256_fmadd_ps(av, b0, c20);
    c21 = _mm256_fmadd_ps(av, b1, c21);
    av = _mm256_broadcast_ss(a + 3);
    c30 = _mm256_fmadd_ps(av, b0, c30);
    c31 = _mm256_fmadd_ps(av, b1, c31);
    av = _mm256_broadcast_ss(a + 4);
    c40 = _mm256_fmadd_ps(av, b0, c40);
    c41 = _mm256_fmadd_ps(av, b1, c41);
    av = _mm256_broadcast_ss(a + 5);
    c50 = _mm256_fmadd_ps(av, b0, c50);
    c51 = _mm256_fmadd_ps(av, b1, c51);
    a += MR;
    b += NR;
  }
  auto store = [&](int i, __m256 lo, __m256 hi) {
    float* row = c + i * ldc;
    if (add) {
      lo = _mm256_add_ps(lo, _mm256_loadu_ps(row));
      hi = _mm256_add_ps(hi, _mm256_loadu_ps(row + 8));
    }
    _mm256_storeu_ps(row, lo);
    _mm256_storeu_ps(row + 8, hi);
  };
  store(0, c00, c01);
  store(1, c10, c11);
  store(2, c20, c21);
  store(3, c30, c31);
  store(4, c40, c41);
  store(5, c50, c51);
}
#else
// Portable version with GCC/Clang vector extensions (native vector width), named accumulators so they stay in
// registers.
typedef float vecf __attribute__((vector_size(VW * sizeof(float))));
typedef float vecf_unaligned __attribute__((vector_size(VW * sizeof(float)), aligned(4), may_alias));
inline vecf load_vec(const float* p) { return *reinterpret_cast<const vecf_unaligned*>(p); }
inline void store_row(float* row, vecf lo, vecf hi, bool add) {
  if (add) {
    lo += load_vec(row);
    hi += load_vec(row + VW);
  }
  *reinterpret_cast<vecf_unaligned*>(row) = lo;
  *reinterpret_cast<vecf_unaligned*>(row + VW) = hi;
}
// Not inlined: inside the big OpenMP body the register allocator spills the accumulators.
__attribute__((noinline)) void micro_kernel(int64_t kc, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc,
                         bool add) {
  vecf c00 = {}, c01 = {}, c10 = {}, c11 = {}, c20 = {}, c21 = {}, c30 = {}, c31 = {};
  for (int64_t k = 0; k < kc; ++k) {
    const vecf b0 = load_vec(b), b1 = load_vec(b + VW);
    c00 += a[0] * b0;
    c01 += a[0] * b1;
    c10 += a[1] * b0;
    c11 += a[1] * b1;
    c20 += a[2] * b0;
    c21 += a[2] * b1;
    c30 += a[3] * b0;
    c31 += a[3] * b1;
    a += MR;
    b += NR;
  }
  store_row(c, c00, c01, add);
  store_row(c + ldc, c10, c11, add);
  store_row(c + 2 * ldc, c20, c21, add);
  store_row(c + 3 * ldc, c30, c31, add);
}
#endif

// C = act(C + row_bias + col_bias) on an mr x nr tile whose top-left element is (i0, j0).
void apply_epilogue(const GemmEpilogue& ep, float* c, int64_t ldc, int64_t i0, int64_t j0, int mr, int nr) {
  for (int i = 0; i < mr; ++i) {
    float* row = c + i * ldc;
    const float rb = ep.row_bias ? ep.row_bias[i0 + i] : 0.0f;
    if (ep.col_bias) {
      for (int j = 0; j < nr; ++j) row[j] += rb + ep.col_bias[j0 + j];
    } else if (ep.row_bias) {
      for (int j = 0; j < nr; ++j) row[j] += rb;
    }
    if (ep.act == Activation::ReLU) {
      for (int j = 0; j < nr; ++j) row[j] = row[j] > 0.0f ? row[j] : 0.0f;
    } else if (ep.act != Activation::None) {
      for (int j = 0; j < nr; ++j) row[j] = activate(ep.act, row[j]);
    }
  }
}

// K slices: even sizes (e.g. K = 363 -> two slices of 182, not 256 + 107). They depend on k alone, so every
// element of C is summed in the same order however the caller splits M and N, and pack_a_once knows them.
int64_t k_slice(int64_t k) { return ceil_div(k, ceil_div(k, KC)); }

// op(A) already packed by pack_a_once: slice pc's panels start at data + pc * rows (rows = M rounded up to MR),
// panel P of that slice at + P * MR * kc. first_panel is the panel of this product's row 0 (a thread's block).
struct PrePackedA {
  const float* data;
  int64_t rows;
  int64_t first_panel;
};

// The whole product on the calling thread: the classic five loops around the micro-kernel. With `pre`, the A
// panels are read from it and `a` is unused.
void gemm_serial(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                 const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate, const GemmEpilogue& epilogue,
                 const PrePackedA* pre = nullptr) {
  const bool with_epilogue = epilogue.active();
  const int64_t kc_max = k_slice(k);
  const int64_t nc_max = std::min(NC, ceil_div(n, NR) * NR);
  const int64_t mc_max = std::min(MC, ceil_div(m, MR) * MR);
  float* packed_a = pre ? nullptr : tls_packed_a.get(static_cast<size_t>(mc_max * kc_max));
  float* packed_b = tls_packed_b.get(static_cast<size_t>(nc_max * kc_max));
  alignas(64) float tile[MR * NR];

  for (int64_t jc = 0; jc < n; jc += nc_max) {
    const int64_t nc = std::min(nc_max, n - jc);
    for (int64_t pc = 0; pc < k; pc += kc_max) {
      const int64_t kc = std::min(kc_max, k - pc);
      const bool add = accumulate || pc > 0;
      const bool last = pc + kc == k;
      for (int64_t jp = 0; jp * NR < nc; ++jp) {
        const int64_t j0 = jc + jp * NR;
        pack_b_panel(trans_b, b, ldb, pc, kc, j0, static_cast<int>(std::min<int64_t>(NR, n - j0)),
                     packed_b + jp * NR * kc);
      }
      for (int64_t ic = 0; ic < m; ic += mc_max) {
        const int64_t mc = std::min(mc_max, m - ic);
        const float* a_block = pre ? pre->data + pc * pre->rows + (pre->first_panel + ic / MR) * MR * kc : packed_a;
        for (int64_t ip = 0; !pre && ip * MR < mc; ++ip) {
          const int64_t i0 = ic + ip * MR;
          pack_a_panel(trans_a, a, lda, i0, static_cast<int>(std::min<int64_t>(MR, m - i0)), pc, kc,
                       packed_a + ip * MR * kc);
        }
        for (int64_t jp = 0; jp * NR < nc; ++jp) {  // one B panel stays in L1 ...
          const int64_t j0 = jc + jp * NR;
          const int nr = static_cast<int>(std::min<int64_t>(NR, n - j0));
          const float* bp = packed_b + jp * NR * kc;
          for (int64_t ip = 0; ip * MR < mc; ++ip) {  // ... while the A block streams from L2
            const int64_t i0 = ic + ip * MR;
            const int mr = static_cast<int>(std::min<int64_t>(MR, m - i0));
            const float* ap = a_block + ip * MR * kc;
            float* cp = c + i0 * ldc + j0;
            if (mr == MR && nr == NR) {
              micro_kernel(kc, ap, bp, cp, ldc, add);
            } else {  // edge tile: compute the full tile aside, keep the part inside C
              micro_kernel(kc, ap, bp, tile, NR, false);
              for (int i = 0; i < mr; ++i)
                for (int j = 0; j < nr; ++j) cp[i * ldc + j] = (add ? cp[i * ldc + j] : 0.0f) + tile[i * NR + j];
            }
            if (last && with_epilogue) apply_epilogue(epilogue, cp, ldc, i0, j0, mr, nr);
          }
        }
      }
    }
  }
}

// Splits C into a tm x tn grid of blocks, one per thread, minimising the per-thread cost: the padded block area
// (multiply-adds per k) plus the packing of its rows of A and columns of B (weighted: packing is slower per float).
void thread_grid(int threads, int64_t m, int64_t n, int* tm, int* tn) {
  double best = -1.0;
  for (int rows = 1; rows <= threads; ++rows) {
    if (threads % rows) continue;
    const int cols = threads / rows;
    const double mb = static_cast<double>(ceil_div(ceil_div(m, MR), rows) * MR);
    const double nb = static_cast<double>(ceil_div(ceil_div(n, NR), cols) * NR);
    const double cost = mb * nb + 4.0 * (mb + nb);
    if (best < 0.0 || cost < best) {
      best = cost;
      *tm = rows;
      *tn = cols;
    }
  }
}

// gemm and gemm_packed_a: A from `a`, or from `pre` (then `a` is unused).
void gemm_impl(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
               const float* b, int64_t ldb, float* c, int64_t ldc, bool accumulate, const GemmEpilogue& epilogue,
               bool parallel, const PrePackedA* pre) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {  // empty sum: C = act(C or 0, plus bias)
    for (int64_t i = 0; i < m; ++i) {
      if (!accumulate) std::fill(c + i * ldc, c + i * ldc + n, 0.0f);
      if (epilogue.active()) apply_epilogue(epilogue, c + i * ldc, ldc, i, 0, 1, static_cast<int>(n));
    }
    return;
  }
  int threads = (parallel && !omp_in_parallel()) ? omp_get_max_threads() : 1;
  if (static_cast<double>(m) * static_cast<double>(n) * static_cast<double>(k) < kParallelMinMacs) threads = 1;
  if (threads == 1) {
    gemm_serial(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate, epilogue, pre);
    return;
  }

  // Each thread owns one block of C and runs the serial product on it with its own packed copies of the rows of
  // A and columns of B it needs: no shared buffers and no barriers (a barrier per K slice costs dearly when the
  // cores are shared with other work), at the price of packing A tn times and B tm times.
  int tm = 1, tn = threads;
  thread_grid(threads, m, n, &tm, &tn);
  const int64_t m_panels = ceil_div(m, MR), n_panels = ceil_div(n, NR);
#pragma omp parallel num_threads(tm * tn)
  {
    const int team = omp_get_num_threads();
    for (int block = omp_get_thread_num(); block < tm * tn; block += team) {
      const int bi = block / tn, bj = block % tn;
      const int64_t i0 = bi * m_panels / tm * MR, i1 = std::min(m, (bi + 1) * m_panels / tm * MR);
      const int64_t j0 = bj * n_panels / tn * NR, j1 = std::min(n, (bj + 1) * n_panels / tn * NR);
      if (i0 >= i1 || j0 >= j1) continue;
      GemmEpilogue ep = epilogue;
      if (ep.row_bias) ep.row_bias += i0;
      if (ep.col_bias) ep.col_bias += j0;
      const float* a_block = pre ? nullptr : trans_a == Trans::No ? a + i0 * lda : a + i0;
      const float* b_block = trans_b == Trans::No ? b + j0 : b + j0 * ldb;
      PrePackedA pre_block{};
      if (pre) pre_block = {pre->data, pre->rows, pre->first_panel + i0 / MR};
      gemm_serial(trans_a, trans_b, i1 - i0, j1 - j0, k, a_block, lda, b_block, ldb, c + i0 * ldc + j0, ldc,
                  accumulate, ep, pre ? &pre_block : nullptr);
    }
  }
}

int64_t padded_rows(int64_t m) { return ceil_div(m, MR) * MR; }

}  // namespace

void gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
          int64_t ldb, float* c, int64_t ldc, bool accumulate, const GemmEpilogue& epilogue, bool parallel) {
  gemm_impl(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate, epilogue, parallel, nullptr);
}

int64_t packed_a_floats(int64_t m, int64_t k) { return padded_rows(m) * k; }

void pack_a_once(Trans trans_a, int64_t m, int64_t k, const float* a, int64_t lda, float* packed, bool parallel) {
  if (m <= 0 || k <= 0) return;
  const int64_t kc_max = k_slice(k), rows = padded_rows(m), panels = rows / MR, slices = ceil_div(k, kc_max);
  // Panels are independent: share (slice, panel) pairs among threads.
#pragma omp parallel for schedule(static) if (parallel && slices * panels > 1)
  for (int64_t item = 0; item < slices * panels; ++item) {
    const int64_t pc = item / panels * kc_max, panel = item % panels, kc = std::min(kc_max, k - pc);
    const int64_t i0 = panel * MR;
    pack_a_panel(trans_a, a, lda, i0, static_cast<int>(std::min<int64_t>(MR, m - i0)), pc, kc,
                 packed + pc * rows + i0 * kc);
  }
}

void gemm_packed_a(const float* packed_a, Trans trans_b, int64_t m, int64_t n, int64_t k, const float* b,
                   int64_t ldb, float* c, int64_t ldc, bool accumulate, const GemmEpilogue& epilogue, bool parallel) {
  const PrePackedA pre{packed_a, padded_rows(m), 0};
  gemm_impl(Trans::No, trans_b, m, n, k, nullptr, 0, b, ldb, c, ldc, accumulate, epilogue, parallel, &pre);
}

}  // namespace alexnet::cpu
