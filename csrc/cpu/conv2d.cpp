// conv2d on the CPU, lowered to matrix products (im2col; Chellapilla et al. 2006), one product per image and group.
// For image i and group g, with K = (c_in/groups)*kh*kw and P = h_out*w_out:
//   col[K, P]    = the input patches of x[i, group g channels], one column per output position (im2col)
//   forward      y[i, g][c_out/groups, P] = act(w_g[c_out/groups, K] col + bias)     (paper Sections 3.1, 3.5)
//   input grad   dcol[K, P] = w_g^T dy[i, g];  dx[i, group g channels] = col2im(dcol) (scatter-add of patches)
//   weight grad  dw_g[c_out/groups, K] = sum_i dy[i, g] col^T
// Groups are the paper's two-GPU split (Section 3.2, Figure 2): conv2, conv4 and conv5 only see the kernel maps of
// their own half.
//
// Threading: with at least as many (image, group) pairs as threads, the pairs are shared out and each runs its own
// single-threaded GEMM on private scratch (no synchronisation at all); with fewer (batch 1), the pairs run in
// order and each GEMM is threaded internally. The weight gradient is deterministic either way: per-thread partial
// sums over fixed, contiguous ranges of pairs, added in thread order (or, with threaded GEMMs, one owner thread
// per element of dw), never atomics.
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace alexnet::cpu {
namespace {

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

// Output columns ox whose input column ox*stride - pad + kj lies inside [0, w_in): [*lo, *hi).
void valid_range(int out_size, int in_size, int stride, int pad, int offset, int* lo, int* hi) {
  const int first = pad - offset;        // ox*stride >= pad - offset
  const int last = in_size - 1 + pad - offset;  // ox*stride <= in_size - 1 + pad - offset
  *lo = first <= 0 ? 0 : (first + stride - 1) / stride;
  *hi = last < 0 ? 0 : std::min(out_size, last / stride + 1);
  if (*hi < *lo) *hi = *lo;
}

// col[r, oy*w_out + ox] = x[c, oy*stride - pad + ki, ox*stride - pad + kj] (0 outside) for r = (c*kh + ki)*kw + kj.
// x points at the group's first channel. Rows are independent, so `parallel` shares them among threads.
void im2col(const ConvShape& s, const Lowering& l, const float* x, float* col, bool parallel) {
  const int64_t rows = l.k;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const int kj = static_cast<int>(r % s.kw), ki = static_cast<int>((r / s.kw) % s.kh);
    const int64_t c = r / (static_cast<int64_t>(s.kw) * s.kh);
    const float* xc = x + c * l.in_plane;
    float* dst = col + r * l.p;
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
// the group's first channel and is overwritten. Channels are independent (each owns its kh*kw rows of col), so
// `parallel` shares channels among threads and every element is summed in the same order.
void col2im(const ConvShape& s, const Lowering& l, const float* col, float* dx, bool parallel) {
  const int64_t channels = l.cin_g, taps = static_cast<int64_t>(s.kh) * s.kw;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < channels; ++c) {
    float* dxc = dx + c * l.in_plane;
    std::fill(dxc, dxc + l.in_plane, 0.0f);
    for (int64_t t = 0; t < taps; ++t) {
      const int ki = static_cast<int>(t / s.kw), kj = static_cast<int>(t % s.kw);
      const float* src_row = col + (c * taps + t) * l.p;
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

// Grow-only scratch for one thread's col matrix.
struct Scratch {
  std::vector<float> data;
  float* get(size_t count) {
    if (data.size() < count) data.resize(count);
    return data.data();
  }
};
thread_local Scratch tls_col;

int max_threads() { return omp_in_parallel() ? 1 : omp_get_max_threads(); }

// Share whole (image, group) pairs among threads when that balances: at least one per thread, and either an
// exact multiple or enough that the remainder hardly matters. Otherwise thread inside each GEMM.
bool share_pairs(int64_t pairs, int threads) {
  return threads > 1 && pairs >= threads && (pairs % threads == 0 || pairs >= 4 * threads);
}

}  // namespace

void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y) {
  const Lowering l = lowering_of(s);
  const int64_t pairs = static_cast<int64_t>(s.n) * s.groups;
  const bool by_pairs = share_pairs(pairs, max_threads());

  // One (image, group) product: y[i, g] = act(w_g col + bias_g); bias and activation are fused into the GEMM's
  // final store, so y is written exactly once.
  auto run_pair = [&](int64_t pair, bool parallel) {
    const int64_t i = pair / s.groups, g = pair % s.groups;
    const float* x_ig = x + (i * s.c_in + g * l.cin_g) * l.in_plane;
    const float* w_g = w + g * l.cout_g * l.k;
    float* y_ig = y + (i * s.c_out + g * l.cout_g) * l.p;
    const float* col = x_ig;
    if (!l.identity) {
      float* buffer = tls_col.get(static_cast<size_t>(l.k * l.p));
      im2col(s, l, x_ig, buffer, parallel);
      col = buffer;
    }
    GemmEpilogue ep;
    ep.row_bias = bias ? bias + g * l.cout_g : nullptr;
    ep.act = act;
    gemm(Trans::No, Trans::No, l.cout_g, l.p, l.k, w_g, l.k, col, l.p, y_ig, l.p, false, ep, parallel);
  };

  if (by_pairs) {
#pragma omp parallel for schedule(static)
    for (int64_t pair = 0; pair < pairs; ++pair) run_pair(pair, false);
  } else {
    for (int64_t pair = 0; pair < pairs; ++pair) run_pair(pair, true);
  }
}

void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx) {
  const Lowering l = lowering_of(s);
  const int64_t pairs = static_cast<int64_t>(s.n) * s.groups;
  const bool by_pairs = share_pairs(pairs, max_threads());

  // dx[i, group g channels] depends only on dy[i, g] and w_g, so pairs write disjoint parts of dx.
  auto run_pair = [&](int64_t pair, bool parallel) {
    const int64_t i = pair / s.groups, g = pair % s.groups;
    const float* dy_ig = dy + (i * s.c_out + g * l.cout_g) * l.p;
    const float* w_g = w + g * l.cout_g * l.k;
    float* dx_ig = dx + (i * s.c_in + g * l.cin_g) * l.in_plane;
    if (l.identity) {  // col2im is the identity: write the product straight into dx
      gemm(Trans::Yes, Trans::No, l.k, l.p, l.cout_g, w_g, l.k, dy_ig, l.p, dx_ig, l.p, false, {}, parallel);
      return;
    }
    float* dcol = tls_col.get(static_cast<size_t>(l.k * l.p));
    gemm(Trans::Yes, Trans::No, l.k, l.p, l.cout_g, w_g, l.k, dy_ig, l.p, dcol, l.p, false, {}, parallel);
    col2im(s, l, dcol, dx_ig, parallel);
  };

  if (by_pairs) {
#pragma omp parallel for schedule(static)
    for (int64_t pair = 0; pair < pairs; ++pair) run_pair(pair, false);
  } else {
    for (int64_t pair = 0; pair < pairs; ++pair) run_pair(pair, true);
  }
}

void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw) {
  const Lowering l = lowering_of(s);
  const int64_t pairs = static_cast<int64_t>(s.n) * s.groups;
  const int64_t dw_size = s.c_out * l.k;  // (c_out, c_in/groups, kh, kw) = groups x (cout_g, K)
  const int threads = max_threads();

  // dw_g (+)= dy[i, g] col^T: M = cout_g, N = K, and the sum runs over the P output positions.
  auto accumulate_pair = [&](int64_t pair, float* dw_acc, bool accumulate, bool parallel) {
    const int64_t i = pair / s.groups, g = pair % s.groups;
    const float* x_ig = x + (i * s.c_in + g * l.cin_g) * l.in_plane;
    const float* dy_ig = dy + (i * s.c_out + g * l.cout_g) * l.p;
    const float* col = x_ig;
    if (!l.identity) {
      float* buffer = tls_col.get(static_cast<size_t>(l.k * l.p));
      im2col(s, l, x_ig, buffer, parallel);
      col = buffer;
    }
    gemm(Trans::No, Trans::Yes, l.cout_g, l.k, l.p, dy_ig, l.p, col, l.p, dw_acc + g * l.cout_g * l.k, l.k,
         accumulate, {}, parallel);
  };

  if (s.n == 0) {
    std::fill(dw, dw + dw_size, 0.0f);
    return;
  }
  if (!share_pairs(pairs, threads)) {
    // Images in order, each GEMM threaded over tiles of dw: every element has one owner and a fixed sum order.
    for (int64_t pair = 0; pair < pairs; ++pair) accumulate_pair(pair, dw, pair >= s.groups, true);
    return;
  }

  // Thread t sums the contiguous pairs [t*pairs/T, (t+1)*pairs/T) into its own zeroed partial; the partials are
  // then added in thread order. Same thread count -> bit-identical result, and no two threads write one address.
  std::vector<float> partials(static_cast<size_t>(threads) * dw_size, 0.0f);
  int used = threads;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), team = omp_get_num_threads();
#pragma omp single
    used = team;
    float* mine = partials.data() + static_cast<size_t>(t) * dw_size;
    const int64_t begin = t * pairs / team, end = (t + 1) * pairs / team;
    for (int64_t pair = begin; pair < end; ++pair) accumulate_pair(pair, mine, true, false);
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t e = 0; e < dw_size; ++e) {
      float sum = partials[e];
      for (int u = 1; u < used; ++u) sum += partials[static_cast<size_t>(u) * dw_size + e];
      dw[e] = sum;
    }
  }
}

