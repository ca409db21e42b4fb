// The two-tower AlexNet (network.h has the layer table and the placement rules). This file: initialization and the
// step schedule with its exchange points; network_layers.cpp: the configurations and the layer table.
#include "network.h"

#include <cmath>
#include <optional>
#include <set>

#include "network_layers.h"
#include "ops.h"
#include "philox.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace alexnet {

namespace {

// Init draws from Philox with its own key so it never shares a stream with dropout (which is keyed by the seed).
constexpr uint64_t kInitKeyMix = 0x9E3779B97F4A7C15ULL;

// weights[i] = std * z_i, z_i standard normal by Box-Muller on the Philox uniforms of stream (key, stream):
// block b gives uniforms u0..u3 and the normals of elements 4b..4b+3 come from the pairs (u0, u1) and (u2, u3).
void fill_normal(float* out, int64_t count, float std, uint64_t key, uint64_t stream) {
  const int64_t blocks = (count + 3) / 4;
  constexpr float kTwoPi = 6.28318530717958647692f;
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    float u[4];
    philox_uniform4(key, stream, static_cast<uint64_t>(b), u);
    // 1 - u is in (0, 1], so the log is finite (|z| <= sqrt(2 ln 2^24) = 5.77).
    const float r0 = std::sqrt(-2.0f * std::log(1.0f - u[0])), r1 = std::sqrt(-2.0f * std::log(1.0f - u[2]));
    const float z[4] = {r0 * std::cos(kTwoPi * u[1]), r0 * std::sin(kTwoPi * u[1]), r1 * std::cos(kTwoPi * u[3]),
                        r1 * std::sin(kTwoPi * u[3])};
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = 4 * b + lane;
      if (i < count) out[i] = std * z[lane];
    }
  }
}

}  // namespace

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
    if (l == 0) return Tensor();  // the image needs no gradient
    const int side = static_cast<int>(t.conv_in[l].size(2));
    return ops::conv2d_backward_input(g, w.value, side, side, c.conv_stride[l], c.conv_pad[l], 1);
  }

  bool dropout_on(bool training) const { return training && cfg().dropout > 0.0f; }

  Tensor fc_forward(Tower& t, int k, const Tensor& x, bool training) {
    const NetworkConfig& c = cfg();
    t.fc_in[k] = x;
    const Activation act = k < 2 ? c.activation : Activation::None;
    Tensor y = ops::linear_forward(x, param(t.fc_w[k]).value, param(t.fc_b[k]).value, act);
    t.fc_out[k] = y;
    if (k < 2) {
      if (dropout_on(training)) {
        y = ops::dropout_forward(y, c.dropout, c.seed, Network::dropout_offset(net.step, k, t.index), true);
      }
      t.fc_drop[k] = y;
    }
    return y;
  }

  Tensor fc_backward(Tower& t, int k, Tensor g, bool training) {
    const NetworkConfig& c = cfg();
    if (k < 2) {
      if (dropout_on(training)) {
        g = ops::dropout_backward(g, c.dropout, c.seed, Network::dropout_offset(net.step, k, t.index), true);
      }
      g = ops::activation_backward(t.fc_out[k], g, c.activation);
    }
    Parameter& w = param(t.fc_w[k]);
    w.grad = ops::linear_backward_weight(t.fc_in[k], g);
    param(t.fc_b[k]).grad = ops::bias_backward(g);
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
  void finish(bool backward, bool update);
};

void Network::Impl::update(Tower& t, float lr, float momentum, float weight_decay) {
  for (Parameter& p : net.params_) {
    if (p.tower != t.index) continue;
    // Weight decay on the weights only: the paper's update (Section 5) is written for the weights w, and
    // cuda-convnet's layer definitions for it decay weights but not biases.
    ops::sgd_update(p.value, p.momentum, p.grad, lr, momentum, p.is_bias ? 0.0f : weight_decay);
  }
}

StepStats Network::Impl::run(const HostBatch& b, Mode mode, bool training, float lr, float momentum,
                             float weight_decay, float* probs_out) {
  net.check_batch(b);
  try {
    return schedule(b, mode, training, lr, momentum, weight_decay, probs_out);
  } catch (...) {
    // Let whatever was queued finish before the step's tensors can be freed or reused, then report the error.
#ifdef ALEXNET_WITH_CUDA
    for (Tower& t : towers) {
      if (!gpu) break;
      try {
        cuda::synchronize_stream(t.stream);
      } catch (...) {
      }
    }
#endif
    for (Tower& t : towers) t.clear();
    net.logits_ = probs = dlogits = labels = Tensor();
    throw;
  }
}

