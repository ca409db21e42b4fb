// conv2d on the GPU: the three convolution products as implicit GEMMs on gemm.cuh (the bias gradient is in
// bias_backward.cu).
//
// Notation: x (n, C, H, W), w (K_out, C/G, kh, kw), y (n, K_out, P = h_out*w_out), G groups; per group
// Cg = C/G input and Mg = K_out/G output channels; a "tap" is (c, r, s) with c < Cg, r < kh, s < kw, and
// ih = oh*stride - pad + r, iw = ow*stride - pad + s (taps outside the input read zero: the padding).
//
// GEMM mapping (one product per group g; the group is the GEMM "batch" = grid.z):
//
//   forward          y[img][g*Mg+m][oh,ow] = act(bias + sum_k W[m][k] * X[k][n])
//                    M = Mg (output channel m), N = n*P (pixel n = (img, oh, ow)), K = Cg*kh*kw (tap k = (c,r,s))
//                    A = W[m][k] = w[g*Mg+m][c][r][s]: the weight tensor IS a row-major Mg x K matrix per group.
//                    B = X[k][n] = x[img][g*Cg+c][ih][iw]: im2col, gathered on the fly (Im2colByPixel).
//                    Epilogue: + bias[g*Mg+m], activation (activation.h), scatter to NCHW (ConvOutputStore).
//
//   backward-data    dx[img][g*Cg+c][ih,iw] = sum_k Wt[c][k] * DY[k][n]   (the transposed convolution)
//                    M = Cg (input channel c), N = n*H*W (input pixel n = (img, ih, iw)), K = Mg*kh*kw
//                    (k = (co, r, s)). A = Wt[c][k] = w[g*Mg+co][c][r][s] (WeightsByInputChannel).
//                    B = DY[k][n] = dy[img][g*Mg+co][oh][ow] where oh*stride = ih + pad - r and
//                    ow*stride = iw + pad - s; zero unless both divide exactly and land inside the output
//                    (Col2imByPixel). With stride 1 every tap is a candidate; with stride > 1 the divisibility
//                    test handles strides that do not divide the size, and output rows/columns that no tap reaches
//                    (h_in + 2*pad - kh not a multiple of stride) simply never match.
//
//   backward-weight  dw[g*Mg+m][c][r][s] = sum_k DY[m][k] * X[k][n]
//                    M = Mg (output channel), N = Cg*kh*kw (tap n = (c,r,s)), K = n*P (pixel k = (img, oh, ow)).
//                    A = dy[img][g*Mg+m][oh,ow] (OutputGradByChannel), B = x at the tap (Im2colByTap).
//                    The output is tiny (Mg x Cg*kh*kw) and K is huge (128*169 .. 128*3025 for AlexNet), so the
//                    planner splits K into several contiguous ranges (split-K); each writes its own partial
//                    buffer (from the caching allocator) and a second kernel adds them in fixed order:
//                    deterministic, no float atomics.
//
//   bias_backward    in bias_backward.cu (shared with the fully connected layers).
//
// Index arithmetic is 32-bit (cheaper, fewer registers). The host wrappers therefore cut the batch into chunks of
// images whose tensors stay below 2^31 elements (one chunk for AlexNet); backward-weight adds the chunks' partial
// sums in the same fixed-order reduction.
//
// Tiling per layer (AlexNet, one tower, batch 128). The planner in gemm.cuh picks from 128x128, 64x128, 48x128
// and 64x64 tiles and a split-K factor with a small cost model (SM count, occupancy from the runtime, wave
// quantization, partial-buffer traffic). Its choices for a 132-SM H100, from a host run of plan_gemm with the
// register counts ptxas reports (2, 3, 4, 6 resident blocks per SM for the four shapes):
//   conv1 fwd   M=48  N=387200 K=363     48x128 (no wasted rows)        3025 blocks
//   conv2 fwd   M=128 N=93312  K=1200    128x128                          729 blocks
//   conv3 fwd   M=192 N=21632  K=2304    48x128 (192 = 4 x 48), split 3  2028 blocks
//   conv4 fwd   M=192 N=21632  K=1728    64x128, split 2                 1014 blocks
//   conv5 fwd   M=128 N=21632  K=1728    128x128, split 3 (169 tiles alone would leave SMs idle)
//   conv2-5 bwd-data: 48x128 / 128x128 / 64x128 with split 1-3, ~500-1500 blocks
//   bwd-weight  M x N = 48x363 .. 192x2304, K = 21632 .. 387200: split 7 (conv3) .. 176 (conv1), ~250-650 blocks
// Every choice is only a model's guess until measured; the constants in gemm_cost are the knob.
//
// What would make these faster if they fall short of cuDNN (all FP32):
//   * Winograd F(2x2,3x3) / F(4x4,3x3) for conv3-5 (3x3, stride 1): 2.25-4x fewer multiplies (rounding differs
//     slightly from direct summation). cuDNN may pick it for these layers; implicit GEMM cannot match that.
//   * Cheaper gathers: about a quarter of the main loop's instructions are loader work (the FMA pipe and the
//     issue slot are shared, so that is FMA time lost). A precomputed tap table (k -> channel offset, r, s) in
//     shared or constant memory would replace the two fast divisions per k-row; iterating K as (r, s, c) with
//     c innermost (CUTLASS's "optimized" iterators) makes the bounds test constant over a k-tile; an NHWC copy
//     of the activations turns gathers into float4 loads that can go through cp.async (sm_80+) or TMA im2col
//     mode (sm_90) into a 3-4 stage pipeline.
//   * backward-data with stride > 1 (only conv1, whose input gradient AlexNet never needs): split into
//     stride^2 dense sub-convolutions instead of gathering mostly-zero taps.
//   * bias_backward fused into the backward-weight epilogue (it is dy summed over the same pixels).
#include <algorithm>
#include <climits>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/gemm.cuh"
#include "cuda/gemm_matrix.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {
namespace conv_detail {

using gemm::FastDivmod;
using gemm::kBK;
using gemm::ldg;

// Marks a thread's column/row that lies past the edge: adding any tap index keeps it negative, so the
// (unsigned) bounds test fails and nothing is loaded.
constexpr int kInvalid = -(1 << 29);

struct ConvGeometry {
  int c_in, h, w, hw;         // input
  int c_out, h_out, w_out, p; // output (p = h_out * w_out)
  int cg, mg;                 // channels per group: input, output
  int kh, kw, khkw, stride, pad;
  FastDivmod div_khkw, div_kw, div_p, div_w_out, div_hw, div_w, div_stride;
};

inline ConvGeometry make_geometry(const ConvShape& s) {
  ConvGeometry g;
  g.c_in = s.c_in;
  g.h = s.h_in;
  g.w = s.w_in;
  g.hw = s.h_in * s.w_in;
  g.c_out = s.c_out;
  g.h_out = s.h_out;
  g.w_out = s.w_out;
  g.p = s.h_out * s.w_out;
  g.cg = s.c_in / s.groups;
  g.mg = s.c_out / s.groups;
  g.kh = s.kh;
  g.kw = s.kw;
  g.khkw = s.kh * s.kw;
  g.stride = s.stride;
  g.pad = s.pad;
  g.div_khkw = FastDivmod(g.khkw);
  g.div_kw = FastDivmod(g.kw);
  g.div_p = FastDivmod(std::max(g.p, 1));
  g.div_w_out = FastDivmod(std::max(g.w_out, 1));
  g.div_hw = FastDivmod(std::max(g.hw, 1));
  g.div_w = FastDivmod(std::max(g.w, 1));
  g.div_stride = FastDivmod(g.stride);
  return g;
}

// ---- operand loaders (interface: gemm.cuh) ---------------------------------------------------------------------
// Two thread mappings, chosen by which axis is contiguous in memory:
//   * "by pixel" (rows of the tile are output/input pixels, contiguous along w): a warp covers 32 consecutive
//     columns of one k-row (lane l owns column 32*group + l), so it reads 32 consecutive pixels of one tap
//     (coalesced for stride 1).
//     The pixel decomposition (image, row, column) is done once per thread in the constructor; each k-step costs
//     one tap decomposition per k-row the thread loads.
//   * "k lanes" (K runs along pixels or taps): 8 consecutive threads take 8 consecutive k of one tile row, so a
//     warp reads 4 rows x 8 consecutive k (the backward-weight gathers along the pixels, the weights along taps).

// The by-pixel thread mapping. A thread owns kCols column groups (columns 32 apart, lane = tid % 32) and kKRows
// k-rows. Per-pixel state costs 3 registers per column, each k-row one tap decomposition: 2 columns keep every
// tile shape within 128 registers without spilling, at 2 (256 threads) or 4 (128 threads) decompositions per
// k-step, i.e. ~10-20% of the 512 FMAs a thread issues per k-step.
template <int ROWS, int NT>
struct PixelLanes {
  static constexpr int kGroups = ROWS / 32;       // 32-wide column groups of the tile
  static constexpr int kElems = ROWS * kBK / NT;  // elements per thread
  static constexpr int kCols = kGroups < 2 ? kGroups : 2;
  static constexpr int kKRows = kElems / kCols;
  static constexpr int kColWarps = kGroups / kCols;    // warps that cover one k-row
  static constexpr int kPass = (NT / 32) / kColWarps;  // k-rows covered by all warps at once
  static_assert(ROWS % 32 == 0 && NT % 32 == 0 && kGroups % kCols == 0, "by-pixel mapping");
  static_assert(kKRows * kPass == kBK && kCols * kKRows == kElems, "by-pixel mapping must cover the tile once");
  AX_HD static int col(int tid, int j) { return (((tid / 32) % kColWarps) * kCols + j) * 32 + tid % 32; }
  AX_HD static int krow(int tid, int kr) { return (tid / 32) / kColWarps + kr * kPass; }
  // Writes a thread's loaded values (k-rows x columns) into the k-major shared tile.
  template <int LD>
  AX_HD static void store(float (*s)[LD], const float (&v)[kKRows][kCols], int tid) {
    AX_UNROLL
    for (int kr = 0; kr < kKRows; ++kr) {
      AX_UNROLL
      for (int j = 0; j < kCols; ++j) s[krow(tid, kr)][col(tid, j)] = v[kr][j];
    }
  }
};

// Forward B: X[k = (c, r, s)][n = (img, oh, ow)] = x[img][g*Cg + c][oh*stride - pad + r][ow*stride - pad + s].
struct Im2colByPixel {
  const float* x;  // first image of this launch
  ConvGeometry geo;
  int N;  // pixels in this launch: images * p
  int K;  // Cg * kh * kw

