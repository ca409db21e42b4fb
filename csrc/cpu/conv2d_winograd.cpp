// conv2d by Winograd's minimal filtering algorithms (Lavin & Gray, "Fast Algorithms for Convolutional Neural
// Networks", CVPR 2016, Section 4; the variants and their matrices are in winograd_tiles.h). One M x M block of
// outputs of the R x R filter g over the A x A input tile d (A = M + R - 1) is
//   Y = A^T [ (G g G^T) .* (B^T d B) ] A
// A*A multiplies instead of M*M*R*R. Summed over input channels, each of the A*A tile elements e is one matrix
// product over the channels:
//   M_e[c_out, tiles] = U_e[c_out, c_in] V_e[c_in, tiles],   U = G g G^T (filters), V = B^T d B (input tiles)
// so a layer becomes A*A GEMMs with fewer multiply-adds than its im2col product (F(2x2, 3x3): 2.25x fewer, 1.94x on
// a 13x13 map whose 7x7 tiles cover 14x14), plus transforms that touch each input and output element a few times.
//
// The input gradient of a stride-1 R x R convolution with padding p is itself one: of dy, padded by R - 1 - p,
// with each filter rotated by 180 degrees and the in/out channels swapped. Both directions run one pass
// (run_pass). A strided layer's forward (conv1) is first folded into a stride-1 one (space-to-depth, at the end
// of this file). The weight gradient of a 5x5 layer is the adjoint of the forward (backward_weight_with); others
// stay on im2col (conv2d.cpp).
//
// Work is shared as in conv2d.cpp: (chunk of images, group) items, each on one thread with its own scratch, or,
// with fewer items than threads, in order with threaded GEMMs and transforms. Every output element is computed by
// one thread in a fixed order, so results do not depend on the thread count.
#include "cpu/conv2d_winograd.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "activation.h"
#include "cpu/conv2d_items.h"
#include "cpu/gemm.h"
#include "cpu/winograd_tiles.h"

