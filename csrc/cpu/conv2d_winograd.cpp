// conv2d by Winograd's minimal filtering algorithm F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional
// Neural Networks", CVPR 2016, Section 4). One 2x2 block of outputs of the 3x3 filter g over the 4x4 input tile d is
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A                                                      (Lavin & Gray eq. 8)
// 16 multiplies instead of 2*2*9 = 36. Summed over input channels, each of the 16 tile elements e is one matrix
// product over the channels:
//   M_e[c_out, tiles] = U_e[c_out, c_in] V_e[c_in, tiles],   U = G g G^T (filters), V = B^T d B (input tiles)
// so a layer becomes 16 GEMMs with 1/2.25 of its im2col product's multiply-adds (1/1.94 on a 13x13 map, which is
// 7x7 tiles = 14x14 outputs), plus transforms that touch each input and output element a few times.
//
// The input gradient of a stride-1 3x3 convolution with padding p is itself a 3x3 convolution: of dy, padded by
// 2 - p, with each filter rotated by 180 degrees and the in/out channels swapped. Both directions run one pass
// (run_pass). The weight gradient stays on im2col (conv2d.cpp).
//
// Work is shared as in conv2d.cpp: (chunk of images, group) items, each on one thread with its own scratch, or,
// with fewer items than threads, in order with threaded GEMMs and transforms. Every output element is computed by
// one thread in a fixed order, so results do not depend on the thread count.
#include "cpu/conv2d_winograd.h"

#include <algorithm>
#include <cstring>

#include "activation.h"
#include "cpu/conv2d_items.h"
#include "cpu/gemm.h"

