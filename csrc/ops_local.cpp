// The op boundary of the locally connected layer (ops.h; kernels in cpu/local.cpp and cuda/local.cu): checks every
// argument once, allocates the outputs and dispatches.
#include <tuple>

#include "cpu/kernels.h"
#include "ops.h"
#include "ops_checks.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/kernels.h"
#endif

namespace alexnet::ops {

using namespace detail;

namespace {

constexpr int64_t kMaxElements = 0x7fffffff;  // the kernels index each tensor (and dx's window buffer) with ints

// x (n, c_in, h, w) and w (h_out, w_out, c_in/groups, kh, kw, c_out) -> the shape, with the output size checked
// against cuda-convnet's rule (ops.h: local_output_size).
ConvShape local_shape(const char* op, const Tensor& x, const Tensor& w, int stride, int pad, int groups) {
  check_tensor(op, "x", x, 4);
  check_tensor(op, "weight", w, 6);
  check_device(op, "weight", w, x);
  check_window_arguments(op, stride, pad, groups);
  ConvShape s{};
  s.n = to_int(op, "batch", x.size(0));
  s.c_in = to_int(op, "input channels", x.size(1));
  s.h_in = to_int(op, "input height", x.size(2));
  s.w_in = to_int(op, "input width", x.size(3));
  s.h_out = to_int(op, "output height (weight.shape[0])", w.size(0));
  s.w_out = to_int(op, "output width (weight.shape[1])", w.size(1));
  s.kh = to_int(op, "kernel height", w.size(3));
  s.kw = to_int(op, "kernel width", w.size(4));
  s.c_out = to_int(op, "output channels", w.size(5));
  s.stride = stride;
  s.pad = pad;
  s.groups = groups;
  check_groups_divide(op, groups, s.c_in, s.c_out);
  AX_CHECK(s.kh >= 1 && s.kw >= 1, op, ": kernel must be at least 1x1, got ", s.kh, "x", s.kw);
  const int64_t padded_h = int64_t{s.h_in} + 2 * int64_t{pad}, padded_w = int64_t{s.w_in} + 2 * int64_t{pad};
  // The kernels form window coordinates up to (padded size + kernel) in ints.
  AX_CHECK(padded_h + s.kh <= kMaxElements && padded_w + s.kw <= kMaxElements, op, ": padding=", pad,
           " is out of the supported range");
  AX_CHECK(padded_h >= s.kh && padded_w >= s.kw, op, ": the weight's ", s.kh, "x", s.kw,
           " kernel is larger than the input with padding=", pad, " (", padded_h, "x", padded_w, ")");
  const int64_t h_out = local_output_size(s.h_in, s.kh, stride, pad), w_out = local_output_size(s.w_in, s.kw, stride, pad);
  // cuda-convnet's ceil rule lets the last window run past the padded input; with a stride larger than the kernel
  // it can start beyond it and see nothing but zeros (an output of bias alone). That is refused, not built.
  AX_CHECK((h_out - 1) * stride < padded_h && (w_out - 1) * stride < padded_w, op, ": stride=", stride,
           " puts the last ", s.kh, "x", s.kw, " window (output ", h_out, "x", w_out,
           " by 1 + ceil((size + 2*padding - kernel) / stride)) wholly outside the ", padded_h, "x", padded_w,
           " padded input");
  const Shape expected{h_out, w_out, s.c_in / groups, s.kh, s.kw, s.c_out};
  AX_CHECK(w.shape() == expected, op, ": expected weight of shape (h_out, w_out, c_in/groups, kh, kw, c_out) = ",
           shape_str(expected), " for x ", shape_str(x.shape()), " with stride=", stride, ", padding=", pad,
           ", groups=", groups, " (h_out = 1 + ceil((h + 2*padding - kh) / stride)), got ", shape_str(w.shape()));
  const int64_t window_buffer = int64_t{s.n} * s.c_in * s.kh * s.kw * h_out * w_out;
  AX_CHECK(x.numel() <= kMaxElements && w.numel() <= kMaxElements && int64_t{s.n} * s.c_out * h_out * w_out <= kMaxElements &&
               window_buffer <= kMaxElements,
           op, ": tensors of more than 2^31 - 1 elements are not supported (x ", shape_str(x.shape()), ", weight ",
           shape_str(w.shape()), ")");
  return s;
}

}  // namespace

Tensor local_forward(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad, int groups,
                     Activation act) {
  const char* op = "local_forward";
  const ConvShape s = local_shape(op, x, w, stride, pad, groups);
  if (bias.defined()) {
    check_tensor(op, "bias", bias, -1);
    check_shape(op, "bias", bias, {s.c_out, s.h_out, s.w_out});
    check_device(op, "bias", bias, x);
  }
  Tensor y = Tensor::empty({s.n, s.c_out, s.h_out, s.w_out}, x.device());
  if (y.numel() == 0) return y;
  const float* b = bias.defined() ? bias.data() : nullptr;
  AX_DISPATCH(x.device(), cpu::local_forward(s, x.data(), w.data(), b, act, y.data()),
              cuda::local_forward(s, x.data(), w.data(), b, act, y.data(), stream));
  return y;
}

std::tuple<Tensor, Tensor, Tensor> local_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int stride,
                                                  int pad, int groups) {
  const char* op = "local_backward";
  const ConvShape s = local_shape(op, x, w, stride, pad, groups);
  check_tensor(op, "dy", dy, 4);
  check_shape(op, "dy", dy, {s.n, s.c_out, s.h_out, s.w_out});
  check_device(op, "dy", dy, x);
  if (s.n == 0 || s.c_in == 0 || s.c_out == 0) {  // no products: dx and dw are empty or zero sums
    Tensor db = Tensor::zeros({s.c_out, s.h_out, s.w_out}, x.device());
    if (s.n > 0 && s.c_out > 0) {  // no input channels, but the bias still has its gradient
      const int biases = s.c_out * s.h_out * s.w_out;
      AX_DISPATCH(x.device(), cpu::bias_backward(s.n, biases, 1, dy.data(), db.data()),
                  cuda::bias_backward(s.n, biases, 1, dy.data(), db.data(), stream));
    }
    return {Tensor::zeros(x.shape(), x.device()), Tensor::zeros(w.shape(), x.device()), db};
  }
  Tensor dx = Tensor::empty(x.shape(), x.device());
  Tensor dw = Tensor::empty(w.shape(), x.device());
  Tensor db = Tensor::empty({s.c_out, s.h_out, s.w_out}, x.device());
  AX_DISPATCH(x.device(), cpu::local_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data()),
              cuda::local_backward(s, x.data(), w.data(), dy.data(), dx.data(), dw.data(), db.data(), stream));
  return {dx, dw, db};
}

}  // namespace alexnet::ops