namespace alexnet::cpu {
namespace {

using namespace conv_items;
using winograd::dot_row;
using winograd::static_for;

// Below this many channels (per group, either side) the transforms cost more than the multiply-adds saved.
// Measured at 1 thread, batch 32, c -> c channels, forward, Winograd / im2col: 3x3 on 13x13 maps 0.61 / 0.46 ms at
// c = 8, 0.90 / 0.95 at 16, 2.09 / 2.42 at 32; 5x5 on 27x27 3.2 / 4.0 ms at 8, 6.7 / 8.3 at 16.
constexpr int64_t kMinChannels = 16;
// A chunk's V and M hold A*A floats per channel and tile column: ~4096 per channel (256 tile columns at A = 4,
// 113 at A = 6) keeps them at 3 MiB each for 192 channels, well inside the L3.
constexpr int64_t kChunkFloatsPerChannel = 4096;

thread_local Scratch tls_filters, tls_u, tls_v, tls_m, tls_plane;

// One Winograd convolution: out[n, g*c_out + o] = act(bias + sum_c conv(pad(in[n, g*c_in + c]), filter(o, c))),
// channel counts per group.
struct Pass {
  int64_t n, groups, c_in, c_out;
  int h_in, w_in, pad, h_out, w_out;
  int tiles_y, tiles_x;  // M x M output blocks; the last row or column of blocks may hang over the map's edge
  int64_t tiles() const { return static_cast<int64_t>(tiles_y) * tiles_x; }
  int64_t in_plane() const { return static_cast<int64_t>(h_in) * w_in; }
  int64_t out_plane() const { return static_cast<int64_t>(h_out) * w_out; }
};

template <class W>
Pass make_pass(int64_t n, int64_t groups, int64_t c_in, int64_t c_out, int h_in, int w_in, int pad) {
  Pass p{n, groups, c_in, c_out, h_in, w_in, pad, h_in + 2 * pad - (W::R - 1), w_in + 2 * pad - (W::R - 1), 0, 0};
  p.tiles_y = (p.h_out + W::M - 1) / W::M;
  p.tiles_x = (p.w_out + W::M - 1) / W::M;
  return p;
}

// U_e of every group, packed as the GEMMs' A operands (c_out x c_in each).
struct PackedFilters {
  const float* data;
  int64_t per_matrix, elements;
  const float* of(int64_t g, int e) const { return data + (g * elements + e) * per_matrix; }
};

// U = G f G^T for the `count` filters f_c = src + c * taps (read back to front when rotated), written as
// u[e * u_stride + c]. Vectorized across the filters: they are first transposed to taps-major.
template <class W>
void transform_filters(const float* src, int64_t count, bool rotated, float* u, int64_t u_stride) {
  constexpr int A = W::A, R = W::R, taps = R * R;
  float* f = tls_plane.get(static_cast<size_t>((taps + A * R) * count));  // f[t][c], then gf[i*R + b][c]
  float* gf = f + taps * count;
  for (int64_t c = 0; c < count; ++c)
    for (int t = 0; t < taps; ++t) f[t * count + c] = src[c * taps + (rotated ? taps - 1 - t : t)];
  static_for<A>([&](auto i) {  // (G f)[i][b] = sum_a G[i][a] f[a][b]
    for (int b = 0; b < R; ++b)
      for (int64_t c = 0; c < count; ++c)
        gf[(i * R + b) * count + c] = dot_row<typename W::G, i>(f + b * count + c, R * count);
  });
  static_for<A>([&](auto k) {  // U[i][k] = sum_b (G f)[i][b] G[k][b]
    for (int i = 0; i < A; ++i)
      for (int64_t c = 0; c < count; ++c)
        u[(i * A + k) * u_stride + c] = dot_row<typename W::G, k>(gf + (i * R) * count + c, count);
  });
}

// The forward pass's filter from channel c to output o of group g is w[g*c_out + o, c]: U_e is built row by row
// (o outer, c inner) as both w and U_e are laid out. The input gradient's filter is the layer's from its input
// c_l = o to its output o_l = c, read back to front; there w's order is (c, o), so U_e is built transposed, in
// that order, and packed as such.
template <class W>
PackedFilters pack_filters(const Pass& p, const float* w, bool rotated, int threads) {
  constexpr int E = W::A * W::A, taps = W::R * W::R;
  const int64_t matrix = p.c_out * p.c_in, per_matrix = packed_a_floats(p.c_out, p.c_in);
  const int64_t outer = rotated ? p.c_in : p.c_out, inner = rotated ? p.c_out : p.c_in;
  float* packed = tls_filters.get(static_cast<size_t>(per_matrix * E * p.groups));
  float* u = tls_u.get(static_cast<size_t>(matrix * E));  // u[e][outer][inner]
  for (int64_t g = 0; g < p.groups; ++g) {
    const float* w_g = w + g * matrix * taps;
#pragma omp parallel for schedule(static) if (threads > 1)
    for (int64_t row = 0; row < outer; ++row)
      transform_filters<W>(w_g + row * inner * taps, inner, rotated, u + row * inner, matrix);
    for (int e = 0; e < E; ++e)
      pack_a_once(rotated ? Trans::Yes : Trans::No, p.c_out, p.c_in, u + e * matrix, inner,
                  packed + (g * E + e) * per_matrix, threads > 1);
  }
  return {packed, per_matrix, E};
}

// V = B^T d B for every tile of one input plane: element e = A*i + k (i the row, k the column of the tile) of tile
// T = ty * tiles_x + tx goes to v[e * e_stride + T]. With 2x2 output blocks, tile (ty, tx) starts at row 2ty and
// column 2tx of the zero-padded plane P, so its element (a, b) is Q_{a%2, b%2}[ty + a/2][tx + b/2] in the four
// polyphase planes Q_{f,g}[i][j] = P[2i + f][2j + g]. Stored with row pitch qn, each d[a][b] over all tiles is one
// flat run of a Q plane (one extra column per row, thrown away at the end), so both passes of the transform are
// flat loops over the plane's tiles, which vectorize (a row of a 7x7 map has only 4 tiles), and the plane is read
// once, element by element, into the Q planes instead of A*A times.
template <class W>
void transform_input_plane(const Pass& p, const float* src, float* v, int64_t e_stride) {
  static_assert(W::M == 2, "the polyphase split assumes 2x2 output blocks");
  constexpr int A = W::A, half = (A - 1) / 2;  // d[a][b] is Q shifted by (a/2, b/2) <= (half, half)
  const int nt = p.tiles_x, qn = nt + half, qh = p.tiles_y + half;
  const int64_t q_size = static_cast<int64_t>(qh) * qn + 8;  // + the overhang of the last shifted run
  const int64_t flat = static_cast<int64_t>(p.tiles_y) * qn;  // one run: tiles_y rows of qn
  float* q = tls_plane.get(static_cast<size_t>(4 * q_size + A * A * flat + flat));
  float* db = q + 4 * q_size;  // db[(a*A + k) * flat + t] = (d B)[a][k]
  float* out = db + A * A * flat;
  std::fill(q, q + 4 * q_size, 0.0f);
  for (int y = 0; y < p.h_in; ++y) {
    const int r = y + p.pad;
    float* even = q + (r % 2) * 2 * q_size + static_cast<int64_t>(r / 2) * qn;  // Q_{r%2, 0} row r/2
    float* odd = even + q_size;                                                   // Q_{r%2, 1}
    const float* line = src + static_cast<int64_t>(y) * p.w_in;
    for (int x = p.pad % 2; x < p.w_in; x += 2) even[(x + p.pad) / 2] = line[x];
    for (int x = 1 - p.pad % 2; x < p.w_in; x += 2) odd[(x + p.pad) / 2] = line[x];
  }
  static_for<A>([&](auto k) {  // (d B)[a][k] = sum_b B^T[k][b] d[a][b]
    for (int a = 0; a < A; ++a) {
      const float* even = q + (a % 2) * 2 * q_size + (a / 2) * qn;
      const float* odd = even + q_size;
      float* dst = db + (a * A + k) * flat;
      for (int64_t t = 0; t < flat; ++t)
        dst[t] = winograd::dot_row_of<typename W::BT, k>([&](auto b) { return (b % 2 ? odd : even)[b / 2 + t]; });
    }
  });
  static_for<A>([&](auto i) {  // V[i][k] = sum_a B^T[i][a] (d B)[a][k], then the extra column dropped
    for (int k = 0; k < A; ++k) {
      for (int64_t t = 0; t < flat; ++t) out[t] = dot_row<typename W::BT, i>(db + k * flat + t, A * flat);
      float* row = v + (A * i + k) * e_stride;
      for (int ty = 0; ty < p.tiles_y; ++ty)  // a few floats per row: a loop, not a memcpy call
        for (int tx = 0; tx < nt; ++tx) row[ty * nt + tx] = out[ty * qn + tx];
    }
  });
}

// Y = A^T M A + bias, then act, for every tile of one output plane; element e of tile T is m[e * e_stride + T].
// Both passes loop over all the plane's tiles, into y[(a*M + b) * tiles + T], which is then scattered into the
// plane; blocks hanging over the map's edge are cut.
template <class W>
void transform_output_plane(const Pass& p, const float* m, int64_t e_stride, float bias, Activation act,
                            float* dst) {
  constexpr int M = W::M, A = W::A;
  const int nt = p.tiles_x;
  const int64_t tiles = p.tiles();
  float* am = tls_plane.get(static_cast<size_t>((M * A + M * M) * tiles));  // (A^T M)[a][k] of every tile
  float* y = am + M * A * tiles;
  static_for<M>([&](auto a) {
    for (int k = 0; k < A; ++k)
      for (int64_t t = 0; t < tiles; ++t)
        am[(a * A + k) * tiles + t] = dot_row<typename W::AT, a>(m + k * e_stride + t, A * e_stride);
  });
  static_for<M>([&](auto b) {  // Y[a][b] = sum_k (A^T M)[a][k] A[k][b] = sum_k A^T[b][k] (A^T M)[a][k]
    for (int a = 0; a < M; ++a)
      for (int64_t t = 0; t < tiles; ++t)
        y[(a * M + b) * tiles + t] = dot_row<typename W::AT, b>(am + (a * A) * tiles + t, tiles) + bias;
  });
  for (int ty = 0; ty < p.tiles_y; ++ty)
    for (int a = 0; a < M && M * ty + a < p.h_out; ++a) {
      float* row = dst + static_cast<int64_t>(M * ty + a) * p.w_out;
      for (int b = 0; b < M; ++b) {
        const float* src = y + (a * M + b) * tiles + ty * nt;
        for (int tx = 0; tx < nt && M * tx + b < p.w_out; ++tx) row[M * tx + b] = src[tx];
      }
      if (act == Activation::ReLU) {
        for (int x = 0; x < p.w_out; ++x) row[x] = row[x] > 0.0f ? row[x] : 0.0f;
      } else if (act != Activation::None) {
        for (int x = 0; x < p.w_out; ++x) row[x] = activate(act, row[x]);
      }
    }
}

// The chunk's images r, group g: every input plane into v[A*A][c_in][cols] ...
template <class W>
void transform_inputs(const Pass& p, const float* in, ImageRange r, int64_t g, float* v, bool parallel) {
  const int64_t cols = r.count * p.tiles(), planes = r.count * p.c_in;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t j = plane / p.c_in, c = plane % p.c_in;
    const float* src = in + ((r.begin + j) * p.groups * p.c_in + g * p.c_in + c) * p.in_plane();
    transform_input_plane<W>(p, src, v + c * cols + j * p.tiles(), p.c_in * cols);
  }
}

// ... and m[A*A][c_out][cols] into the output planes.
template <class W>
void transform_outputs(const Pass& p, const float* m, ImageRange r, int64_t g, const float* bias, Activation act,
                       float* out, bool parallel) {
  const int64_t cols = r.count * p.tiles(), planes = r.count * p.c_out;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t j = plane / p.c_out, o = plane % p.c_out;
    float* dst = out + ((r.begin + j) * p.groups * p.c_out + g * p.c_out + o) * p.out_plane();
    transform_output_plane<W>(p, m + o * cols + j * p.tiles(), p.c_out * cols,
                              bias ? bias[g * p.c_out + o] : 0.0f, act, dst);
  }
}

