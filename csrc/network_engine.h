// The network's engine, shared by network.cpp (construction, parameters, inputs) and network_step.cpp (the step):
// each tower's state, stream and events, the exchanges between towers, and each layer's forward and backward pass.
// Internal to those two files; the public interface is network.h.
#pragma once

#include <omp.h>

#include <exception>
#include <optional>
#include <vector>

#include "nccl.h"
#include "network.h"
#include "network_layers.h"
#include "ops.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace alexnet {

// ---- the engine ------------------------------------------------------------------------------------------------
// Exchange points: the producing tower records the point's event after writing the tensor the other towers read.
// The fixed points, then one per fc layer k for its inputs (fc_in_point: the conv5 block's outputs, or pooled
// features, for k = 0; layer k-1's outputs after dropout otherwise) and one for its input gradients (fc_dx_point).
enum Point : int {
  kInput,     // the prepared image batch (shared by towers on one device)
  kConv3In,   // conv2 block outputs -> conv3 inputs
  kLogits,    // each tower's classes -> logits on tower 0
  kDLogits,   // softmax gradient on tower 0 -> each tower's classes
  kConv3Dx,   // conv3 input gradients -> summed per conv2 owner
  kFixedPoints
};
inline int fc_in_point(int k) { return kFixedPoints + k; }
inline int fc_dx_point(const NetworkConfig& c, int k) { return kFixedPoints + c.fc_layers() + k; }
inline int num_points(const NetworkConfig& c) { return kFixedPoints + 2 * c.fc_layers(); }
enum Timing : int { kStart, kForwardDone, kBackwardDone, kUpdateDone, kNumTimings };

struct Network::Impl {
  static constexpr int kNone = -1;  // no such parameter (a conv without bias, a net without BatchNorm)

  // Indices into Network::params_ of one layer's tensors.
  struct ConvParams {
    int weight = kNone, bias = kNone;
  };
  struct BnParams {
    int gamma = kNone, beta = kNone, running_mean = kNone, running_var = kNone;
  };

  struct Tower {
    int index = 0;
    Device device;
    int conv_c[kConvLayers] = {};  // this tower's kernels per conv layer
    int class_offset = 0;          // first class of this tower's share of the output layer
    std::vector<int> fc_n;         // this tower's neurons per fc layer (the output layer: its classes)
    std::vector<int> fc_in_offset;  // where this tower's outputs sit in the next fc layer's input
    ConvParams conv[kConvLayers];
    BnParams bn[kConvLayers];
    std::vector<ConvParams> fc;
    // Forward state of conv block l, kept for the backward pass (and because the other towers read some of it):
    // conv_out is the conv's output (activated unless BatchNorm follows it), act_out the activation's output
    // (= conv_out when fused), bn_in/bn_mean/bn_invstd what BatchNorm's backward needs, pool_in what was pooled.
    Tensor conv_in[kConvLayers], conv_out[kConvLayers], act_out[kConvLayers], lrn_out[kConvLayers],
        lrn_scale[kConvLayers], bn_in[kConvLayers], bn_mean[kConvLayers], bn_invstd[kConvLayers],
        pool_in[kConvLayers], pool_out[kConvLayers], block_out[kConvLayers];
    Tensor head_in;  // this tower's input to the first fc layer: flattened conv5 block outputs or pooled features
    std::vector<Tensor> fc_in, fc_out, fc_drop;
    // Input gradients read by the other towers at the backward exchange points.
    std::vector<Tensor> fc_dx;
    Tensor conv3_dx;
#ifdef ALEXNET_WITH_CUDA
    cudaStream_t stream = nullptr;
    std::vector<cudaEvent_t> events;  // one per exchange point (num_points)
    cudaEvent_t timing[kNumTimings] = {};
#endif
    void resize_head(int fc_layers) {
      fc_n.assign(fc_layers, 0);
      fc_in_offset.assign(fc_layers, 0);
      fc.assign(fc_layers, ConvParams{});
      fc_in.assign(fc_layers, Tensor());
      fc_out.assign(fc_layers, Tensor());
      fc_drop.assign(fc_layers, Tensor());
      fc_dx.assign(fc_layers, Tensor());
    }
    void clear() {
      for (int l = 0; l < kConvLayers; ++l) {
        conv_in[l] = conv_out[l] = act_out[l] = lrn_out[l] = lrn_scale[l] = bn_in[l] = bn_mean[l] = bn_invstd[l] =
            pool_in[l] = pool_out[l] = block_out[l] = Tensor();
      }
      for (size_t k = 0; k < fc_in.size(); ++k) fc_in[k] = fc_out[k] = fc_drop[k] = fc_dx[k] = Tensor();
      head_in = conv3_dx = Tensor();
    }
  };

