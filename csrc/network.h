// A network built from its description (alexnet_cuda/nets/description.py: a list of layers, each with its kind, its
// settings, the layer it reads, and whether it reads its own tower's maps or every tower's), composed from the ops
// of ops.h and split into towers the way cuda-convnet split AlexNet over two GPUs (the paper's Figure 2).
//
// Every layer is replicated on each tower, holding its share of the layer's channels (tower 0 takes the larger half
// of an odd count, as AlexNet's fc8 classes). A conv, local or linear layer that `sees_all` reads every tower's maps
// (an exchange point: AlexNet's conv3 and fc6-fc8); every other layer reads its own tower's. The last layer's
// outputs, gathered on tower 0 in tower order, are the logits of the softmax cross-entropy.
// For AlexNet (alexnet_cuda/nets/alexnet.py) that is:
//   conv1 96@11x11/4 -> act -> LRN -> maxpool 3/2      (tower: 48 kernels on the whole image)
//   conv2 256@5x5 p2 -> act -> LRN -> maxpool 3/2      (tower: 128 kernels on its OWN 48 maps)
//   conv3 384@3x3 p1 -> act                            (tower: 192 kernels on ALL 256 maps: exchange point)
//   conv4 384@3x3 p1 -> act, conv5 256@3x3 p1 -> act -> maxpool 3/2 (own maps)
//   fc6 4096 -> act -> dropout, fc7 4096 -> act -> dropout, fc8 classes (each on both towers' outputs)
// with 60,965,224 parameters at 1000 classes and 227x227 inputs; its variants (BatchNorm, GAP head, widths, one
// tower, ...) are edits of that description. cuda-convnet's CIFAR-10 nets (layers-18pct, conv-local-11pct, ...)
// are descriptions too (alexnet_cuda/nets/from_convnet.py).
//
// Placement: tower t lives on devices[t]. Both on the CPU: with as many OpenMP threads as towers, the towers run at
// the same time, one thread each (network_engine.h, each_tower); otherwise, or with ALEXNET_CPU_TOWERS=serial, one
// after the other with every op on all threads. The two give the same results up to float rounding. Both on one
// GPU: each tower has its own stream and the towers overlap. On two GPUs: each tower runs on its GPU, exchanges are
// peer copies (staged through the host by the driver when peer access is off). At every exchange point the
// producing tower records an event on its stream after writing the layer's output (or, backward, its input
// gradient), and the consuming tower's stream waits on it before copying; the backward pass sends each tower's
// input gradient slices back and sums them (ops::add_) on the owning tower. Every tensor read by another stream is
// kept by the network until the step ends with a synchronization, as the caching allocator requires
// (cuda/runtime.cu).
#pragma once

#include <array>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "memory_stats.h"
#include "shapes.h"
#include "tensor.h"

namespace alexnet {

constexpr int kMaxTowers = 2;

enum class OptimizerKind { Sgd, Adam, AdamW };
enum class LayerKind { Conv, Local, Linear, MaxPool, AvgPool, Lrn, SpatialLrn, BatchNorm, Dropout, GlobalAvgPool };
LayerKind parse_layer_kind(const std::string& name);  // "conv", "local", ..., "global_avgpool"; ValueError otherwise
const char* layer_kind_name(LayerKind kind);

// One layer of a description, its settings resolved (alexnet_cuda/model.py fills these in from a checked
// description; the network checks them again). Widths are TOTALS over the towers.
struct LayerDef {
  std::string name;
  LayerKind kind = LayerKind::Conv;
  std::string module;  // prefix of its parameters' names ("features.0" -> "features.0.tower0.weight"); "": name
  int input = -1;      // index of the earlier layer it reads; -1: the images
  bool sees_all = false;  // conv, local, linear: reads every tower's maps (an exchange point)
  int outputs = 0;  // conv, local: filters; linear: outputs; maxpool, avgpool: windows per side
  int size = 0, stride = 1, pad = 0, start = 0;  // kernel/window geometry (conv, local, pooling)
  Activation activation = Activation::None;      // after conv, local, linear, pooling, batchnorm
  bool bias = true;                              // conv, local, linear
  float init_std = 0.01f, init_bias = 0.0f;      // weights ~ N(0, init_std^2) (Section 5), biases = init_bias
  LrnParams lrn{};                               // lrn (across maps), spatial_lrn (within a map)
  float bn_momentum = 0.1f, bn_eps = 1e-5f;      // batchnorm (PyTorch's momentum convention)
  float dropout = 0.5f;                          // dropout's p (Section 4.2)
};

struct NetSpec {
  std::string name = "network";
  int input_size = 32, in_channels = 3, classes = 10, towers = 1;
  std::vector<LayerDef> layers;
  OptimizerKind optimizer = OptimizerKind::Sgd;  // decides the state each parameter keeps (momentum; Adam's m, v)
  uint64_t seed = 0;                             // initialization and dropout streams
  std::vector<Device> devices{Device::cpu()};    // tower t on devices[t]
};

// One update's settings (Network::train_step). momentum: SGD only; beta1, beta2, eps: Adam and AdamW only.
// weight_decay: SGD adds it to the gradient as the paper (Section 5), Adam too (L2 regularization), AdamW decays the
// weights directly (decoupled, Loshchilov & Hutter 2019); in every case it applies to conv and fc weights only.
struct OptimizerSettings {
  float lr = 0.01f, momentum = 0.9f, weight_decay = 5e-4f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

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

// One tensor of one tower's state_dict: a trainable parameter with its optimizer state and last gradient, or a
// BatchNorm running statistic (a buffer: saved and loaded, used in evaluation, never touched by the optimizer).
// A parameter's own learning settings (cuda-convnet's per-layer epsW/epsB, momW/momB, wc: docs/cuda_convnet.md). The
// step's learning rate is multiplied by lr_scale; a NaN momentum or weight decay means the step's.
struct LearningSettings {
  float lr_scale = 1.0f;
  float momentum = std::numeric_limits<float>::quiet_NaN();
  float weight_decay = std::numeric_limits<float>::quiet_NaN();
};

struct Parameter {
  std::string name;  // "<module>.tower<t>.weight": "features.0.tower0.weight" is AlexNet's conv1 on tower 0
  int tower = 0;
  bool trainable = true;  // false for BatchNorm's running_mean / running_var
  bool decay = false;     // weight decay applies: conv and fc weights (not biases, not BatchNorm's scale and shift)
  LearningSettings learning;
  Tensor value;
  Tensor momentum;  // SGD: the velocity v of Section 5; Adam/AdamW: the first moment m
  Tensor variance;  // Adam/AdamW: the second moment v (undefined for SGD)
  Tensor grad;
};

class Network {
 public:
  explicit Network(const NetSpec& spec);  // ValueError naming the layer when the spec cannot be built
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  const NetSpec& spec() const { return spec_; }
  int64_t num_parameters() const;                  // trainable parameters only (as PyTorch counts them)
  std::vector<std::string> parameter_names() const;  // trainable parameters
  std::vector<std::string> buffer_names() const;     // BatchNorm running statistics
  Parameter& parameter(const std::string& name);  // a parameter or a buffer; ValueError for an unknown name