  template <int ROWS, int NT>
  struct Tile {
    using L = PixelLanes<ROWS, NT>;
    static constexpr int kKRows = L::kKRows, kCols = L::kCols;

    const Im2colByPixel& p;
    int tid;
    int base[kCols], ih0[kCols], iw0[kCols];
    float v[kKRows][kCols];

    AX_HD Tile(const Im2colByPixel& params, int group, int row0, int tid_)
        : p(params), tid(tid_) {
      const ConvGeometry& g = p.geo;
      AX_UNROLL
      for (int j = 0; j < kCols; ++j) {
        const int n = row0 + L::col(tid, j);
        if (n < p.N) {
          int img, pix, oh, ow;
          g.div_p.divmod(n, img, pix);
          g.div_w_out.divmod(pix, oh, ow);
          ih0[j] = oh * g.stride - g.pad;
          iw0[j] = ow * g.stride - g.pad;
          base[j] = (img * g.c_in + group * g.cg) * g.hw + ih0[j] * g.w + iw0[j];
        } else {
          ih0[j] = kInvalid;
          iw0[j] = kInvalid;
          base[j] = 0;
        }
      }
    }

    AX_HD void load(int k0) {
      const ConvGeometry& g = p.geo;
      AX_UNROLL
      for (int kr = 0; kr < kKRows; ++kr) {
        const int k = k0 + L::krow(tid, kr);
        int c, rs, r, s;
        g.div_khkw.divmod(k, c, rs);
        g.div_kw.divmod(rs, r, s);
        const bool k_ok = k < p.K;
        const int koff = c * g.hw + r * g.w + s;
        AX_UNROLL
        for (int j = 0; j < kCols; ++j) {
          const int ih = ih0[j] + r, iw = iw0[j] + s;
          const bool ok = k_ok && static_cast<unsigned>(ih) < static_cast<unsigned>(g.h) &&
                          static_cast<unsigned>(iw) < static_cast<unsigned>(g.w);
          v[kr][j] = ok ? ldg(p.x + (base[j] + koff)) : 0.0f;
        }
      }
    }

