// The locally connected layer on the CPU (cuda-convnet's `local`: a convolution whose filters are not shared
// across output positions; shapes.h gives the layouts, NOTES-layers-local.md the mapping from cuda-convnet's).
//
// At one output position p = (oy, ox) and group g the layer is a small matrix product over the batch:
//
//   Y_p^T[m][img]  = sum_tap W_p[tap][g*Mg + m] * X_p[tap][img] + bias[g*Mg + m][p]   (M = Mg, N = n, K = taps)
//   dW_p           = X_p DY_p                                                           (M = taps, N = Mg, K = n)
//   dX_p[tap][img] = sum_m W_p[tap][g*Mg + m] * DY_p[img][m]                             (M = taps, N = n, K = Mg)
//
// with X_p the receptive field of p (taps x n, tap = (c, r, q) like the weight's rows) and DY_p = dy[:, group's
// channels, oy, ox] (n x Mg). The positions are independent, so each OpenMP thread takes whole (position, group)
// items and runs the blocked GEMM (gemm.h) serially on them, the batch being a full GEMM dimension.
// The activations are first transposed to pixel-major, batch-minor order xT[pixel][c][img] (cuda-convnet keeps
// all its activations batch-minor for the same reason: filter_acts.cu's images are (colors, y, x, images)), so a
// row of X_p is n contiguous floats: one copy per tap instead of a strided, bounds-checked gather of every element.
// dX_p of every item goes to a buffer; a second pass adds the overlapping windows into dxT pixel by pixel (each
// thread owns whole pixels: no two threads write one element, and the sum order is fixed), then dxT is transposed
// back to NCHW.
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/kernels.h"
#include "local.h"

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

// t[img][c][pixel] <-> tT[pixel][c][img] (batch-minor; called inside a parallel region).
void to_batch_minor(int n, int c, int64_t pixels, const float* t, float* tt) {
#pragma omp for schedule(static)
  for (int64_t pix = 0; pix < pixels; ++pix) {
    for (int ch = 0; ch < c; ++ch) {
      float* dst = tt + (pix * c + ch) * n;
      for (int img = 0; img < n; ++img) dst[img] = t[(int64_t{img} * c + ch) * pixels + pix];
    }
  }
}

void from_batch_minor(int n, int c, int64_t pixels, const float* tt, float* t) {
#pragma omp for schedule(static)
  for (int64_t plane = 0; plane < int64_t{n} * c; ++plane) {
    const int64_t img = plane / c, ch = plane % c;
    float* dst = t + plane * pixels;
    for (int64_t pix = 0; pix < pixels; ++pix) dst[pix] = tt[(pix * c + ch) * n + img];
  }
}