template <class W>
void run_pass(const Pass& p, const float* in, const float* w, bool rotated, const float* bias, Activation act,
              float* out) {
  constexpr int E = W::A * W::A;
  const int threads = max_threads();
  const PackedFilters u = pack_filters<W>(p, w, rotated, threads);
  const int64_t tiles = p.tiles();
  const int64_t chunks = chunk_count(p.n, ceil_div(kChunkFloatsPerChannel / E, tiles), threads);
  for_each_item(chunks * p.groups, threads, [&](int64_t item, bool parallel) {
    const ImageRange r = chunk_images(p.n, chunks, item / p.groups);
    const int64_t g = item % p.groups, cols = r.count * tiles;
    float* v = tls_v.get(static_cast<size_t>(E * p.c_in * cols));
    float* m = tls_m.get(static_cast<size_t>(E * p.c_out * cols));
    transform_inputs<W>(p, in, r, g, v, parallel);
    for (int e = 0; e < E; ++e)
      gemm_packed_a(u.of(g, e), Trans::No, p.c_out, cols, p.c_in, v + e * p.c_in * cols, cols,
                    m + e * p.c_out * cols, cols, false, {}, parallel);
    transform_outputs<W>(p, m, r, g, bias, act, out, parallel);
  });
}

// ---- the weight gradient ------------------------------------------------------------------------------------------
// Y = A^T (U .* V) A summed over input channels, with U = G g G^T, so for one filter g (output o, input c)
//   dL/dU_e = sum over tiles of dM_e V_e,  dM = A dY A^T  (the adjoint of the output transform; dY is the tile's
//   M x M block of dy, zero where the block hangs over the map's edge), and dL/dg = G^T (dL/dU) G.
// Summed over the chunk's tiles that is one product per tile element e: dU_e[c_out, c_in] += dM_e[c_out, tiles]
// V_e[c_in, tiles]^T, A*A products with A*A/(M*M*R*R) of im2col's multiply-adds (F(2x2, 5x5): 36 for 100).