    template <int LD>
    AX_HD void store(float (*s)[LD]) const {
      L::store(s, v, tid);
    }
  };
};

// Backward-data B: DY[k = (co, r, s)][n = (img, ih, iw)] = dy[img][g*Mg + co][oh][ow] with
// oh = (ih + pad - r) / stride, ow = (iw + pad - s) / stride when exact and in range, else 0.
template <bool UNIT_STRIDE>
struct Col2imByPixel {
  const float* dy;  // first image of this launch
  ConvGeometry geo;
  int N;  // input pixels in this launch: images * h * w
  int K;  // Mg * kh * kw

  template <int ROWS, int NT>
  struct Tile {
    using L = PixelLanes<ROWS, NT>;
    static constexpr int kKRows = L::kKRows, kCols = L::kCols;

    const Col2imByPixel& p;
    int tid;
    int base[kCols], ihp[kCols], iwp[kCols];  // ihp = ih + pad
    float v[kKRows][kCols];

    AX_HD Tile(const Col2imByPixel& params, int group, int row0, int tid_)
        : p(params), tid(tid_) {
      const ConvGeometry& g = p.geo;
      AX_UNROLL
      for (int j = 0; j < kCols; ++j) {
        const int n = row0 + L::col(tid, j);
        if (n < p.N) {
          int img, q, ih, iw;
          g.div_hw.divmod(n, img, q);
          g.div_w.divmod(q, ih, iw);
          ihp[j] = ih + g.pad;
          iwp[j] = iw + g.pad;
          base[j] = (img * g.c_out + group * g.mg) * g.p;
        } else {
          ihp[j] = kInvalid;
          iwp[j] = kInvalid;
          base[j] = 0;
        }
      }
    }