StepStats Network::Impl::schedule(const HostBatch& b, Mode mode, bool training, float lr, float momentum,
                                  float weight_decay, float* probs_out) {
  const bool backward = mode == Mode::Train || mode == Mode::Gradients;
  const int64_t n = b.images_shape[0];
  const int T = static_cast<int>(towers.size());
  auto parts = [&](auto get) {
    std::vector<Tensor> v;
    for (Tower& t : towers) v.push_back(get(t));
    return v;
  };

  // Forward. Each loop issues one stage on every tower; on GPUs the towers' streams run concurrently.
  for (Tower& t : towers) {
    Scope scope(t);
    timing(t, kStart);
    prepare_input(t, b);
    if (t.index == 0) {
      // Uploaded now, while tower 0's stream is idle: a host-to-device copy waits for its stream.
      labels = b.labels ? Tensor::from_host(b.labels, {n}, t.device, DType::I32)
                        : Tensor::zeros({n}, t.device, DType::I32);  // predict: softmax needs some valid label
    }
  }
  for (Tower& t : towers) {
    Scope scope(t);
    Tensor x = conv_forward(t, 0, t.conv_in[0]);
    conv_forward(t, 1, x);
    record(t, kConv3In);
  }
  for (Tower& t : towers) {  // conv3 sees the conv2 maps of every tower
    Scope scope(t);
    Tensor x = gather(t, parts([](Tower& s) { return s.block_out[1]; }), kConv3In);
    for (int l = 2; l < kConvLayers; ++l) x = conv_forward(t, l, x);
    record(t, kFc6In);
  }
  for (int k = 0; k < kFcLayers; ++k) {  // every fc layer sees the previous layer of every tower
    const int point = kFc6In + k;
    for (Tower& t : towers) {
      Scope scope(t);
      Tensor x;
      if (k == 0) {
        x = gather(t, parts([](Tower& s) { return s.block_out[kConvLayers - 1]; }), point);
        x = x.view({n, x.numel() / n});
      } else {
        x = gather(t, parts([k](Tower& s) { return s.fc_drop[k - 1]; }), point);
      }
      fc_forward(t, k, x, training);
      record(t, point + 1);  // kFc7In, kFc8In, kLogits
      if (k == kFcLayers - 1 && t.index != 0) timing(t, kForwardDone);
    }
  }
  StepStats stats;
  stats.n = n;
  Tower& t0 = towers[0];
  {
    Scope scope(t0);
    net.logits_ = gather(t0, parts([](Tower& s) { return s.fc_out[kFcLayers - 1]; }), kLogits);
    auto [loss, p] = ops::softmax_xent_forward(net.logits_, labels);
    stats.loss = loss;
    probs = p;
    if (backward) {
      dlogits = ops::softmax_xent_backward(probs, labels);
      record(t0, kDLogits);
    }
    timing(t0, kForwardDone);
  }

  if (backward) {
    // fc8: each tower takes its classes' columns of the softmax gradient from tower 0.
    for (Tower& t : towers) {
      Scope scope(t);
      Tensor dz = T == 1 ? dlogits : slice_from(t, t0, dlogits, t.class_offset, t.fc_n[2], kDLogits);
      t.fc_dx[2] = fc_backward(t, 2, dz, training);
      record(t, kFc8Dx);
    }
    // fc7, fc6: the gradient of tower t's outputs is the sum of the slices every tower's next layer sends back.
    for (int k = 1; k >= 0; --k) {
      const int point = kFc8Dx + (1 - k);  // where fc(k+1)'s input gradients were recorded
      for (Tower& t : towers) {
        Scope scope(t);
        Tensor g = reduce_slice(t, parts([k](Tower& s) { return s.fc_dx[k + 1]; }), t.fc_in_offset[k], t.fc_n[k],
                                point);
        t.fc_dx[k] = fc_backward(t, k, g, training);
        record(t, point + 1);  // kFc7Dx, kFc6Dx
      }
    }
    // conv5 .. conv3
    const int c5 = t0.conv_c[kConvLayers - 1], side5 = net.geo_.block_out[kConvLayers - 1];
    for (Tower& t : towers) {
      Scope scope(t);
      const int64_t features = static_cast<int64_t>(c5) * side5 * side5;
      Tensor g = reduce_slice(t, parts([](Tower& s) { return s.fc_dx[0]; }), t.index * features, features, kFc6Dx);
      g = g.view({n, c5, side5, side5});
      for (int l = kConvLayers - 1; l >= 2; --l) g = conv_backward(t, l, g);
      t.conv3_dx = g;
      record(t, kConv3Dx);
    }
    // conv2, conv1
    for (Tower& t : towers) {
      Scope scope(t);
      const int c2 = t.conv_c[1];
      Tensor g = reduce_slice(t, parts([](Tower& s) { return s.conv3_dx; }), static_cast<int64_t>(t.index) * c2, c2,
                              kConv3Dx);
      g = conv_backward(t, 1, g);
      conv_backward(t, 0, g);
      timing(t, kBackwardDone);
    }
  }
  if (mode == Mode::Train) {
    for (Tower& t : towers) {
      Scope scope(t);
      update(t, lr, momentum, weight_decay);
      timing(t, kUpdateDone);
    }
  }
  {
    Scope scope(t0);
    if (b.labels) {
      auto [top1, top5] = ops::topk_correct(net.logits_, labels);
      stats.top1 = top1;
      stats.top5 = top5;
    }
    if (probs_out) probs.copy_to_host(probs_out);
  }
  finish(backward, mode == Mode::Train);
  if (mode != Mode::Gradients) {
    // Free the step's activations and gradients (back to the allocator's cache for the next step); keep them after
    // compute_gradients, whose caller inspects them.
    for (Tower& t : towers) t.clear();
    for (Parameter& p : net.params_) p.grad = Tensor();
    net.logits_ = probs = dlogits = labels = Tensor();
  }
  return stats;
}

