// What the network is, as opposed to how a step runs (network_engine.h, network_step.cpp): the configurations, the
// spatial sizes, and the layer table. Network's constructor creates its parameters from describe_layers(), and
// AlexNet.summary() prints the same table, so the summary's shapes and counts cannot drift from what is built.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "network.h"

namespace alexnet {

inline const char* const kConvNames[kConvLayers] = {"conv1", "conv2", "conv3", "conv4", "conv5"};
inline const char* const kFcNames[kFcLayers] = {"fc6", "fc7", "fc8"};
// Parameter names follow torchvision's AlexNet (features.<i> / classifier.<i> at the positions of its conv and linear
// modules), with the tower made explicit: "features.0.tower1.weight" is conv1's weight on tower 1.
inline const char* const kConvParamNames[kConvLayers] = {"features.0", "features.3", "features.6", "features.8",
                                                         "features.10"};
inline const char* const kFcParamNames[kFcLayers] = {"classifier.1", "classifier.4", "classifier.6"};
// Section 3.5: response normalization follows conv1 and conv2; max pooling follows both of them and conv5.
inline constexpr bool kLrnAfter[kConvLayers] = {true, true, false, false, false};
inline constexpr bool kPoolAfter[kConvLayers] = {true, true, false, false, true};
// conv3 reads every tower's conv2 maps (an exchange point); conv2, conv4 and conv5 read their own tower's maps only
// (conv1 reads the image).
inline constexpr bool kConvSeesAllTowers[kConvLayers] = {false, false, true, false, false};

// One layer of one tower. Shapes are per image: (channels, height, width) for conv/LRN/pooling, (features) for the
// fully connected layers. The activation (ReLU or tanh) is fused into conv1-5, fc6 and fc7 and has no row.
struct LayerSpec {
  std::string name;    // "conv1", "lrn1", "pool1", ..., "fc6", "dropout6", ..., "fc8"
  std::string kind;    // "conv", "lrn", "maxpool", "linear", "dropout"
  std::string detail;  // "11x11 stride 4 pad 0, relu", "size 5", "3x3 stride 2", "p=0.5", ...
  std::string module;  // parameter prefix ("features.0") when the layer has parameters, else ""
  int tower = 0;
  int weight_index = -1;  // 0..7 = conv1..fc8 (also the initialization stream); -1 without parameters
  Shape input, output;
  Shape weight;           // empty without parameters
  int64_t bias = 0;       // bias length
  bool bias_one = false;  // initialized to cfg.bias_init (Section 5) instead of 0
  // Multiply-adds of the weights per image: out_c * out_h * out_w * in_c * k * k for a conv (in_c = the channels the
  // tower's kernels see), out * in for a linear layer. Biases, activations, LRN, pooling and dropout count 0.
  int64_t mult_adds = 0;

  int64_t parameters() const;
};

// Every layer of every tower, layer by layer (tower 0 then tower 1 within a layer), in forward order. Throws
// ValueError (validate_config) when the configuration cannot be built.
std::vector<LayerSpec> describe_layers(const NetworkConfig& cfg);

// fc8's classes split ceil/floor between the towers: tower t's count and the first class it holds.
int fc8_classes(const NetworkConfig& cfg, int tower);
int fc8_class_offset(const NetworkConfig& cfg, int tower);

}  // namespace alexnet
