// The op boundary of the layers: checks every argument once, allocates outputs, and dispatches to cpu:: or cuda::
// kernels (the optimizers' boundary is ops_optimizers.cpp; the checks both use are in ops_checks.h).
#include "ops.h"

#include <cstring>
#include <tuple>
#include <vector>

#include "cpu/kernels.h"
#include "ops_checks.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/kernels.h"
#include "cuda/runtime.h"  // copy_2d
#endif

namespace alexnet::ops {

using namespace detail;

namespace {

// Copies labels to the host (a few hundred bytes) and checks each is in [0, classes).
void check_labels(const char* op, const Tensor& labels, int64_t n, int64_t classes) {
  check_tensor(op, "labels", labels, 1, DType::I32);
  AX_CHECK(labels.size(0) == n, op, ": expected ", n, " labels (one per row of scores), got ", labels.size(0));
  std::vector<int32_t> host(static_cast<size_t>(n));
  labels.copy_to_host(host.data());
  for (int64_t i = 0; i < n; ++i) {
    AX_CHECK(host[i] >= 0 && host[i] < classes, op, ": label ", host[i], " (labels[", i, "]) is out of range [0, ",
             classes, ")");
  }
}

ConvShape conv_shape(const char* op, const Shape& x, const Shape& w, int stride, int pad, int groups) {
  check_window_arguments(op, stride, pad, groups);
  ConvShape s{};
  s.n = to_int(op, "batch", x[0]);
  s.c_in = to_int(op, "input channels", x[1]);
  s.h_in = to_int(op, "input height", x[2]);
  s.w_in = to_int(op, "input width", x[3]);
  s.c_out = to_int(op, "output channels", w[0]);
  s.kh = to_int(op, "kernel height", w[2]);
  s.kw = to_int(op, "kernel width", w[3]);
  s.stride = stride;
  s.pad = pad;
  s.groups = groups;
  check_groups_divide(op, groups, s.c_in, s.c_out);
  AX_CHECK(w[1] == s.c_in / groups, op, ": expected weight of shape (c_out, c_in/groups, kh, kw) with c_in/groups = ",
           s.c_in / groups, ", got weight ", shape_str(w));
  AX_CHECK(s.kh >= 1 && s.kw >= 1, op, ": kernel must be at least 1x1, got ", s.kh, "x", s.kw);
  // In 64 bits: h_in + 2 * pad overflows int for a large padding. The kernels index the padded input with ints, so
  // it must fit one.
  const int padded_h = to_int(op, "padded input height (height + 2 * padding)", int64_t{s.h_in} + 2 * int64_t{pad});
  const int padded_w = to_int(op, "padded input width (width + 2 * padding)", int64_t{s.w_in} + 2 * int64_t{pad});
  AX_CHECK(padded_h >= s.kh && padded_w >= s.kw, op, ": the weight's ", s.kh, "x", s.kw,
           " kernel is larger than the input with padding=", pad, " (", padded_h, "x", padded_w, ")");
  s.h_out = (padded_h - s.kh) / stride + 1;
  s.w_out = (padded_w - s.kw) / stride + 1;
  return s;
}

// One axis of the pooling geometry (shapes.h, pool_geometry.h). outputs = 0: as many windows as fit whole from
// `start` (the floor rule, today's default); otherwise exactly `outputs` windows, which may hang over the far edge
// (cuda-convnet's layer.py computes outputsX with a ceil rule; alexnet_cuda.ops.convnet_pool_outputs). Either way
// every window must keep at least one element after clipping.
int pool_outputs(const char* op, const char* axis, int size, int kernel, int stride, int start, int outputs) {
  AX_CHECK(outputs >= 0, op, ": outputs must be >= 0 (0: as many whole windows as fit), got ", outputs);
  AX_CHECK(int64_t{start} + kernel >= 1, op, ": start must be > -kernel (the first window must overlap the input),",
           " got start=", start, " with kernel=", kernel);
  if (outputs == 0) {
    const int64_t room = int64_t{size} - start;  // 64 bits: start may be near INT_MIN
    AX_CHECK(room >= kernel, op, ": window ", kernel, "x", kernel, " is larger than the input ", axis,
             " from start=", start, " (", room, " elements)");
    return to_int(op, "output size", (room - kernel) / stride + 1);
  }
  const int64_t last_begin = int64_t{start} + int64_t{outputs - 1} * stride;
  AX_CHECK(last_begin <= size - 1, op, ": with start=", start, ", kernel=", kernel, ", stride=",
           stride, " and ", outputs, " outputs, the windows span input ", axis, " positions [", start, ", ",
           last_begin + kernel, "), but every window must overlap the input [0, ", size, ")");
  return outputs;
}

// The pooling geometry of an input of shape `in` (n, c, h, w), checked; `input` names the argument(s) giving it.
PoolShape pool_shape(const char* op, const Shape& in, const char* input, int kernel, int stride, int start = 0,
                     int h_out = 0, int w_out = 0) {
  AX_CHECK(kernel >= 1, op, ": kernel must be >= 1, got ", kernel);
  AX_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
  PoolShape s{};
  s.n = to_int(op, "batch", in[0]);
  s.c = to_int(op, "channels", in[1]);
  s.h_in = to_int(op, "height", in[2]);
  s.w_in = to_int(op, "width", in[3]);
  s.kernel = kernel;
  s.stride = stride;
  s.start = start;
  if (start == 0 && h_out == 0 && w_out == 0) {  // the paper's pooling: today's message
    AX_CHECK(s.h_in >= kernel && s.w_in >= kernel, op, ": window ", kernel, "x", kernel,
             " is larger than the input ", s.h_in, "x", s.w_in, " (kernel=", kernel, ", input ", input, ")");
  }
  s.h_out = pool_outputs(op, "height", s.h_in, kernel, stride, start, h_out);
  s.w_out = pool_outputs(op, "width", s.w_in, kernel, stride, start, w_out);
  return s;
}

// The gradient (dy) and, for max pooling, the forward's output (y) have the pooled shape.
void check_pooled(const char* op, const char* name, const Tensor& t, const PoolShape& s, const Tensor& x) {
  check_tensor(op, name, t, 4);
  check_shape(op, name, t, Shape{s.n, s.c, s.h_out, s.w_out});
  check_device(op, name, t, x);
}

void check_lrn(const char* op, const Tensor& x, const LrnParams& p) {
  check_tensor(op, "x", x, -1);
  AX_CHECK(x.ndim() >= 2, op, ": expected x of shape (n, c, ...), got ", shape_str(x.shape()));
  AX_CHECK(p.size >= 1, op, ": size must be >= 1, got ", p.size);
  check_finite(op, "alpha", p.alpha);
  check_finite(op, "beta", p.beta);
  check_finite(op, "k", p.k);
  AX_CHECK(p.k > 0.0f, op, ": k must be > 0 (it keeps the denominator positive), got ", p.k);
  AX_CHECK(p.alpha >= 0.0f && p.beta >= 0.0f, op, ": alpha and beta must be >= 0, got alpha=", p.alpha, ", beta=",
           p.beta);
}

// batchnorm: x is (n, c) or (n, c, h, w); the per-channel tensors are (c) on x's device.
struct BatchnormShape {
  int n, c;
  int64_t spatial;
};

BatchnormShape batchnorm_shape(const char* op, const Tensor& x) {
  check_tensor(op, "x", x, -1);
  AX_CHECK(x.ndim() == 2 || x.ndim() == 4, op, ": expected x of shape (n, c) or (n, c, h, w), got ",
           shape_str(x.shape()));
  return {to_int(op, "batch", x.size(0)), to_int(op, "channels", x.size(1)), spatial_of(x)};
}

// The batch variance needs two values per channel; with one it is 0 and the unbiased variance is 0/0.
void check_batch_statistics(const char* op, const BatchnormShape& s) {
  AX_CHECK(static_cast<int64_t>(s.n) * s.spatial >= 2, op, ": training mode needs at least 2 values per channel ",
           "of x (n * h * w >= 2) for the batch variance, got n=", s.n, " and h * w = ", s.spatial);
}

void check_eps(const char* op, float eps) {
  check_finite(op, "eps", eps);
  AX_CHECK(eps > 0.0f, op, ": eps must be > 0 (it keeps 1 / sqrt(var + eps) finite), got ", eps);
}

}  // namespace

Activation parse_activation(const std::string& name) {
  if (name == "none" || name.empty()) return Activation::None;
  if (name == "relu") return Activation::ReLU;
  if (name == "tanh") return Activation::Tanh;
  throw ValueError(str_cat("activation: expected 'none', 'relu' or 'tanh', got '", name, "'"));
}

const char* activation_name(Activation act) {
  return act == Activation::ReLU ? "relu" : act == Activation::Tanh ? "tanh" : "none";
}

// ---- conv2d --------------------------------------------------------------------------------------------------
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad, int groups,
                      Activation act) {
  const char* op = "conv2d_forward";
  check_tensor(op, "x", x, 4);
  check_tensor(op, "weight", w, 4);
  check_device(op, "weight", w, x);
  ConvShape s = conv_shape(op, x.shape(), w.shape(), stride, pad, groups);
  if (bias.defined()) {
    check_tensor(op, "bias", bias, 1);
    check_shape(op, "bias", bias, {s.c_out});
    check_device(op, "bias", bias, x);
  }
  Tensor y = Tensor::empty({s.n, s.c_out, s.h_out, s.w_out}, x.device());
  const float* b = bias.defined() ? bias.data() : nullptr;
  AX_DISPATCH(x.device(), cpu::conv2d_forward(s, x.data(), w.data(), b, act, y.data()),
              cuda::conv2d_forward(s, x.data(), w.data(), b, act, y.data(), stream));
  return y;
}