    AX_HD void load(int k0) {
      const ConvGeometry& g = p.geo;
      AX_UNROLL
      for (int kr = 0; kr < kKRows; ++kr) {
        const int k = k0 + L::krow(tid, kr);
        int co, rs, r, s;
        g.div_khkw.divmod(k, co, rs);
        g.div_kw.divmod(rs, r, s);
        const bool k_ok = k < p.K;
        const int koff = co * g.p;
        AX_UNROLL
        for (int j = 0; j < kCols; ++j) {
          int oh = ihp[j] - r, ow = iwp[j] - s;
          bool ok = k_ok;
          if (UNIT_STRIDE) {
            ok = ok && static_cast<unsigned>(oh) < static_cast<unsigned>(g.h_out) &&
                 static_cast<unsigned>(ow) < static_cast<unsigned>(g.w_out);
          } else {
            ok = ok && oh >= 0 && ow >= 0;
            int qh, rh, qw, rw;
            g.div_stride.divmod(ok ? oh : 0, qh, rh);
            g.div_stride.divmod(ok ? ow : 0, qw, rw);
            ok = ok && rh == 0 && rw == 0 && qh < g.h_out && qw < g.w_out;
            oh = qh;
            ow = qw;
          }
          v[kr][j] = ok ? ldg(p.dy + (base[j] + koff + oh * g.w_out + ow)) : 0.0f;
        }
      }
    }

