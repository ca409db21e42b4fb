// The network's engine, shared by network.cpp (construction, parameters, inputs) and network_step.cpp (the step):
// each tower's state, stream and events, the exchanges between towers, and each layer's forward and backward pass.
// Internal to those two files; the public interface is network.h.
#pragma once

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
enum Point : int {
  kInput,     // the prepared image batch (shared by towers on one device)
  kConv3In,   // conv2 block outputs -> conv3 inputs
  kFc6In,     // conv5 block outputs -> fc6 inputs
  kFc7In,     // fc6 outputs (after dropout) -> fc7 inputs
  kFc8In,     // fc7 outputs (after dropout) -> fc8 inputs
  kLogits,    // each tower's classes -> logits on tower 0
  kDLogits,   // softmax gradient on tower 0 -> each tower's classes
  kFc8Dx,     // fc8 input gradients -> summed per fc7 owner
  kFc7Dx,     // fc7 input gradients -> summed per fc6 owner
  kFc6Dx,     // fc6 input gradients -> summed per conv5 owner
  kConv3Dx,   // conv3 input gradients -> summed per conv2 owner
  kNumPoints
};
enum Timing : int { kStart, kForwardDone, kBackwardDone, kUpdateDone, kNumTimings };

struct Network::Impl {
  struct Tower {
    int index = 0;
    Device device;
    int conv_c[kConvLayers] = {};  // this tower's kernels per conv layer
    int fc_n[kFcLayers] = {};      // this tower's neurons per fc layer (fc8: its classes)
    int class_offset = 0;          // first class of this tower's share of fc8
    int fc_in_offset[kFcLayers] = {};  // where this tower's outputs sit in the next fc layer's input
    size_t conv_w[kConvLayers] = {}, conv_b[kConvLayers] = {}, fc_w[kFcLayers] = {}, fc_b[kFcLayers] = {};
    // Forward state, kept for the backward pass (and because the other towers read some of it).
    Tensor conv_in[kConvLayers], conv_out[kConvLayers], lrn_out[kConvLayers], lrn_scale[kConvLayers];
    Tensor block_out[kConvLayers];
    Tensor fc_in[kFcLayers], fc_out[kFcLayers], fc_drop[2];
    // Input gradients read by the other towers at the backward exchange points.
    Tensor fc_dx[kFcLayers], conv3_dx;
#ifdef ALEXNET_WITH_CUDA
    cudaStream_t stream = nullptr;
    cudaEvent_t events[kNumPoints] = {};
    cudaEvent_t timing[kNumTimings] = {};
#endif
    void clear() {
      for (int l = 0; l < kConvLayers; ++l) {
        conv_in[l] = conv_out[l] = lrn_out[l] = lrn_scale[l] = block_out[l] = Tensor();
      }
      for (int k = 0; k < kFcLayers; ++k) fc_in[k] = fc_out[k] = fc_dx[k] = Tensor();
      fc_drop[0] = fc_drop[1] = conv3_dx = Tensor();
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
  float scale = 1.0f;
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
  Tensor conv_forward(Tower& t, int l, const Tensor& x) {
    const NetworkConfig& c = cfg();
    t.conv_in[l] = x;
    Tensor y = ops::conv2d_forward(x, param(t.conv_w[l]).value, param(t.conv_b[l]).value, c.conv_stride[l],
                                   c.conv_pad[l], 1, c.activation);
    t.conv_out[l] = y;
    if (kLrnAfter[l] && c.lrn) {
      auto [out, sc] = ops::lrn_forward(y, c.lrn_params);
      t.lrn_out[l] = out;
      t.lrn_scale[l] = sc;
      y = out;
    }
    if (kPoolAfter[l]) y = ops::maxpool_forward(y, c.pool_kernel, c.pool_stride);
    t.block_out[l] = y;
    return y;
  }

  // dy is the gradient of the block's output; returns the gradient of its input (undefined for conv1).
  Tensor conv_backward(Tower& t, int l, Tensor g) {
    const NetworkConfig& c = cfg();
    const bool lrn = kLrnAfter[l] && c.lrn;
    if (kPoolAfter[l]) {
      g = ops::maxpool_backward(lrn ? t.lrn_out[l] : t.conv_out[l], t.block_out[l], g, c.pool_kernel, c.pool_stride);
    }
    if (lrn) g = ops::lrn_backward(t.conv_out[l], t.lrn_out[l], t.lrn_scale[l], g, c.lrn_params);
    g = ops::activation_backward(t.conv_out[l], g, c.activation);
    Parameter& w = param(t.conv_w[l]);
    const int k = c.conv_kernel[l];
    w.grad = ops::conv2d_backward_weight(t.conv_in[l], g, k, k, c.conv_stride[l], c.conv_pad[l], 1);
    param(t.conv_b[l]).grad = ops::bias_backward(g);
    gradients_ready(t, w, param(t.conv_b[l]));
    if (l == 0) return Tensor();  // the image needs no gradient
    const int side = static_cast<int>(t.conv_in[l].size(2));
    return ops::conv2d_backward_input(g, w.value, side, side, c.conv_stride[l], c.conv_pad[l], 1);
  }

  // Data-parallel (nccl.h): a layer's gradients are complete on the tower's stream; the reducer starts averaging
  // them across the ranks now, overlapping the rest of backward.
  void gradients_ready(Tower& t, Parameter& w, Parameter& b) {
    if (!net.reducer_) return;
    void* stream = nullptr;
#ifdef ALEXNET_WITH_CUDA
    stream = t.stream;
#endif
    net.reducer_->layer_ready(t.index, {&w, &b}, stream);
  }

  bool dropout_on(bool training) const { return training && cfg().dropout > 0.0f; }
  // Stream position of the first element of a (n, features) fc output: sample i of this batch is sample
  // sample_offset + i of the global batch (network.h), so its row starts at (sample_offset + i) * features.
  uint64_t dropout_first(const Tensor& y) const { return net.sample_offset * static_cast<uint64_t>(y.size(1)); }

  Tensor fc_forward(Tower& t, int k, const Tensor& x, bool training) {
    const NetworkConfig& c = cfg();
    t.fc_in[k] = x;
    const Activation act = k < 2 ? c.activation : Activation::None;
    Tensor y = ops::linear_forward(x, param(t.fc_w[k]).value, param(t.fc_b[k]).value, act);
    t.fc_out[k] = y;
    if (k < 2) {
      if (dropout_on(training)) {
        y = ops::dropout_forward(y, c.dropout, c.seed, Network::dropout_offset(net.step, k, t.index), true,
                                 dropout_first(y));
      }
      t.fc_drop[k] = y;
    }
    return y;
  }

  Tensor fc_backward(Tower& t, int k, Tensor g, bool training) {
    const NetworkConfig& c = cfg();
    if (k < 2) {
      if (dropout_on(training)) {
        g = ops::dropout_backward(g, c.dropout, c.seed, Network::dropout_offset(net.step, k, t.index), true,
                                  dropout_first(g));
      }
      g = ops::activation_backward(t.fc_out[k], g, c.activation);
    }
    Parameter& w = param(t.fc_w[k]);
    w.grad = ops::linear_backward_weight(t.fc_in[k], g);
    param(t.fc_b[k]).grad = ops::bias_backward(g);
    gradients_ready(t, w, param(t.fc_b[k]));
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

  // ---- the step ----
  // training: dropout on (Train always; Gradients as the caller asks). probs_out: host copy of the probabilities.
  StepStats run(const HostBatch& b, Mode mode, bool training, float lr, float momentum, float weight_decay,
                float* probs_out);
  StepStats schedule(const HostBatch& b, Mode mode, bool training, float lr, float momentum, float weight_decay,
                     float* probs_out);
  void update(Tower& t, float lr, float momentum, float weight_decay);
  void apply_update(float lr, float momentum, float weight_decay);
  void finish(bool backward, bool update);
};

}  // namespace alexnet
