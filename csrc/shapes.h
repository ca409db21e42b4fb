// Plain shape/parameter structs shared by the CPU and CUDA kernels. All tensors are dense NCHW float32
// (or (N, F) for fully connected layers). The op layer (ops.cpp) fills these once, after checking shapes.
#pragma once

#include <cstdint>

namespace alexnet {

// Activation fused into conv/linear epilogues and used by the standalone activation op.
enum class Activation : int { None = 0, ReLU = 1, Tanh = 2 };

// conv2d: x (n, c_in, h_in, w_in), w (c_out, c_in/groups, kh, kw), y (n, c_out, h_out, w_out),
// h_out = (h_in + 2*pad - kh) / stride + 1. Group g connects input channels [g*c_in/groups, (g+1)*c_in/groups)
// to output channels [g*c_out/groups, (g+1)*c_out/groups).
struct ConvShape {
  int n, c_in, h_in, w_in;
  int c_out, kh, kw;
  int stride, pad, groups;
  int h_out, w_out;
};

// local (locally connected; cuda-convnet's `local` layer, layer.py LocalUnsharedLayerParser) reuses ConvShape:
// x (n, c_in, h_in, w_in), w (h_out, w_out, c_in/groups, kh, kw, c_out): output position (oy, ox) has its own
// filters w[oy][ox], a (c_in/groups * kh * kw) x c_out matrix (cuda-convnet's per-module weight block, same
// order), bias (c_out, h_out, w_out): one per output element (cuda-convnet's local biases are unshared),
// y (n, c_out, h_out, w_out). Output channel o belongs to group o / (c_out/groups) and sees that group's input
// channels. h_out = 1 + ceil((h_in + 2*pad - kh) / stride): cuda-convnet's modulesX, so when stride does not
// divide the span the last window runs past the padded edge and reads zeros there (one that would start past it
// is refused).

// Local response normalization across channels (paper Section 3.3):
//   scale_i = k + (alpha/size) * sum_{j in window(i)} a_j^2,  b_i = a_i * scale_i^(-beta)
// window(i) = channels [i - size/2, i + (size-1)/2] clipped to [0, c): PyTorch's convention, equal to
// cuda-convnet's and Caffe's for odd sizes.
struct LrnParams {
  int size = 5;
  float alpha = 1e-4f;
  float beta = 0.75f;
  float k = 2.0f;
};

// Max and average pooling (maxpool.cpp/.cu, avgpool.cpp/.cu) with cuda-convnet's geometry
// (src/cudaconv2/conv_util.cu, kLocalPool): window (oy, ox) covers rows [start + oy*stride, start + oy*stride +
// kernel) and the same columns, CLIPPED to the input, so windows may hang over an edge (pool_geometry.h); every
// window holds at least one input element (ops.cpp checks). By default (start 0, h_out = (h_in - kernel) / stride
// + 1) no window hangs over and trailing rows/columns may be in no window: the paper's pooling.
struct PoolShape {
  int n, c, h_in, w_in;
  int kernel, stride;
  int h_out, w_out;
  int start;  // offset of the first window (cuda-convnet's `start`, <= 0 hangs over the top/left edge)
};


// prepare_batch: uint8 images (n, h_in, w_in, 3) NHWC -> float (n, 3, crop, crop) NCHW.
struct BatchShape {
  int n, h_in, w_in, crop;
  bool per_pixel_mean;  // mean is (3, h_in, w_in) when true, (3,) when false
};

// prepare_batch's scale per channel (R, G, B): one value three times for the paper's single scale, or 1 / (255 *
// std) per channel for torchvision's preprocessing (ImageNet std (0.229, 0.224, 0.225), torchvision's
// transforms.Normalize). Passed by value, so a CUDA kernel takes it as an argument.
struct ChannelScale {
  float c[3];
};

}  // namespace alexnet
