// The locally connected layer on the GPU (cuda-convnet's `local`; layouts in shapes.h): at every output position
// p = (oy, ox) a small product over the batch, so each pass is ONE batched GEMM on gemm.cuh whose batch index is
// the position (grid.z), run once per group (the published networks have one group).
//
// Like cuda-convnet, which keeps every activation batch-minor (filter_acts.cu: images (colors, y, x, images)), the
// kernels work on batch-minor copies xT[pixel][c][img], dyT[p][o][img], yT[p][o][img] made by one tiled transpose
// each (swap_outer_inner_kernel). Then every operand walks memory along the batch or along output channels:
//
//   forward          yT[p][g*Mg+m][img] = act(bias[g*Mg+m][p] + sum_tap W_p[tap][g*Mg+m] * X_p[tap][img])
//                    M = Mg, N = n, K = taps = Cg*kh*kw. A = W_p (gemm::Matrix, rows m contiguous), B = the
//                    receptive field gathered from xT (Patches: consecutive threads, consecutive images),
//                    epilogue adds the per-element bias into yT (float4 stores); then yT -> y.
//   backward-weight  dW_p[tap][g*Mg+m] = sum_img X_p[tap][img] * dyT[p][g*Mg+m][img]
//                    M = taps, N = Mg, K = n. A = Patches (k = images contiguous), B = dyT (Matrix), into dw.
//   backward-data    cols[g][p][tap][img] = sum_m W_p[tap][g*Mg+m] * dyT[p][g*Mg+m][img]
//                    M = taps, N = n, K = Mg, both operands Matrix; then local_col2im_kernel adds each input
//                    pixel's windows in a fixed order into dxT (the windows overlap: no atomics, deterministic),
//                    coalesced along the batch; then dxT -> dx.
//   bias             db[o][p] = sum_img dy[img][o][p]: bias_backward.cu's kernel with dy seen as (n, c_out*P, 1).
//
// A block computes one position's tile; the planner in gemm.cuh picks the tile shape and splits K when the
// positions alone give too few blocks (local3 at 24x24 crops: 36 positions x 1 tile). Faster: Patches loads single
// floats; with n % 4 == 0 they could be float4 loads like gemm::Matrix's.
#include <algorithm>
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

// Geometry of one group's receptive fields. tap = (c, r, q) in the weight's order; position p = (oy, ox).
struct PatchGeometry {
  int c_in, h_in, w_in, kw, stride, pad, taps, n;
  FastDivmod div_w_out, div_khkw, div_kw;
};

// X_p[tap][img] = xT[oy*stride - pad + r][ox*stride - pad + q][g*Cg + c][img], zero outside the image. TAP_ROWS:
// the GEMM's rows are taps and its k the images (backward-weight), else rows are images and k taps (forward).
template <bool TAP_ROWS>
struct Patches {
  const float* xt;  // channel g*Cg of pixel 0
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
    return ldg(xt + ((iy * g.w_in + ix) * g.c_in + c) * g.n + img);
  }
};

// Forward epilogue: C[p][m][img] -> yT[p][g*Mg + m][img] = act(C + bias[g*Mg + m][p]).
struct LocalOutputStore {
  float* yt;          // channel g*Mg of position 0
  const float* bias;  // channel g*Mg's bias plane, or null
  Activation act;
  int channels, positions, n;
  bool vec4;  // yt and n allow float4 stores
  AX_HD void store(int pos, int m, int img, const float* v, int count) const {
    const float b = bias ? ldg(bias + m * positions + pos) : 0.0f;
    float* dst = yt + (pos * channels + m) * n + img;
    float out[4];
    AX_UNROLL
    for (int j = 0; j < 4; ++j) out[j] = j < count ? activate(act, v[j] + b) : 0.0f;
    if (count == 4 && vec4) {
      *reinterpret_cast<float4*>(dst) = make_float4(out[0], out[1], out[2], out[3]);
    } else {
      for (int j = 0; j < count; ++j) dst[j] = out[j];
    }
  }
};

constexpr int kTile = 32, kTileRows = 8;

