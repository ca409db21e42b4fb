// A network built from its description (network.h has the placement rules). This file: construction and
// initialization, parameters, inputs and the public calls; network_layers.cpp: each layer's shapes on each tower
// and the checks; network_engine.h: the towers and exchanges; network_passes.cpp: each layer's forward and backward;
// network_step.cpp: the step schedule.
#include <cmath>
#include <set>

#include "network_engine.h"
#include "philox.h"

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


// ---- parameters and buffers, created from the layer plans ----------------------------------------------------
int Network::Impl::add_tensor(int layer, int tower, const char* suffix, const Shape& shape, bool trainable,
                              bool decay, const std::vector<float>& host) {
  const LayerDef& d = def(layer);
  const Device device = spec().devices[tower];
  Parameter p;
  p.name = str_cat(d.module.empty() ? d.name : d.module, ".tower", tower, suffix);
  p.tower = tower;
  p.trainable = trainable;
  p.decay = decay;
  p.value = Tensor::from_host(host.data(), shape, device);
  if (trainable) {
    p.momentum = Tensor::zeros(shape, device);
    if (spec().optimizer != OptimizerKind::Sgd) p.variance = Tensor::zeros(shape, device);
  }
  for (const Parameter& q : net.params_) {
    AX_CHECK(q.name != p.name, "network '", spec().name, "': layer '", d.name, "': a second parameter named ", p.name,
             " (two layers share the module '", d.module, "')");
  }
  net.params_.push_back(std::move(p));
  return static_cast<int>(net.params_.size()) - 1;
}

// Initialized on the host (identical numbers for every placement) and copied to the tower's device: weights
// N(0, init_std^2), biases init_bias (Section 5: 1 in AlexNet's conv2, conv4, conv5 and hidden fc layers, else 0).
// The weights' stream is the layer's order among the weighted layers and the tower.
void Network::Impl::add_weight_and_bias(int layer, int tower) {
  const LayerDef& d = def(layer);
  const LayerPlan& plan = plans[layer];
  LayerParams& out = towers[tower].params[layer];
  const Shape& shape = plan.weight[tower];
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  std::vector<float> host(static_cast<size_t>(count));
  fill_normal(host.data(), count, d.init_std, spec().seed + kInitKeyMix,
              static_cast<uint64_t>(plan.weight_index) * 16 + tower);
  out.weight = add_tensor(layer, tower, ".weight", shape, true, true, host);
  if (plan.bias[tower] > 0) {
    // a local layer's biases are one per output position (cuda-convnet's), shaped like its output maps
    const Shape bias_shape = d.kind == LayerKind::Local ? plan.output[tower] : Shape{plan.bias[tower]};
    host.assign(static_cast<size_t>(plan.bias[tower]), d.init_bias);
    out.bias = add_tensor(layer, tower, ".bias", bias_shape, true, false, host);
  }
}

// BatchNorm starts as the identity on normalized inputs: scale 1, shift 0, running mean 0 and variance 1 (the
// initialization of Ioffe & Szegedy's implementations and PyTorch's). PyTorch's names: weight, bias, running_*.
void Network::Impl::add_batchnorm(int layer, int tower) {
  const int64_t c = plans[layer].bias[tower];
  LayerParams& out = towers[tower].params[layer];
  const Shape shape{c};
  const std::vector<float> zeros(static_cast<size_t>(c), 0.0f), ones(zeros.size(), 1.0f);
  out.weight = add_tensor(layer, tower, ".weight", shape, true, false, ones);
  out.bias = add_tensor(layer, tower, ".bias", shape, true, false, zeros);
  out.running_mean = add_tensor(layer, tower, ".running_mean", shape, false, false, zeros);
  out.running_var = add_tensor(layer, tower, ".running_var", shape, false, false, ones);
}

