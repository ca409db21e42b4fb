// conv2d on the CPU, lowered to matrix products (im2col; Chellapilla et al. 2006), one product per chunk of images
// and group. For image i and group g, with K = (c_in/groups)*kh*kw and P = h_out*w_out:
//   col[K, P]    = the input patches of x[i, group g channels], one column per output position (im2col)
//   forward      y[i, g][c_out/groups, P] = act(w_g[c_out/groups, K] col + bias)     (paper Sections 3.1, 3.5)
//   input grad   dcol[K, P] = w_g^T dy[i, g];  dx[i, group g channels] = col2im(dcol) (scatter-add of patches)
//   weight grad  dw_g[c_out/groups, K] = sum_i dy[i, g] col^T
// A chunk of b consecutive images puts their col matrices side by side, col[K, b*P], so each product covers b*P
// columns (see chunks_of for why). Groups are the paper's two-GPU split (Section 3.2, Figure 2): conv2, conv4 and
// conv5 only see the kernel maps of their own half.
//
// Threading: with at least as many (chunk, group) items as threads, the items are shared out and each runs its own
// single-threaded GEMM on private scratch (no synchronisation at all); with fewer (batch 1), the items run in
// order and each GEMM is threaded internally. The weight gradient is deterministic either way: per-thread partial
// sums over fixed, contiguous ranges of items, added in thread order (or, with threaded GEMMs, one owner thread
// per element of dw), never atomics.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "cpu/conv2d_items.h"
#include "cpu/conv2d_winograd.h"
#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace alexnet::cpu {
namespace {

using namespace conv_items;

// Sizes of the per-(image, group) lowering.
struct Lowering {
  int64_t cin_g, cout_g;  // channels per group
  int64_t k;              // rows of col: cin_g * kh * kw
  int64_t p;              // columns of col: h_out * w_out
  int64_t in_plane;       // h_in * w_in
  bool identity;          // 1x1 kernel, stride 1, no padding: col is the input itself, no copy needed
};

Lowering lowering_of(const ConvShape& s) {
  Lowering l{};
  l.cin_g = s.c_in / s.groups;
  l.cout_g = s.c_out / s.groups;
  l.k = l.cin_g * s.kh * s.kw;
  l.p = static_cast<int64_t>(s.h_out) * s.w_out;
  l.in_plane = static_cast<int64_t>(s.h_in) * s.w_in;
  l.identity = s.kh == 1 && s.kw == 1 && s.stride == 1 && s.pad == 0;
  return l;
}

// Output columns ox whose input column ox*stride - pad + kj lies inside [0, w_in): [*lo, *hi), 0 <= lo <= hi <=
// out_size. (lo is clamped too: with padding wider than the input, e.g. w_in = 1, pad = 2, a tap can start past
// the last output column, and an unclamped lo made im2col write past its row.)
// In 64 bits: first + stride - 1 overflows int for a stride near 2^31.
void valid_range(int out_size, int in_size, int stride, int pad, int offset, int* lo, int* hi) {
  const int64_t first = int64_t{pad} - offset;               // ox*stride >= pad - offset
  const int64_t last = int64_t{in_size} - 1 + pad - offset;  // ox*stride <= in_size - 1 + pad - offset
  *lo = first <= 0 ? 0 : static_cast<int>(std::min<int64_t>(out_size, (first + stride - 1) / stride));
  *hi = last < 0 ? 0 : static_cast<int>(std::min<int64_t>(out_size, last / stride + 1));
  if (*hi < *lo) *hi = *lo;
}

// col[r, oy*w_out + ox] = x[c, oy*stride - pad + ki, ox*stride - pad + kj] (0 outside) for r = (c*kh + ki)*kw + kj.
// x points at the group's first channel; row r of col starts at col + r*ld (ld >= P: a chunk's images side by
// side). Rows are independent, so `parallel` shares them among threads.
void im2col(const ConvShape& s, const Lowering& l, const float* x, float* col, int64_t ld, bool parallel) {
  const int64_t rows = l.k;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const int kj = static_cast<int>(r % s.kw), ki = static_cast<int>((r / s.kw) % s.kh);
    const int64_t c = r / (static_cast<int64_t>(s.kw) * s.kh);
    const float* xc = x + c * l.in_plane;
    float* dst = col + r * ld;
    int lo, hi;
    valid_range(s.w_out, s.w_in, s.stride, s.pad, kj, &lo, &hi);
    for (int oy = 0; oy < s.h_out; ++oy) {
      float* out = dst + static_cast<int64_t>(oy) * s.w_out;
      const int iy = oy * s.stride - s.pad + ki;
      if (iy < 0 || iy >= s.h_in) {
        std::fill(out, out + s.w_out, 0.0f);
        continue;
      }
      const float* src = xc + static_cast<int64_t>(iy) * s.w_in - s.pad + kj;  // src[ox*stride] = x[c, iy, ix]
      std::fill(out, out + lo, 0.0f);
      if (s.stride == 1) {
        std::memcpy(out + lo, src + lo, sizeof(float) * (hi - lo));
      } else {
        for (int ox = lo; ox < hi; ++ox) out[ox] = src[static_cast<int64_t>(ox) * s.stride];
      }
      std::fill(out + hi, out + s.w_out, 0.0f);
    }
  }
}