// out[b][c][a] = in[a][c][b] for in (A, C, B): NCHW <-> batch-minor (A = n, B = pixels, or the reverse). A 32x32
// tile of (a, b) goes through shared memory so that reads and writes are both coalesced. grid: x = B tiles * C,
// y = A tiles.
__global__ void __launch_bounds__(kTile * kTileRows)
    swap_outer_inner_kernel(int A, int C, int B, const float* __restrict__ in, float* __restrict__ out) {
  __shared__ float tile[kTile][kTile + 1];
  const int b_tiles = (B + kTile - 1) / kTile;
  const int c = blockIdx.x / b_tiles, b0 = (blockIdx.x % b_tiles) * kTile, a0 = blockIdx.y * kTile;
  for (int j = threadIdx.y; j < kTile; j += kTileRows) {
    const int a = a0 + j, b = b0 + threadIdx.x;
    if (a < A && b < B) tile[j][threadIdx.x] = in[(static_cast<int64_t>(a) * C + c) * B + b];
  }
  __syncthreads();
  for (int j = threadIdx.y; j < kTile; j += kTileRows) {
    const int b = b0 + j, a = a0 + threadIdx.x;
    if (a < A && b < B) out[(static_cast<int64_t>(b) * C + c) * A + a] = tile[threadIdx.x][j];
  }
}

void swap_outer_inner(const char* op, int A, int C, int B, const float* in, float* out, cudaStream_t stream) {
  if (A == 0 || B == 0 || C == 0) return;
  const int64_t blocks_x = static_cast<int64_t>((B + kTile - 1) / kTile) * C, blocks_y = (A + kTile - 1) / kTile;
  AX_CHECK(blocks_x <= INT_MAX && blocks_y <= 65535, op, ": tensor of ", A, " x ", C, " x ", B,
           " is too large for the transpose's grid");
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(blocks_y));
  swap_outer_inner_kernel<<<grid, dim3(kTile, kTileRows), 0, stream>>>(A, C, B, in, out);
  AX_CUDA_CHECK_LAUNCH("local (batch-minor transpose)");
}

constexpr int kCol2imThreads = 256;

// dxT[iy][ix][c][img] = sum over the windows (oy, ox, r, q) that read pixel (iy, ix) of
// cols[g][p][(c % Cg, r, q)][img], in a fixed order. One thread per element; consecutive threads: consecutive
// images, so the reads of cols and the writes are coalesced.
__global__ void __launch_bounds__(kCol2imThreads)
    local_col2im_kernel(ConvShape s, int taps, const float* __restrict__ cols, float* __restrict__ dxt) {
  const int64_t total = int64_t{s.n} * s.c_in * s.h_in * s.w_in;
  const int cg = s.c_in / s.groups, positions = s.h_out * s.w_out;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < total; i += int64_t{gridDim.x} * blockDim.x) {
    const int img = static_cast<int>(i % s.n), c = static_cast<int>((i / s.n) % s.c_in);
    const int pix = static_cast<int>(i / (int64_t{s.n} * s.c_in));
    const int iy = pix / s.w_in, ix = pix % s.w_in;
    const int g = c / cg, cl = c % cg;
    float sum = 0.0f;
    local::for_each_window_reading(s, iy, ix, [&](int pos, int rq) {
      sum += __ldg(cols + ((static_cast<int64_t>(g) * positions + pos) * taps + cl * s.kh * s.kw + rq) * s.n + img);
    });
    dxt[i] = sum;
  }
}

PatchGeometry patch_geometry(const ConvShape& s) {
  const int cg = s.c_in / s.groups;
  return PatchGeometry{s.c_in, s.h_in, s.w_in, s.kw, s.stride, s.pad, cg * s.kh * s.kw, s.n,
                       FastDivmod(s.w_out), FastDivmod(s.kh * s.kw), FastDivmod(s.kw)};
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Bytes for a scratch buffer of `count` floats; at least one, so an empty tensor (no input channels) still gets a
// real allocation.
size_t scratch_bytes(int64_t count) { return sizeof(float) * static_cast<size_t>(std::max<int64_t>(count, 1)); }

}  // namespace local_detail

using namespace local_detail;

void local_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y,
                   cudaStream_t stream) {
  const PatchGeometry pg = patch_geometry(s);
  const int mg = s.c_out / s.groups, cg = s.c_in / s.groups, positions = s.h_out * s.w_out;
  const int pixels = s.h_in * s.w_in, device = gemm::current_device();
  gemm::Scratch xt(device, stream, scratch_bytes(int64_t{s.n} * s.c_in * pixels));
  gemm::Scratch yt(device, stream, scratch_bytes(int64_t{s.n} * s.c_out * positions));
  swap_outer_inner("local_forward", s.n, s.c_in, pixels, x, xt.get(), stream);
  const bool w_vec = s.c_out % 4 == 0 && mg % 4 == 0 && aligned16(w);
  for (int g = 0; g < s.groups; ++g) {
    gemm::Problem<gemm::Matrix<false>, ElementLoader<Patches<false>, true>, LocalOutputStore> pr;
    pr.M = mg;
    pr.N = s.n;
    pr.K = pg.taps;
    pr.batches = positions;
    pr.a = gemm::Matrix<false>{w + g * mg, s.c_out, static_cast<int64_t>(pg.taps) * s.c_out, mg, pg.taps, w_vec};
    pr.b = {Patches<false>{xt.get() + static_cast<int64_t>(g) * cg * s.n, pg}};
    float* yt_g = yt.get() + static_cast<int64_t>(g) * mg * s.n;
    pr.ep = LocalOutputStore{yt_g, bias ? bias + static_cast<int64_t>(g) * mg * positions : nullptr, act, s.c_out,
                             positions, s.n, s.n % 4 == 0 && aligned16(yt_g)};
    gemm::run(gemm::AllTiles{}, "local_forward", pr, stream);
  }
  swap_outer_inner("local_forward", positions, s.c_out, s.n, yt.get(), y, stream);
}