Tensor conv2d_backward_input(const Tensor& dy, const Tensor& w, int in_h, int in_w, int stride, int pad,
                             int groups) {
  const char* op = "conv2d_backward_input";
  check_tensor(op, "dy", dy, 4);
  check_tensor(op, "weight", w, 4);
  check_device(op, "weight", w, dy);
  AX_CHECK(in_h >= 1 && in_w >= 1, op, ": input_size must be positive, got ", in_h, "x", in_w);
  const int64_t c_in = w.size(1) * groups;
  AX_CHECK(groups < 1 || c_in <= 0x7fffffff, op, ": weight.shape[1] * groups = ", c_in,
           " input channels is out of the supported range");
  ConvShape s = conv_shape(op, {dy.size(0), c_in, in_h, in_w}, w.shape(), stride, pad, groups);
  check_shape(op, "dy", dy, {s.n, s.c_out, s.h_out, s.w_out});
  Tensor dx = Tensor::empty({s.n, s.c_in, s.h_in, s.w_in}, dy.device());
  AX_DISPATCH(dy.device(), cpu::conv2d_backward_input(s, dy.data(), w.data(), dx.data()),
              cuda::conv2d_backward_input(s, dy.data(), w.data(), dx.data(), stream));
  return dx;
}

Tensor conv2d_backward_weight(const Tensor& x, const Tensor& dy, int kh, int kw, int stride, int pad, int groups) {
  const char* op = "conv2d_backward_weight";
  check_tensor(op, "x", x, 4);
  check_tensor(op, "dy", dy, 4);
  check_device(op, "dy", dy, x);
  AX_CHECK(groups >= 1, op, ": groups must be >= 1, got ", groups);
  AX_CHECK(kh >= 1 && kw >= 1, op, ": kernel_size must be positive, got ", kh, "x", kw);
  AX_CHECK(x.size(1) % groups == 0, op, ": groups=", groups, " does not divide the ", x.size(1), " input channels");
  ConvShape s = conv_shape(op, x.shape(), {dy.size(1), x.size(1) / groups, kh, kw}, stride, pad, groups);
  check_shape(op, "dy", dy, {s.n, s.c_out, s.h_out, s.w_out});
  Tensor dw = Tensor::empty({s.c_out, s.c_in / groups, s.kh, s.kw}, x.device());
  AX_DISPATCH(x.device(), cpu::conv2d_backward_weight(s, x.data(), dy.data(), dw.data()),
              cuda::conv2d_backward_weight(s, x.data(), dy.data(), dw.data(), stream));
  return dw;
}