// The adjoint of im2col: dx[c, iy, ix] = sum of the col entries that im2col copied from (c, iy, ix). dx points at
// the group's first channel and is overwritten; col's rows are ld apart. Channels are independent (each owns its kh*kw rows of col), so
// `parallel` shares channels among threads and every element is summed in the same order.
void col2im(const ConvShape& s, const Lowering& l, const float* col, int64_t ld, float* dx, bool parallel) {
  const int64_t channels = l.cin_g, taps = static_cast<int64_t>(s.kh) * s.kw;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < channels; ++c) {
    float* dxc = dx + c * l.in_plane;
    std::fill(dxc, dxc + l.in_plane, 0.0f);
    for (int64_t t = 0; t < taps; ++t) {
      const int ki = static_cast<int>(t / s.kw), kj = static_cast<int>(t % s.kw);
      const float* src_row = col + (c * taps + t) * ld;
      int lo, hi;
      valid_range(s.w_out, s.w_in, s.stride, s.pad, kj, &lo, &hi);
      for (int oy = 0; oy < s.h_out; ++oy) {
        const int iy = oy * s.stride - s.pad + ki;
        if (iy < 0 || iy >= s.h_in) continue;
        const float* src = src_row + static_cast<int64_t>(oy) * s.w_out;
        float* dst = dxc + static_cast<int64_t>(iy) * s.w_in - s.pad + kj;
        if (s.stride == 1) {
          for (int ox = lo; ox < hi; ++ox) dst[ox] += src[ox];
        } else {
          for (int ox = lo; ox < hi; ++ox) dst[static_cast<int64_t>(ox) * s.stride] += src[ox];
        }
      }
    }
  }
}

// Per-thread scratch: the col matrix of a chunk, the chunk's block of output (or gradient) maps, packed weights.
thread_local Scratch tls_col, tls_maps, tls_packed_weights;

// Image chunks. One GEMM covers a chunk of consecutive images lowered side by side, col[K, b*P], instead of one
// image. With P = 7x7 (conv3-5 of alexnet-small) a single image leaves micro-tile columns idle (49 columns fill 4
// panels of 16) and repacks the whole weight matrix for 49 columns of work. Measured at 1 thread (CPU time, batch
// 32, AMD EPYC): forward and input gradient of conv3/conv5 of alexnet-small 31 -> 22 ms and 16.3 -> 12.5 ms with
// chunks of ~256 columns; layers whose P already fills 128 columns (conv2 at 15x15, the paper's 13x13 maps) gained
// nothing or lost (the wider col matrix leaves L2), and so did the weight gradient, where the chunk's columns are
// the sum: those keep one image per product. A chunk never holds more than n / threads images, so the threads
// still have a chunk each.
constexpr int64_t kChunkColumns = 256;
constexpr int64_t kChunkBelowColumns = 128;  // P at or above this: one image per product
// The weight gradient's product is computed transposed below this K (conv2d_backward_weight says why).
constexpr int64_t kTransposedWeightGradBelowK = 256;