    template <int LD>
    AX_HD void store(float (*s)[LD]) const {
      L::store(s, v, tid);
    }
  };
};

// The "k lanes" mapping: kLanes = 8 / KK consecutive threads take consecutive k of one tile row; a thread loads
// KK k-values (klane + j * kLanes) of kRows tile rows (rbase + i * kPass). KK = 1 for the operands whose per-row
// address is one multiply; Im2colByTap keeps 3 registers of tap state per row, so it takes 2 k-values to halve
// its rows (and pays 2 pixel decompositions per k-step).
template <int ROWS, int NT, int KK>
struct KLanes {
  static constexpr int kLanes = kBK / KK;        // threads along k
  static constexpr int kPass = NT / kLanes;      // tile rows per pass
  static constexpr int kRows = ROWS / kPass;     // tile rows per thread
  static_assert(kBK % KK == 0 && NT % kLanes == 0 && ROWS % kPass == 0, "k-lane mapping must cover the tile");
  static_assert(kRows * KK * NT == ROWS * kBK, "k-lane mapping must cover the tile once");
  AX_HD static int klane(int tid) { return tid % kLanes; }
  AX_HD static int rbase(int tid) { return tid / kLanes; }
};

// A "k lanes" operand whose element (row, k) is at ptr[Index::offset(geo, group, k) + row * Index::row_stride(geo)]
// for row < Index::rows(geo): one k decomposition per k-step, then one multiply-add per row.
template <class Index>
struct RowStridedByK {
  const float* ptr;  // first image of this launch (for per-image operands)
  ConvGeometry geo;
  int K;

  template <int ROWS, int NT>
  struct Tile {
    using L = KLanes<ROWS, NT, 1>;
    const RowStridedByK& p;
    int group, row0, klane, rbase;
    float v[L::kRows];

    AX_HD Tile(const RowStridedByK& params, int group_, int row0_, int tid)
        : p(params), group(group_), row0(row0_), klane(tid % kBK), rbase(tid / kBK) {}

    AX_HD void load(int k0) {
      const ConvGeometry& g = p.geo;
      const int k = k0 + klane;
      const bool k_ok = k < p.K;
      const int off = Index::offset(g, group, k), stride = Index::row_stride(g), rows = Index::rows(g);
      AX_UNROLL
      for (int i = 0; i < L::kRows; ++i) {
        const int row = row0 + rbase + i * L::kPass;
        v[i] = (k_ok && row < rows) ? ldg(p.ptr + (off + row * stride)) : 0.0f;
      }
    }

    template <int LD>
    AX_HD void store(float (*s)[LD]) const {
      AX_UNROLL
      for (int i = 0; i < L::kRows; ++i) s[klane][rbase + i * L::kPass] = v[i];
    }
  };
};

// Backward-data A: Wt[m = c][k = (co, r, s)] = w[g*Mg + co][c][r][s].
struct WeightsByInputChannelIndex {
  AX_HD static int offset(const ConvGeometry& g, int group, int k) {
    int co, rs;
    g.div_khkw.divmod(k, co, rs);
    return (group * g.mg + co) * g.cg * g.khkw + rs;
  }
  AX_HD static int row_stride(const ConvGeometry& g) { return g.khkw; }
  AX_HD static int rows(const ConvGeometry& g) { return g.cg; }
};
using WeightsByInputChannel = RowStridedByK<WeightsByInputChannelIndex>;  // K = Mg * kh * kw

// Backward-weight A: DY[m = co][k = (img, oh, ow)] = dy[img][g*Mg + co][oh][ow].
struct OutputGradByChannelIndex {
  AX_HD static int offset(const ConvGeometry& g, int group, int k) {
    int img, pix;
    g.div_p.divmod(k, img, pix);
    return (img * g.c_out + group * g.mg) * g.p + pix;
  }
  AX_HD static int row_stride(const ConvGeometry& g) { return g.p; }
  AX_HD static int rows(const ConvGeometry& g) { return g.mg; }
};
using OutputGradByChannel = RowStridedByK<OutputGradByChannelIndex>;  // K = images * p

// Backward-weight B: X[k = (img, oh, ow)][n = (c, r, s)] = x[img][g*Cg + c][oh*stride - pad + r][ow*stride - pad + s].
// The tap decomposition is per thread (constructor); each k-step decomposes the thread's KK pixels.
struct Im2colByTap {
  const float* x;  // first image of this launch
  ConvGeometry geo;
  int N;  // Cg * kh * kw
  int K;  // images * p

