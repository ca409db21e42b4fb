// The locally connected layer on the CPU (cuda-convnet's `local`: a convolution whose filters are not shared
// across output positions; shapes.h gives the layouts, NOTES-layers-local.md the mapping from cuda-convnet's).
//
// At one output position p = (oy, ox) and group g the layer is a small matrix product over the batch:
//
//   Y_p[img][m]  = sum_tap X_p[img][tap] * W_p[tap][g*Mg + m] + bias[g*Mg + m][p]     (M = n, N = Mg, K = taps)
//   dW_p         = X_p^T  DY_p                                                          (M = taps, N = Mg, K = n)
//   dX_p         = DY_p   W_p^T                                                         (M = n, N = taps, K = Mg)
//
// with X_p the receptive field of p gathered once per position ("patch", n x taps, tap = (c, r, q) like the
// weight's rows) and DY_p = dy[:, group's channels, oy, ox] (n x Mg). The positions are independent, so each
// OpenMP thread takes whole (position, group) items and runs the blocked GEMM (gemm.h) serially on them: the batch
// is the GEMM's M dimension, so the micro-kernel streams over images with a weight panel that is packed once per
// item (cuda-convnet's filter_acts.cu likewise gives each module its own filters and tiles over images).
// dX_p of every position goes to a buffer first; a second pass adds the overlapping windows into dx plane by
// plane (one thread per (image, channel) plane: no two threads write the same element, the sum order is fixed).
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace alexnet::cpu {

namespace {

struct LocalDims {
  int64_t positions, taps, cg, mg, items;
  explicit LocalDims(const ConvShape& s)
      : positions(int64_t{s.h_out} * s.w_out),
        taps(int64_t{s.c_in / s.groups} * s.kh * s.kw),
        cg(s.c_in / s.groups),
        mg(s.c_out / s.groups),
        items(int64_t{s.h_out} * s.w_out * s.groups) {}
};

// patch[img][tap] = x[img][g*Cg + c][oy*stride - pad + r][ox*stride - pad + q], zero outside the image (the
// padding, and cuda-convnet's last windows that may run past it: shapes.h).
void gather_patch(const ConvShape& s, const LocalDims& d, const float* x, int64_t pos, int g, float* patch) {
  const int oy = static_cast<int>(pos / s.w_out), ox = static_cast<int>(pos % s.w_out);
  const int iy0 = oy * s.stride - s.pad, ix0 = ox * s.stride - s.pad;
  const int64_t plane = int64_t{s.h_in} * s.w_in;
  for (int img = 0; img < s.n; ++img) {
    float* dst = patch + img * d.taps;
    for (int64_t c = 0; c < d.cg; ++c) {
      const float* src = x + (int64_t{img} * s.c_in + g * d.cg + c) * plane;
      for (int r = 0; r < s.kh; ++r) {
        float* row = dst + (c * s.kh + r) * s.kw;
        const int iy = iy0 + r;
        if (iy < 0 || iy >= s.h_in) {
          std::fill(row, row + s.kw, 0.0f);
          continue;
        }
        const float* line = src + int64_t{iy} * s.w_in;
        for (int q = 0; q < s.kw; ++q) {
          const int ix = ix0 + q;
          row[q] = (ix >= 0 && ix < s.w_in) ? line[ix] : 0.0f;
        }
      }
    }
  }
}

// tile[img][m] <-> t[img][g*Mg + m][pos] for an NCHW tensor t (y or dy).
void gather_channels(const ConvShape& s, const LocalDims& d, const float* t, int64_t pos, int g, float* tile) {
  for (int img = 0; img < s.n; ++img) {
    const float* src = t + (int64_t{img} * s.c_out + g * d.mg) * d.positions + pos;
    for (int64_t m = 0; m < d.mg; ++m) tile[img * d.mg + m] = src[m * d.positions];
  }
}

void scatter_channels(const ConvShape& s, const LocalDims& d, const float* tile, int64_t pos, int g, float* t) {
  for (int img = 0; img < s.n; ++img) {
    float* dst = t + (int64_t{img} * s.c_out + g * d.mg) * d.positions + pos;
    for (int64_t m = 0; m < d.mg; ++m) dst[m * d.positions] = tile[img * d.mg + m];
  }
}

const float* weights_at(const ConvShape& s, const LocalDims& d, const float* w, int64_t pos, int g) {
  return w + pos * d.taps * s.c_out + int64_t{g} * d.mg;  // W_p[tap][g*Mg + m] at [tap * c_out + m]
}

}  // namespace

void local_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y) {
  const LocalDims d(s);
#pragma omp parallel
  {
    std::vector<float> patch(static_cast<size_t>(s.n * d.taps)), tile(static_cast<size_t>(s.n * d.mg));
    std::vector<float> bias_col(static_cast<size_t>(d.mg));
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < d.items; ++item) {
      const int64_t pos = item / s.groups;
      const int g = static_cast<int>(item % s.groups);
      gather_patch(s, d, x, pos, g, patch.data());
      GemmEpilogue ep;
      ep.act = act;
      if (bias) {  // bias (c_out, h_out, w_out): this position's column
        for (int64_t m = 0; m < d.mg; ++m) bias_col[m] = bias[(g * d.mg + m) * d.positions + pos];
        ep.col_bias = bias_col.data();
      }
      gemm(Trans::No, Trans::No, s.n, d.mg, d.taps, patch.data(), d.taps, weights_at(s, d, w, pos, g), s.c_out,
           tile.data(), d.mg, false, ep, /*parallel=*/false);
      scatter_channels(s, d, tile.data(), pos, g, y);
    }
  }
}