// dst[t] = sum over j < M of A^T[j][C] src[j * src_stride + t], for t < tiles: a column of A^T (A's row C) applied
// across the tiles, the coefficients known at compile time.
template <class W, int C>
void at_column(const float* src, int64_t src_stride, float* dst, int64_t tiles) {
  for (int64_t t = 0; t < tiles; ++t) {
    float acc = 0.0f;
    static_for<W::M>([&](auto j) {
      constexpr float c = static_cast<float>(W::AT::v[j][C]);
      if constexpr (c != 0.0f) acc += c * src[j * src_stride + t];
    });
    dst[t] = acc;
  }
}

// dM = A dY A^T for every tile of one dy plane, element e of tile T to dm[e * e_stride + T].
template <class W>
void transform_grad_plane(const Pass& p, const float* dyp, float* dm, int64_t e_stride) {
  constexpr int M = W::M, A = W::A;
  const int64_t tiles = p.tiles();
  float* blocks = tls_plane.get(static_cast<size_t>((M * M + M * A) * tiles));  // dY[a][b], then (dY A^T)[a][k]
  float* ya = blocks + M * M * tiles;
  for (int ty = 0; ty < p.tiles_y; ++ty)
    for (int a = 0; a < M; ++a)
      for (int b = 0; b < M; ++b) {
        float* dst = blocks + (a * M + b) * tiles + static_cast<int64_t>(ty) * p.tiles_x;
        const int y = M * ty + a;
        for (int tx = 0; tx < p.tiles_x; ++tx) {
          const int x = M * tx + b;
          dst[tx] = y < p.h_out && x < p.w_out ? dyp[static_cast<int64_t>(y) * p.w_out + x] : 0.0f;
        }
      }
  for (int a = 0; a < M; ++a)  // (dY A^T)[a][k] = sum_b A^T[b][k] dY[a][b]
    static_for<A>([&](auto k) { at_column<W, k>(blocks + a * M * tiles, tiles, ya + (a * A + k) * tiles, tiles); });
  static_for<A>([&](auto i) {  // dM[i][k] = sum_a A^T[a][i] (dY A^T)[a][k]
    for (int k = 0; k < A; ++k) at_column<W, i>(ya + k * tiles, A * tiles, dm + (i * A + k) * e_stride, tiles);
  });
}