  template <int ROWS, int NT>
  struct Tile {
    static constexpr int KK = ROWS * kBK / NT >= 4 ? 2 : 1;
    using L = KLanes<ROWS, NT, KK>;
    const Im2colByTap& p;
    int tid;
    int coff[L::kRows], tr[L::kRows], ts[L::kRows];
    float v[KK][L::kRows];

    AX_HD Tile(const Im2colByTap& params, int group, int row0, int tid_) : p(params), tid(tid_) {
      const ConvGeometry& g = p.geo;
      AX_UNROLL
      for (int i = 0; i < L::kRows; ++i) {
        const int n = row0 + L::rbase(tid) + i * L::kPass;
        if (n < p.N) {
          int c, rs, r, s;
          g.div_khkw.divmod(n, c, rs);
          g.div_kw.divmod(rs, r, s);
          coff[i] = (group * g.cg + c) * g.hw + r * g.w + s;
          tr[i] = r;
          ts[i] = s;
        } else {
          coff[i] = 0;
          tr[i] = kInvalid;
          ts[i] = kInvalid;
        }
      }
    }

    AX_HD void load(int k0) {
      const ConvGeometry& g = p.geo;
      AX_UNROLL
      for (int j = 0; j < KK; ++j) {
        const int k = k0 + L::klane(tid) + j * L::kLanes;
        int img, pix, oh, ow;
        g.div_p.divmod(k, img, pix);
        g.div_w_out.divmod(pix, oh, ow);
        const bool k_ok = k < p.K;
        const int ih0 = oh * g.stride - g.pad, iw0 = ow * g.stride - g.pad;
        const int base = img * g.c_in * g.hw + ih0 * g.w + iw0;
        AX_UNROLL
        for (int i = 0; i < L::kRows; ++i) {
          const int ih = ih0 + tr[i], iw = iw0 + ts[i];
          const bool ok = k_ok && static_cast<unsigned>(ih) < static_cast<unsigned>(g.h) &&
                          static_cast<unsigned>(iw) < static_cast<unsigned>(g.w);
          v[j][i] = ok ? ldg(p.x + (base + coff[i])) : 0.0f;
        }
      }
    }

    template <int LD>
    AX_HD void store(float (*s)[LD]) const {
      AX_UNROLL
      for (int j = 0; j < KK; ++j) {
        AX_UNROLL
        for (int i = 0; i < L::kRows; ++i) s[L::klane(tid) + j * L::kLanes][L::rbase(tid) + i * L::kPass] = v[j][i];
      }
    }
  };
};

// ---- epilogues ------------------------------------------------------------------------------------------------
// C[g][m][n] -> out[img][g*per_group + m][pix] with n = (img, pix): the NCHW scatter of forward (y, plus bias and
// activation) and backward-data (dx).
struct ConvOutputStore {
  float* out;          // first image of this launch
  const float* bias;   // indexed by the absolute channel; may be null
  Activation act;
  int per_group;       // channels per group of `out`
  int channels;        // channels of `out`
  int plane;           // pixels per channel plane
  FastDivmod div_plane;

