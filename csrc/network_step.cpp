// The training step of the two-tower network (network.h has the placement rules): the order in which the towers
// run each stage, where they wait for each other, the update, and the per-tower timings.
#include "network_engine.h"

namespace alexnet {

void Network::Impl::update(Tower& t, float lr, float momentum, float weight_decay) {
  for (Parameter& p : net.params_) {
    if (p.tower != t.index) continue;
    // Weight decay on the weights only: the paper's update (Section 5) is written for the weights w, and
    // cuda-convnet's layer definitions for it decay weights but not biases.
    ops::sgd_update(p.value, p.momentum, p.grad, lr, momentum, p.is_bias ? 0.0f : weight_decay);
  }
}

// The update half of a data-parallel step (Network::apply_update): the gradients are compute_gradients', averaged
// over the ranks in place. Releases the step's tensors as the end of a Train step does.
void Network::Impl::apply_update(float lr, float momentum, float weight_decay) {
  for (Tower& t : towers) {
    Scope scope(t);
    update(t, lr, momentum, weight_decay);
  }
#ifdef ALEXNET_WITH_CUDA
  if (gpu) {
    for (Tower& t : towers) cuda::synchronize_stream(t.stream);
  }
#endif
  for (Tower& t : towers) t.clear();
  for (Parameter& p : net.params_) p.grad = Tensor();
  net.logits_ = probs = dlogits = labels = Tensor();
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
  if (backward && net.reducer_) net.reducer_->wait();  // data-parallel: the averaged gradients (nccl.h)
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

}  // namespace alexnet