Tensor bias_backward(const Tensor& dy) {
  const char* op = "bias_backward";
  check_tensor(op, "dy", dy, -1);
  AX_CHECK(dy.ndim() >= 2, op, ": expected dy of shape (n, c, ...), got ", shape_str(dy.shape()));
  const int n = to_int(op, "batch", dy.size(0)), c = to_int(op, "channels", dy.size(1));
  const int64_t spatial = spatial_of(dy);
  Tensor db = Tensor::empty({c}, dy.device());
  AX_DISPATCH(dy.device(), cpu::bias_backward(n, c, spatial, dy.data(), db.data()),
              cuda::bias_backward(n, c, spatial, dy.data(), db.data(), stream));
  return db;
}

// ---- linear --------------------------------------------------------------------------------------------------
Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Activation act) {
  const char* op = "linear_forward";
  check_tensor(op, "x", x, 2);
  check_tensor(op, "weight", w, 2);
  check_device(op, "weight", w, x);
  AX_CHECK(w.size(1) == x.size(1), op, ": expected weight of shape (out, ", x.size(1), ") to match x ",
           shape_str(x.shape()), ", got weight ", shape_str(w.shape()));
  const int n = to_int(op, "batch", x.size(0)), in = to_int(op, "in", x.size(1)), out = to_int(op, "out", w.size(0));
  if (bias.defined()) {
    check_tensor(op, "bias", bias, 1);
    check_shape(op, "bias", bias, {out});
    check_device(op, "bias", bias, x);
  }
  Tensor y = Tensor::empty({n, out}, x.device());
  const float* b = bias.defined() ? bias.data() : nullptr;
  AX_DISPATCH(x.device(), cpu::linear_forward(n, in, out, x.data(), w.data(), b, act, y.data()),
              cuda::linear_forward(n, in, out, x.data(), w.data(), b, act, y.data(), stream));
  return y;
}

Tensor linear_backward_input(const Tensor& dy, const Tensor& w) {
  const char* op = "linear_backward_input";
  check_tensor(op, "dy", dy, 2);
  check_tensor(op, "weight", w, 2);
  check_device(op, "weight", w, dy);
  AX_CHECK(dy.size(1) == w.size(0), op, ": dy ", shape_str(dy.shape()), " does not match weight ",
           shape_str(w.shape()), " (expected dy of shape (n, out))");
  const int n = to_int(op, "batch", dy.size(0)), in = to_int(op, "in", w.size(1)), out = to_int(op, "out", w.size(0));
  Tensor dx = Tensor::empty({n, in}, dy.device());
  AX_DISPATCH(dy.device(), cpu::linear_backward_input(n, in, out, dy.data(), w.data(), dx.data()),
              cuda::linear_backward_input(n, in, out, dy.data(), w.data(), dx.data(), stream));
  return dx;
}

