// Blocked single-precision matrix product for the CPU backend: the engine under conv2d (im2col lowering) and the
// fully connected layers (paper Sections 3.5 and 4: almost all of AlexNet's arithmetic is in these products).
//
//   C[M, N] = op(A)[M, K] * op(B)[K, N]          (accumulate = false; C is only written, never read)
//   C[M, N] += op(A)[M, K] * op(B)[K, N]         (accumulate = true)
//
// Row-major with leading dimensions: op(A)(i, k) is A[i*lda + k] (Trans::No) or A[k*lda + i] (Trans::Yes), and
// likewise op(B)(k, j) is B[k*ldb + j] or B[j*ldb + k]. The optional epilogue is applied once to each finished
// element: C = act(C + row_bias[i] + col_bias[j]) (conv2d's per-output-channel bias is a row bias, linear's
// per-output-feature bias a column bias).
//
// Structure (Goto/BLIS): the K x N operand is packed into KC x NR column panels, the M x K operand into MR x KC
// row panels, and a register-blocked MR x NR micro-kernel (AVX2/FMA intrinsics when compiled for them, otherwise
// GCC/Clang vector extensions) runs over them. With `parallel`, C is cut into one block per OpenMP thread and each
// thread runs the same serial loops on its block (no barriers); every element of C is computed by one thread with
// the same K order, so results are bit-identical for any thread count. Called from inside a parallel region, or
// with parallel = false, it runs on the calling thread (the conv layers do that when they thread over images).
#pragma once

#include <cstdint>

#include "shapes.h"

namespace alexnet::cpu {

enum class Trans : int { No = 0, Yes = 1 };

struct GemmEpilogue {
  const float* row_bias = nullptr;  // length M, or null
  const float* col_bias = nullptr;  // length N, or null
  Activation act = Activation::None;
  bool active() const { return row_bias || col_bias || act != Activation::None; }
};

void gemm(Trans trans_a, Trans trans_b, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
          int64_t ldb, float* c, int64_t ldc, bool accumulate, const GemmEpilogue& epilogue = {},
          bool parallel = true);

// For several products that share op(A) (a convolution's weights, used by every chunk of images): pack op(A)
// once with pack_a_once into packed_a_floats(m, k) floats, then run gemm_packed_a with it in place of A. Same
// results as gemm, without repacking A in every product.
int64_t packed_a_floats(int64_t m, int64_t k);
void pack_a_once(Trans trans_a, int64_t m, int64_t k, const float* a, int64_t lda, float* packed, bool parallel);
void gemm_packed_a(const float* packed_a, Trans trans_b, int64_t m, int64_t n, int64_t k, const float* b,
                   int64_t ldb, float* c, int64_t ldc, bool accumulate, const GemmEpilogue& epilogue = {},
                   bool parallel = true);

}  // namespace alexnet::cpu
