// cuda-convnet's pooling geometry, shared by the CPU and CUDA max and average pooling kernels (shapes.h: PoolShape).
//
// Window o along one axis starts at start + o * stride and is kernel wide; the part outside [0, size) is dropped
// (src/cudaconv2/conv_util.cu, kLocalPool: loopStartY = MAX(0, startImgPxY), loopEndY = MIN(imgSize, startImgPxY
// + subsX)). An average divides by the number of elements left after clipping (AvgPooler::output(a, regionSize)
// with regionSize = (loopEndY - loopStartY) * (loopEndX - loopStartX)), and so does its backward
// (kLocalAvgUndo: regionSizeInv from the same clipped bounds).
#pragma once

#include <cstdint>

#include "philox.h"  // AX_HOST_DEVICE
#include "shapes.h"

namespace alexnet::pool {

// The input elements [begin, end) of one window along one axis.
struct Span {
  int begin, end;
  AX_HOST_DEVICE int count() const { return end - begin; }
};

AX_HOST_DEVICE Span window(int o, int start, int stride, int kernel, int size) {
  const int first = start + o * stride;  // inside [-kernel, size): ops.cpp checks the last window in 64 bits
  const int64_t end = static_cast<int64_t>(first) + kernel;  // 64 bits: kernel may be near INT_MAX
  return {first > 0 ? first : 0, end < size ? static_cast<int>(end) : size};
}
AX_HOST_DEVICE Span row_window(const PoolShape& s, int oy) { return window(oy, s.start, s.stride, s.kernel, s.h_in); }
AX_HOST_DEVICE Span col_window(const PoolShape& s, int ox) { return window(ox, s.start, s.stride, s.kernel, s.w_in); }

// The windows [begin, end) (along one axis) that contain input element i: start + o*stride <= i <= start +
// o*stride + kernel - 1 and 0 <= o < outputs. Empty (begin >= end) for an element in no window.
AX_HOST_DEVICE Span covering(int i, int start, int stride, int kernel, int outputs) {
  const int64_t d = static_cast<int64_t>(i) - start;  // offset from the first window's origin (64 bits: start may
  if (d < 0) return {0, 0};                            // be near -INT_MAX with a kernel near INT_MAX)
  const int64_t begin = d < kernel ? 0 : (d - kernel) / stride + 1;
  const int64_t end = d / stride + 1;
  return {static_cast<int>(begin < outputs ? begin : outputs), static_cast<int>(end < outputs ? end : outputs)};
}

// Element i of planes of h x w, unflattened: the one-thread-per-element CUDA kernels' index.
struct PlaneIndex {
  int64_t plane;
  int y, x;
};
AX_HOST_DEVICE PlaneIndex unflatten(int64_t i, int h, int w) {
  const int64_t rows = i / w;
  return {rows / h, static_cast<int>(rows % h), static_cast<int>(i % w)};
}

// What the one-thread-per-output CUDA kernels (forward) start from: output o of the flat (n, c, h_out, w_out)
// index, its plane and its clipped window.
struct OutputWindow {
  int64_t plane;
  Span rows, cols;
};
AX_HOST_DEVICE int64_t output_count(const PoolShape& s) { return static_cast<int64_t>(s.n) * s.c * s.h_out * s.w_out; }
AX_HOST_DEVICE OutputWindow output_window(const PoolShape& s, int64_t o) {
  const PlaneIndex at = unflatten(o, s.h_out, s.w_out);
  return {at.plane, row_window(s, at.y), col_window(s, at.x)};
}

// What the one-thread-per-input-element CUDA kernels (backward, gathers) start from: element e of the flat
// (n, c, h_in, w_in) index, its plane and position, and the windows [oys) x [oxs) that hold it.
struct InputCover {
  int64_t plane;
  int iy, ix;
  Span oys, oxs;
};
AX_HOST_DEVICE int64_t input_count(const PoolShape& s) { return static_cast<int64_t>(s.n) * s.c * s.h_in * s.w_in; }
AX_HOST_DEVICE InputCover input_cover(const PoolShape& s, int64_t e) {
  const PlaneIndex at = unflatten(e, s.h_in, s.w_in);
  return {at.plane, at.y, at.x, covering(at.y, s.start, s.stride, s.kernel, s.h_out),
          covering(at.x, s.start, s.stride, s.kernel, s.w_out)};
}

// The input columns that some window of a row covers, [begin, end): the column scratch of the separable CPU kernels.
AX_HOST_DEVICE Span covered_columns(const PoolShape& s) {
  const Span first = col_window(s, 0), last = col_window(s, s.w_out - 1);
  return {first.begin, last.end};
}

// The outputs [begin, end) along the columns whose window is whole (kernel wide, not clipped at either edge):
// start + ox * stride >= 0 and start + ox * stride + kernel <= w_in. The CPU kernels run those with a compile-time
// window, vectorized, and the clipped ones at the edges one by one.
AX_HOST_DEVICE Span whole_windows(const PoolShape& s) {
  const int64_t before = -static_cast<int64_t>(s.start);  // a whole window starts at column 0 or later
  const int64_t begin = before <= 0 ? 0 : (before + s.stride - 1) / s.stride;
  const int64_t room = static_cast<int64_t>(s.w_in) - s.kernel - s.start;  // the last whole window's first column
  const int64_t last = room < 0 ? 0 : room / s.stride + 1;
  const int64_t end = last < s.w_out ? last : s.w_out;
  return {static_cast<int>(begin < end ? begin : end), static_cast<int>(end)};
}

}  // namespace alexnet::pool