struct Chunks {
  int64_t count;  // chunk c holds images [c*n/count, (c+1)*n/count)
};

Chunks chunks_of(const ConvShape& s, const Lowering& l, int threads, bool chunked) {
  // 1x1: col is x itself, image by image.
  const int64_t per = (!chunked || l.identity || l.p >= kChunkBelowColumns) ? 1 : ceil_div(kChunkColumns, l.p);
  return {chunk_count(s.n, per, threads)};
}

ImageRange chunk_images(const ConvShape& s, const Chunks& ch, int64_t chunk) {
  return conv_items::chunk_images(s.n, ch.count, chunk);
}

// Between the (n, channels, P) maps t and a chunk's block[cout_g, b*P] of group g: block[co, j*P + p] is
// t[begin + j, g*cout_g + co, p]. to_block gathers (dy into the GEMM operand), otherwise scatters (the GEMM's
// output into y).
void copy_maps(const ConvShape& s, const Lowering& l, ImageRange r, int64_t g, bool to_block, float* block,
               float* maps) {
  const int64_t cols = r.count * l.p;
  for (int64_t j = 0; j < r.count; ++j) {
    float* image = maps + ((r.begin + j) * s.c_out + g * l.cout_g) * l.p;
    for (int64_t co = 0; co < l.cout_g; ++co) {
      float* in_block = block + co * cols + j * l.p;
      float* in_maps = image + co * l.p;
      std::memcpy(to_block ? in_block : in_maps, to_block ? in_maps : in_block, sizeof(float) * l.p);
    }
  }
}

// The chunk's dy maps of group g as one [cout_g, b*P] operand (dy itself when the chunk is one image).
const float* dy_block(const ConvShape& s, const Lowering& l, ImageRange r, int64_t g, const float* dy) {
  if (r.count == 1) return dy + (r.begin * s.c_out + g * l.cout_g) * l.p;
  float* block = tls_maps.get(static_cast<size_t>(l.cout_g * r.count * l.p));
  copy_maps(s, l, r, g, true, block, const_cast<float*>(dy));
  return block;
}

// col[K, b*P] of the chunk's images of group g (x itself for a 1x1 kernel, whose chunks are single images).
const float* lowered(const ConvShape& s, const Lowering& l, ImageRange r, int64_t g, const float* x, bool parallel) {
  const float* x_g = x + g * l.cin_g * l.in_plane;
  const int64_t image_stride = s.c_in * l.in_plane;
  if (l.identity) return x_g + r.begin * image_stride;
  const int64_t cols = r.count * l.p;
  float* col = tls_col.get(static_cast<size_t>(l.k * cols));
  for (int64_t j = 0; j < r.count; ++j)
    im2col(s, l, x_g + (r.begin + j) * image_stride, col + j * l.p, cols, parallel);
  return col;
}

// The weights of every group as the GEMM's packed A operand (w_g, or w_g^T for the input gradient), packed once
// per call on the calling thread instead of once per (chunk, group) product (32 images in 6 chunks repacked conv3's
// 192 x 2304 weights 6 times). Measured at 1 thread, alexnet-small batch 32, old and new alternated: forward and
// input gradient of conv2 33.4 -> 31.4 and 31.9 -> 29.1 ms, conv3 21.1 -> 20.4 and 20.3 -> 19.3 ms, conv5 11.7 ->
// 11.5 and 11.2 -> 10.6 ms.
struct PackedWeights {
  const float* data;
  int64_t per_group;
  const float* group(int64_t g) const { return data + g * per_group; }
};