Tensor linear_backward_weight(const Tensor& x, const Tensor& dy) {
  const char* op = "linear_backward_weight";
  check_tensor(op, "x", x, 2);
  check_tensor(op, "dy", dy, 2);
  check_device(op, "dy", dy, x);
  AX_CHECK(dy.size(0) == x.size(0), op, ": x ", shape_str(x.shape()), " and dy ", shape_str(dy.shape()),
           " have different batch sizes");
  const int n = to_int(op, "batch", x.size(0)), in = to_int(op, "in", x.size(1)), out = to_int(op, "out", dy.size(1));
  Tensor dw = Tensor::empty({out, in}, x.device());
  AX_DISPATCH(x.device(), cpu::linear_backward_weight(n, in, out, x.data(), dy.data(), dw.data()),
              cuda::linear_backward_weight(n, in, out, x.data(), dy.data(), dw.data(), stream));
  return dw;
}

// ---- activation ----------------------------------------------------------------------------------------------
Tensor activation_forward(const Tensor& x, Activation act) {
  const char* op = "activation_forward";
  check_tensor(op, "x", x, -1);
  Tensor y = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(), cpu::activation_forward(act, x.numel(), x.data(), y.data()),
              cuda::activation_forward(act, x.numel(), x.data(), y.data(), stream));
  return y;
}

Tensor activation_backward(const Tensor& y, const Tensor& dy, Activation act) {
  const char* op = "activation_backward";
  check_tensor(op, "y", y, -1);
  check_tensor(op, "dy", dy, -1);
  check_shape(op, "dy", dy, y.shape());
  check_device(op, "dy", dy, y);
  Tensor dx = Tensor::empty(y.shape(), y.device());
  AX_DISPATCH(y.device(), cpu::activation_backward(act, y.numel(), y.data(), dy.data(), dx.data()),
              cuda::activation_backward(act, y.numel(), y.data(), dy.data(), dx.data(), stream));
  return dx;
}

// ---- lrn -----------------------------------------------------------------------------------------------------
std::pair<Tensor, Tensor> lrn_forward(const Tensor& x, const LrnParams& p) {
  const char* op = "lrn_forward";
  check_lrn(op, x, p);
  const int n = to_int(op, "batch", x.size(0)), c = to_int(op, "channels", x.size(1));
  const int64_t spatial = spatial_of(x);
  Tensor y = Tensor::empty(x.shape(), x.device()), scale = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(), cpu::lrn_forward(n, c, spatial, p, x.data(), y.data(), scale.data()),
              cuda::lrn_forward(n, c, spatial, p, x.data(), y.data(), scale.data(), stream));
  return {y, scale};
}

Tensor lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const LrnParams& p) {
  const char* op = "lrn_backward";
  check_lrn(op, x, p);
  check_all_shaped(op, x, x.shape(), {{"y", &y}, {"scale", &scale}, {"dy", &dy}});
  const int n = to_int(op, "batch", x.size(0)), c = to_int(op, "channels", x.size(1));
  const int64_t spatial = spatial_of(x);
  Tensor dx = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(),
              cpu::lrn_backward(n, c, spatial, p, x.data(), y.data(), scale.data(), dy.data(), dx.data()),
              cuda::lrn_backward(n, c, spatial, p, x.data(), y.data(), scale.data(), dy.data(), dx.data(), stream));
  return dx;
}

// ---- spatial_lrn ---------------------------------------------------------------------------------------------
// Shares lrn's parameter checks (k > 0 keeps the denominator positive); the window is spatial, so x is (n, c, h, w).
std::pair<Tensor, Tensor> spatial_lrn_forward(const Tensor& x, const LrnParams& p) {
  const char* op = "spatial_lrn_forward";
  check_tensor(op, "x", x, 4);
  check_lrn(op, x, p);
  const int n = to_int(op, "batch", x.size(0)), c = to_int(op, "channels", x.size(1));
  const int h = to_int(op, "height", x.size(2)), w = to_int(op, "width", x.size(3));
  Tensor y = Tensor::empty(x.shape(), x.device()), denom = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(), cpu::spatial_lrn_forward(n * int64_t{c}, h, w, p, x.data(), y.data(), denom.data()),
              cuda::spatial_lrn_forward(n * int64_t{c}, h, w, p, x.data(), y.data(), denom.data(), stream));
  return {y, denom};
}

Tensor spatial_lrn_backward(const Tensor& x, const Tensor& y, const Tensor& denom, const Tensor& dy,
                            const LrnParams& p) {
  const char* op = "spatial_lrn_backward";
  check_tensor(op, "x", x, 4);
  check_lrn(op, x, p);
  check_all_shaped(op, x, x.shape(), {{"y", &y}, {"denom", &denom}, {"dy", &dy}});
  const int n = to_int(op, "batch", x.size(0)), c = to_int(op, "channels", x.size(1));
  const int h = to_int(op, "height", x.size(2)), w = to_int(op, "width", x.size(3));
  Tensor dx = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(),
              cpu::spatial_lrn_backward(n * int64_t{c}, h, w, p, x.data(), y.data(), denom.data(), dy.data(),
                                        dx.data()),
              cuda::spatial_lrn_backward(n * int64_t{c}, h, w, p, x.data(), y.data(), denom.data(), dy.data(),
                                         dx.data(), stream));
  return dx;
}