  AX_HD void store(int group, int m, int n, const float* v, int count) const {
    const int ch = group * per_group + m;
    const float b = bias ? ldg(bias + ch) : 0.0f;
    int img, pix;
    div_plane.divmod(n, img, pix);
    int off = (img * channels + ch) * plane + pix;
    for (int j = 0; j < count; ++j) {
      out[off] = activate(act, v[j] + b);
      if (j + 1 < count) {
        ++pix;
        ++off;
        if (pix == plane) {  // the next column is pixel 0 of the next image, same channel
          pix = 0;
          off += (channels - 1) * plane;
        }
      }
    }
  }
};

// Images per launch so that every tensor of the launch has fewer than 2^31 elements (32-bit offsets).
inline int images_per_chunk(const char* op, int n, int64_t per_image_a, int64_t per_image_b) {
  const int64_t limit = gemm::index_limit();
  const int64_t per_image = std::max<int64_t>({per_image_a, per_image_b, 1});
  AX_CHECK(per_image <= INT_MAX, op, ": one image's tensor has ", per_image,
           " elements; the CUDA kernels support at most 2^31 - 1");
  // One image of headroom: the loaders form (but never dereference) offsets up to one image past the chunk.
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(n, limit / per_image - 1)));
}

}  // namespace conv_detail

using namespace conv_detail;

void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y,
                    cudaStream_t stream) {
  if (s.n == 0 || s.c_out == 0 || s.h_out == 0 || s.w_out == 0) return;
  const ConvGeometry g = make_geometry(s);
  const int K = g.cg * g.khkw;
  AX_CHECK(static_cast<int64_t>(s.c_out) * K <= INT_MAX, "conv2d_forward: weight tensor too large");
  const int64_t x_img = static_cast<int64_t>(g.c_in) * g.hw, y_img = static_cast<int64_t>(g.c_out) * g.p;
  const int chunk = images_per_chunk("conv2d_forward", s.n, x_img, y_img);
  const bool w_vec = (K % 4 == 0) && (reinterpret_cast<uintptr_t>(w) % 16 == 0);
  for (int img0 = 0; img0 < s.n; img0 += chunk) {
    const int images = std::min(chunk, s.n - img0);
    gemm::Problem<gemm::Matrix<true>, Im2colByPixel, ConvOutputStore> pr;
    pr.M = g.mg;
    pr.N = images * g.p;
    pr.K = K;
    pr.batches = s.groups;
    pr.a = gemm::Matrix<true>{w, K, static_cast<int64_t>(g.mg) * K, g.mg, K, w_vec};
    pr.b = Im2colByPixel{x + img0 * x_img, g, pr.N, K};
    pr.ep = ConvOutputStore{y + img0 * y_img, bias, act, g.mg, g.c_out, g.p, g.div_p};
    gemm::run(gemm::AllTiles{}, "conv2d_forward", pr, stream);
  }
}

template <bool UNIT_STRIDE>
static void backward_input_impl(const ConvShape& s, const ConvGeometry& g, const float* dy, const float* w,
                                float* dx, cudaStream_t stream) {
  const int K = g.mg * g.khkw;
  const int64_t x_img = static_cast<int64_t>(g.c_in) * g.hw, y_img = static_cast<int64_t>(g.c_out) * g.p;
  const int chunk = images_per_chunk("conv2d_backward_input", s.n, x_img, y_img);
  for (int img0 = 0; img0 < s.n; img0 += chunk) {
    const int images = std::min(chunk, s.n - img0);
    gemm::Problem<WeightsByInputChannel, Col2imByPixel<UNIT_STRIDE>, ConvOutputStore> pr;
    pr.M = g.cg;
    pr.N = images * g.hw;
    pr.K = K;
    pr.batches = s.groups;
    pr.a = WeightsByInputChannel{w, g, K};
    pr.b = Col2imByPixel<UNIT_STRIDE>{dy + img0 * y_img, g, pr.N, K};
    pr.ep = ConvOutputStore{dx + img0 * x_img, nullptr, Activation::None, g.cg, g.c_in, g.hw, g.div_hw};
    gemm::run(gemm::AllTiles{}, "conv2d_backward_input", pr, stream);
  }
}

