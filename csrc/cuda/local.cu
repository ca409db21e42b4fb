// The locally connected layer on the GPU (cuda-convnet's `local`; layouts in shapes.h): at every output position
// p = (oy, ox) a small product over the batch, so each pass is ONE batched GEMM on gemm.cuh whose batch index is
// the position (grid.z), run once per group (the published networks have one group):
//
//   forward          y[img][g*Mg+m][p] = act(bias[g*Mg+m][p] + sum_tap W_p[tap][g*Mg+m] * X_p[tap][img])
//                    M = Mg (output channel), N = n (image), K = taps = Cg*kh*kw.
//                    A = W_p (LocalWeights: rows m are consecutive floats, coalesced), B = the receptive field of p
//                    gathered from NCHW x (Patches), epilogue scatters to NCHW y with the per-element bias.
//   backward-weight  dW_p[tap][g*Mg+m] = sum_img X_p[tap][img] * dy[img][g*Mg+m][p]
//                    M = taps, N = Mg, K = n. A = Patches (tap-major), B = dy at p, stored straight into dw.
//   backward-data    cols[g][p][img][tap] = sum_m dy[img][g*Mg+m][p] * W_p[tap][g*Mg+m]
//                    M = n, N = taps, K = Mg; then local_col2im adds each input pixel's windows in a fixed order
//                    (the windows overlap, so the GEMM cannot store into dx directly without atomics).
//   bias             db[o][p] = sum_img dy[img][o][p]: bias_backward.cu's kernel with dy seen as (n, c_out*P, 1).
//
// Like cuda-convnet's filter_acts.cu (which gives each module its own filters and tiles a block over images and
// filters), a block computes one position's tile of output channels x images; the planner in gemm.cuh picks the
// tile and splits K when the positions alone give too few blocks (local3 at 24x24 crops: 36 positions).
// The operands are fetched element by element (Strided / Patches below): only W_p has a contiguous axis that
// every product uses, and these layers are small next to the convolutions. Faster: an NHWC copy of x, so that a
// patch row (c, r, q) is kw*Cg contiguous floats that could be float4-loaded.
#include <climits>
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/gemm.cuh"
#include "cuda/gemm_matrix.cuh"
#include "cuda/kernels.h"
#include "local.h"

namespace alexnet::cuda {
namespace local_detail {

using gemm::FastDivmod;
using gemm::kBK;
using gemm::ldg;

// A loader (gemm.cuh) of an operand given by an element function at(batch, row, k), zero past rows or K. Each
// thread moves single elements; ROWS_FAST puts consecutive threads on consecutive rows (for operands whose rows
// are contiguous in memory), otherwise on consecutive k.
template <class Source, bool ROWS_FAST>
struct ElementLoader {
  Source src;

  template <int ROWS, int NT>
  struct Tile {
    static constexpr int kItems = ROWS * kBK;
    static constexpr int kPerThread = (kItems + NT - 1) / NT;
    const Source& s;
    int batch, row0, tid;
    float v[kPerThread];