// ---- batchnorm -----------------------------------------------------------------------------------------------
std::tuple<Tensor, Tensor, Tensor> batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                                           Tensor& running_mean, Tensor& running_var,
                                                           float momentum, float eps) {
  const char* op = "batchnorm_forward_train";
  const BatchnormShape s = batchnorm_shape(op, x);
  check_all_shaped(op, x, {s.c}, {{"gamma", &gamma}, {"beta", &beta}});
  check_all_shaped(op, x, {s.c}, {{"running_mean", &running_mean}, {"running_var", &running_var}});
  check_batch_statistics(op, s);
  check_finite(op, "momentum", momentum);
  AX_CHECK(momentum >= 0.0f && momentum <= 1.0f, op, ": momentum must be in [0, 1], got ", momentum);
  check_eps(op, eps);
  Tensor y = Tensor::empty(x.shape(), x.device());
  Tensor mean = Tensor::empty({s.c}, x.device()), invstd = Tensor::empty({s.c}, x.device());
  AX_DISPATCH(x.device(),
              cpu::batchnorm_forward_train(s.n, s.c, s.spatial, momentum, eps, x.data(), gamma.data(), beta.data(),
                                           running_mean.data(), running_var.data(), y.data(), mean.data(),
                                           invstd.data()),
              cuda::batchnorm_forward_train(s.n, s.c, s.spatial, momentum, eps, x.data(), gamma.data(), beta.data(),
                                            running_mean.data(), running_var.data(), y.data(), mean.data(),
                                            invstd.data(), stream));
  return {y, mean, invstd};
}

Tensor batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, float eps) {
  const char* op = "batchnorm_forward_eval";
  const BatchnormShape s = batchnorm_shape(op, x);
  check_all_shaped(op, x, {s.c}, {{"gamma", &gamma}, {"beta", &beta}});
  check_all_shaped(op, x, {s.c}, {{"running_mean", &running_mean}, {"running_var", &running_var}});
  check_eps(op, eps);
  Tensor y = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(),
              cpu::batchnorm_forward_eval(s.n, s.c, s.spatial, eps, x.data(), gamma.data(), beta.data(),
                                          running_mean.data(), running_var.data(), y.data()),
              cuda::batchnorm_forward_eval(s.n, s.c, s.spatial, eps, x.data(), gamma.data(), beta.data(),
                                           running_mean.data(), running_var.data(), y.data(), stream));
  return y;
}

std::tuple<Tensor, Tensor, Tensor> batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                                      const Tensor& saved_mean, const Tensor& saved_invstd) {
  const char* op = "batchnorm_backward";
  const BatchnormShape s = batchnorm_shape(op, x);
  check_all_shaped(op, x, x.shape(), {{"dy", &dy}});
  check_all_shaped(op, x, {s.c}, {{"gamma", &gamma}, {"saved_mean", &saved_mean}, {"saved_invstd", &saved_invstd}});
  check_batch_statistics(op, s);
  Tensor dx = Tensor::empty(x.shape(), x.device());
  Tensor dgamma = Tensor::empty({s.c}, x.device()), dbeta = Tensor::empty({s.c}, x.device());
  AX_DISPATCH(x.device(),
              cpu::batchnorm_backward(s.n, s.c, s.spatial, x.data(), dy.data(), gamma.data(), saved_mean.data(),
                                      saved_invstd.data(), dx.data(), dgamma.data(), dbeta.data()),
              cuda::batchnorm_backward(s.n, s.c, s.spatial, x.data(), dy.data(), gamma.data(), saved_mean.data(),
                                       saved_invstd.data(), dx.data(), dgamma.data(), dbeta.data(), stream));
  return {dx, dgamma, dbeta};
}

// ---- maxpool -------------------------------------------------------------------------------------------------
Tensor maxpool_forward(const Tensor& x, int kernel, int stride, int start, int h_out, int w_out) {
  const char* op = "maxpool_forward";
  check_tensor(op, "x", x, 4);
  PoolShape s = pool_shape(op, x.shape(), "x", kernel, stride, start, h_out, w_out);
  Tensor y = Tensor::empty({s.n, s.c, s.h_out, s.w_out}, x.device());
  AX_DISPATCH(x.device(), cpu::maxpool_forward(s, x.data(), y.data()),
              cuda::maxpool_forward(s, x.data(), y.data(), stream));
  return y;
}