void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, cudaStream_t stream) {
  if (s.n == 0 || s.c_in == 0 || s.h_in == 0 || s.w_in == 0) return;
  const ConvGeometry g = make_geometry(s);
  AX_CHECK(static_cast<int64_t>(s.c_out) * g.cg * g.khkw <= INT_MAX, "conv2d_backward_input: weight tensor too large");
  if (s.stride == 1) {
    backward_input_impl<true>(s, g, dy, w, dx, stream);
  } else {
    backward_input_impl<false>(s, g, dy, w, dx, stream);
  }
}

void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw, cudaStream_t stream) {
  const ConvGeometry g = make_geometry(s);
  const int N = g.cg * g.khkw;
  if (s.c_out == 0 || N == 0) return;
  AX_CHECK(static_cast<int64_t>(s.c_out) * N <= INT_MAX, "conv2d_backward_weight: weight tensor too large");
  if (s.n == 0) {  // empty sum
    AX_CUDA_CHECK(cudaMemsetAsync(dw, 0, sizeof(float) * static_cast<size_t>(s.c_out) * N, stream));
    return;
  }
  const int64_t x_img = static_cast<int64_t>(g.c_in) * g.hw, y_img = static_cast<int64_t>(g.c_out) * g.p;
  const int chunk = images_per_chunk("conv2d_backward_weight", s.n, x_img, y_img);
  AX_CHECK(static_cast<int64_t>(chunk) * g.p <= INT_MAX, "conv2d_backward_weight: too many output pixels");
  const bool dw_vec = (N % 4 == 0) && (reinterpret_cast<uintptr_t>(dw) % 16 == 0);
  const gemm::MatrixStore store{dw, N, static_cast<int64_t>(g.mg) * N, nullptr, Activation::None, dw_vec};
  using P = gemm::Problem<OutputGradByChannel, Im2colByTap, gemm::MatrixStore>;
  auto problem = [&](int img0, int images) {
    P pr;
    pr.M = g.mg;
    pr.N = N;
    pr.K = images * g.p;
    pr.batches = s.groups;
    pr.a = OutputGradByChannel{dy + img0 * y_img, g, pr.K};
    pr.b = Im2colByTap{x + img0 * x_img, g, N, pr.K};
    pr.ep = store;
    return pr;
  };
  if (chunk >= s.n) {
    gemm::run(gemm::AllTiles{}, "conv2d_backward_weight", problem(0, s.n), stream);
    return;
  }
  // Several image chunks: every chunk writes its own `splits` partial slices, one fixed-order reduction at the end.
  const int device = gemm::current_device();
  const gemm::GemmPlan plan = gemm::plan_problem(gemm::AllTiles{}, problem(0, chunk), device, true);
  const int n_chunks = (s.n + chunk - 1) / chunk;
  const int slices = n_chunks * plan.splits;
  const size_t slice = static_cast<size_t>(g.mg) * N * s.groups;
  gemm::Scratch partial(device, stream, slice * slices * sizeof(float));
  for (int ci = 0; ci < n_chunks; ++ci) {
    const int img0 = ci * chunk, images = std::min(chunk, s.n - img0);
    const P pr = problem(img0, images);
    gemm::GemmPlan chunk_plan = plan;
    const int k_tiles = (pr.K + kBK - 1) / kBK;
    chunk_plan.k_tiles_per_split = (k_tiles + plan.splits - 1) / plan.splits;
    gemm::launch_planned(gemm::AllTiles{}, "conv2d_backward_weight", pr, chunk_plan, partial.get(), ci * plan.splits,
                         stream);
  }
  gemm::launch_reduce("conv2d_backward_weight", partial.get(), slices, s.groups, g.mg, N, store, stream);
}

}  // namespace alexnet::cuda