// Waits for every tower (the step's cross-stream reads are then complete, so its tensors may be freed) and reads
// the towers' timings.
void Network::Impl::finish(bool backward, bool update) {
  net.timings_.clear();
#ifdef ALEXNET_WITH_CUDA
  if (!gpu) return;
  for (Tower& t : towers) cuda::synchronize_stream(t.stream);
  for (Tower& t : towers) {
    TowerTiming tt;
    tt.device = t.device.str();
    tt.forward_ms = cuda::event_elapsed_ms(t.timing[kStart], t.timing[kForwardDone]);
    int last = kForwardDone;
    if (backward) {
      tt.backward_ms = cuda::event_elapsed_ms(t.timing[kForwardDone], t.timing[kBackwardDone]);
      last = kBackwardDone;
    }
    if (update) {
      tt.update_ms = cuda::event_elapsed_ms(t.timing[kBackwardDone], t.timing[kUpdateDone]);
      last = kUpdateDone;
    }
    tt.total_ms = cuda::event_elapsed_ms(t.timing[kStart], t.timing[last]);
    net.timings_.push_back(tt);
  }
#endif
}

// ---- Network ---------------------------------------------------------------------------------------------------
Network::Network(const NetworkConfig& cfg) : cfg_(cfg) {
  validate_config(cfg_);
  geo_ = network_geometry(cfg_);
  impl_ = std::make_unique<Impl>(*this);
  const int T = cfg_.towers;
  impl_->gpu = cfg_.devices[0].is_cuda();

  // Tower shares (fc8's classes split ceil/floor: tower 0 takes ceil(C/2)) and parameters, both from the layer
  // table, so AlexNet.summary() describes exactly what is built.
  impl_->towers.resize(T);
  for (int t = 0; t < T; ++t) {
    Impl::Tower& tw = impl_->towers[t];
    tw.index = t;
    tw.device = cfg_.devices[t];
    tw.class_offset = fc8_class_offset(cfg_, t);
  }
  // Initialized on the host (identical numbers for every placement) and copied to the tower's device.
  const uint64_t init_key = cfg_.seed + kInitKeyMix;
  std::vector<float> host;
  auto add = [&](const LayerSpec& layer, bool is_bias) {
    Parameter p;
    p.name = str_cat(layer.module, ".tower", layer.tower, is_bias ? ".bias" : ".weight");
    p.tower = layer.tower;
    p.is_bias = is_bias;
    const Shape shape = is_bias ? Shape{layer.bias} : layer.weight;
    int64_t count = 1;
    for (int64_t d : shape) count *= d;
    host.assign(static_cast<size_t>(count), 0.0f);
    if (is_bias) {
      std::fill(host.begin(), host.end(), layer.bias_one ? cfg_.bias_init : 0.0f);
    } else {
      fill_normal(host.data(), count, cfg_.weight_std, init_key,
                  static_cast<uint64_t>(layer.weight_index) * 16 + layer.tower);
    }
    p.value = Tensor::from_host(host.data(), shape, cfg_.devices[layer.tower]);
    p.momentum = Tensor::zeros(shape, cfg_.devices[layer.tower]);
    params_.push_back(std::move(p));
    return params_.size() - 1;
  };
  for (const LayerSpec& layer : describe_layers(cfg_)) {
    if (layer.weight_index < 0) continue;
    Impl::Tower& tw = impl_->towers[layer.tower];
    const int out = static_cast<int>(layer.weight[0]);
    if (layer.weight_index < kConvLayers) {
      const int l = layer.weight_index;
      tw.conv_c[l] = out;
      tw.conv_w[l] = add(layer, false);
      tw.conv_b[l] = add(layer, true);
    } else {
      const int k = layer.weight_index - kConvLayers;
      tw.fc_n[k] = out;
      tw.fc_in_offset[k] = layer.tower * out;  // where this tower's outputs sit in the next fc layer's input
      tw.fc_w[k] = add(layer, false);
      tw.fc_b[k] = add(layer, true);
    }
  }

  // Default normalization: none (mean 0, scale 1).
  const float zero_mean[3] = {0.0f, 0.0f, 0.0f};
  set_normalization(zero_mean, {3}, 1.0f);

#ifdef ALEXNET_WITH_CUDA
  if (impl_->gpu) {
    std::set<int> devices;
    for (Impl::Tower& tw : impl_->towers) {
      devices.insert(tw.device.index);
      tw.stream = cuda::create_stream(tw.device.index);
      for (auto& e : tw.events) e = cuda::create_event(tw.device.index);
      for (auto& e : tw.timing) e = cuda::create_timing_event(tw.device.index);
    }
    // Exchanges between two GPUs go over NVLink/PCIe directly when peer access is possible.
    for (int a : devices)
      for (int b : devices)
        if (a != b) cuda::enable_peer_access(a, b);
    // The parameters and momentum buffers were written on each device's default stream.
    for (int d : devices) cuda::synchronize_device(d);
  }
#endif
}