Tensor maxpool_backward(const Tensor& x, const Tensor& y, const Tensor& dy, int kernel, int stride, int start,
                        int h_out, int w_out) {
  const char* op = "maxpool_backward";
  check_tensor(op, "x", x, 4);
  PoolShape s = pool_shape(op, x.shape(), "x", kernel, stride, start, h_out, w_out);
  check_pooled(op, "y", y, s, x);
  check_pooled(op, "dy", dy, s, x);
  Tensor dx = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(), cpu::maxpool_backward(s, x.data(), y.data(), dy.data(), dx.data()),
              cuda::maxpool_backward(s, x.data(), y.data(), dy.data(), dx.data(), stream));
  return dx;
}

// ---- avgpool -------------------------------------------------------------------------------------------------
Tensor avgpool_forward(const Tensor& x, int kernel, int stride, int start, int h_out, int w_out) {
  const char* op = "avgpool_forward";
  check_tensor(op, "x", x, 4);
  PoolShape s = pool_shape(op, x.shape(), "x", kernel, stride, start, h_out, w_out);
  Tensor y = Tensor::empty({s.n, s.c, s.h_out, s.w_out}, x.device());
  AX_DISPATCH(x.device(), cpu::avgpool_forward(s, x.data(), y.data()),
              cuda::avgpool_forward(s, x.data(), y.data(), stream));
  return y;
}

Tensor avgpool_backward(const Tensor& dy, int h, int w, int kernel, int stride, int start, int h_out, int w_out) {
  const char* op = "avgpool_backward";
  check_tensor(op, "dy", dy, 4);
  AX_CHECK(h >= 1 && w >= 1, op, ": the input size h x w must be positive, got ", h, "x", w);
  const PoolShape s =
      pool_shape(op, Shape{dy.size(0), dy.size(1), h, w}, "h, w", kernel, stride, start, h_out, w_out);
  check_shape(op, "dy", dy, Shape{s.n, s.c, s.h_out, s.w_out});
  Tensor dx = Tensor::empty({s.n, s.c, s.h_in, s.w_in}, dy.device());
  AX_DISPATCH(dy.device(), cpu::avgpool_backward(s, dy.data(), dx.data()),
              cuda::avgpool_backward(s, dy.data(), dx.data(), stream));
  return dx;
}

// ---- global_avgpool ------------------------------------------------------------------------------------------
Tensor global_avgpool_forward(const Tensor& x) {
  const char* op = "global_avgpool_forward";
  check_tensor(op, "x", x, 4);
  const int n = to_int(op, "batch", x.size(0)), c = to_int(op, "channels", x.size(1));
  AX_CHECK(x.size(2) >= 1 && x.size(3) >= 1, op, ": expected a non-empty h x w map to average, got x ",
           shape_str(x.shape()));
  Tensor y = Tensor::empty({n, c}, x.device());
  AX_DISPATCH(x.device(), cpu::global_avgpool_forward(n, c, spatial_of(x), x.data(), y.data()),
              cuda::global_avgpool_forward(n, c, spatial_of(x), x.data(), y.data(), stream));
  return y;
}

Tensor global_avgpool_backward(const Tensor& dy, int h, int w) {
  const char* op = "global_avgpool_backward";
  check_tensor(op, "dy", dy, 2);
  AX_CHECK(h >= 1 && w >= 1, op, ": the input size h x w must be positive, got ", h, "x", w);
  const int n = to_int(op, "batch", dy.size(0)), c = to_int(op, "channels", dy.size(1));
  Tensor dx = Tensor::empty({n, c, h, w}, dy.device());
  const int64_t spatial = static_cast<int64_t>(h) * w;
  AX_DISPATCH(dy.device(), cpu::global_avgpool_backward(n, c, spatial, dy.data(), dx.data()),
              cuda::global_avgpool_backward(n, c, spatial, dy.data(), dx.data(), stream));
  return dx;
}

// ---- dropout -------------------------------------------------------------------------------------------------
// The stream positions [first, first + count) must not wrap around 2^64 (the mask would silently restart).
static void check_dropout_first(const char* op, uint64_t first, int64_t count) {
  AX_CHECK(first <= UINT64_MAX - static_cast<uint64_t>(count), op, ": first + numel must be < 2^64, got first=",
           first, " and ", count, " elements");
}

Tensor dropout_forward(const Tensor& x, float p, uint64_t seed, uint64_t offset, bool training, uint64_t first) {
  const char* op = "dropout_forward";
  check_tensor(op, "x", x, -1);
  AX_CHECK(p >= 0.0f && p < 1.0f, op, ": p must be in [0, 1), got ", p);
  check_dropout_first(op, first, x.numel());
  if (!training || p == 0.0f) return x.clone();
  Tensor y = Tensor::empty(x.shape(), x.device());
  AX_DISPATCH(x.device(), cpu::dropout_forward(x.numel(), p, seed, offset, first, x.data(), y.data()),
              cuda::dropout_forward(x.numel(), p, seed, offset, first, x.data(), y.data(), stream));
  return y;
}