// dw[g*c_out + o, c] = G^T dU G for every filter of group g; du[e][o][c] summed over `count` partials du_size apart,
// in partial order.
template <class W>
void filters_from_du(const Pass& p, const float* du, int count, int64_t du_size, int64_t g, float* dw, bool parallel) {
  constexpr int A = W::A, R = W::R, E = A * A;
  const int64_t matrix = p.c_out * p.c_in;
  const float* du_g = du + g * E * matrix;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t oc = 0; oc < matrix; ++oc) {
    float d[E], gd[R * A];  // dU of this filter, then (G^T dU)[a][k]
    for (int e = 0; e < E; ++e) {
      float sum = du_g[e * matrix + oc];
      for (int u = 1; u < count; ++u) sum += du_g[u * du_size + e * matrix + oc];
      d[e] = sum;
    }
    for (int a = 0; a < R; ++a)
      for (int k = 0; k < A; ++k) {
        float acc = 0.0f;
        for (int i = 0; i < A; ++i) acc += static_cast<float>(W::G::v[i][a]) * d[i * A + k];
        gd[a * A + k] = acc;
      }
    float* out = dw + (g * matrix + oc) * R * R;
    for (int a = 0; a < R; ++a)
      for (int b = 0; b < R; ++b) {
        float acc = 0.0f;
        for (int k = 0; k < A; ++k) acc += gd[a * A + k] * static_cast<float>(W::G::v[k][b]);
        out[a * R + b] = acc;
      }
  }
}