void local_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db) {
  const LocalDims d(s);
  // dX_p for every (position, group), [item][img][tap]: the windows overlap, so they are summed in a second pass.
  std::vector<float> cols(static_cast<size_t>(d.items * s.n * d.taps));
#pragma omp parallel
  {
    std::vector<float> patch(static_cast<size_t>(s.n * d.taps)), tile(static_cast<size_t>(s.n * d.mg));
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < d.items; ++item) {
      const int64_t pos = item / s.groups;
      const int g = static_cast<int>(item % s.groups);
      gather_channels(s, d, dy, pos, g, tile.data());
      gather_patch(s, d, x, pos, g, patch.data());
      gemm(Trans::Yes, Trans::No, d.taps, d.mg, s.n, patch.data(), d.taps, tile.data(), d.mg,
           dw + pos * d.taps * s.c_out + int64_t{g} * d.mg, s.c_out, false, {}, false);
      gemm(Trans::No, Trans::Yes, s.n, d.taps, d.mg, tile.data(), d.mg, weights_at(s, d, w, pos, g), s.c_out,
           cols.data() + item * s.n * d.taps, d.taps, false, {}, false);
    }
    {  // dx, plane by plane
      const int64_t plane = int64_t{s.h_in} * s.w_in, planes = int64_t{s.n} * s.c_in;
#pragma omp for schedule(static)
      for (int64_t ip = 0; ip < planes; ++ip) {
        const int img = static_cast<int>(ip / s.c_in), c = static_cast<int>(ip % s.c_in);
        const int g = static_cast<int>(c / d.cg);
        const int64_t cl = c % d.cg;
        float* out = dx + ip * plane;
        std::fill(out, out + plane, 0.0f);
        for (int64_t pos = 0; pos < d.positions; ++pos) {
          const int oy = static_cast<int>(pos / s.w_out), ox = static_cast<int>(pos % s.w_out);
          const float* src = cols.data() + ((pos * s.groups + g) * s.n + img) * d.taps + cl * s.kh * s.kw;
          for (int r = 0; r < s.kh; ++r) {
            const int iy = oy * s.stride - s.pad + r;
            if (iy < 0 || iy >= s.h_in) continue;
            for (int q = 0; q < s.kw; ++q) {
              const int ix = ox * s.stride - s.pad + q;
              if (ix >= 0 && ix < s.w_in) out[int64_t{iy} * s.w_in + ix] += src[r * s.kw + q];
            }
          }
        }
      }
    }
  }
  // db[o][p] = sum over images of dy[img][o][p]: conv's bias gradient with dy seen as (n, c_out * positions, 1).
  bias_backward(s.n, static_cast<int>(s.c_out * d.positions), 1, dy, db);
}

}  // namespace alexnet::cpu
