// The op layer: every AlexNet op on Tensors, CPU or CUDA. This is the boundary where shapes, dtypes and devices
// are checked once (ops.cpp); a bad argument throws ValueError/TypeError naming the op and what was expected.
// Outputs are freshly allocated (the CUDA caching allocator makes that cheap). CUDA ops run asynchronously on the
// current stream of the tensors' device (cuda/runtime.h); ops returning host scalars synchronize that stream.
#pragma once

#include <cstdint>
#include <tuple>
#include <utility>

#include "shapes.h"
#include "tensor.h"

namespace alexnet::ops {

Activation parse_activation(const std::string& name);  // "none", "relu", "tanh"
const char* activation_name(Activation act);            // its inverse

// conv2d (conv2d.cpp / conv2d.cu). x (n, c_in, h, w), w (c_out, c_in/groups, kh, kw), bias (c_out) or undefined.
Tensor conv2d_forward(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad, int groups,
                      Activation act = Activation::None);
// dx for an input of spatial size (in_h, in_w) (stride need not divide it evenly).
Tensor conv2d_backward_input(const Tensor& dy, const Tensor& w, int in_h, int in_w, int stride, int pad, int groups);
Tensor conv2d_backward_weight(const Tensor& x, const Tensor& dy, int kh, int kw, int stride, int pad, int groups);
// Sum of dy over every dim but 1: the bias gradient of conv2d (n, c, h, w) and linear (n, c).
Tensor bias_backward(const Tensor& dy);

// local (local.cpp / local.cu, boundary in ops_local.cpp): the locally connected layer, cuda-convnet's `local`.
// x (n, c_in, h, w), w (h_out, w_out, c_in/groups, kh, kw, c_out), bias (c_out, h_out, w_out) or undefined; the
// output size comes from w and must equal 1 + ceil((h + 2*pad - kh) / stride) (shapes.h). Backward returns
// (dx, dw, db).
Tensor local_forward(const Tensor& x, const Tensor& w, const Tensor& bias, int stride, int pad, int groups,
                     Activation act = Activation::None);
std::tuple<Tensor, Tensor, Tensor> local_backward(const Tensor& x, const Tensor& w, const Tensor& dy, int stride,
                                                  int pad, int groups);
// cuda-convnet's output size rule (layer.py LocalLayerParser: modulesX), for a padded span >= kernel.
inline int64_t local_output_size(int64_t in, int kernel, int stride, int pad) {
  return 1 + (in + 2 * int64_t{pad} - kernel + stride - 1) / stride;
}

// linear (linear.cpp / linear.cu). x (n, in), w (out, in), bias (out) or undefined.
Tensor linear_forward(const Tensor& x, const Tensor& w, const Tensor& bias, Activation act = Activation::None);
Tensor linear_backward_input(const Tensor& dy, const Tensor& w);
Tensor linear_backward_weight(const Tensor& x, const Tensor& dy);

// activation (activation.cpp / activation.cu): ReLU (paper Section 3.1) or tanh. Backward takes the output y.
Tensor activation_forward(const Tensor& x, Activation act);
Tensor activation_backward(const Tensor& y, const Tensor& dy, Activation act);

// lrn (lrn.cpp / lrn.cu), paper Section 3.3. Returns (y, scale); backward needs x, y and scale.
std::pair<Tensor, Tensor> lrn_forward(const Tensor& x, const LrnParams& p);
Tensor lrn_backward(const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, const LrnParams& p);

// spatial_lrn (spatial_lrn.cpp / spatial_lrn.cu): cuda-convnet's `rnorm`, response normalization over a
// size x size window within each map (cpu/kernels.h). x (n, c, h, w). Returns (y, denom); backward needs x, y, denom.
std::pair<Tensor, Tensor> spatial_lrn_forward(const Tensor& x, const LrnParams& p);
Tensor spatial_lrn_backward(const Tensor& x, const Tensor& y, const Tensor& denom, const Tensor& dy,
                            const LrnParams& p);

// Pooling geometry (shapes.h: PoolShape): window o starts at start + o*stride and is clipped to the input;
// h_out = w_out = 0 means as many whole windows as fit from start ((h - start - kernel) / stride + 1); explicit
// counts may hang over the far edge (cuda-convnet's outputsX). The defaults are the paper's pooling.
// maxpool (maxpool.cpp / maxpool.cu), paper Section 3.4: overlapping when stride < kernel.
Tensor maxpool_forward(const Tensor& x, int kernel, int stride, int start = 0, int h_out = 0, int w_out = 0);
Tensor maxpool_backward(const Tensor& x, const Tensor& y, const Tensor& dy, int kernel, int stride, int start = 0,
                        int h_out = 0, int w_out = 0);
// avgpool (avgpool.cpp / avgpool.cu): cuda-convnet's pool=avg, the mean of each clipped window. Backward needs only
// dy and the input's size h x w.
Tensor avgpool_forward(const Tensor& x, int kernel, int stride, int start = 0, int h_out = 0, int w_out = 0);
Tensor avgpool_backward(const Tensor& dy, int h, int w, int kernel, int stride, int start = 0, int h_out = 0,
                        int w_out = 0);

// batchnorm (batchnorm.cpp / batchnorm.cu), Ioffe & Szegedy 2015. x (n, c) (after a linear layer: per feature) or
// (n, c, h, w) (after a conv: per channel over n, h, w); gamma, beta, running_mean, running_var (c) float32.
// Training mode: normalizes with the batch mean and biased batch variance, and updates the running statistics in
// place like PyTorch: running = (1 - momentum) * running + momentum * batch_stat, using the UNBIASED variance for
// running_var. Returns (y, saved_mean, saved_invstd) with saved_invstd = 1 / sqrt(var_biased + eps).
std::tuple<Tensor, Tensor, Tensor> batchnorm_forward_train(const Tensor& x, const Tensor& gamma, const Tensor& beta,
                                                           Tensor& running_mean, Tensor& running_var,
                                                           float momentum, float eps);
// Inference mode: y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta.
Tensor batchnorm_forward_eval(const Tensor& x, const Tensor& gamma, const Tensor& beta, const Tensor& running_mean,
                              const Tensor& running_var, float eps);
// Backward of the training-mode forward: returns (dx, dgamma, dbeta).
std::tuple<Tensor, Tensor, Tensor> batchnorm_backward(const Tensor& x, const Tensor& dy, const Tensor& gamma,
                                                      const Tensor& saved_mean, const Tensor& saved_invstd);

// global_avgpool (global_avgpool.cpp / global_avgpool.cu): x (n, c, h, w) -> (n, c), the mean over h, w.
Tensor global_avgpool_forward(const Tensor& x);
Tensor global_avgpool_backward(const Tensor& dy, int h, int w);  // dy (n, c) -> dx (n, c, h, w)

// dropout (dropout.cpp / dropout.cu), paper Section 4.2, inverted. Identity when training is false. `first`: the
// position of x's first element in the mask's stream (x is that slice of a larger tensor: data-parallel ranks each
// hold a slice of the global batch and must draw that slice of its mask).
Tensor dropout_forward(const Tensor& x, float p, uint64_t seed, uint64_t offset, bool training = true,
                       uint64_t first = 0);
Tensor dropout_backward(const Tensor& dy, float p, uint64_t seed, uint64_t offset, bool training = true,
                        uint64_t first = 0);

// softmax_xent (softmax_xent.cpp / softmax_xent.cu). logits (n, classes) f32, labels (n) i32 on the same device.
// Returns (mean loss, probs).
std::pair<float, Tensor> softmax_xent_forward(const Tensor& logits, const Tensor& labels);
Tensor softmax_xent_backward(const Tensor& probs, const Tensor& labels);
// (top-1 correct count, top-5 correct count); see cpu/kernels.h for ties.
std::pair<int64_t, int64_t> topk_correct(const Tensor& scores, const Tensor& labels);

// sgd (sgd.cpp / sgd.cu), paper Section 5, in place on w and v.
void sgd_update(Tensor& w, Tensor& v, const Tensor& dw, float lr, float momentum, float weight_decay);

// adam (adam.cpp / adam.cu), Kingma & Ba 2015, Algorithm 1, in place on w, m, v; step is 1-based (bias correction
// 1 - beta^step). decoupled = false: Adam with L2 (g = dw + weight_decay * w); decoupled = true: AdamW
// (Loshchilov & Hutter 2019): w -= lr * weight_decay * w, separate from the adaptive step. Maths in adam.h.
void adam_update(Tensor& w, Tensor& m, Tensor& v, const Tensor& dw, float lr, float beta1, float beta2, float eps,
                 float weight_decay, bool decoupled, int64_t step);

// prepare_batch (prepare_batch.cpp / prepare_batch.cu): uint8 (n, h, w, 3) -> float (n, 3, crop, crop) with mean
// subtraction, crop, flip and a per-image RGB shift (the paper's PCA colour noise, Section 4.1). mean f32 (3, h, w)
// or (3,); crop_y, crop_x, flip i32 (n); rgb_shift f32 (n, 3). All on one device. scale: one per channel (R, G, B),
// or one for all three.
Tensor prepare_batch(const Tensor& images, const Tensor& mean, const Tensor& crop_y, const Tensor& crop_x,
                     const Tensor& flip, const Tensor& rgb_shift, int crop, const ChannelScale& scale);
Tensor prepare_batch(const Tensor& images, const Tensor& mean, const Tensor& crop_y, const Tensor& crop_x,
                     const Tensor& flip, const Tensor& rgb_shift, int crop, float scale);

// Plumbing for the two-tower network (elementwise.cpp / elementwise.cu and copies).
void add_(Tensor& dst, const Tensor& src);  // dst += src, same shape and device
// Copies channels [src_c0, src_c0 + count) of src into channels [dst_c0, dst_c0 + count) of dst, where both are
// (n, c, ...) with equal n and trailing dims. Devices may differ (peer or host-staged copy).
void copy_channels(const Tensor& src, int64_t src_c0, Tensor& dst, int64_t dst_c0, int64_t count);

}  // namespace alexnet::ops
