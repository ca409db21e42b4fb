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
// Variants (issue 10; network_layers.h has the layer table they produce):
//   head: any list of hidden fc widths (the paper's {4096, 4096}; {2000, 200}; none), each hidden layer followed by
//     act -> dropout and split between the towers like fc6/fc7, then the output layer; or the GAP head: conv5 block
//     -> global average pooling (each tower pools its own maps) -> one linear layer on both towers' pooled features.
//   norm: LRN (the paper), none, or batch normalization (Ioffe & Szegedy 2015) after every conv, each tower
//     normalizing its own channels: conv -> BN -> act -> pool by default (BnPosition::BeforePool, the placement of
//     Ioffe & Szegedy's Section 3.2: BN on the conv's output, before the nonlinearity), or conv -> act -> pool -> BN
//     (AfterPool, common in Keras AlexNets) for the blocks with pooling. A conv that BN directly follows has no bias:
//     BN subtracts the mean, so the bias would be cancelled (Ioffe & Szegedy 2015, Section 3.2), and BN's shift
//     beta takes its role.
//   optimizer: the paper's SGD (Section 5), Adam (Kingma & Ba 2015) or AdamW (Loshchilov & Hutter 2019).
// LRN normalizes over adjacent maps of the SAME tower (each GPU normalized its own maps in cuda-convnet), and each
// tower draws its own dropout mask; everything else equals one dense net with groups=2 in conv2, conv4, conv5
// (alexnet_cuda/reference/network.py is that dense net, and the tests compare the two).
// Inputs are 227x227, not the paper's 224: (227 - 11) / 4 + 1 = 55 gives the paper's 55x55 conv1 maps, while
// (224 - 11) / 4 + 1 = 54.25 does not divide (cuda-convnet really used 224 + its own padding; 227 is the size
// that makes the stated layer sizes exact, as in Caffe). At 1000 classes the net has 60,965,224 parameters.
//
// Placement: tower t lives on devices[t]. Both on the CPU: with as many OpenMP threads as towers, the towers run at
// the same time, one thread each (network_engine.h, each_tower); otherwise, or with ALEXNET_CPU_TOWERS=serial, one
// after the other with every op on all threads. The two give the same results up to float rounding. Both on one GPU: each
// tower has its own stream and the towers overlap. On two GPUs: each tower runs on its GPU, exchanges are peer
// copies (staged through the host by the driver when peer access is off). At every exchange point the producing
// tower records an event on its stream and the consuming tower's stream waits on it before copying; the backward
// pass sends each tower's input gradient slices back and sums them (ops::add_) on the owning tower. Every tensor
// read by another stream is a member of the network (kept alive until the step ends with a synchronization), as
// the caching allocator requires (cuda/runtime.cu).
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

constexpr int kConvLayers = 5;
constexpr int kMaxTowers = 2;

enum class Norm { None, Lrn, BatchNorm };
// Where BatchNorm sits in the blocks that pool (conv1, conv2, conv5); conv3 and conv4 are always conv -> BN -> act.
enum class BnPosition { BeforePool, AfterPool };
enum class OptimizerKind { Sgd, Adam, AdamW };

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
  std::vector<int> fc_width{4096, 4096};  // hidden fc layers (the paper's fc6, fc7); the output layer has num_classes
  bool gap_head = false;  // conv5 block -> global average pooling -> the output layer (fc_width must be empty)
  int towers = 2;
  Norm norm = Norm::Lrn;  // LRN after conv1 and conv2 (Section 3.3); BatchNorm after every conv
  LrnParams lrn_params{};
  BnPosition bn_position = BnPosition::BeforePool;
  float bn_momentum = 0.1f;  // running = (1 - momentum) * running + momentum * batch statistic (PyTorch's convention)
  float bn_eps = 1e-5f;
  OptimizerKind optimizer = OptimizerKind::Sgd;  // decides the state each parameter keeps (momentum; Adam's m and v)
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

  int fc_layers() const { return static_cast<int>(fc_width.size()) + 1; }  // hidden layers + the output layer
  bool batchnorm() const { return norm == Norm::BatchNorm; }
};

// One update's settings (Network::train_step). momentum: SGD only; beta1, beta2, eps: Adam and AdamW only.
// weight_decay: SGD adds it to the gradient as the paper (Section 5), Adam too (L2 regularization), AdamW decays the
// weights directly (decoupled, Loshchilov & Hutter 2019); in every case it applies to conv and fc weights only.
struct OptimizerSettings {
  float lr = 0.01f, momentum = 0.9f, weight_decay = 5e-4f;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
};

// Spatial sizes through the network for a config; validate() throws ValueError naming what does not fit.
struct NetworkGeometry {
  std::array<int, kConvLayers> conv_in{};    // input side of each conv
  std::array<int, kConvLayers> conv_out{};   // output side of each conv
  std::array<int, kConvLayers> block_out{};  // side after the block's pooling (= conv_out without pooling)
  int fc6_inputs = 0;  // inputs of the first fc layer: conv5 channels * block_out[4]^2 (with the GAP head: channels)
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
  std::string name;  // "features.0.tower0.weight" (conv1), ..., "classifier.6.tower1.bias" (fc8)
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
  explicit Network(const NetworkConfig& cfg);
  ~Network();
  Network(const Network&) = delete;
  Network& operator=(const Network&) = delete;

  const NetworkConfig& config() const { return cfg_; }
  const NetworkGeometry& geometry() const { return geo_; }
  int64_t num_parameters() const;                  // trainable parameters only (as PyTorch counts them)
  std::vector<std::string> parameter_names() const;  // trainable parameters
  std::vector<std::string> buffer_names() const;     // BatchNorm running statistics
  Parameter& parameter(const std::string& name);  // a parameter or a buffer; ValueError for an unknown name

  // mean (3, h, w) per pixel or (3,) per channel, for uint8 batches: x = (pixel - mean + rgb_shift) * scale[c],
  // one scale per channel (torchvision's preprocessing) or the same for all three (the paper's nets).
  void set_normalization(const float* mean, const Shape& mean_shape, const ChannelScale& scale);

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
  // Dropout stream of hidden fc layer `fc` (0 = fc6, 1 = fc7, ...) of `tower` at `step`: distinct per (step, layer,
  // tower). A step spans 2 * max(2, hidden_layers) offsets, so the paper's head keeps its streams (4 per step).
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

  NetworkConfig cfg_;
  NetworkGeometry geo_;
  std::vector<Parameter> params_;
  std::unique_ptr<Impl> impl_;
  Tensor logits_;
  std::vector<TowerTiming> timings_;
  std::shared_ptr<GradientReducer> reducer_;
};

}  // namespace alexnet