// As conv2d_backward_weight (conv2d.cpp): (chunk, group) items shared among threads, each summing its contiguous
// items into its own partial dU, the partials added in thread order (or, with fewer items than threads, the items
// in order with threaded transforms and products). Same thread count, same bits.
template <class W>
void backward_weight_with(const ConvShape& s, const float* x, const float* dy, float* dw) {
  constexpr int E = W::A * W::A;
  const Pass p = make_pass<W>(s.n, s.groups, s.c_in / s.groups, s.c_out / s.groups, s.h_in, s.w_in, s.pad);
  const int threads = max_threads();
  const int64_t tiles = p.tiles(), matrix = p.c_out * p.c_in, du_size = E * matrix * p.groups;
  const int64_t chunks = chunk_count(p.n, ceil_div(kChunkFloatsPerChannel / E, tiles), threads);
  const int64_t items = chunks * p.groups;
  auto accumulate_item = [&](int64_t item, float* du, bool parallel) {
    const ImageRange r = chunk_images(p.n, chunks, item / p.groups);
    const int64_t g = item % p.groups, cols = r.count * tiles;
    float* v = tls_v.get(static_cast<size_t>(E * p.c_in * cols));
    float* dm = tls_m.get(static_cast<size_t>(E * p.c_out * cols));
    transform_inputs<W>(p, x, r, g, v, parallel);
    const int64_t planes = r.count * p.c_out;
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t plane = 0; plane < planes; ++plane) {
      const int64_t j = plane / p.c_out, o = plane % p.c_out;
      const float* src = dy + ((r.begin + j) * p.groups * p.c_out + g * p.c_out + o) * p.out_plane();
      transform_grad_plane<W>(p, src, dm + o * cols + j * tiles, p.c_out * cols);
    }
    for (int e = 0; e < E; ++e)
      gemm(Trans::No, Trans::Yes, p.c_out, p.c_in, cols, dm + e * p.c_out * cols, cols, v + e * p.c_in * cols, cols,
           du + (g * E + e) * matrix, p.c_in, true, {}, parallel);
  };
  if (!share_items(items, threads)) {
    std::vector<float> du(static_cast<size_t>(du_size), 0.0f);
    for (int64_t item = 0; item < items; ++item) accumulate_item(item, du.data(), true);
    for (int64_t g = 0; g < p.groups; ++g) filters_from_du<W>(p, du.data(), 1, du_size, g, dw, threads > 1);
    return;
  }
  std::vector<float> partials;
  const int used = accumulate_per_thread(items, threads, du_size, partials, [&](int64_t item, float* mine) {
    accumulate_item(item, mine, false);
  });
  for (int64_t g = 0; g < p.groups; ++g) filters_from_du<W>(p, partials.data(), used, du_size, g, dw, true);
}

// Forward: the layer as it is. Input gradient: the pass over dy described at the top.
template <class W>
void forward_with(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y) {
  const Pass p = make_pass<W>(s.n, s.groups, s.c_in / s.groups, s.c_out / s.groups, s.h_in, s.w_in, s.pad);
  run_pass<W>(p, x, w, false, bias, act, y);
}
template <class W>
void backward_input_with(const ConvShape& s, const float* dy, const float* w, float* dx) {
  const Pass p = make_pass<W>(s.n, s.groups, s.c_out / s.groups, s.c_in / s.groups, s.h_out, s.w_out,
                              W::R - 1 - s.pad);
  run_pass<W>(p, dy, w, true, nullptr, Activation::None, dx);
}

