// conv2d by Winograd's minimal filtering on the CPU (conv2d_winograd.cpp): F(2x2, 3x3) for the 3x3 stride-1 layers
// (conv3, conv4, conv5), F(2x2, 5x5) for the 5x5 ones (conv2), and the forward of strided layers folded into
// stride-1 ones (conv1), when they have enough channels for the transforms to pay. conv2d.cpp calls these where they
// apply; the results equal the im2col products' to float32 rounding (errors in winograd_tiles.h).
#pragma once

#include "shapes.h"

namespace alexnet::cpu {

// Forward: stride-1 layers, and strided ones folded to stride 1 (space-to-depth: conv1). Input gradient: stride 1.
bool winograd_forward_applies(const ConvShape& s);
bool winograd_backward_input_applies(const ConvShape& s);
void winograd_forward(const ConvShape& s, const float* x, const float* w, const float* bias, Activation act,
                      float* y);
void winograd_backward_input(const ConvShape& s, const float* dy, const float* w, float* dx);
bool winograd_backward_weight_applies(const ConvShape& s);
void winograd_backward_weight(const ConvShape& s, const float* x, const float* dy, float* dw);

}  // namespace alexnet::cpu
