// The training step of the two-tower network (network.h has the placement rules): the order in which the towers
// run each stage, where they wait for each other, the update, and the per-tower timings. Each stage issues its work
// on every tower (each_tower, network_engine.h): on GPUs in turn, the towers' streams running concurrently; on the
// CPU at the same time, one thread per tower, when there are as many threads as towers.
#include <cmath>
#include <cstdlib>
#include <string>

#include "network_engine.h"

namespace alexnet {

bool Network::Impl::concurrent_cpu_towers() const {
  const char* mode = std::getenv("ALEXNET_CPU_TOWERS");
  const std::string m = mode ? mode : "";
  AX_CHECK(m.empty() || m == "serial" || m == "concurrent", "ALEXNET_CPU_TOWERS must be 'serial' or 'concurrent', not '",
           m, "'");
  return !gpu && towers.size() > 1 && m != "serial" && !omp_in_parallel() &&
         omp_get_max_threads() == static_cast<int>(towers.size());
}

void Network::Impl::update(Tower& t, const OptimizerSettings& opt) {
  for (Parameter& p : net.params_) {
    if (p.tower != t.index || !p.trainable) continue;
    // Weight decay on the weights only: the paper's update (Section 5) is written for the weights w, and
    // cuda-convnet's layer definitions for it decay weights but not biases (nor, here, BatchNorm's scale and shift).
    const LearningSettings& own = p.learning;  // a parameter's own settings (cuda-convnet's per layer), else the step's
    const float decay = !p.decay ? 0.0f : std::isnan(own.weight_decay) ? opt.weight_decay : own.weight_decay;
    const float lr = own.lr_scale == 1.0f ? opt.lr : opt.lr * own.lr_scale;
    if (spec().optimizer == OptimizerKind::Sgd) {
      ops::sgd_update(p.value, p.momentum, p.grad, lr, std::isnan(own.momentum) ? opt.momentum : own.momentum, decay);
    } else {
      // Kingma & Ba 2015, Algorithm 1, at timestep t = step + 1; AdamW decouples the decay (Loshchilov & Hutter).
      ops::adam_update(p.value, p.momentum, p.variance, p.grad, lr, opt.beta1, opt.beta2, opt.eps, decay,
                       spec().optimizer == OptimizerKind::AdamW, static_cast<int64_t>(net.step) + 1);
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

// The input, then every layer in order on every tower; the logits gathered on tower 0.
void Network::Impl::forward_all(const HostBatch& b, bool training, bool batch_stats) {
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
  const int last = layers() - 1;
  for (int i = 0; i <= last; ++i) {
    each_tower([&](Tower& t) {
      Scope scope(t);
      forward(t, i, training, batch_stats);
      record(t, i < last ? forward_point(i) : static_cast<int>(kLogits));
      if (i == last && t.index != 0) timing(t, kForwardDone);
    });
  }
  Tower& t0 = towers[0];
  Scope scope(t0);
  net.logits_ = gather(t0, parts([last](Tower& s) { return s.state[last].out; }), kLogits);
}

// Every layer from the last to the first on every tower; each takes its output's gradient from its consumers.
void Network::Impl::backward_all(bool training) {
  for (int i = layers() - 1; i >= 0; --i) {
    each_tower([&](Tower& t) {
      Scope scope(t);
      backward(t, i, output_gradient(t, i), training);
      record(t, backward_point(i));
      if (i == 0) timing(t, kBackwardDone);
    });
  }
}

StepStats Network::Impl::schedule(const HostBatch& b, Mode mode, bool training, const OptimizerSettings& opt,
                                  float* probs_out) {
  const bool backward = mode == Mode::Train || mode == Mode::Gradients;
  const int64_t n = b.images_shape[0];
  // BatchNorm normalizes with the batch's statistics whenever a backward pass follows (Train, Gradients), with the
  // running statistics in evaluation and prediction.
  forward_all(b, training, backward);
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
  if (backward) backward_all(training);
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
