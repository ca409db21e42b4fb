// CUDA kernels, one file per layer: conv2d.cu, local.cu, linear.cu, activation.cu, lrn.cu, spatial_lrn.cu,
// batchnorm.cu, maxpool.cu, avgpool.cu, global_avgpool.cu, dropout.cu, softmax_xent.cu, sgd.cu, adam.cu,
// prepare_batch.cu, elementwise.cu; gemm.cuh is the tiled matrix product under conv2d and linear. Same contracts as
// cpu/kernels.h (read it for the maths), on device pointers, launched on `stream` (asynchronous). Every launch is
// checked (AX_CUDA_CHECK_LAUNCH in cuda/check.cuh). `loss` and `correct` are device pointers too: the op layer copies
// them back.
#pragma once

#include <cstdint>

#include "adam.h"
#include "cuda/runtime.h"
#include "shapes.h"

namespace alexnet::cuda {

// conv2d.cu
void conv2d_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y,
                    cudaStream_t stream);
void conv2d_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx, cudaStream_t stream);
void conv2d_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw, cudaStream_t stream);
void bias_backward(int n, int c, int64_t spatial, const float* dy, float* db, cudaStream_t stream);

// local.cu (the locally connected layer; cpu/kernels.h)
void local_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act, float* y,
                   cudaStream_t stream);
void local_backward(const ConvShape& s, const float* x, const float* w, const float* dy, float* dx, float* dw,
                    float* db, cudaStream_t stream);

// linear.cu
void linear_forward(int n, int in, int out, const float* x, const float* w, const float* bias, Activation act,
                    float* y, cudaStream_t stream);
void linear_backward_input(int n, int in, int out, const float* dy, const float* w, float* dx, cudaStream_t stream);
void linear_backward_weight(int n, int in, int out, const float* x, const float* dy, float* dw, cudaStream_t stream);

// activation.cu
void activation_forward(Activation act, int64_t count, const float* x, float* y, cudaStream_t stream);
void activation_backward(Activation act, int64_t count, const float* y, const float* dy, float* dx,
                         cudaStream_t stream);

// lrn.cu
void lrn_forward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, float* y, float* scale,
                 cudaStream_t stream);
void lrn_backward(int n, int c, int64_t spatial, const LrnParams& p, const float* x, const float* y,
                  const float* scale, const float* dy, float* dx, cudaStream_t stream);

// batchnorm.cu
void batchnorm_forward_train(int n, int c, int64_t spatial, float momentum, float eps, const float* x,
                             const float* gamma, const float* beta, float* running_mean, float* running_var, float* y,
                             float* saved_mean, float* saved_invstd, cudaStream_t stream);
void batchnorm_forward_eval(int n, int c, int64_t spatial, float eps, const float* x, const float* gamma,
                            const float* beta, const float* running_mean, const float* running_var, float* y,
                            cudaStream_t stream);
void batchnorm_backward(int n, int c, int64_t spatial, const float* x, const float* dy, const float* gamma,
                        const float* saved_mean, const float* saved_invstd, float* dx, float* dgamma, float* dbeta,
                        cudaStream_t stream);

// spatial_lrn.cu
void spatial_lrn_forward(int64_t planes, int h, int w, const LrnParams& p, const float* x, float* y, float* denom,
                         cudaStream_t stream);
void spatial_lrn_backward(int64_t planes, int h, int w, const LrnParams& p, const float* x, const float* y,
                          const float* denom, const float* dy, float* dx, cudaStream_t stream);

// maxpool.cu
void maxpool_forward(const PoolShape& s, const float* x, float* y, cudaStream_t stream);
void maxpool_backward(const PoolShape& s, const float* x, const float* y, const float* dy, float* dx,
                      cudaStream_t stream);

// avgpool.cu
void avgpool_forward(const PoolShape& s, const float* x, float* y, cudaStream_t stream);
void avgpool_backward(const PoolShape& s, const float* dy, float* dx, cudaStream_t stream);

// global_avgpool.cu
void global_avgpool_forward(int n, int c, int64_t spatial, const float* x, float* y, cudaStream_t stream);
void global_avgpool_backward(int n, int c, int64_t spatial, const float* dy, float* dx, cudaStream_t stream);

// dropout.cu (philox.h: the same stream as the CPU, bit for bit; element i uses stream position first + i)
void dropout_forward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* x,
                     float* y, cudaStream_t stream);
void dropout_backward(int64_t count, float p, uint64_t seed, uint64_t offset, uint64_t first, const float* dy,
                      float* dx, cudaStream_t stream);

// softmax_xent.cu
void softmax_xent_forward(int n, int classes, const float* logits, const int32_t* labels, float* probs, float* loss,
                          cudaStream_t stream);
void softmax_xent_backward(int n, int classes, const float* probs, const int32_t* labels, float* dlogits,
                           cudaStream_t stream);
void topk_correct(int n, int classes, const float* scores, const int32_t* labels, int32_t* correct,
                  cudaStream_t stream);

// sgd.cu
void sgd_update(int64_t count, float lr, float momentum, float weight_decay, float* w, float* v, const float* dw,
                cudaStream_t stream);

// adam.cu
void adam_update(int64_t count, const adam::StepCoefficients& k, float* w, float* m, float* v, const float* dw,
                 cudaStream_t stream);

// prepare_batch.cu
void prepare_batch(const BatchShape& s, const uint8_t* images, const float* mean, const int32_t* crop_y,
                   const int32_t* crop_x, const int32_t* flip, const float* rgb_shift, ChannelScale scale, float* out,
                   cudaStream_t stream);

// elementwise.cu
void add_inplace(int64_t count, float* dst, const float* src, cudaStream_t stream);

}  // namespace alexnet::cuda