namespace alexnet::cpu {
namespace {

using namespace conv_items;

constexpr int kElements = 16;  // of a 4x4 tile: e = 4*i + k, i the row (vertical) and k the column index
// Below this many channels (per group, either side) the transforms cost more than the multiply-adds saved.
constexpr int64_t kMinChannels = 32;
// Tile columns per GEMM: a chunk of images' tiles side by side (as conv2d.cpp's chunks). V and M of a chunk are
// 16 * channels * columns floats: 3 MiB each for 192 channels and 256 columns, well inside the L3.
constexpr int64_t kChunkColumns = 256;

thread_local Scratch tls_filters, tls_u, tls_v, tls_m, tls_plane;

// One Winograd convolution: out[n, g*c_out + o] = act(bias + sum_c conv3x3(pad(in[n, g*c_in + c]), filter(o, c))),
// channel counts per group.
struct Pass {
  int64_t n, groups, c_in, c_out;
  int h_in, w_in, pad, h_out, w_out;
  int tiles_y, tiles_x;  // 2x2 output blocks; the last row or column of blocks may hang over the map's edge
  int64_t tiles() const { return static_cast<int64_t>(tiles_y) * tiles_x; }
  int64_t in_plane() const { return static_cast<int64_t>(h_in) * w_in; }
  int64_t out_plane() const { return static_cast<int64_t>(h_out) * w_out; }
};

Pass make_pass(int64_t n, int64_t groups, int64_t c_in, int64_t c_out, int h_in, int w_in, int pad) {
  Pass p{n, groups, c_in, c_out, h_in, w_in, pad, h_in + 2 * pad - 2, w_in + 2 * pad - 2, 0, 0};
  p.tiles_y = (p.h_out + 1) / 2;
  p.tiles_x = (p.w_out + 1) / 2;
  return p;
}

// U = G f G^T for one 3x3 filter f (row-major), G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]].
void transform_filter(const float f[9], float u[kElements]) {
  float gf[4][3];
  for (int j = 0; j < 3; ++j) {
    gf[0][j] = f[j];
    gf[1][j] = 0.5f * (f[j] + f[3 + j] + f[6 + j]);
    gf[2][j] = 0.5f * (f[j] - f[3 + j] + f[6 + j]);
    gf[3][j] = f[6 + j];
  }
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = gf[i][0];
    u[4 * i + 1] = 0.5f * (gf[i][0] + gf[i][1] + gf[i][2]);
    u[4 * i + 2] = 0.5f * (gf[i][0] - gf[i][1] + gf[i][2]);
    u[4 * i + 3] = gf[i][2];
  }
}

// U_e of every group, packed as the GEMMs' A operands (c_out x c_in each).
struct PackedFilters {
  const float* data;
  int64_t per_matrix;
  const float* of(int64_t g, int e) const { return data + (g * kElements + e) * per_matrix; }
};

// The forward pass's filter from channel c to output o of group g is w[g*c_out + o, c]: U_e is built row by row
// (o outer, c inner) as both w and U_e are laid out. The input gradient's filter is the layer's from its input
// c_l = o to its output o_l = c, read back to front; there w's order is (c, o), so U_e is built transposed, in
// that order, and packed as such.
PackedFilters pack_filters(const Pass& p, const float* w, bool rotated, int threads) {
  const int64_t matrix = p.c_out * p.c_in, per_matrix = packed_a_floats(p.c_out, p.c_in);
  const int64_t outer = rotated ? p.c_in : p.c_out, inner = rotated ? p.c_out : p.c_in;
  float* packed = tls_filters.get(static_cast<size_t>(per_matrix * kElements * p.groups));
  float* u = tls_u.get(static_cast<size_t>(matrix * kElements));  // u[e][outer][inner]
  for (int64_t g = 0; g < p.groups; ++g) {
    const float* w_g = w + g * matrix * 9;
#pragma omp parallel for schedule(static) if (threads > 1)
    for (int64_t row = 0; row < outer; ++row) {
      for (int64_t col = 0; col < inner; ++col) {
        const float* src = w_g + (row * inner + col) * 9;
        float f[9], ue[kElements];
        for (int t = 0; t < 9; ++t) f[t] = src[rotated ? 8 - t : t];
        transform_filter(f, ue);
        for (int e = 0; e < kElements; ++e) u[e * matrix + row * inner + col] = ue[e];
      }
    }
    for (int e = 0; e < kElements; ++e)
      pack_a_once(rotated ? Trans::Yes : Trans::No, p.c_out, p.c_in, u + e * matrix, inner,
                  packed + (g * kElements + e) * per_matrix, threads > 1);
  }
  return {packed, per_matrix};
}

// V = B^T d B for every tile of one input plane, B^T = [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]]:
// element e of tile (ty, tx) goes to v[e * e_stride + ty * tiles_x + tx]. Done separably, rows then columns, each
// step a loop over a row of tiles (so it vectorizes), on a zero-padded copy of the plane.
void transform_input_plane(const Pass& p, const float* src, float* v, int64_t e_stride) {
  const int hp = 2 * p.tiles_y + 2, wp = 2 * p.tiles_x + 2, nt = p.tiles_x;  // hp >= h_in + 2*pad, likewise wp
  float* padded = tls_plane.get(static_cast<size_t>(hp * wp + hp * 4 * nt));
  float* across = padded + hp * wp;  // across[(r*4 + k)*nt + tx]: B^T's combination k of row r's tile tx
  std::fill(padded, padded + hp * wp, 0.0f);
  for (int y = 0; y < p.h_in; ++y)
    std::memcpy(padded + (y + p.pad) * wp + p.pad, src + static_cast<int64_t>(y) * p.w_in, sizeof(float) * p.w_in);
  for (int r = 0; r < hp; ++r) {
    const float* d = padded + r * wp;
    float *h0 = across + (r * 4) * nt, *h1 = h0 + nt, *h2 = h1 + nt, *h3 = h2 + nt;
    for (int t = 0; t < nt; ++t) {
      const float d0 = d[2 * t], d1 = d[2 * t + 1], d2 = d[2 * t + 2], d3 = d[2 * t + 3];
      h0[t] = d0 - d2;
      h1[t] = d1 + d2;
      h2[t] = d2 - d1;
      h3[t] = d1 - d3;
    }
  }
  for (int ty = 0; ty < p.tiles_y; ++ty) {
    for (int k = 0; k < 4; ++k) {
      const float* a = across + ((2 * ty) * 4 + k) * nt;  // rows 2ty .. 2ty+3 of the tile, 4*nt apart
      const float *b = a + 4 * nt, *c = b + 4 * nt, *d = c + 4 * nt;
      float* out = v + k * e_stride + static_cast<int64_t>(ty) * nt;
      float *v0 = out, *v1 = out + 4 * e_stride, *v2 = out + 8 * e_stride, *v3 = out + 12 * e_stride;
      for (int t = 0; t < nt; ++t) {
        v0[t] = a[t] - c[t];
        v1[t] = b[t] + c[t];
        v2[t] = c[t] - b[t];
        v3[t] = b[t] - d[t];
      }
    }
  }
}

// Y = A^T M A + bias, then act, for every tile of one output plane, A^T = [[1, 1, 1, 0], [0, 1, -1, -1]]; element
// e of tile (ty, tx) is m[e * e_stride + ty * tiles_x + tx]. Blocks hanging over the map's edge are cut.
void transform_output_plane(const Pass& p, const float* m, int64_t e_stride, float bias, Activation act,
                            float* dst) {
  const int nt = p.tiles_x;
  float* down = tls_plane.get(static_cast<size_t>(8 * nt));  // down[(a*4 + k)*nt + tx]: A^T's row a, column k
  for (int ty = 0; ty < p.tiles_y; ++ty) {
    const int64_t base = static_cast<int64_t>(ty) * nt;
    for (int k = 0; k < 4; ++k) {
      const float *m0 = m + k * e_stride + base, *m1 = m0 + 4 * e_stride, *m2 = m0 + 8 * e_stride,
                  *m3 = m0 + 12 * e_stride;
      float *s0 = down + k * nt, *s1 = down + (4 + k) * nt;
      for (int t = 0; t < nt; ++t) {
        s0[t] = m0[t] + m1[t] + m2[t];
        s1[t] = m1[t] - m2[t] - m3[t];
      }
    }
    for (int a = 0; a < 2 && 2 * ty + a < p.h_out; ++a) {
      float* row = dst + static_cast<int64_t>(2 * ty + a) * p.w_out;
      const float *s0 = down + (4 * a) * nt, *s1 = s0 + nt, *s2 = s1 + nt, *s3 = s2 + nt;
      const int pairs = p.w_out / 2;
      for (int t = 0; t < pairs; ++t) {
        row[2 * t] = s0[t] + s1[t] + s2[t] + bias;
        row[2 * t + 1] = s1[t] - s2[t] - s3[t] + bias;
      }
      if (p.w_out % 2) row[2 * pairs] = s0[pairs] + s1[pairs] + s2[pairs] + bias;
      if (act == Activation::ReLU) {
        for (int x = 0; x < p.w_out; ++x) row[x] = row[x] > 0.0f ? row[x] : 0.0f;
      } else if (act != Activation::None) {
        for (int x = 0; x < p.w_out; ++x) row[x] = activate(act, row[x]);
      }
    }
  }
}

// The chunk's images r, group g: every input plane into v[16][c_in][cols] ...
void transform_inputs(const Pass& p, const float* in, ImageRange r, int64_t g, float* v, bool parallel) {
  const int64_t cols = r.count * p.tiles(), planes = r.count * p.c_in;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t j = plane / p.c_in, c = plane % p.c_in;
    const float* src = in + ((r.begin + j) * p.groups * p.c_in + g * p.c_in + c) * p.in_plane();
    transform_input_plane(p, src, v + c * cols + j * p.tiles(), p.c_in * cols);
  }
}

