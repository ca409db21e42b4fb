// What a network is, as opposed to how a step runs (network_engine.h, network_step.cpp): each layer of a NetSpec on
// each tower, with its shapes, its share of the channels and its parameters' shapes. The constructor builds from
// plan_layers(), which checks the spec once (alexnet_cuda/model.py checked the description first, and
// alexnet_cuda/nets/description.py's layer_table gives the same shapes for the summary).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "network.h"

namespace alexnet {

// One layer across the towers. Shapes are per image: (channels, height, width) for maps, (features) once flat.
struct LayerPlan {
  std::vector<Shape> input;   // per tower: what it reads (every tower's maps, in tower order, when sees_all)
  std::vector<Shape> output;  // per tower
  std::vector<int> offset;    // per tower: first channel of its share of the layer's output across the towers
  std::vector<Shape> weight;  // per tower; empty without parameters (batchnorm: its scale gamma)
  std::vector<int64_t> bias;  // per tower; 0 without a bias (batchnorm: its shift beta, and the running statistics)
  int weight_index = -1;      // conv, local, linear: their order among those layers (the initialization stream)
  int dropout_index = -1;     // dropout: its order among the dropout layers (the mask stream)
  bool flat_input = false;    // linear: its input is flattened (channel, y, x) first
  bool input_gradient = true;  // false for the layers that read the images (nothing needs their gradient)
  std::vector<int> consumers;  // the layers that read this one, in forward order
};

// The plan of every layer, in forward order. Throws ValueError "network 'NAME': layer 'LAYER': ..." when the spec
// cannot be built (a kernel that does not fit, channels that do not split, a bad input, a last layer that is not
// the classes, ...).
std::vector<LayerPlan> plan_layers(const NetSpec& spec);

// The dropout layers of a spec (for Network::dropout_offset).
int dropout_layers(const NetSpec& spec);

}  // namespace alexnet