void local_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, cudaStream_t stream) {
  const PatchGeometry pg = patch_geometry(s);
  const int mg = s.c_out / s.groups, cg = s.c_in / s.groups, positions = s.h_out * s.w_out;
  const int pixels = s.h_in * s.w_in, device = gemm::current_device();
  // x and then dx (batch-minor), dy (batch-minor), and dX_p of every position. The op layer keeps each below 2^31
  // elements.
  gemm::Scratch xt(device, stream, scratch_bytes(int64_t{s.n} * s.c_in * pixels));
  gemm::Scratch dyt(device, stream, scratch_bytes(int64_t{s.n} * s.c_out * positions));
  gemm::Scratch cols(device, stream, scratch_bytes(int64_t{s.groups} * positions * pg.taps * s.n));
  swap_outer_inner("local_backward", s.n, s.c_in, pixels, x, xt.get(), stream);
  swap_outer_inner("local_backward", s.n, s.c_out, positions, dy, dyt.get(), stream);
  const bool n_vec = s.n % 4 == 0 && s.c_out % 4 == 0 && mg % 4 == 0;  // dyT rows and their group offsets
  const bool w_vec = s.c_out % 4 == 0 && mg % 4 == 0 && aligned16(w) && aligned16(dw);
  for (int g = 0; g < s.groups; ++g) {
    const float* dyt_g = dyt.get() + static_cast<int64_t>(g) * mg * s.n;
    const int64_t dyt_stride = static_cast<int64_t>(s.c_out) * s.n;
    gemm::Problem<ElementLoader<Patches<true>, false>, gemm::Matrix<true>, gemm::MatrixStore> pw;
    pw.M = pg.taps;
    pw.N = mg;
    pw.K = s.n;
    pw.batches = positions;
    pw.a = {Patches<true>{xt.get() + static_cast<int64_t>(g) * cg * s.n, pg}};
    pw.b = gemm::Matrix<true>{dyt_g, s.n, dyt_stride, mg, s.n, n_vec && aligned16(dyt_g)};
    pw.ep = gemm::MatrixStore{dw + g * mg, s.c_out, static_cast<int64_t>(pg.taps) * s.c_out, nullptr, Activation::None,
                              w_vec};
    gemm::run(gemm::AllTiles{}, "local_backward (weights)", pw, stream);

    gemm::Problem<gemm::Matrix<true>, gemm::Matrix<false>, gemm::MatrixStore> pd;
    pd.M = pg.taps;
    pd.N = s.n;
    pd.K = mg;
    pd.batches = positions;
    pd.a = gemm::Matrix<true>{w + g * mg, s.c_out, static_cast<int64_t>(pg.taps) * s.c_out, pg.taps, mg, w_vec};
    pd.b = gemm::Matrix<false>{dyt_g, s.n, dyt_stride, s.n, mg, n_vec && aligned16(dyt_g)};
    float* cols_g = cols.get() + static_cast<int64_t>(g) * positions * pg.taps * s.n;
    pd.ep = gemm::MatrixStore{cols_g, s.n, static_cast<int64_t>(pg.taps) * s.n, nullptr, Activation::None,
                              s.n % 4 == 0 && aligned16(cols_g)};
    gemm::run(gemm::AllTiles{}, "local_backward (inputs)", pd, stream);
  }
  const int64_t dx_count = int64_t{s.n} * s.c_in * pixels;  // dxT goes where xT was: the GEMMs above are queued first
  local_col2im_kernel<<<grid_for(dx_count, kCol2imThreads), kCol2imThreads, 0, stream>>>(s, pg.taps, cols.get(),
                                                                                          xt.get());
  AX_CUDA_CHECK_LAUNCH("local_backward (col2im)");
  swap_outer_inner("local_backward", pixels, s.c_in, s.n, xt.get(), dx, stream);
  bias_backward(s.n, s.c_out * positions, 1, dy, db, stream);
}

}  // namespace alexnet::cuda
