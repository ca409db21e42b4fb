// The AlexNet network of the paper (Krizhevsky, Sutskever, Hinton 2012, Section 3.5 and Figure 2), composed from
// the ops of ops.h and split into two towers the way cuda-convnet split it over two GPUs.
//
// Layers (totals over both towers; each tower holds half of every layer):
//   conv1 96@11x11/4 -> act -> LRN -> maxpool 3/2      (tower: 48 kernels on the whole image)
//   conv2 256@5x5 p2 -> act -> LRN -> maxpool 3/2      (tower: 128 kernels on its OWN 48 maps)
//   conv3 384@3x3 p1 -> act                            (tower: 192 kernels on ALL 256 maps: exchange point)
//   conv4 384@3x3 p1 -> act                            (tower: 192 on its own 192 maps)
//   conv5 256@3x3 p1 -> act -> maxpool 3/2 -> 256x6x6  (tower: 128 on its own 192 maps)
//   fc6 4096 -> act -> dropout                         (tower: 2048 neurons on BOTH towers' 9216 inputs: exchange)
//   fc7 4096 -> act -> dropout                         (tower: 2048 on both towers' fc6 outputs: exchange)
//   fc8 num_classes                                    (tower 0: ceil(C/2) classes, tower 1: floor(C/2), on both
//                                                       towers' fc7 outputs: exchange; logits gathered on tower 0)
//   softmax cross-entropy on tower 0's device.
// LRN normalizes over adjacent maps of the SAME tower (each GPU normalized its own maps in cuda-convnet), and each
// tower draws its own dropout mask; everything else equals one dense net with groups=2 in conv2, conv4, conv5
// (alexnet_cuda/reference/network.py is that dense net, and the tests compare the two).
// Inputs are 227x227, not the paper's 224: (227 - 11) / 4 + 1 = 55 gives the paper's 55x55 conv1 maps, while
// (224 - 11) / 4 + 1 = 54.25 does not divide (cuda-convnet really used 224 + its own padding; 227 is the size
// that makes the stated layer sizes exact, as in Caffe). At 1000 classes the net has 60,965,224 parameters.
//
// Placement: tower t lives on devices[t]. Both on the CPU: towers run one after the other. Both on one GPU: each
// tower has its own stream and the towers overlap. On two GPUs: each tower runs on its GPU, exchanges are peer
// copies (staged through the host by the driver when peer access is off). At every exchange point the producing
// tower records an event on its stream and the consuming tower's stream waits on it before copying; the backward
// pass sends each tower's input gradient slices back and sums them (ops::add_) on the owning tower. Every tensor
// read by another stream is a member of the network (kept alive until the step ends with a synchronization), as
// the caching allocator requires (cuda/runtime.cu).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "memory_stats.h"
#include "shapes.h"
#include "tensor.h"

namespace alexnet {

constexpr int kConvLayers = 5;
constexpr int kFcLayers = 3;
constexpr int kMaxTowers = 2;

// Every width is the TOTAL over the towers (each tower takes 1/towers of it). Convolutions are square.
struct NetworkConfig {
  std::string arch = "alexnet";  // informational: "alexnet", "alexnet-small" or "custom"
  int input_size = 227;
  int in_channels = 3;
  int num_classes = 1000;
  std::array<int, kConvLayers> conv_channels{96, 256, 384, 384, 256};
  std::array<int, kConvLayers> conv_kernel{11, 5, 3, 3, 3};
  std::array<int, kConvLayers> conv_stride{4, 1, 1, 1, 1};
  std::array<int, kConvLayers> conv_pad{0, 2, 1, 1, 1};
  std::array<int, 2> fc_width{4096, 4096};  // fc6, fc7 (fc8 has num_classes)
  int towers = 2;
  bool lrn = true;  // after conv1 and conv2 (Section 3.3)
  LrnParams lrn_params{};
  int pool_kernel = 3, pool_stride = 2;  // after conv1, conv2 and conv5; 3/2 overlaps (Section 3.4)
  Activation activation = Activation::ReLU;
  float dropout = 0.5f;      // in fc6 and fc7 (Section 4.2)
  float weight_std = 0.01f;  // Section 5: weights ~ N(0, 0.01^2)
  float bias_init = 1.0f;    // Section 5: biases of conv2, conv4, conv5, fc6, fc7 = 1; the others 0
  uint64_t seed = 0;         // initialization and dropout streams
  std::vector<Device> devices{Device::cpu(), Device::cpu()};  // tower t on devices[t]