void bias_backward(int n, int c, int64_t spatial, const float* dy, float* db) {
  if (spatial == 1) {
    // (n, c) rows, e.g. a fully connected layer: walk rows in order, channels split among threads, so every
    // channel's sum has a fixed order and memory is read contiguously.
#pragma omp parallel
    {
      const int t = omp_get_thread_num(), team = omp_get_num_threads();
      const int64_t begin = static_cast<int64_t>(t) * c / team, end = static_cast<int64_t>(t + 1) * c / team;
      std::vector<double> acc(static_cast<size_t>(end - begin), 0.0);
      for (int64_t i = 0; i < n; ++i) {
        const float* row = dy + i * c;
        for (int64_t ch = begin; ch < end; ++ch) acc[ch - begin] += row[ch];
      }
      for (int64_t ch = begin; ch < end; ++ch) db[ch] = static_cast<float>(acc[ch - begin]);
    }
    return;
  }
  // (n, c, spatial) feature maps: one thread per channel, each plane summed in 8 float lanes (vectorized), planes
  // added in double.
#pragma omp parallel for schedule(static)
  for (int64_t ch = 0; ch < c; ++ch) {
    double total = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      const float* plane = dy + (i * c + ch) * spatial;
      float lanes[8] = {};
      int64_t sidx = 0;
      for (; sidx + 8 <= spatial; sidx += 8)
        for (int u = 0; u < 8; ++u) lanes[u] += plane[sidx + u];
      double part = 0.0;
      for (int u = 0; u < 8; ++u) part += lanes[u];
      for (; sidx < spatial; ++sidx) part += plane[sidx];
      total += part;
    }
    db[ch] = static_cast<float>(total);
  }
}

}  // namespace alexnet::cpu