Tensor dropout_backward(const Tensor& dy, float p, uint64_t seed, uint64_t offset, bool training, uint64_t first) {
  const char* op = "dropout_backward";
  check_tensor(op, "dy", dy, -1);
  AX_CHECK(p >= 0.0f && p < 1.0f, op, ": p must be in [0, 1), got ", p);
  check_dropout_first(op, first, dy.numel());
  if (!training || p == 0.0f) return dy.clone();
  Tensor dx = Tensor::empty(dy.shape(), dy.device());
  AX_DISPATCH(dy.device(), cpu::dropout_backward(dy.numel(), p, seed, offset, first, dy.data(), dx.data()),
              cuda::dropout_backward(dy.numel(), p, seed, offset, first, dy.data(), dx.data(), stream));
  return dx;
}

// ---- softmax cross-entropy -----------------------------------------------------------------------------------
std::pair<float, Tensor> softmax_xent_forward(const Tensor& logits, const Tensor& labels) {
  const char* op = "softmax_xent_forward";
  check_tensor(op, "logits", logits, 2);
  check_device(op, "labels", labels, logits);
  const int n = to_int(op, "batch", logits.size(0)), classes = to_int(op, "classes", logits.size(1));
  AX_CHECK(n >= 1 && classes >= 1, op, ": expected a non-empty (n, classes) logits, got ", shape_str(logits.shape()));
  check_labels(op, labels, n, classes);
  Tensor probs = Tensor::empty(logits.shape(), logits.device());
  Tensor loss = Tensor::empty({1}, logits.device());
  AX_DISPATCH(logits.device(),
              cpu::softmax_xent_forward(n, classes, logits.data(), labels.data<int32_t>(), probs.data(), loss.data()),
              cuda::softmax_xent_forward(n, classes, logits.data(), labels.data<int32_t>(), probs.data(),
                                         loss.data(), stream));
  float host_loss = 0.0f;
  loss.copy_to_host(&host_loss);
  return {host_loss, probs};
}

Tensor softmax_xent_backward(const Tensor& probs, const Tensor& labels) {
  const char* op = "softmax_xent_backward";
  check_tensor(op, "probs", probs, 2);
  check_device(op, "labels", labels, probs);
  const int n = to_int(op, "batch", probs.size(0)), classes = to_int(op, "classes", probs.size(1));
  check_labels(op, labels, n, classes);
  Tensor dlogits = Tensor::empty(probs.shape(), probs.device());
  AX_DISPATCH(probs.device(),
              cpu::softmax_xent_backward(n, classes, probs.data(), labels.data<int32_t>(), dlogits.data()),
              cuda::softmax_xent_backward(n, classes, probs.data(), labels.data<int32_t>(), dlogits.data(), stream));
  return dlogits;
}

std::pair<int64_t, int64_t> topk_correct(const Tensor& scores, const Tensor& labels) {
  const char* op = "topk_correct";
  check_tensor(op, "scores", scores, 2);
  check_device(op, "labels", labels, scores);
  const int n = to_int(op, "batch", scores.size(0)), classes = to_int(op, "classes", scores.size(1));
  check_labels(op, labels, n, classes);
  Tensor correct = Tensor::empty({2}, scores.device(), DType::I32);
  AX_DISPATCH(scores.device(),
              cpu::topk_correct(n, classes, scores.data(), labels.data<int32_t>(), correct.data<int32_t>()),
              cuda::topk_correct(n, classes, scores.data(), labels.data<int32_t>(), correct.data<int32_t>(), stream));
  int32_t host[2] = {0, 0};
  correct.copy_to_host(host);
  return {host[0], host[1]};
}

// ---- prepare_batch -------------------------------------------------------------------------------------------
Tensor prepare_batch(const Tensor& images, const Tensor& mean, const Tensor& crop_y, const Tensor& crop_x,
                     const Tensor& flip, const Tensor& rgb_shift, int crop, float scale) {
  return prepare_batch(images, mean, crop_y, crop_x, flip, rgb_shift, crop, ChannelScale{{scale, scale, scale}});
}