  // Makes tower t's device and stream current for the ops issued in its lifetime.
  class Scope {
   public:
    Scope(Tower& t) {
#ifdef ALEXNET_WITH_CUDA
      if (t.device.is_cuda()) {
        device_.emplace(t.device.index);
        stream_.emplace(t.device.index, t.stream);
      }
#endif
    }

   private:
#ifdef ALEXNET_WITH_CUDA
    std::optional<cuda::DeviceGuard> device_;
    std::optional<cuda::StreamGuard> stream_;
#endif
  };

  enum class Mode { Train, Gradients, Evaluate, Predict };

  Network& net;
  std::vector<Tower> towers;
  std::vector<Tensor> mean;  // per tower, on its device (shared between towers on one device)
  ChannelScale scale{{1.0f, 1.0f, 1.0f}};  // per channel (set_normalization)
  Tensor labels;        // on tower 0's device
  Tensor probs, dlogits;  // on tower 0's device
  bool gpu = false;

  explicit Impl(Network& n) : net(n) {}

  const NetworkConfig& cfg() const { return net.cfg_; }
  Parameter& param(size_t i) { return net.params_[i]; }
  int first_tower_on(const Device& d) const {
    for (const Tower& t : towers)
      if (t.device == d) return t.index;
    return 0;
  }