void Network::Impl::prepare_input(Tower& t, const HostBatch& b) {
  const int owner = first_tower_on(t.device);
  if (owner != t.index) {  // another tower on this device already has it
    wait(t, kInput, towers[owner]);
    t.images = towers[owner].images;
    return;
  }
  const int64_t n = b.images_shape[0];
  Tensor x;
  if (b.images_f32) {
    x = Tensor::from_host(b.images_f32, b.images_shape, t.device);
  } else {
    const int64_t h = b.images_shape[1], w = b.images_shape[2];
    const int S = spec().input_size;
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
  t.images = x;
  record(t, kInput);
}


// ---- Network ---------------------------------------------------------------------------------------------------
Network::Network(const NetSpec& spec) : spec_(spec) {
  impl_ = std::make_unique<Impl>(*this);
  impl_->plans = plan_layers(spec_);
  impl_->dropouts = dropout_layers(spec_);
  const int T = spec_.towers;
  impl_->gpu = spec_.devices[0].is_cuda();
  impl_->towers.resize(T);
  for (int t = 0; t < T; ++t) {
    Impl::Tower& tw = impl_->towers[t];
    tw.index = t;
    tw.device = spec_.devices[t];
    tw.params.assign(spec_.layers.size(), Impl::LayerParams{});
    tw.state.assign(spec_.layers.size(), Impl::LayerState{});
  }
  // Layer by layer, tower 0 then tower 1 within a layer: the order of parameter_names() and of a checkpoint.
  for (int i = 0; i < impl_->layers(); ++i) {
    for (int t = 0; t < T; ++t) {
      const LayerKind kind = spec_.layers[i].kind;
      if (kind == LayerKind::BatchNorm) {
        impl_->add_batchnorm(i, t);
      } else if (kind == LayerKind::Conv || kind == LayerKind::Local || kind == LayerKind::Linear) {
        impl_->add_weight_and_bias(i, t);
      }
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
      tw.events.assign(num_points(spec_), nullptr);
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
  for (const Parameter& p : params_)
    if (p.trainable) total += p.value.numel();
  return total;
}

std::vector<std::string> Network::parameter_names() const {
  std::vector<std::string> names;
  for (const Parameter& p : params_)
    if (p.trainable) names.push_back(p.name);
  return names;
}

std::vector<std::string> Network::buffer_names() const {
  std::vector<std::string> names;
  for (const Parameter& p : params_)
    if (!p.trainable) names.push_back(p.name);
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
  const int64_t n = s[0], S = spec_.input_size;
  if (b.images_f32) {
    AX_CHECK(s[1] == spec_.in_channels && s[2] == S && s[3] == S, "AlexNet: expected float32 images of shape (n, ",
             spec_.in_channels, ", ", S, ", ", S, "), got ", shape_str(s));
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
      AX_CHECK(b.labels[i] >= 0 && b.labels[i] < spec_.classes, "AlexNet: label ", b.labels[i], " at index ", i,
               " is out of range [0, ", spec_.classes, ")");
    }
  }
}

static void check_update_arguments(const char* op, const OptimizerSettings& opt) {
  AX_CHECK(opt.lr >= 0.0f && std::isfinite(opt.lr), op, ": lr must be finite and >= 0, got ", opt.lr);
  AX_CHECK(opt.momentum >= 0.0f && opt.momentum < 1.0f, op, ": momentum must be in [0, 1), got ", opt.momentum);
  AX_CHECK(opt.weight_decay >= 0.0f && std::isfinite(opt.weight_decay), op,
           ": weight_decay must be finite and >= 0, got ", opt.weight_decay);
  AX_CHECK(opt.beta1 >= 0.0f && opt.beta1 < 1.0f && opt.beta2 >= 0.0f && opt.beta2 < 1.0f, op,
           ": adam betas must be in [0, 1), got (", opt.beta1, ", ", opt.beta2, ")");
  AX_CHECK(opt.eps > 0.0f && std::isfinite(opt.eps), op, ": adam eps must be finite and > 0, got ", opt.eps);
}

StepStats Network::train_step(const HostBatch& batch, const OptimizerSettings& opt) {
  AX_CHECK(batch.labels, "AlexNet.train_step: labels are required");
  check_update_arguments("AlexNet.train_step", opt);
  StepStats s = impl_->run(batch, Impl::Mode::Train, true, opt, nullptr);
  ++step;
  return s;
}

StepStats Network::compute_gradients(const HostBatch& batch, bool training) {
  AX_CHECK(batch.labels, "AlexNet.compute_gradients: labels are required");
  return impl_->run(batch, Impl::Mode::Gradients, training, OptimizerSettings{}, nullptr);
}

void Network::apply_update(const OptimizerSettings& opt) {
  check_update_arguments("AlexNet.apply_update", opt);
  for (const Parameter& p : params_) {
    AX_CHECK(!p.trainable || p.grad.defined(), "AlexNet.apply_update: parameter ", p.name,
             " has no gradient (call compute_gradients with training=True first)");
  }
  impl_->apply_update(opt);
  ++step;
}

StepStats Network::evaluate(const HostBatch& batch) {
  AX_CHECK(batch.labels, "AlexNet.evaluate: labels are required");
  return impl_->run(batch, Impl::Mode::Evaluate, false, OptimizerSettings{}, nullptr);
}

void Network::predict(const HostBatch& batch, float* probs) {
  impl_->run(batch, Impl::Mode::Predict, false, OptimizerSettings{}, probs);
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
