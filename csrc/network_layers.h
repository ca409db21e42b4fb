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
// Parameter names follow torchvision's AlexNet (features.<i> / classifier.<i> at the positions of its conv and linear
// modules), with the tower made explicit: "features.0.tower1.weight" is conv1's weight on tower 1.
inline const char* const kConvParamNames[kConvLayers] = {"features.0", "features.3", "features.6", "features.8",
                                                         "features.10"};
// A conv's BatchNorm takes the position of the ReLU that follows the conv in torchvision's AlexNet (features.1 after
// features.0, ...), so the conv names are the same in every variant: "features.1.tower0.running_mean" is conv1's.
inline const char* const kBnParamNames[kConvLayers] = {"features.1", "features.4", "features.7", "features.9",
                                                       "features.11"};
// Section 3.5: response normalization follows conv1 and conv2; max pooling follows both of them and conv5.
inline constexpr bool kLrnAfter[kConvLayers] = {true, true, false, false, false};
inline constexpr bool kPoolAfter[kConvLayers] = {true, true, false, false, true};
// conv3 reads every tower's conv2 maps (an exchange point); conv2, conv4 and conv5 read their own tower's maps only
// (conv1 reads the image).
inline constexpr bool kConvSeesAllTowers[kConvLayers] = {false, false, true, false, false};

// Fully connected layer k (0 = the first: fc6 in the paper) of a head with `layers` fc layers: its name "fc<6+k>",
// and its torchvision-style module "classifier.<i>" (Dropout, Linear, ReLU per hidden layer, then the output Linear:
// hidden k at 3k + 1, the output at 3 * hidden). The paper's head gets fc6/fc7/fc8 at classifier.1/.4/.6, as before.
std::string fc_name(int k);
std::string fc_module(int k, int layers);

// One layer of one tower. Shapes are per image: (channels, height, width) for conv/LRN/BN/pooling, (features) for
// the fully connected layers. The activation (ReLU or tanh) is fused into the convs and the hidden fc layers and has
// no row; where BatchNorm directly follows a conv, the activation follows the BN (its detail says so).
struct LayerSpec {
  std::string name;    // "conv1", "bn1", "lrn1", "pool1", ..., "gap", "fc6", "dropout6", ..., "fc8"
  std::string kind;    // "conv", "batchnorm", "lrn", "maxpool", "global_avgpool", "linear", "dropout"
  std::string detail;  // "11x11 stride 4 pad 0, relu", "size 5", "3x3 stride 2", "p=0.5", ...
  std::string module;  // parameter prefix ("features.0") when the layer has parameters, else ""
  int tower = 0;
  // conv: 0..4; linear: 5 + k (also the initialization stream); batchnorm: the conv it normalizes (0..4); else -1
  int weight_index = -1;
  Shape input, output;
  Shape weight;           // empty without parameters; BatchNorm: its scale gamma (channels), named "weight"
  int64_t bias = 0;       // bias length (BatchNorm: its shift beta); 0 without a bias
  int64_t buffers = 0;    // BatchNorm: the length of running_mean and of running_var (not parameters)
  bool bias_one = false;  // initialized to cfg.bias_init (Section 5) instead of 0
  // Multiply-adds of the weights per image: out_c * out_h * out_w * in_c * k * k for a conv (in_c = the channels the
  // tower's kernels see), out * in for a linear layer. Biases, activations, LRN, pooling and dropout count 0.
  int64_t mult_adds = 0;

  int64_t parameters() const;
};

// Every layer of every tower, layer by layer (tower 0 then tower 1 within a layer), in forward order. Throws
// ValueError (validate_config) when the configuration cannot be built.
std::vector<LayerSpec> describe_layers(const NetworkConfig& cfg);

// Whether BatchNorm directly follows conv l (so the conv has no bias and the activation comes after the BN), and
// whether it follows conv l's pooling instead (BnPosition::AfterPool).
bool bn_after_conv(const NetworkConfig& cfg, int l);
bool bn_after_pool(const NetworkConfig& cfg, int l);

// The output layer's classes split ceil/floor between the towers: tower t's count and the first class it holds.
int fc8_classes(const NetworkConfig& cfg, int tower);
int fc8_class_offset(const NetworkConfig& cfg, int tower);

}  // namespace alexnet
