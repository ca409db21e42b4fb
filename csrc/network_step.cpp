// The training step of the two-tower network (network.h has the placement rules): the order in which the towers
// run each stage, where they wait for each other, the update, and the per-tower timings. Each stage issues its work
// on every tower (each_tower, network_engine.h): on GPUs in turn, the towers' streams running concurrently; on the
// CPU at the same time, one thread per tower, when there are as many threads as towers.
#include <cmath>
#include <cstdlib>
#include <string>

#include "network_engine.h"

namespace alexnet {

namespace {

// parts of tensors, one per tower, in tower order.
template <class Towers, class Get>
std::vector<Tensor> parts(Towers& towers, Get get) {
  std::vector<Tensor> v;
  for (auto& t : towers) v.push_back(get(t));
  return v;
}

}  // namespace

bool Network::Impl::concurrent_cpu_towers() const {
  const char* mode = std::getenv("ALEXNET_CPU_TOWERS");
  const std::string m = mode ? mode : "";
  AX_CHECK(m.empty() || m == "serial" || m == "concurrent", "ALEXNET_CPU_TOWERS must be 'serial' or 'concurrent', not '",
           m, "'");
  return !gpu && towers.size() > 1 && m != "serial" && !omp_in_parallel() &&
         omp_get_max_threads() == static_cast<int>(towers.size());
}

void Network::Impl::update(Tower& t, const OptimizerSettings& opt) {
  const NetworkConfig& c = cfg();
  for (Parameter& p : net.params_) {
    if (p.tower != t.index || !p.trainable) continue;
    // Weight decay on the weights only: the paper's update (Section 5) is written for the weights w, and
    // cuda-convnet's layer definitions for it decay weights but not biases (nor, here, BatchNorm's scale and shift).
    const LearningSettings& own = p.learning;  // a parameter's own settings (cuda-convnet's per layer), else the step's
    const float decay = !p.decay ? 0.0f : std::isnan(own.weight_decay) ? opt.weight_decay : own.weight_decay;
    const float lr = own.lr_scale == 1.0f ? opt.lr : opt.lr * own.lr_scale;
    if (c.optimizer == OptimizerKind::Sgd) {
      ops::sgd_update(p.value, p.momentum, p.grad, lr, std::isnan(own.momentum) ? opt.momentum : own.momentum, decay);
    } else {
      // Kingma & Ba 2015, Algorithm 1, at timestep t = step + 1; AdamW decouples the decay (Loshchilov & Hutter).
      ops::adam_update(p.value, p.momentum, p.variance, p.grad, lr, opt.beta1, opt.beta2, opt.eps, decay,
                       c.optimizer == OptimizerKind::AdamW, static_cast<int64_t>(net.step) + 1);
    }
  }
}

// The update half of a data-parallel step (Network::apply_update): the gradients are compute_gradients', averaged
// over the ranks in place. Releases the step's tensors as the end of a Train step does.
void Network::Impl::apply_update(const OptimizerSettings& opt) {
  each_tower([&](Tower& t) {
    Scope scope(t);
    update(t, opt);
  });
#ifdef ALEXNET_WITH_CUDA
  if (gpu) {
    for (Tower& t : towers) cuda::synchronize_stream(t.stream);
  }
#endif
  free_step();
}

StepStats Network::Impl::run(const HostBatch& b, Mode mode, bool training, const OptimizerSettings& opt,
                             float* probs_out) {
  net.check_batch(b);
  try {
    return schedule(b, mode, training, opt, probs_out);
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

// The input, conv1 .. conv5 and the head's input (flattened or globally pooled conv5 block) of every tower.
void Network::Impl::forward_convs(const HostBatch& b, bool batch_stats) {
  const int64_t n = b.images_shape[0];
  for (Tower& t : towers) {  // in turn: a tower on the device of an earlier one shares that one's input
    Scope scope(t);
    timing(t, kStart);
    prepare_input(t, b);
    if (t.index == 0) {
      // Uploaded now, while tower 0's stream is idle: a host-to-device copy waits for its stream.
      labels = b.labels ? Tensor::from_host(b.labels, {n}, t.device, DType::I32)
                        : Tensor::zeros({n}, t.device, DType::I32);  // predict: softmax needs some valid label
    }
  }
  each_tower([&](Tower& t) {
    Scope scope(t);
    Tensor x = conv_forward(t, 0, t.conv_in[0], batch_stats);
    conv_forward(t, 1, x, batch_stats);
    record(t, kConv3In);
  });
  each_tower([&](Tower& t) {  // conv3 sees the conv2 maps of every tower
    Scope scope(t);
    Tensor x = gather(t, parts(towers, [](Tower& s) { return s.block_out[1]; }), kConv3In);
    for (int l = 2; l < kConvLayers; ++l) x = conv_forward(t, l, x, batch_stats);
    head_forward(t, n);
    record(t, fc_in_point(0));
  });
}

// Every fc layer sees the previous layer of every tower; then the logits are gathered on tower 0.
void Network::Impl::forward_head(bool training) {
  const int layers = cfg().fc_layers();
  for (int k = 0; k < layers; ++k) {
    each_tower([&](Tower& t) {
      Scope scope(t);
      Tensor x = k == 0 ? gather(t, parts(towers, [](Tower& s) { return s.head_in; }), fc_in_point(0))
                        : gather(t, parts(towers, [k](Tower& s) { return s.fc_drop[k - 1]; }), fc_in_point(k));
      fc_forward(t, k, x, training);
      record(t, k + 1 < layers ? fc_in_point(k + 1) : static_cast<int>(kLogits));
      if (k == layers - 1 && t.index != 0) timing(t, kForwardDone);
    });
  }
  Tower& t0 = towers[0];
  Scope scope(t0);
  net.logits_ = gather(t0, parts(towers, [layers](Tower& s) { return s.fc_out[layers - 1]; }), kLogits);
}

// The output layer takes its classes' columns of the softmax gradient from tower 0; every other fc layer's output
// gradient is the sum of the slices every tower's next layer sends back.
void Network::Impl::backward_head(bool training) {
  const NetworkConfig& c = cfg();
  const int last = c.fc_layers() - 1;
  Tower& t0 = towers[0];
  each_tower([&](Tower& t) {
    Scope scope(t);
    Tensor dz = towers.size() == 1 ? dlogits : slice_from(t, t0, dlogits, t.class_offset, t.fc_n[last], kDLogits);
    t.fc_dx[last] = fc_backward(t, last, dz, training);
    record(t, fc_dx_point(c, last));
  });
  for (int k = last - 1; k >= 0; --k) {
    each_tower([&](Tower& t) {
      Scope scope(t);
      Tensor g = reduce_slice(t, parts(towers, [k](Tower& s) { return s.fc_dx[k + 1]; }), t.fc_in_offset[k],
                              t.fc_n[k], fc_dx_point(c, k + 1));
      t.fc_dx[k] = fc_backward(t, k, g, training);
      record(t, fc_dx_point(c, k));
    });
  }
}

// conv5 .. conv3 from the first fc layer's input gradients, then conv2, conv1 from conv3's.
void Network::Impl::backward_convs() {
  const NetworkConfig& c = cfg();
  each_tower([&](Tower& t) {
    Scope scope(t);
    const int64_t features = t.head_in.size(1);
    Tensor g = reduce_slice(t, parts(towers, [](Tower& s) { return s.fc_dx[0]; }), t.index * features, features,
                            fc_dx_point(c, 0));
    g = head_backward(t, g);
    for (int l = kConvLayers - 1; l >= 2; --l) g = conv_backward(t, l, g);
    t.conv3_dx = g;
    record(t, kConv3Dx);
  });
  each_tower([&](Tower& t) {
    Scope scope(t);
    const int c2 = t.conv_c[1];
    Tensor g = reduce_slice(t, parts(towers, [](Tower& s) { return s.conv3_dx; }), static_cast<int64_t>(t.index) * c2,
                            c2, kConv3Dx);
    g = conv_backward(t, 1, g);
    conv_backward(t, 0, g);
    timing(t, kBackwardDone);
  });
}

StepStats Network::Impl::schedule(const HostBatch& b, Mode mode, bool training, const OptimizerSettings& opt,
                                  float* probs_out) {
  const bool backward = mode == Mode::Train || mode == Mode::Gradients;
  const int64_t n = b.images_shape[0];
  // BatchNorm normalizes with the batch's statistics whenever a backward pass follows (Train, Gradients), with the
  // running statistics in evaluation and prediction.
  forward_convs(b, backward);
  forward_head(training);
  StepStats stats;
  stats.n = n;
  Tower& t0 = towers[0];
  {
    Scope scope(t0);
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
    backward_head(training);
    backward_convs();
  }
  if (backward && net.reducer_) net.reducer_->wait();  // data-parallel: the averaged gradients (nccl.h)
  if (mode == Mode::Train) {
    each_tower([&](Tower& t) {
      Scope scope(t);
      update(t, opt);
      timing(t, kUpdateDone);
    });
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
  // Keep the activations and gradients after compute_gradients, whose caller inspects them.
  if (mode != Mode::Gradients) free_step();
  return stats;
}

// The step's activations and gradients go back to the allocator's cache for the next step.
void Network::Impl::free_step() {
  for (Tower& t : towers) t.clear();
  for (Parameter& p : net.params_) p.grad = Tensor();
  net.logits_ = probs = dlogits = labels = Tensor();
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

}  // namespace alexnet