PackedWeights pack_weights(const ConvShape& s, const Lowering& l, const float* w, bool transposed, int threads) {
  const int64_t m = transposed ? l.k : l.cout_g, k = transposed ? l.cout_g : l.k;
  const int64_t per_group = packed_a_floats(m, k);
  float* packed = tls_packed_weights.get(static_cast<size_t>(per_group * s.groups));
  for (int64_t g = 0; g < s.groups; ++g)
    pack_a_once(transposed ? Trans::Yes : Trans::No, m, k, w + g * l.cout_g * l.k, l.k, packed + g * per_group,
                threads > 1);
  return {packed, per_group};
}

}  // namespace

void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y) {
  if (winograd_forward_applies(s)) return winograd_forward(s, x, w, bias, act, y);
  const Lowering l = lowering_of(s);
  const int threads = max_threads();
  const Chunks ch = chunks_of(s, l, threads, true);
  const PackedWeights packed_w = pack_weights(s, l, w, false, threads);

  // One (chunk, group) product: maps[g] = act(w_g col + bias_g); bias and activation are fused into the GEMM's
  // final store. A one-image chunk is written straight into y, a longer one through a block scattered into y.
  for_each_item(ch.count * s.groups, threads, [&](int64_t item, bool parallel) {
    const ImageRange r = chunk_images(s, ch, item / s.groups);
    const int64_t g = item % s.groups, cols = r.count * l.p;
    const float* col = lowered(s, l, r, g, x, parallel);
    GemmEpilogue ep;
    ep.row_bias = bias ? bias + g * l.cout_g : nullptr;
    ep.act = act;
    float* out = r.count == 1 ? y + (r.begin * s.c_out + g * l.cout_g) * l.p
                              : tls_maps.get(static_cast<size_t>(l.cout_g * cols));
    gemm_packed_a(packed_w.group(g), Trans::No, l.cout_g, cols, l.k, col, cols, out, cols, false, ep, parallel);
    if (r.count > 1) copy_maps(s, l, r, g, false, out, y);
  });
}

void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx) {
  if (winograd_backward_input_applies(s)) return winograd_backward_input(s, dy, w, dx);
  const Lowering l = lowering_of(s);
  const int threads = max_threads();
  const Chunks ch = chunks_of(s, l, threads, true);
  const PackedWeights packed_w = pack_weights(s, l, w, true, threads);

  // dx[images of the chunk, group g channels] depends only on their dy[., g] and w_g: items write disjoint parts.
  for_each_item(ch.count * s.groups, threads, [&](int64_t item, bool parallel) {
    const ImageRange r = chunk_images(s, ch, item / s.groups);
    const int64_t g = item % s.groups, cols = r.count * l.p;
    const float* dy_g = dy_block(s, l, r, g, dy);
    float* dx_g = dx + g * l.cin_g * l.in_plane;
    const int64_t image_stride = s.c_in * l.in_plane;
    if (l.identity) {  // col2im is the identity (and the chunk one image): write the product straight into dx
      gemm_packed_a(packed_w.group(g), Trans::No, l.k, cols, l.cout_g, dy_g, cols, dx_g + r.begin * image_stride,
                    cols, false, {}, parallel);
      return;
    }
    float* dcol = tls_col.get(static_cast<size_t>(l.k * cols));
    gemm_packed_a(packed_w.group(g), Trans::No, l.k, cols, l.cout_g, dy_g, cols, dcol, cols, false, {}, parallel);
    for (int64_t j = 0; j < r.count; ++j)
      col2im(s, l, dcol + j * l.p, cols, dx_g + (r.begin + j) * image_stride, parallel);
  });
}