Network::~Network() {
#ifdef ALEXNET_WITH_CUDA
  if (impl_ && impl_->gpu) {
    for (Impl::Tower& tw : impl_->towers) {
      cudaStream_t s = tw.stream;
      if (!s) continue;
      try {
        cuda::synchronize_stream(s);
      } catch (...) {
      }
      tw.clear();
      for (auto& e : tw.events)
        if (e) cuda::destroy_event(tw.device.index, e);
      for (auto& e : tw.timing)
        if (e) cuda::destroy_event(tw.device.index, e);
      cuda::destroy_stream(tw.device.index, s);
    }
  }
#endif
}

int64_t Network::num_parameters() const {
  int64_t total = 0;
  for (const Parameter& p : params_) total += p.value.numel();
  return total;
}

std::vector<std::string> Network::parameter_names() const {
  std::vector<std::string> names;
  for (const Parameter& p : params_) names.push_back(p.name);
  return names;
}

Parameter& Network::parameter(const std::string& name) {
  for (Parameter& p : params_)
    if (p.name == name) return p;
  throw ValueError(str_cat("AlexNet: no parameter named '", name, "' (names look like 'features.0.tower0.weight'; see AlexNet.parameter_names())"));
}

void Network::set_normalization(const float* mean, const Shape& mean_shape, float scale) {
  const bool per_pixel = mean_shape.size() == 3;
  AX_CHECK((mean_shape.size() == 1 && mean_shape[0] == 3) || (per_pixel && mean_shape[0] == 3 && mean_shape[1] >= 1 &&
                                                              mean_shape[2] >= 1),
           "AlexNet.set_normalization: expected a mean of shape (3,) or (3, H, W), got ", shape_str(mean_shape));
  AX_CHECK(std::isfinite(scale), "AlexNet.set_normalization: scale must be finite, got ", scale);
  impl_->mean.assign(impl_->towers.size(), Tensor());
  for (Impl::Tower& t : impl_->towers) {
    const int owner = impl_->first_tower_on(t.device);
    impl_->mean[t.index] = owner == t.index ? Tensor::from_host(mean, mean_shape, t.device) : impl_->mean[owner];
  }
  impl_->scale = scale;
}