enum class Variant { None, F2x3, F2x5 };

// Which variant a layer runs (None: im2col). Square stride-1 kernels of 3 or 5 with padding below the kernel
// size (so the input gradient's padding R - 1 - p is not negative) and enough channels.
Variant variant_of(const ConvShape& s) {
  const bool eligible = s.kh == s.kw && s.stride == 1 && s.pad <= s.kh - 1 && s.h_out >= 1 && s.w_out >= 1 &&
                        s.c_in / s.groups >= kMinChannels && s.c_out / s.groups >= kMinChannels;
  if (!eligible) return Variant::None;
  if (s.kh == 3) return Variant::F2x3;
  if (s.kh == 5) return Variant::F2x5;
  return Variant::None;
}

// ---- strided layers (conv1) ----------------------------------------------------------------------------------
// A stride-s convolution is a stride-1 one of the space-to-depth input x'[c*s*s + a*s + b][i][j] =
// x[c][s*i + a - pad][s*j + b - pad] (0 outside) with the filters w'[o][c*s*s + a*s + b][u][v] =
// w[o][c][s*u + a][s*v + b] (0 where s*u + a >= kh): ceil(kh/s) taps each way over c*s*s channels, no padding, the
// same outputs. conv1 (3 -> 48 channels, 11x11 stride 4 on 227x227) becomes 48 -> 48 channels, 3x3 on 57x57,
// which F(2x2, 3x3) runs with 1.8x fewer multiplies than the 11x11 product (after the 16% of zeros the 12x12
// extension adds), and without conv1's im2col, a stride-4 gather that cost about half as much as the product.
bool fold_stride(const ConvShape& s, ConvShape* folded) {
  // (stride > kh would fold to 1x1 taps, which no variant runs; checked first so kh + stride cannot overflow)
  if (s.stride < 2 || s.stride > s.kh || s.groups != 1 || s.kh != s.kw || s.h_out < 1 || s.w_out < 1) return false;
  const int taps = (s.kh + s.stride - 1) / s.stride;
  ConvShape f = s;
  f.c_in = s.c_in * s.stride * s.stride;
  f.kh = f.kw = taps;
  f.stride = 1;
  f.pad = 0;
  f.h_in = s.h_out + taps - 1;
  f.w_in = s.w_out + taps - 1;
  *folded = f;
  return variant_of(f) != Variant::None;
}

thread_local Scratch tls_folded;

// x' of every image (see above), planes shared among threads.
void space_to_depth(const ConvShape& s, const ConvShape& f, const float* x, float* xf) {
  const int st = s.stride;
  const int64_t planes = static_cast<int64_t>(s.n) * f.c_in, in_plane = static_cast<int64_t>(s.h_in) * s.w_in;
  const int64_t out_plane = static_cast<int64_t>(f.h_in) * f.w_in;
#pragma omp parallel for schedule(static) if (max_threads() > 1)
  for (int64_t plane = 0; plane < planes; ++plane) {
    const int64_t img = plane / f.c_in, cf = plane % f.c_in, c = cf / (st * st);
    const int a = static_cast<int>(cf / st % st), b = static_cast<int>(cf % st);
    const float* src = x + (img * s.c_in + c) * in_plane;
    float* dst = xf + plane * out_plane;
    for (int i = 0; i < f.h_in; ++i) {
      const int iy = st * i + a - s.pad;
      float* row = dst + static_cast<int64_t>(i) * f.w_in;
      if (iy < 0 || iy >= s.h_in) {
        std::fill(row, row + f.w_in, 0.0f);
        continue;
      }
      const float* line = src + static_cast<int64_t>(iy) * s.w_in;
      for (int j = 0; j < f.w_in; ++j) {
        const int ix = st * j + b - s.pad;
        row[j] = (ix >= 0 && ix < s.w_in) ? line[ix] : 0.0f;
      }
    }
  }
}