// ... and m[16][c_out][cols] into the output planes.
void transform_outputs(const Pass& p, const float* m, ImageRange r, int64_t g, const float* bias, Activation act,
                       float* out, bool parallel) {
  const int64_t cols = r.count * p.tiles(), planes = r.count * p.c_out;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t j = plane / p.c_out, o = plane % p.c_out;
    float* dst = out + ((r.begin + j) * p.groups * p.c_out + g * p.c_out + o) * p.out_plane();
    transform_output_plane(p, m + o * cols + j * p.tiles(), p.c_out * cols, bias ? bias[g * p.c_out + o] : 0.0f,
                           act, dst);
  }
}

void run_pass(const Pass& p, const float* in, const PackedFilters& u, const float* bias, Activation act,
              float* out, int threads) {
  const int64_t tiles = p.tiles(), chunks = chunk_count(p.n, ceil_div(kChunkColumns, tiles), threads);
  for_each_item(chunks * p.groups, threads, [&](int64_t item, bool parallel) {
    const ImageRange r = chunk_images(p.n, chunks, item / p.groups);
    const int64_t g = item % p.groups, cols = r.count * tiles;
    float* v = tls_v.get(static_cast<size_t>(kElements * p.c_in * cols));
    float* m = tls_m.get(static_cast<size_t>(kElements * p.c_out * cols));
    transform_inputs(p, in, r, g, v, parallel);
    for (int e = 0; e < kElements; ++e)
      gemm_packed_a(u.of(g, e), Trans::No, p.c_out, cols, p.c_in, v + e * p.c_in * cols, cols,
                    m + e * p.c_out * cols, cols, false, {}, parallel);
    transform_outputs(p, m, r, g, bias, act, out, parallel);
  });
}

}  // namespace

bool winograd_applies(const ConvShape& s) {
  return s.kh == 3 && s.kw == 3 && s.stride == 1 && s.pad <= 2 && s.h_out >= 1 && s.w_out >= 1 &&
         s.c_in / s.groups >= kMinChannels && s.c_out / s.groups >= kMinChannels;
}

void winograd_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act,
                      float* y) {
  const Pass p = make_pass(s.n, s.groups, s.c_in / s.groups, s.c_out / s.groups, s.h_in, s.w_in, s.pad);
  const int threads = max_threads();
  run_pass(p, x, pack_filters(p, w, false, threads), bias, act, y, threads);
}

void winograd_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx) {
  const Pass p = make_pass(s.n, s.groups, s.c_out / s.groups, s.c_in / s.groups, s.h_out, s.w_out, 2 - s.pad);
  const int threads = max_threads();
  run_pass(p, dy, pack_filters(p, w, true, threads), nullptr, Activation::None, dx, threads);
}

}  // namespace alexnet::cpu