  // mean (3, h, w) per pixel or (3,) per channel, for uint8 batches: x = (pixel - mean + rgb_shift) * scale.
  void set_normalization(const float* mean, const Shape& mean_shape, float scale);

  // Forward, softmax cross-entropy, backward and the configured optimizer's update on every tower; then step += 1.
  // BatchNorm uses the batch's statistics and updates its running statistics.
  StepStats train_step(const HostBatch& batch, const OptimizerSettings& opt);
  // Forward and backward only (dropout on when `training`; BatchNorm always uses the batch's statistics and updates
  // its running statistics, as a training forward does); gradients stay in Parameter::grad and the logits in
  // logits(). Does not advance the step. For tests, gradient inspection, and data-parallel training
  // (alexnet_cuda/train/distributed.py): compute_gradients, average the gradients across ranks, apply_update.
  StepStats compute_gradients(const HostBatch& batch, bool training);
  // The update half of train_step, from the gradients in Parameter::grad (those of compute_gradients, possibly
  // replaced by their average over ranks); then step += 1 and the step's tensors are released. ValueError when a
  // parameter has no gradient. compute_gradients(training=true) + apply_update == train_step, bit for bit.
  // (Data-parallel BatchNorm normalizes with each rank's own batch statistics, as PyTorch's DDP without SyncBN.)
  void apply_update(const OptimizerSettings& opt);
  // Forward with dropout off and BatchNorm on its running statistics: loss and top-k counts.
  StepStats evaluate(const HostBatch& batch);
  // Forward with dropout off and BatchNorm on its running statistics: softmax probabilities (n, num_classes) on the host (row-major into `probs`).
  void predict(const HostBatch& batch, float* probs);
  // Logits (n, num_classes) of the last compute_gradients call, on tower 0's device.
  const Tensor& logits() const { return logits_; }

  // The dropout stream counter and Adam's step count (the update of train_step number `step` uses t = step + 1);
  // train_step advances it, and a resume restores it.
  uint64_t step = 0;
  // Dropout stream of the network's dropout layer number `fc` (0 = the first: AlexNet's after fc6, 1 = after fc7,
  // ...) of `tower` at `step`, in a net with `hidden_layers` dropout layers: distinct per (step, layer, tower). A
  // step spans 2 * max(2, hidden_layers) offsets, so the paper's head keeps its streams (4 per step).
  static uint64_t dropout_offset(uint64_t step, int fc, int tower, int hidden_layers = 2) {
    return step * 2 * static_cast<uint64_t>(hidden_layers > 2 ? hidden_layers : 2) + fc * 2 + tower;
  }
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

  NetSpec spec_;
  std::vector<Parameter> params_;
  std::unique_ptr<Impl> impl_;
  Tensor logits_;
  std::vector<TowerTiming> timings_;
  std::shared_ptr<GradientReducer> reducer_;
};

}  // namespace alexnet