// w' (see above).
void fold_filters(const ConvShape& s, const ConvShape& f, const float* w, float* wf) {
  const int st = s.stride;
  for (int64_t o = 0; o < s.c_out; ++o)
    for (int64_t cf = 0; cf < f.c_in; ++cf) {
      const int64_t c = cf / (st * st);
      const int a = static_cast<int>(cf / st % st), b = static_cast<int>(cf % st);
      float* dst = wf + (o * f.c_in + cf) * f.kh * f.kw;
      for (int u = 0; u < f.kh; ++u)
        for (int v = 0; v < f.kw; ++v) {
          const int ki = st * u + a, kj = st * v + b;
          dst[u * f.kw + v] = (ki < s.kh && kj < s.kw) ? w[((o * s.c_in + c) * s.kh + ki) * s.kw + kj] : 0.0f;
        }
    }
}

}  // namespace

bool winograd_forward_applies(const ConvShape& s) {
  ConvShape folded;
  return variant_of(s) != Variant::None || fold_stride(s, &folded);
}

// F(2x2, 5x5)'s input gradient on small maps stays on im2col, whose product there is one tall matrix (M = c_in*25)
// while Winograd's are 36 products of c_in rows over a few tiles. Measured at 1 thread (CPU time), layers-18pct
// batch 128, Winograd / im2col: conv3's input gradient (64 -> 32 channels, 8x8 maps) 14.8 / 12.0 ms; conv2's
// (32 -> 32, 16x16) 16.5 / 29.4 ms, which keeps Winograd.
constexpr int64_t kMinF2x5InputGradPositions = 16 * 16;

bool winograd_backward_input_applies(const ConvShape& s) {
  const Variant v = variant_of(s);
  if (v == Variant::F2x5 && static_cast<int64_t>(s.h_in) * s.w_in < kMinF2x5InputGradPositions) return false;
  return v != Variant::None;
}

void winograd_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act,
                      float* y) {
  ConvShape f;
  if (variant_of(s) == Variant::None && fold_stride(s, &f)) {
    const size_t x_floats = static_cast<size_t>(f.n) * f.c_in * f.h_in * f.w_in;
    float* xf = tls_folded.get(x_floats + static_cast<size_t>(f.c_out) * f.c_in * f.kh * f.kw);
    float* wf = xf + x_floats;
    space_to_depth(s, f, x, xf);
    fold_filters(s, f, w, wf);
    return winograd_forward(f, xf, wf, bias, act, y);
  }
  switch (variant_of(s)) {
    case Variant::F2x3: return forward_with<winograd::F2x3>(s, x, w, bias, act, y);
    case Variant::F2x5: return forward_with<winograd::F2x5>(s, x, w, bias, act, y);
    case Variant::None: break;
  }
}

// F(2x2, 5x5)'s weight gradient (layers-18pct's conv2 and conv3); 3x3 layers keep im2col, not measured here.
// Measured at 1 thread (CPU time), Winograd / im2col: layers-18pct batch 128 conv2 20.3 / 28.2 ms, conv3 11.8 /
// 13.0 ms; alexnet-small's conv2 (48 -> 128 on 15x15) at batch 32 18.6 / 28.0 ms; the paper's conv2 (48 -> 128
// on 27x27) at batch 16 29.0 / 40.0 ms.
bool winograd_backward_weight_applies(const ConvShape& s) { return variant_of(s) == Variant::F2x5; }

void winograd_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw) {
  if (variant_of(s) == Variant::F2x5) backward_weight_with<winograd::F2x5>(s, x, dy, dw);
}

void winograd_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx) {
  switch (variant_of(s)) {
    case Variant::F2x3: return backward_input_with<winograd::F2x3>(s, dy, w, dx);
    case Variant::F2x5: return backward_input_with<winograd::F2x5>(s, dy, w, dx);
    case Variant::None: break;
  }
}

}  // namespace alexnet::cpu