  // The paper's net ("alexnet", input 227) or the small-input variant ("alexnet-small", input 32 or 64).
  // towers = 1 builds the one-GPU net of the paper's footnote (see network_layers.cpp, NetworkConfig::make).
  static NetworkConfig make(const std::string& arch, int input_size, int num_classes, int towers);
};

// Spatial sizes through the network for a config; validate() throws ValueError naming what does not fit.
struct NetworkGeometry {
  std::array<int, kConvLayers> conv_in{};    // input side of each conv
  std::array<int, kConvLayers> conv_out{};   // output side of each conv
  std::array<int, kConvLayers> block_out{};  // side after the block's pooling (= conv_out without pooling)
  int fc6_inputs = 0;                        // conv5 channels * block_out[4]^2
};
NetworkGeometry network_geometry(const NetworkConfig& cfg);
void validate_config(const NetworkConfig& cfg);

// A batch in host memory. Exactly one of images_f32 (n, in_channels, S, S), already normalized, or images_u8
// (n, h, w, 3) NHWC with h, w >= S (normalized on the device with ops::prepare_batch). crop_y/crop_x/flip (n) int32
// and rgb_shift (n, 3) float32 are for uint8 images only and may be null (centre crop, no flip, no shift).
// labels (n) int32 in [0, num_classes) or null (predict).
struct HostBatch {
  Shape images_shape;  // (n, in_channels, S, S) for float32, (n, h, w, 3) for uint8
  const float* images_f32 = nullptr;
  const uint8_t* images_u8 = nullptr;
  const int32_t* crop_y = nullptr;
  const int32_t* crop_x = nullptr;
  const int32_t* flip = nullptr;
  const float* rgb_shift = nullptr;
  const int32_t* labels = nullptr;
};

class GradientReducer;  // nccl.h

struct StepStats {
  float loss = 0.0f;
  int64_t top1 = 0, top5 = 0;  // correct counts
  int64_t n = 0;
};

// Per-tower GPU time of the last step (cudaEvent timing on the tower's stream, waits at exchanges included).
struct TowerTiming {
  std::string device;
  float forward_ms = 0, backward_ms = 0, update_ms = 0, total_ms = 0;
};

// One trainable tensor of one tower, with its momentum buffer and last gradient.
struct Parameter {
  std::string name;  // "features.0.tower0.weight" (conv1), ..., "classifier.6.tower1.bias" (fc8)
  int tower = 0;
  bool is_bias = false;
  Tensor value, momentum, grad;
};

class Network {
 public:
  explicit Network(const NetworkConfig& cfg);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  const NetworkConfig& config() const { return cfg_; }
  const NetworkGeometry& geometry() const { return geo_; }
  int64_t num_parameters() const;
  std::vector<std::string> parameter_names() const;
  Parameter& parameter(const std::string& name);  // ValueError for an unknown name

  // mean (3, h, w) per pixel or (3,) per channel, for uint8 batches: x = (pixel - mean + rgb_shift) * scale.
  void set_normalization(const float* mean, const Shape& mean_shape, float scale);

  // Forward, softmax cross-entropy, backward and the paper's SGD update on every tower; then step += 1.
  StepStats train_step(const HostBatch& batch, float lr, float momentum, float weight_decay);
  // Forward and backward only (training mode: dropout on when `training`); gradients stay in Parameter::grad and
  // the logits in logits(). Does not advance the step. For tests, gradient inspection, and data-parallel training
  // (alexnet_cuda/distributed.py): compute_gradients, average the gradients across ranks, apply_update.
  StepStats compute_gradients(const HostBatch& batch, bool training);
  // The update half of train_step, from the gradients in Parameter::grad (those of compute_gradients, possibly
  // replaced by their average over ranks); then step += 1 and the step's tensors are released. ValueError when a
  // parameter has no gradient. compute_gradients(training=true) + apply_update == train_step, bit for bit.
  void apply_update(float lr, float momentum, float weight_decay);
  // Forward with dropout off: loss and top-k counts.
  StepStats evaluate(const HostBatch& batch);
  // Forward with dropout off: softmax probabilities (n, num_classes) on the host (row-major into `probs`).
  void predict(const HostBatch& batch, float* probs);
  // Logits (n, num_classes) of the last compute_gradients call, on tower 0's device.
  const Tensor& logits() const { return logits_; }

  uint64_t step = 0;  // the dropout stream counter (train_step advances it)
  // Dropout stream of fc layer `fc` (0 = fc6, 1 = fc7) of `tower` at `step`: distinct per (step, layer, tower).
  static uint64_t dropout_offset(uint64_t step, int fc, int tower) { return step * 4 + fc * 2 + tower; }
  // Position of the batch's first sample in the global batch (data-parallel rank r of N with local batch n sets
  // r * n): sample i's dropout mask is then the one of global sample sample_offset + i, so N ranks draw exactly
  // the masks of one process with the whole batch. 0 in one process.
  uint64_t sample_offset = 0;

  // Data-parallel training on GPUs (nccl.h): backward hands each layer's gradients to `reducer` as soon as they
  // exist, and the update waits for it. Null (the default): gradients stay local.
  void set_gradient_reducer(std::shared_ptr<GradientReducer> reducer) { reducer_ = std::move(reducer); }

  std::vector<TowerTiming> tower_timings() const { return timings_; }
  // Peak / current allocator statistics of every distinct device of the towers.
  std::vector<std::pair<std::string, MemoryStats>> memory_stats() const;
  void reset_peak_memory();

 private:
  struct Impl;  // towers, streams, events and layers (network_engine.h); the step schedule (network_step.cpp)
  void check_batch(const HostBatch& batch) const;  // ValueError naming AlexNet, before any kernel runs

  NetworkConfig cfg_;
  NetworkGeometry geo_;
  std::vector<Parameter> params_;
  std::unique_ptr<Impl> impl_;
  Tensor logits_;
  std::vector<TowerTiming> timings_;
  std::shared_ptr<GradientReducer> reducer_;
};

}  // namespace alexnet