// X_p[tap][img] = xT[(oy*stride - pad + r, ox*stride - pad + q)][g*Cg + c][img], zero outside the image (the
// padding, and cuda-convnet's last windows that may run past it: shapes.h).
void gather_patch(const ConvShape& s, const LocalDims& d, const float* xt, int64_t pos, int g, float* patch) {
  const int oy = static_cast<int>(pos / s.w_out), ox = static_cast<int>(pos % s.w_out);
  const size_t row_bytes = sizeof(float) * static_cast<size_t>(s.n);
  for (int r = 0; r < s.kh; ++r) {
    const int iy = oy * s.stride - s.pad + r;
    for (int q = 0; q < s.kw; ++q) {
      const int ix = ox * s.stride - s.pad + q;
      const bool inside = iy >= 0 && iy < s.h_in && ix >= 0 && ix < s.w_in;
      const float* src = inside ? xt + ((int64_t{iy} * s.w_in + ix) * s.c_in + int64_t{g} * d.cg) * s.n : nullptr;
      for (int64_t c = 0; c < d.cg; ++c) {
        float* dst = patch + ((c * s.kh + r) * s.kw + q) * s.n;
        if (inside) {
          std::memcpy(dst, src + c * s.n, row_bytes);
        } else {
          std::fill(dst, dst + s.n, 0.0f);
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

// y[img][g*Mg + m][pos] = tile_t[m][img].
void scatter_channels(const ConvShape& s, const LocalDims& d, const float* tile_t, int64_t pos, int g, float* y) {
  for (int64_t m = 0; m < d.mg; ++m) {
    float* dst = y + (g * d.mg + m) * d.positions + pos;
    const float* src = tile_t + m * s.n;
    for (int img = 0; img < s.n; ++img) dst[int64_t{img} * s.c_out * d.positions] = src[img];
  }
}

// Scratch that every pass overwrites before reading: no zero-fill (std::vector would memset the ~10 MB of dx's
// window buffer at every call).
std::unique_ptr<float[]> scratch(int64_t count) { return std::unique_ptr<float[]>(new float[static_cast<size_t>(count)]); }

const float* weights_at(const ConvShape& s, const LocalDims& d, const float* w, int64_t pos, int g) {
  return w + pos * d.taps * s.c_out + int64_t{g} * d.mg;  // W_p[tap][g*Mg + m] at [tap * c_out + m]
}

}  // namespace

void local_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y) {
  const LocalDims d(s);
  const int64_t pixels = int64_t{s.h_in} * s.w_in;
  const auto xt = scratch(pixels * s.c_in * s.n);
#pragma omp parallel
  {
    to_batch_minor(s.n, s.c_in, pixels, x, xt.get());  // ends with the barrier of its omp for
    std::vector<float> patch(static_cast<size_t>(d.taps * s.n)), tile(static_cast<size_t>(s.n * d.mg));
    std::vector<float> bias_col(static_cast<size_t>(d.mg));
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < d.items; ++item) {
      const int64_t pos = item / s.groups;
      const int g = static_cast<int>(item % s.groups);
      gather_patch(s, d, xt.get(), pos, g, patch.data());
      GemmEpilogue ep;
      ep.act = act;
      if (bias) {  // bias (c_out, h_out, w_out): this position's column
        for (int64_t m = 0; m < d.mg; ++m) bias_col[m] = bias[(g * d.mg + m) * d.positions + pos];
        ep.row_bias = bias_col.data();
      }
      // Y_p^T (Mg x n) = W_p^T X_p: the patch, the larger operand, is then the GEMM's B, whose panels are packed
      // with contiguous copies (A's panels are 6 rows wide and pack element by element).
      gemm(Trans::Yes, Trans::No, d.mg, s.n, d.taps, weights_at(s, d, w, pos, g), s.c_out, patch.data(), s.n,
           tile.data(), s.n, false, ep, /*parallel=*/false);
      scatter_channels(s, d, tile.data(), pos, g, y);
    }
  }
}

void local_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db) {
  const LocalDims d(s);
  const int64_t pixels = int64_t{s.h_in} * s.w_in;
  const auto xt = scratch(pixels * s.c_in * s.n);  // x, then dx, batch-minor
  // dX_p for every (position, group), [item][tap][img]: the windows overlap, so they are summed in a second pass.
  const auto cols = scratch(d.items * d.taps * s.n);
#pragma omp parallel
  {
    to_batch_minor(s.n, s.c_in, pixels, x, xt.get());
    std::vector<float> patch(static_cast<size_t>(d.taps * s.n)), tile(static_cast<size_t>(s.n * d.mg));
#pragma omp for schedule(dynamic)
    for (int64_t item = 0; item < d.items; ++item) {
      const int64_t pos = item / s.groups;
      const int g = static_cast<int>(item % s.groups);
      gather_channels(s, d, dy, pos, g, tile.data());
      gather_patch(s, d, xt.get(), pos, g, patch.data());
      gemm(Trans::No, Trans::No, d.taps, d.mg, s.n, patch.data(), s.n, tile.data(), d.mg,
           dw + pos * d.taps * s.c_out + int64_t{g} * d.mg, s.c_out, false, {}, false);
      gemm(Trans::No, Trans::Yes, d.taps, s.n, d.mg, weights_at(s, d, w, pos, g), s.c_out, tile.data(), d.mg,
           cols.get() + item * d.taps * s.n, s.n, false, {}, false);
    }  // the implicit barrier: every item's dX_p is in cols, and xt is free for dx
#pragma omp for schedule(static)
    for (int64_t pix = 0; pix < pixels; ++pix) {  // dxT[pix][c][:] = sum of the windows that read pixel pix
      const int iy = static_cast<int>(pix / s.w_in), ix = static_cast<int>(pix % s.w_in);
      float* out = xt.get() + pix * s.c_in * s.n;
      std::fill(out, out + int64_t{s.c_in} * s.n, 0.0f);
      local::for_each_window_reading(s, iy, ix, [&](int pos, int rq) {
        for (int64_t c = 0; c < s.c_in; ++c) {
          const int64_t item = int64_t{pos} * s.groups + c / d.cg;
          const float* src = cols.get() + (item * d.taps + (c % d.cg) * s.kh * s.kw + rq) * s.n;
          float* dst = out + c * s.n;
          for (int img = 0; img < s.n; ++img) dst[img] += src[img];
        }
      });
    }
    from_batch_minor(s.n, s.c_in, pixels, xt.get(), dx);
  }
  // db[o][p] = sum over images of dy[img][o][p]: conv's bias gradient with dy seen as (n, c_out * positions, 1).
  bias_backward(s.n, static_cast<int>(s.c_out * d.positions), 1, dy, db);
}

}  // namespace alexnet::cpu