    AX_HD static void position(int it, int& r, int& kk) {
      r = ROWS_FAST ? it % ROWS : it / kBK;
      kk = ROWS_FAST ? it / ROWS : it % kBK;
    }
    AX_HD Tile(const ElementLoader& p, int batch_, int row0_, int tid_) : s(p.src), batch(batch_), row0(row0_), tid(tid_) {}
    AX_HD void load(int k0) {
      AX_UNROLL
      for (int i = 0; i < kPerThread; ++i) {
        const int it = tid + i * NT;
        int r, kk;
        position(it, r, kk);
        v[i] = (kItems % NT == 0 || it < kItems) ? s.at(batch, row0 + r, k0 + kk) : 0.0f;
      }
    }
    template <int LD>
    AX_HD void store(float (*sh)[LD]) const {
      AX_UNROLL
      for (int i = 0; i < kPerThread; ++i) {
        const int it = tid + i * NT;
        if (kItems % NT == 0 || it < kItems) {
          int r, kk;
          position(it, r, kk);
          sh[kk][r] = v[i];
        }
      }
    }
  };
};

// Element (batch, row, k) at ptr[batch * batch_stride + row * row_stride + k * k_stride]: W_p and dy at p.
struct Strided {
  const float* ptr;
  int batch_stride, row_stride, k_stride, rows, K;
  AX_HD float at(int batch, int row, int k) const {
    return row < rows && k < K ? ldg(ptr + batch * batch_stride + row * row_stride + k * k_stride) : 0.0f;
  }
};

// Geometry of one group's receptive fields. tap = (c, r, q) in the weight's order; position p = (oy, ox).
struct PatchGeometry {
  int c_in, h_in, w_in, kw, stride, pad, taps, n;
  FastDivmod div_w_out, div_khkw, div_kw;
};

// X_p[tap][img] = x[img][g*Cg + c][oy*stride - pad + r][ox*stride - pad + q], zero outside the image. TAP_ROWS: the
// GEMM's rows are taps and its k the images (backward-weight), else rows are images and k taps (forward).
template <bool TAP_ROWS>
struct Patches {
  const float* x;  // channel g*Cg of image 0
  PatchGeometry g;
  AX_HD float at(int pos, int row, int k) const {
    const int tap = TAP_ROWS ? row : k, img = TAP_ROWS ? k : row;
    if (tap >= g.taps || img >= g.n) return 0.0f;
    int oy, ox, c, rq, r, q;
    g.div_w_out.divmod(pos, oy, ox);
    g.div_khkw.divmod(tap, c, rq);
    g.div_kw.divmod(rq, r, q);
    const int iy = oy * g.stride - g.pad + r, ix = ox * g.stride - g.pad + q;
    if (iy < 0 || iy >= g.h_in || ix < 0 || ix >= g.w_in) return 0.0f;
    return ldg(x + ((img * g.c_in + c) * g.h_in + iy) * g.w_in + ix);
  }
};

// Forward epilogue: C[p][m][img] -> y[img][g*Mg + m][p] = act(C + bias[g*Mg + m][p]).
struct LocalOutputStore {
  float* y;           // channel g*Mg of image 0
  const float* bias;  // channel g*Mg's bias plane, or null
  Activation act;
  int channels, positions;
  AX_HD void store(int pos, int m, int img, const float* v, int count) const {
    const float b = bias ? ldg(bias + m * positions + pos) : 0.0f;
    for (int j = 0; j < count; ++j) y[((img + j) * channels + m) * positions + pos] = activate(act, v[j] + b);
  }
};

constexpr int kCol2imThreads = 256;

// dx[img][c][iy][ix] = sum over the windows (oy, ox, r, q) that read it of cols[g][p][img][(c % Cg, r, q)], in
// a fixed order: deterministic, no atomics. One thread per dx element (consecutive threads: consecutive ix).
__global__ void __launch_bounds__(kCol2imThreads)
    local_col2im_kernel(ConvShape s, int taps, const float* __restrict__ cols, float* __restrict__ dx) {
  const int64_t total = int64_t{s.n} * s.c_in * s.h_in * s.w_in;
  const int cg = s.c_in / s.groups, positions = s.h_out * s.w_out;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int ix = static_cast<int>(i % s.w_in), iy = static_cast<int>((i / s.w_in) % s.h_in);
    const int c = static_cast<int>((i / (int64_t{s.w_in} * s.h_in)) % s.c_in);
    const int img = static_cast<int>(i / (int64_t{s.w_in} * s.h_in * s.c_in));
    const int g = c / cg, cl = c % cg;
    float sum = 0.0f;
    for (int r = 0; r < s.kh; ++r) {
      const int oy = local::window_reading(iy, r, s.pad, s.stride, s.h_out);
      if (oy < 0) continue;
      for (int q = 0; q < s.kw; ++q) {
        const int ox = local::window_reading(ix, q, s.pad, s.stride, s.w_out);
        if (ox < 0) continue;
        const int pos = oy * s.w_out + ox;
        sum += __ldg(cols + ((static_cast<int64_t>(g) * positions + pos) * s.n + img) * taps + (cl * s.kh + r) * s.kw + q);
      }
    }
    dx[i] = sum;
  }
}

PatchGeometry patch_geometry(const ConvShape& s) {
  const int cg = s.c_in / s.groups;
  return PatchGeometry{s.c_in, s.h_in, s.w_in, s.kw, s.stride, s.pad, cg * s.kh * s.kw, s.n,
                       FastDivmod(s.w_out), FastDivmod(s.kh * s.kw), FastDivmod(s.kw)};
}

}  // namespace local_detail