void Network::check_batch(const HostBatch& b) const {
  const Shape& s = b.images_shape;
  AX_CHECK((b.images_f32 != nullptr) != (b.images_u8 != nullptr), "AlexNet: expected either float32 or uint8 images");
  AX_CHECK(s.size() == 4 && s[0] >= 1, "AlexNet: expected a non-empty 4-d image batch, got shape ", shape_str(s));
  const int64_t n = s[0], S = cfg_.input_size;
  if (b.images_f32) {
    AX_CHECK(s[1] == cfg_.in_channels && s[2] == S && s[3] == S, "AlexNet: expected float32 images of shape (n, ",
             cfg_.in_channels, ", ", S, ", ", S, "), got ", shape_str(s));
    AX_CHECK(!b.crop_y && !b.crop_x && !b.flip && !b.rgb_shift,
             "AlexNet: crops/flips/rgb_shift apply to uint8 images only (float32 images are used as given)");
  } else {
    AX_CHECK(s[3] == 3 && s[1] >= S && s[2] >= S, "AlexNet: expected uint8 images of shape (n, H, W, 3) with H, W >= ",
             S, ", got ", shape_str(s));
    const Shape& m = impl_->mean[0].shape();
    AX_CHECK(m.size() == 1 || (m[1] == s[1] && m[2] == s[2]), "AlexNet: the per-pixel mean is ", shape_str(m),
             " but the images are ", s[1], "x", s[2]);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t y = b.crop_y ? b.crop_y[i] : (s[1] - S) / 2, x = b.crop_x ? b.crop_x[i] : (s[2] - S) / 2;
      AX_CHECK(y >= 0 && x >= 0 && y + S <= s[1] && x + S <= s[2], "AlexNet: crop (", y, ", ", x, ") of image ", i,
               " puts a ", S, "x", S, " crop outside the ", s[1], "x", s[2], " image");
    }
  }
  if (b.labels) {
    for (int64_t i = 0; i < n; ++i) {
      AX_CHECK(b.labels[i] >= 0 && b.labels[i] < cfg_.num_classes, "AlexNet: label ", b.labels[i], " at index ", i,
               " is out of range [0, ", cfg_.num_classes, ")");
    }
  }
}

StepStats Network::train_step(const HostBatch& batch, float lr, float momentum, float weight_decay) {
  AX_CHECK(batch.labels, "AlexNet.train_step: labels are required");
  AX_CHECK(lr >= 0.0f && std::isfinite(lr), "AlexNet.train_step: lr must be finite and >= 0, got ", lr);
  AX_CHECK(momentum >= 0.0f && momentum < 1.0f, "AlexNet.train_step: momentum must be in [0, 1), got ", momentum);
  AX_CHECK(weight_decay >= 0.0f, "AlexNet.train_step: weight_decay must be >= 0, got ", weight_decay);
  StepStats s = impl_->run(batch, Impl::Mode::Train, true, lr, momentum, weight_decay, nullptr);
  ++step;
  return s;
}

StepStats Network::compute_gradients(const HostBatch& batch, bool training) {
  AX_CHECK(batch.labels, "AlexNet.compute_gradients: labels are required");
  return impl_->run(batch, Impl::Mode::Gradients, training, 0, 0, 0, nullptr);
}

StepStats Network::evaluate(const HostBatch& batch) {
  AX_CHECK(batch.labels, "AlexNet.evaluate: labels are required");
  return impl_->run(batch, Impl::Mode::Evaluate, false, 0, 0, 0, nullptr);
}

void Network::predict(const HostBatch& batch, float* probs) {
  impl_->run(batch, Impl::Mode::Predict, false, 0, 0, 0, probs);
}

std::vector<std::pair<std::string, MemoryStats>> Network::memory_stats() const {
  std::vector<std::pair<std::string, MemoryStats>> out;
  std::set<std::string> seen;
  for (const Impl::Tower& t : impl_->towers) {
    const std::string name = t.device.str();
    if (!seen.insert(name).second) continue;
    MemoryStats s = cpu_memory_stats();
#ifdef ALEXNET_WITH_CUDA
    if (t.device.is_cuda()) s = cuda::memory_stats(t.device.index);
#endif
    out.emplace_back(name, s);
  }
  return out;
}

void Network::reset_peak_memory() {
  for (const Impl::Tower& t : impl_->towers) {
    if (t.device.is_cpu()) {
      reset_cpu_peak_memory();
    } else {
#ifdef ALEXNET_WITH_CUDA
      cuda::reset_peak_memory(t.device.index);
#endif
    }
  }
}

}  // namespace alexnet
