// Explicit row-major matrices as operands and output of the GEMM in gemm.cuh (whose header explains loaders and
// epilogues): Matrix<K_CONTIGUOUS> loads A or B from a plain (optionally transposed) matrix, MatrixStore writes C
// with an optional column bias and activation. The linear layer uses both; conv2d uses Matrix for its weights and
// MatrixStore for the weight gradient.
#pragma once

#include <cstdint>

#include "activation.h"
#include "cuda/gemm.cuh"

namespace alexnet::cuda::gemm {

// Element (row, k) of batch b lives at ptr[b * batch_stride + row * ld + k] when K_CONTIGUOUS (a row-major
// rows x K matrix, e.g. x or w in y = x w^T), else at ptr[b * batch_stride + k * ld + row] (a row-major K x rows
// matrix, e.g. w in dx = dy w). "rows" is M for the A operand and N for the B operand.
//
// Each thread moves groups of 4 elements that are consecutive in memory ("items"): 2 items per tile row when
// K_CONTIGUOUS (8 k), ROWS/4 items per k-row otherwise. vec4 (set by the host only when ptr, ld and
// batch_stride are multiples of 4 floats, so every group starts 16-byte aligned) turns a complete group into one
// float4 load; otherwise, and at the edges, the group is loaded element by element with bounds checks. The
// pointer of each item is computed once per thread; a k-step only adds k0 (or k0 * ld).
template <bool K_CONTIGUOUS>
struct Matrix {
  const float* ptr;
  int64_t ld;
  int64_t batch_stride;
  int rows, K;
  bool vec4;

  template <int ROWS, int NT>
  struct Tile {
    static constexpr int kGroupsPerLine = K_CONTIGUOUS ? kBK / 4 : ROWS / 4;  // items along the contiguous axis
    static constexpr int kItems = ROWS * kBK / 4;
    static constexpr int kPerThread = (kItems + NT - 1) / NT;
    static_assert(ROWS % 4 == 0, "tile rows must be a multiple of 4");

    const Matrix& p;
    const float* src[kPerThread];  // the item's first element for k0 = 0
    int extent[kPerThread];        // K_CONTIGUOUS: k of the first element (-1: row outside); else: valid rows (0..4)
    float v[4 * kPerThread];
    int tid;

    // item -> (tile row, k within the tile) of its first element
    AX_HD static void item_position(int it, int& r, int& kk) {
      if (K_CONTIGUOUS) {
        r = it / kGroupsPerLine;
        kk = (it % kGroupsPerLine) * 4;
      } else {
        r = (it % kGroupsPerLine) * 4;
        kk = it / kGroupsPerLine;
      }
    }

    AX_HD Tile(const Matrix& params, int batch, int row0, int tid_) : p(params), tid(tid_) {
      const float* base = params.ptr + batch * params.batch_stride;
      AX_UNROLL
      for (int i = 0; i < kPerThread; ++i) {
        int r, kk;
        item_position(tid + i * NT, r, kk);
        const int row = row0 + r;
        if (K_CONTIGUOUS) {
          src[i] = base + row * params.ld + kk;
          extent[i] = row < params.rows ? kk : -1;
        } else {
          src[i] = base + kk * params.ld + row;
          extent[i] = imin(4, params.rows - row > 0 ? params.rows - row : 0);
        }
      }
    }

    AX_HD void load(int k0) {
      AX_UNROLL
      for (int i = 0; i < kPerThread; ++i) {
        float4 q = make_float4(0.f, 0.f, 0.f, 0.f);
        const bool live = kItems % NT == 0 || tid + i * NT < kItems;
        if (K_CONTIGUOUS) {
          const int k = k0 + extent[i];  // first k of the group
          const float* s = src[i] + k0;
          if (live && extent[i] >= 0) {
            if (p.vec4 && k + 3 < p.K) {
              q = ldg4(s);
            } else {
              if (k + 0 < p.K) q.x = ldg(s + 0);
              if (k + 1 < p.K) q.y = ldg(s + 1);
              if (k + 2 < p.K) q.z = ldg(s + 2);
              if (k + 3 < p.K) q.w = ldg(s + 3);
            }
          }
        } else {
          int r, kk;
          item_position(tid + i * NT, r, kk);
          const float* s = src[i] + k0 * p.ld;
          if (live && k0 + kk < p.K) {
            const int n = extent[i];
            if (p.vec4 && n == 4) {
              q = ldg4(s);
            } else {
              if (n > 0) q.x = ldg(s + 0);
              if (n > 1) q.y = ldg(s + 1);
              if (n > 2) q.z = ldg(s + 2);
              if (n > 3) q.w = ldg(s + 3);
            }
          }
        }
        v[4 * i + 0] = q.x;
        v[4 * i + 1] = q.y;
        v[4 * i + 2] = q.z;
        v[4 * i + 3] = q.w;
      }
    }

    template <int LD>
    AX_HD void store(float (*s)[LD]) const {
      AX_UNROLL
      for (int i = 0; i < kPerThread; ++i) {
        const int it = tid + i * NT;
        if (kItems % NT == 0 || it < kItems) {
          int r, kk;
          item_position(it, r, kk);
          if (K_CONTIGUOUS) {  // transpose: 4 k-rows of one tile row (conflict-free thanks to the padding)
            AX_UNROLL
            for (int j = 0; j < 4; ++j) s[kk + j][r] = v[4 * i + j];
          } else {
            *reinterpret_cast<float4*>(&s[kk][r]) = make_float4(v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]);
          }
        }
      }
    }
  };
};

// Row-major output C[batch][m][n] at ptr[batch * batch_stride + m * ld + n], with optional per-column bias and
// activation (the linear layer's y = act(x w^T + b): m = sample, n = output feature).
struct MatrixStore {
  float* ptr;
  int64_t ld;
  int64_t batch_stride;
  const float* col_bias;  // may be null
  Activation act;
  bool vec4;  // ptr, ld and batch_stride are multiples of 4 floats

  AX_HD void store(int batch, int m, int n, const float* v, int count) const {
    float* dst = ptr + batch * batch_stride + m * ld + n;
    float out[4];
    AX_UNROLL
    for (int j = 0; j < 4; ++j) {
      if (j < count) out[j] = activate(act, v[j] + (col_bias ? ldg(col_bias + n + j) : 0.0f));
    }
    if (count == 4 && vec4) {
      *reinterpret_cast<float4*>(dst) = make_float4(out[0], out[1], out[2], out[3]);
    } else {
      AX_UNROLL
      for (int j = 0; j < 4; ++j) {
        if (j < count) dst[j] = out[j];
      }
    }
  }
};

}  // namespace alexnet::cuda::gemm