using namespace local_detail;

void local_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y,
                   cudaStream_t stream) {
  const PatchGeometry pg = patch_geometry(s);
  const int mg = s.c_out / s.groups, cg = s.c_in / s.groups, positions = s.h_out * s.w_out;
  for (int g = 0; g < s.groups; ++g) {
    gemm::Problem<ElementLoader<Strided, true>, ElementLoader<Patches<false>, false>, LocalOutputStore> pr;
    pr.M = mg;
    pr.N = s.n;
    pr.K = pg.taps;
    pr.batches = positions;
    pr.a = {Strided{w + g * mg, pg.taps * s.c_out, 1, s.c_out, mg, pg.taps}};
    pr.b = {Patches<false>{x + static_cast<int64_t>(g) * cg * s.h_in * s.w_in, pg}};
    pr.ep = LocalOutputStore{y + static_cast<int64_t>(g) * mg * positions,
                             bias ? bias + static_cast<int64_t>(g) * mg * positions : nullptr, act, s.c_out, positions};
    gemm::run(gemm::AllTiles{}, "local_forward", pr, stream);
  }
}

void local_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, cudaStream_t stream) {
  const PatchGeometry pg = patch_geometry(s);
  const int mg = s.c_out / s.groups, cg = s.c_in / s.groups, positions = s.h_out * s.w_out;
  const int device = gemm::current_device();
  // The op layer keeps this buffer (n * c_in * kh * kw * positions floats) below 2^31 elements.
  gemm::Scratch cols(device, stream, sizeof(float) * static_cast<size_t>(s.groups) * positions * s.n * pg.taps);
  const bool dw_vec = s.c_out % 4 == 0 && mg % 4 == 0 && reinterpret_cast<uintptr_t>(dw) % 16 == 0;
  const bool cols_vec = pg.taps % 4 == 0 && reinterpret_cast<uintptr_t>(cols.get()) % 16 == 0;
  for (int g = 0; g < s.groups; ++g) {
    const float* dy_g = dy + static_cast<int64_t>(g) * mg * positions;
    gemm::Problem<ElementLoader<Patches<true>, true>, ElementLoader<Strided, true>, gemm::MatrixStore> pw;
    pw.M = pg.taps;
    pw.N = mg;
    pw.K = s.n;
    pw.batches = positions;
    pw.a = {Patches<true>{x + static_cast<int64_t>(g) * cg * s.h_in * s.w_in, pg}};
    pw.b = {Strided{dy_g, 1, positions, s.c_out * positions, mg, s.n}};
    pw.ep = gemm::MatrixStore{dw + g * mg, s.c_out, static_cast<int64_t>(pg.taps) * s.c_out, nullptr, Activation::None,
                              dw_vec};
    gemm::run(gemm::AllTiles{}, "local_backward (weights)", pw, stream);

    gemm::Problem<ElementLoader<Strided, false>, ElementLoader<Strided, false>, gemm::MatrixStore> pd;
    pd.M = s.n;
    pd.N = pg.taps;
    pd.K = mg;
    pd.batches = positions;
    pd.a = {Strided{dy_g, 1, s.c_out * positions, positions, s.n, mg}};
    pd.b = {Strided{w + g * mg, pg.taps * s.c_out, s.c_out, 1, pg.taps, mg}};
    pd.ep = gemm::MatrixStore{cols.get() + static_cast<int64_t>(g) * positions * s.n * pg.taps, pg.taps,
                              static_cast<int64_t>(s.n) * pg.taps, nullptr, Activation::None, cols_vec};
    gemm::run(gemm::AllTiles{}, "local_backward (inputs)", pd, stream);
  }
  const int64_t dx_count = int64_t{s.n} * s.c_in * s.h_in * s.w_in;
  local_col2im_kernel<<<grid_for(dx_count, kCol2imThreads), kCol2imThreads, 0, stream>>>(s, pg.taps, cols.get(), dx);
  AX_CUDA_CHECK_LAUNCH("local_backward (col2im)");
  bias_backward(s.n, s.c_out * positions, 1, dy, db, stream);
}

}  // namespace alexnet::cuda