void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw) {
  if (s.n > 0 && winograd_backward_weight_applies(s)) return winograd_backward_weight(s, x, dy, dw);
  const Lowering l = lowering_of(s);
  const int64_t dw_size = s.c_out * l.k;  // (c_out, c_in/groups, kh, kw) = groups x (cout_g, K)
  const int threads = max_threads();
  const Chunks ch = chunks_of(s, l, threads, false);
  const int64_t items = ch.count * s.groups;

  // With a short K (conv1: 3 channels, K = 75), the product is computed transposed, dw_g^T[K, cout_g] (+)= col
  // dy[chunk, g]^T, and transposed into dw at the end: then M = K and N = cout_g fill the micro-tiles, where dw_g's
  // own shape packs the long col operand transposed for a product of depth 75. A long K keeps dw_g's shape.
  // Measured at 1 thread (CPU time), layers-18pct batch 128, transposed / not: conv1 (K 75) 11.7 / 14.3 ms, conv2
  // (K 800) 31.7 / 28.2 ms, conv3 (K 800) 14.6 / 13.0 ms. (Those two now run Winograd's weight gradient instead:
  // winograd_backward_weight_applies, conv2d_winograd.cpp.)
  const bool transposed = l.k < kTransposedWeightGradBelowK;
  auto accumulate_item = [&](int64_t item, float* acc, bool accumulate, bool parallel) {
    const ImageRange r = chunk_images(s, ch, item / s.groups);
    const int64_t g = item % s.groups, cols = r.count * l.p;
    const float* dy_g = dy_block(s, l, r, g, dy);
    const float* col = lowered(s, l, r, g, x, parallel);
    if (transposed)
      gemm(Trans::No, Trans::Yes, l.k, l.cout_g, cols, col, cols, dy_g, cols, acc + g * l.k * l.cout_g, l.cout_g,
           accumulate, {}, parallel);
    else
      gemm(Trans::No, Trans::Yes, l.cout_g, l.k, cols, dy_g, cols, col, cols, acc + g * l.cout_g * l.k, l.k,
           accumulate, {}, parallel);
  };
  // Row `row` of dw (output channel co of group g) = the sum of the `count` partials (dw_g or dw_g^T each), added
  // in partial order.
  auto sum_partials = [&](const float* partials, int count, int64_t row) {
    const int64_t g = row / l.cout_g, co = row % l.cout_g;
    const float* first = partials + g * l.k * l.cout_g;
    float* out = dw + g * l.cout_g * l.k;
    for (int64_t r = 0; r < l.k; ++r) {
      const int64_t at = transposed ? r * l.cout_g + co : co * l.k + r;
      float sum = first[at];
      for (int u = 1; u < count; ++u) sum += first[static_cast<int64_t>(u) * dw_size + at];
      out[co * l.k + r] = sum;
    }
  };

  if (s.n == 0) {
    std::fill(dw, dw + dw_size, 0.0f);
    return;
  }
  if (!share_items(items, threads)) {
    // Chunks in order, each GEMM threaded over tiles of dw: every element has one owner and a fixed sum order.
    if (!transposed) {
      for (int64_t item = 0; item < items; ++item) accumulate_item(item, dw, item >= s.groups, true);
      return;
    }
    std::vector<float> dwt(static_cast<size_t>(dw_size));
    for (int64_t item = 0; item < items; ++item) accumulate_item(item, dwt.data(), item >= s.groups, true);
    for (int64_t row = 0; row < s.c_out; ++row) sum_partials(dwt.data(), 1, row);
    return;
  }

  // Per-thread partials over contiguous items, added in thread order (accumulate_per_thread).
  std::vector<float> partials;
  const int used = accumulate_per_thread(items, threads, dw_size, partials, [&](int64_t item, float* mine) {
    accumulate_item(item, mine, true, false);
  });
#pragma omp parallel for schedule(static)
  for (int64_t row = 0; row < s.c_out; ++row) sum_partials(partials.data(), used, row);
}

}  // namespace alexnet::cpu