  // ---- running the towers ----
  // body(t) for every tower. On GPUs the towers take turns issuing work to their own streams, which run
  // concurrently. With the towers on the CPU and exactly one OpenMP thread per tower, they run at the same time,
  // one thread each, and each op single-threaded: no fork/join per op (most of the small ops' cost at 2 threads),
  // and the two halves of the paper's split overlap as on its two GPUs. ALEXNET_CPU_TOWERS=serial makes them take
  // turns (each op then uses every thread). Either way the results are the same up to float rounding.
  // The first exception, in tower order, is rethrown once every tower has finished.
  bool concurrent_cpu_towers() const;
  template <class F>
  void each_tower(F&& body) {
    if (!concurrent_cpu_towers()) {
      for (Tower& t : towers) body(t);
      return;
    }
    const int count = static_cast<int>(towers.size());
    std::vector<std::exception_ptr> errors(towers.size());
#pragma omp parallel for num_threads(count) schedule(static, 1)
    for (int i = 0; i < count; ++i) {
      try {
        body(towers[i]);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
    for (const std::exception_ptr& e : errors)
      if (e) std::rethrow_exception(e);
  }

  // ---- construction (network.cpp): a layer's parameters and buffers, as indices into Network::params_ ----
  int add_tensor(const LayerSpec& layer, const char* suffix, const Shape& shape, bool trainable, bool decay,
                 const std::vector<float>& host);
  void add_weight_and_bias(const LayerSpec& layer, ConvParams& out);
  void add_batchnorm(const LayerSpec& layer, BnParams& out);

  // ---- events ----
  void record(Tower& t, int point) {
#ifdef ALEXNET_WITH_CUDA
    if (gpu) cuda::record_event(t.events[point], t.stream);
#endif
  }
  // Tower t's stream waits until tower s has passed `point` (nothing to do for the same tower, or on the CPU where
  // every op has finished when it returns).
  void wait(Tower& t, int point, const Tower& s) {
#ifdef ALEXNET_WITH_CUDA
    if (gpu && t.index != s.index) cuda::stream_wait_event(t.stream, s.events[point]);
#endif
  }
  void timing(Tower& t, int which) {
#ifdef ALEXNET_WITH_CUDA
    if (gpu) cuda::record_event(t.timing[which], t.stream);
#endif
  }

  // ---- exchanges (called inside tower t's Scope) ----
  // parts[s] (n, c_s, ...) from tower s, concatenated along dim 1 on tower t's device, in tower order.
  Tensor gather(Tower& t, const std::vector<Tensor>& parts, int point) {
    if (parts.size() == 1) return parts[0];
    Shape shape = parts[0].shape();
    shape[1] = 0;
    for (const Tensor& p : parts) shape[1] += p.size(1);
    Tensor out = Tensor::empty(shape, t.device);
    int64_t c0 = 0;
    for (size_t s = 0; s < parts.size(); ++s) {
      wait(t, point, towers[s]);
      ops::copy_channels(parts[s], 0, out, c0, parts[s].size(1));
      c0 += parts[s].size(1);
    }
    return out;
  }
  // Channels [c0, c0 + count) of grads[s] from every tower s, summed in tower order on tower t's device: the
  // gradient of tower t's share of an exchanged input is the sum of what every consumer sends back.
  Tensor reduce_slice(Tower& t, const std::vector<Tensor>& grads, int64_t c0, int64_t count, int point) {
    if (grads.size() == 1 && c0 == 0 && count == grads[0].size(1)) return grads[0];
    Tensor sum;
    for (size_t s = 0; s < grads.size(); ++s) {
      Tensor piece = slice_from(t, towers[s], grads[s], c0, count, point);
      if (!sum.defined()) {
        sum = piece;
      } else {
        ops::add_(sum, piece);
      }
    }
    return sum;
  }
  Tensor slice_from(Tower& t, const Tower& s, const Tensor& src, int64_t c0, int64_t count, int point) {
    Shape shape = src.shape();
    shape[1] = count;
    Tensor piece = Tensor::empty(shape, t.device);
    wait(t, point, s);
    ops::copy_channels(src, c0, piece, 0, count);
    return piece;
  }

  // ---- layers (inside the tower's Scope) ----
  Tensor value_or_none(int i) { return i == kNone ? Tensor() : param(i).value; }

  // Batch normalization of conv l's maps within the tower (Ioffe & Szegedy 2015, Algorithm 1): with the batch's
  // statistics, updating the running ones, when `batch_stats` (training); with the running statistics otherwise
  // (Section 3.1: inference uses the population statistics).
  Tensor bn_forward(Tower& t, int l, const Tensor& x, bool batch_stats) {
    const NetworkConfig& c = cfg();
    const BnParams& b = t.bn[l];
    t.bn_in[l] = x;
    if (!batch_stats) {
      return ops::batchnorm_forward_eval(x, param(b.gamma).value, param(b.beta).value, param(b.running_mean).value,
                                         param(b.running_var).value, c.bn_eps);
    }
    auto [y, mean, invstd] = ops::batchnorm_forward_train(x, param(b.gamma).value, param(b.beta).value,
                                                          param(b.running_mean).value, param(b.running_var).value,
                                                          c.bn_momentum, c.bn_eps);
    t.bn_mean[l] = mean;
    t.bn_invstd[l] = invstd;
    return y;
  }

  Tensor bn_backward(Tower& t, int l, const Tensor& g) {
    const BnParams& b = t.bn[l];
    auto [dx, dgamma, dbeta] = ops::batchnorm_backward(t.bn_in[l], g, param(b.gamma).value, t.bn_mean[l],
                                                       t.bn_invstd[l]);
    param(b.gamma).grad = dgamma;
    param(b.beta).grad = dbeta;
    return dx;
  }

  // conv l's block: conv -> [BN] -> act -> [LRN] -> [pool] -> [BN] (network.h: which norm sits where).
  Tensor conv_forward(Tower& t, int l, const Tensor& x, bool batch_stats) {
    const NetworkConfig& c = cfg();
    const bool bn_first = bn_after_conv(c, l);
    t.conv_in[l] = x;
    Tensor y = ops::conv2d_forward(x, param(t.conv[l].weight).value, value_or_none(t.conv[l].bias), c.conv_stride[l],
                                   c.conv_pad[l], 1, bn_first ? Activation::None : c.activation);
    t.conv_out[l] = y;
    if (bn_first) y = ops::activation_forward(bn_forward(t, l, y, batch_stats), c.activation);
    t.act_out[l] = y;
    if (kLrnAfter[l] && c.norm == Norm::Lrn) {
      auto [out, sc] = ops::lrn_forward(y, c.lrn_params);
      t.lrn_out[l] = out;
      t.lrn_scale[l] = sc;
      y = out;
    }
    if (kPoolAfter[l]) {
      t.pool_in[l] = y;
      y = ops::maxpool_forward(y, c.pool_kernel, c.pool_stride);
      t.pool_out[l] = y;
    }
    if (bn_after_pool(c, l)) y = bn_forward(t, l, y, batch_stats);
    t.block_out[l] = y;
    return y;
  }

  // g is the gradient of the block's output; returns the gradient of its input (undefined for conv1).
  Tensor conv_backward(Tower& t, int l, Tensor g) {
    const NetworkConfig& c = cfg();
    if (bn_after_pool(c, l)) g = bn_backward(t, l, g);
    if (kPoolAfter[l]) g = ops::maxpool_backward(t.pool_in[l], t.pool_out[l], g, c.pool_kernel, c.pool_stride);
    if (kLrnAfter[l] && c.norm == Norm::Lrn) {
      g = ops::lrn_backward(t.act_out[l], t.lrn_out[l], t.lrn_scale[l], g, c.lrn_params);
    }
    g = ops::activation_backward(t.act_out[l], g, c.activation);
    if (bn_after_conv(c, l)) g = bn_backward(t, l, g);
    Parameter& w = param(t.conv[l].weight);
    const int k = c.conv_kernel[l];
    w.grad = ops::conv2d_backward_weight(t.conv_in[l], g, k, k, c.conv_stride[l], c.conv_pad[l], 1);
    if (t.conv[l].bias != kNone) param(t.conv[l].bias).grad = ops::bias_backward(g);
    gradients_ready(t, conv_block_parameters(t, l));
    if (l == 0) return Tensor();  // the image needs no gradient
    const int side = static_cast<int>(t.conv_in[l].size(2));
    return ops::conv2d_backward_input(g, w.value, side, side, c.conv_stride[l], c.conv_pad[l], 1);
  }

  // The head's input on tower t: its conv5 block outputs flattened (channel, y, x), or their global average.
  void head_forward(Tower& t, int64_t n) {
    const Tensor& x = t.block_out[kConvLayers - 1];
    t.head_in = cfg().gap_head ? ops::global_avgpool_forward(x) : x.view({n, x.numel() / n});
  }
  Tensor head_backward(Tower& t, const Tensor& g) {
    const Tensor& x = t.block_out[kConvLayers - 1];
    if (cfg().gap_head) return ops::global_avgpool_backward(g, static_cast<int>(x.size(2)), static_cast<int>(x.size(3)));
    return g.view(x.shape());
  }

  // Data-parallel (nccl.h): a layer's gradients are complete on the tower's stream; the reducer starts averaging
  // them across the ranks now, overlapping the rest of backward.
  void gradients_ready(Tower& t, const std::vector<Parameter*>& params) {
    if (!net.reducer_) return;
    void* stream = nullptr;
#ifdef ALEXNET_WITH_CUDA
    stream = t.stream;
#endif
    net.reducer_->layer_ready(t.index, params, stream);
  }
  // conv l's trainable tensors on tower t: its weight, its bias unless BatchNorm replaced it, BN's scale and shift.
  std::vector<Parameter*> conv_block_parameters(Tower& t, int l) {
    std::vector<Parameter*> out{&param(t.conv[l].weight)};
    for (int i : {t.conv[l].bias, t.bn[l].gamma, t.bn[l].beta})
      if (i != kNone) out.push_back(&param(i));
    return out;
  }

  // Stream position of the first element of a (n, features) fc output: sample i of this batch is sample
  // sample_offset + i of the global batch (network.h), so its row starts at (sample_offset + i) * features.
  uint64_t dropout_first(const Tensor& y) const { return net.sample_offset * static_cast<uint64_t>(y.size(1)); }

  bool hidden_fc(int k) const { return k < cfg().fc_layers() - 1; }
  bool dropout_on(bool training) const { return training && cfg().dropout > 0.0f; }
  uint64_t dropout_offset(int k, const Tower& t) const {
    return Network::dropout_offset(net.step, k, t.index, static_cast<int>(cfg().fc_width.size()));
  }

  // Hidden fc layers: linear -> act -> dropout (Section 4.2); the output layer: linear.
  Tensor fc_forward(Tower& t, int k, const Tensor& x, bool training) {
    const NetworkConfig& c = cfg();
    const bool hidden = hidden_fc(k);
    t.fc_in[k] = x;
    Tensor y = ops::linear_forward(x, param(t.fc[k].weight).value, param(t.fc[k].bias).value,
                                   hidden ? c.activation : Activation::None);
    t.fc_out[k] = y;
    if (hidden && dropout_on(training)) {
      y = ops::dropout_forward(y, c.dropout, c.seed, dropout_offset(k, t), true, dropout_first(y));
    }
    t.fc_drop[k] = y;
    return y;
  }

  Tensor fc_backward(Tower& t, int k, Tensor g, bool training) {
    const NetworkConfig& c = cfg();
    if (hidden_fc(k)) {
      if (dropout_on(training)) {
        g = ops::dropout_backward(g, c.dropout, c.seed, dropout_offset(k, t), true, dropout_first(g));
      }
      g = ops::activation_backward(t.fc_out[k], g, c.activation);
    }
    Parameter& w = param(t.fc[k].weight);
    w.grad = ops::linear_backward_weight(t.fc_in[k], g);
    param(t.fc[k].bias).grad = ops::bias_backward(g);
    gradients_ready(t, {&w, &param(t.fc[k].bias)});
    return ops::linear_backward_input(g, w.value);
  }

  // ---- input ----
  void prepare_input(Tower& t, const HostBatch& b) {
    const NetworkConfig& c = cfg();
    const int owner = first_tower_on(t.device);
    if (owner != t.index) {  // another tower on this device already has it
      wait(t, kInput, towers[owner]);
      t.conv_in[0] = towers[owner].conv_in[0];
      return;
    }
    const int64_t n = b.images_shape[0];
    Tensor x;
    if (b.images_f32) {
      x = Tensor::from_host(b.images_f32, b.images_shape, t.device);
    } else {
      const int64_t h = b.images_shape[1], w = b.images_shape[2];
      const int S = c.input_size;
      std::vector<int32_t> cy(n), cx(n), fl(n, 0);
      std::vector<float> shift(static_cast<size_t>(n) * 3, 0.0f);
      for (int64_t i = 0; i < n; ++i) {
        cy[i] = b.crop_y ? b.crop_y[i] : static_cast<int32_t>((h - S) / 2);
        cx[i] = b.crop_x ? b.crop_x[i] : static_cast<int32_t>((w - S) / 2);
        if (b.flip) fl[i] = b.flip[i];
      }
      if (b.rgb_shift) std::copy(b.rgb_shift, b.rgb_shift + 3 * n, shift.begin());
      Tensor images = Tensor::from_host(b.images_u8, b.images_shape, t.device, DType::U8);
      Tensor ty = Tensor::from_host(cy.data(), {n}, t.device, DType::I32);
      Tensor tx = Tensor::from_host(cx.data(), {n}, t.device, DType::I32);
      Tensor tf = Tensor::from_host(fl.data(), {n}, t.device, DType::I32);
      Tensor ts = Tensor::from_host(shift.data(), {n, 3}, t.device);
      x = ops::prepare_batch(images, mean[t.index], ty, tx, tf, ts, S, scale);
    }
    t.conv_in[0] = x;
    record(t, kInput);
  }

  // ---- the step (network_step.cpp) ----
  // training: dropout on (Train always; Gradients as the caller asks). opt: the update (Train only).
  // probs_out: host copy of the probabilities.
  StepStats run(const HostBatch& b, Mode mode, bool training, const OptimizerSettings& opt, float* probs_out);
  StepStats schedule(const HostBatch& b, Mode mode, bool training, const OptimizerSettings& opt, float* probs_out);
  void forward_convs(const HostBatch& b, bool batch_stats);
  void forward_head(bool training);
  void backward_head(bool training);
  void backward_convs();
  void update(Tower& t, const OptimizerSettings& opt);
  void apply_update(const OptimizerSettings& opt);
  void finish(bool backward, bool update);
  void free_step();
};

}  // namespace alexnet