Tensor prepare_batch(const Tensor& images, const Tensor& mean, const Tensor& crop_y, const Tensor& crop_x,
                     const Tensor& flip, const Tensor& rgb_shift, int crop, const ChannelScale& scale) {
  const char* op = "prepare_batch";
  check_tensor(op, "images", images, 4, DType::U8);
  AX_CHECK(images.size(3) == 3, op, ": expected images of shape (n, h, w, 3) (NHWC, RGB), got ",
           shape_str(images.shape()));
  BatchShape s{};
  s.n = to_int(op, "batch", images.size(0));
  s.h_in = to_int(op, "height", images.size(1));
  s.w_in = to_int(op, "width", images.size(2));
  s.crop = crop;
  AX_CHECK(crop >= 1 && crop <= s.h_in && crop <= s.w_in, op, ": crop ", crop, " must be in [1, min(h, w)] for images ",
           shape_str(images.shape()));
  for (float v : scale.c) check_finite(op, "scale", v);
  check_tensor(op, "mean", mean, -1);
  check_device(op, "mean", mean, images);
  s.per_pixel_mean = mean.ndim() == 3;
  if (s.per_pixel_mean) {
    check_shape(op, "mean", mean, {3, s.h_in, s.w_in});
  } else {
    check_shape(op, "mean", mean, {3});
  }
  for (auto [name, t] :
       {std::pair<const char*, const Tensor*>{"crop_y", &crop_y}, {"crop_x", &crop_x}, {"flip", &flip}}) {
    check_tensor(op, name, *t, 1, DType::I32);
    check_shape(op, name, *t, {s.n});
    check_device(op, name, *t, images);
  }
  check_tensor(op, "rgb_shift", rgb_shift, 2);
  check_shape(op, "rgb_shift", rgb_shift, {s.n, 3});
  check_device(op, "rgb_shift", rgb_shift, images);
  // Crop offsets are read on the host: they are tiny and a bad one would read out of bounds.
  std::vector<int32_t> ys(s.n), xs(s.n);
  crop_y.copy_to_host(ys.data());
  crop_x.copy_to_host(xs.data());
  for (int i = 0; i < s.n; ++i) {
    // In 64 bits: an offset near 2^31 plus the crop overflows int32 and would pass as negative.
    const int64_t y = ys[i], x = xs[i];
    AX_CHECK(y >= 0 && y + crop <= s.h_in && x >= 0 && x + crop <= s.w_in, op, ": crop offset (",
             ys[i], ", ", xs[i], ") of image ", i, " puts a ", crop, "x", crop, " crop outside the ", s.h_in, "x",
             s.w_in, " image");
  }
  Tensor out = Tensor::empty({s.n, 3, crop, crop}, images.device());
  AX_DISPATCH(images.device(),
              cpu::prepare_batch(s, images.data<uint8_t>(), mean.data(), crop_y.data<int32_t>(),
                                 crop_x.data<int32_t>(), flip.data<int32_t>(), rgb_shift.data(), scale, out.data()),
              cuda::prepare_batch(s, images.data<uint8_t>(), mean.data(), crop_y.data<int32_t>(),
                                  crop_x.data<int32_t>(), flip.data<int32_t>(), rgb_shift.data(), scale, out.data(),
                                  stream));
  return out;
}

// ---- plumbing ------------------------------------------------------------------------------------------------
void add_(Tensor& dst, const Tensor& src) {
  const char* op = "add_";
  check_tensor(op, "dst", dst, -1);
  check_tensor(op, "src", src, -1);
  check_shape(op, "src", src, dst.shape());
  check_device(op, "src", src, dst);
  AX_DISPATCH(dst.device(), cpu::add_inplace(dst.numel(), dst.data(), src.data()),
              cuda::add_inplace(dst.numel(), dst.data(), src.data(), stream));
}

void copy_channels(const Tensor& src, int64_t src_c0, Tensor& dst, int64_t dst_c0, int64_t count) {
  const char* op = "copy_channels";
  check_tensor(op, "src", src, -1);
  check_tensor(op, "dst", dst, -1);
  AX_CHECK(src.ndim() >= 2 && dst.ndim() >= 2 && src.size(0) == dst.size(0) && spatial_of(src) == spatial_of(dst),
           op, ": src ", shape_str(src.shape()), " and dst ", shape_str(dst.shape()),
           " must agree in every dim but 1");
  // Written as differences so that huge offsets cannot overflow the sums.
  AX_CHECK(src_c0 >= 0 && count >= 0 && dst_c0 >= 0 && src_c0 <= src.size(1) && count <= src.size(1) - src_c0 &&
               dst_c0 <= dst.size(1) && count <= dst.size(1) - dst_c0,
           op, ": channel range out of bounds");
  const size_t plane = static_cast<size_t>(spatial_of(src)) * sizeof(float);
  const size_t rows = static_cast<size_t>(src.size(0)), row_bytes = plane * count;
  const size_t src_pitch = plane * src.size(1), dst_pitch = plane * dst.size(1);
  const char* s = static_cast<const char*>(src.raw()) + plane * src_c0;
  char* d = static_cast<char*>(dst.raw()) + plane * dst_c0;
  if (rows == 0 || row_bytes == 0) return;
  if (src.device().is_cpu() && dst.device().is_cpu()) {
    for (size_t r = 0; r < rows; ++r) std::memcpy(d + r * dst_pitch, s + r * src_pitch, row_bytes);
    return;
  }
#ifdef ALEXNET_WITH_CUDA
  if (src.device().is_cpu() || dst.device().is_cpu()) {
    // Host <-> device channel slices are not on any hot path: stage through a contiguous tensor.
    Tensor staged = Tensor::empty({src.size(0), count, spatial_of(src)}, src.device());
    Tensor src_flat = src.view({src.size(0), src.size(1), spatial_of(src)});
    copy_channels(src_flat, src_c0, staged, 0, count);
    Tensor moved = staged.to(dst.device());
    Tensor dst_flat = dst.view({dst.size(0), dst.size(1), spatial_of(dst)});
    copy_channels(moved, 0, dst_flat, dst_c0, count);
    return;
  }
  cuda::copy_2d(dst.device().index, d, dst_pitch, src.device().index, s, src_pitch, row_bytes, rows);
#endif
}

}  // namespace alexnet::ops
