// CPU kernels (C++17 + OpenMP), one file per layer: conv2d.cpp (with conv2d_winograd.cpp), local.cpp, linear.cpp,
// bias_backward.cpp, activation.cpp, lrn.cpp, spatial_lrn.cpp, batchnorm.cpp, maxpool.cpp, avgpool.cpp,
// global_avgpool.cpp, dropout.cpp, softmax_xent.cpp, sgd.cpp, adam.cpp, prepare_batch.cpp, elementwise.cpp; gemm.h is
// the blocked matrix product under conv2d and linear. Raw pointers to contiguous row-major memory; shapes were checked
// by the op layer (ops.cpp) before any of these run. Outputs are overwritten, never accumulated into, unless stated.
#pragma once

#include <cstdint>

#include "adam.h"
#include "shapes.h"

namespace alexnet::cpu {

// conv2d.cpp (the Winograd layers: conv2d_winograd.cpp). bias may be null. y = act(conv(x, w) + bias).
void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y);
void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx);
void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw);
// bias_backward.cpp: db[c] = sum over n and the spatial positions of dy[n, c, :]; dy is (n, c, spatial). Used by
// conv2d and linear.
void bias_backward(int n, int c, int64_t spatial, const float* dy, float* db);

// local.cpp: the locally connected layer (shapes.h: ConvShape with local's layouts). bias may be null.
// Backward writes dx, dw and db (db[o][oy][ox] = sum over images of dy[img][o][oy][ox]).
void local_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y);
void local_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db);

// linear.cpp: x (n, in), w (out, in), y (n, out) = act(x w^T + bias); bias may be null.
void linear_forward(int n, int in, int out, const float* x, const float* w, const float* bias, Activation act, float* y);
void linear_backward_input(int n, int in, int out, const float* dy, const float* w, float* dx);    // dx = dy w
void linear_backward_weight(int n, int in, int out, const float* x, const float* dy, float* dw);  // dw = dy^T x

// activation.cpp. Backward takes the forward's output y: relu' = (y > 0), tanh' = 1 - y^2.
void activation_forward(Activation act, int64_t count, const float* x, float* y);
void activation_backward(Activation act, int64_t count, const float* y, const float* dy, float* dx);

// lrn.cpp: x, y, scale are (n, c, spatial). Forward writes y and scale (the base k + alpha/size * sum a^2).
void lrn_forward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale);
void lrn_backward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y,
                  const float* scale, const float* dy, float* dx);

// batchnorm.cpp (maths in batchnorm.h): x, y, dx, dy are (n, c, spatial); per-channel arrays are (c). The training
// forward writes y, saved_mean, saved_invstd and updates running_mean/running_var in place; n * spatial >= 2.
void batchnorm_forward_train(int n, int c, int64_t spatial, float momentum, float eps, const float* x,
                             const float* gamma, const float* beta, float* running_mean, float* running_var, float* y,
                             float* saved_mean, float* saved_invstd);
void batchnorm_forward_eval(int n, int c, int64_t spatial, float eps, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var, float* y);
void batchnorm_backward(int n, int c, int64_t spatial, const float* x, const float* dy, const float* gamma,
                        const float* saved_mean, const float* saved_invstd, float* dx, float* dgamma, float* dbeta);

// spatial_lrn.cpp: cuda-convnet's `rnorm` (response normalization within each map). x, y, denom are `planes`
// maps of h x w:
//   denom = k + (alpha / size^2) * sum of x^2 over rows [y - size/2, y - size/2 + size) and the same columns,
//           clipped to the map (the divisor stays size^2 at the edges);   y = x * denom^(-beta)
// Forward writes y and denom; backward takes them (maths in spatial_lrn.cpp).
void spatial_lrn_forward(int64_t planes, int h, int w, const LrnParams& p, const float* x, float* y, float* denom);
void spatial_lrn_backward(int64_t planes, int h, int w, const LrnParams& p, const float* x, const float* y,
                          const float* denom, const float* dy, float* dx);

// maxpool.cpp (geometry: shapes.h, pool_geometry.h). Backward routes each output gradient to its window's maximum;
// ties go to the first maximum in scan order (row by row, left to right), so the gradient is deterministic.
void maxpool_forward(const PoolShape& s, const float* x, float* y);
void maxpool_backward(const PoolShape& s, const float* x, const float* y, const float* dy, float* dx);

// avgpool.cpp: y = the mean of each clipped window; dx = the sum, over the windows holding an element, of that
// window's dy / its clipped size.
void avgpool_forward(const PoolShape& s, const float* x, float* y);
void avgpool_backward(const PoolShape& s, const float* dy, float* dx);

// global_avgpool.cpp: x (n, c, spatial) -> y (n, c), the mean of each plane; backward spreads dy / spatial over it.
void global_avgpool_forward(int n, int c, int64_t spatial, const float* x, float* y);
void global_avgpool_backward(int n, int c, int64_t spatial, const float* dy, float* dx);

// dropout.cpp (inverted dropout, philox.h): element i is kept when uniform(seed, offset, i) >= p, and kept
// elements are scaled by 1/(1-p). Backward regenerates the same mask from (seed, offset). Element i uses stream
// position first + i (first > 0: this tensor is a slice, starting at element `first`, of a larger one).
void dropout_forward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* x,
                     float* y);
void dropout_backward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* dy,
                      float* dx);

// softmax_xent.cpp: logits (n, classes), labels in [0, classes). Forward writes probs and the mean loss.
void softmax_xent_forward(int n, int classes, const float* logits, const int32_t* labels, float* probs, float* loss);
// dlogits = (probs - onehot(labels)) / n
void softmax_xent_backward(int n, int classes, const float* probs, const int32_t* labels, float* dlogits);
// correct[0] = top-1 count, correct[1] = top-5 count. A sample is top-k correct when its label's score is a number
// and fewer than k other classes score at least as high (ties and NaN scores count against the label).
void topk_correct(int n, int classes, const float* scores, const int32_t* labels, int32_t* correct);

// sgd.cpp: the paper's update (Section 5): v = momentum*v - weight_decay*lr*w - lr*dw; w = w + v.
void sgd_update(int64_t count, float lr, float momentum, float weight_decay, float* w, float* v, const float* dw);

// adam.cpp: Adam / AdamW (adam.h), in place on w, m, v with the step's per-tensor coefficients.
void adam_update(int64_t count, const adam::StepCoefficients& k, float* w, float* m, float* v, const float* dw);

// prepare_batch.cpp: out[i, c, y, x] = (img[i, sy, sx, c] - mean[c(, sy, sx)] + rgb_shift[i, c]) * scale[c] with
// sy = crop_y[i] + y, sx = crop_x[i] + (flip[i] ? crop - 1 - x : x).
void prepare_batch(const BatchShape& s, const uint8_t* images, const float* mean, const int32_t* crop_y,
                   const int32_t* crop_x, const int32_t* flip, const float* rgb_shift, const ChannelScale& scale, float* out);

// elementwise.cpp
void add_inplace(int64_t count, float* dst, const float* src);  // dst += src

}  // namespace alexnet::cpu
