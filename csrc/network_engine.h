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

// Exchange points: the producing tower records a point's event after writing what the other towers read. The fixed
// points, then per layer i one for its output (forward_point) and one for its input gradient (backward_point).
enum Point : int {
  kInput,    // the prepared image batch (shared by towers on one device)
  kLogits,   // each tower's classes -> logits on tower 0
  kDLogits,  // softmax gradient on tower 0 -> each tower's classes
  kFixedPoints
};
inline int forward_point(int layer) { return kFixedPoints + 2 * layer; }
inline int backward_point(int layer) { return kFixedPoints + 2 * layer + 1; }
inline int num_points(const NetSpec& s) { return kFixedPoints + 2 * static_cast<int>(s.layers.size()); }
enum Timing : int { kStart, kForwardDone, kBackwardDone, kUpdateDone, kNumTimings };

struct Network::Impl {
  static constexpr int kNone = -1;  // no such parameter (a layer without bias or weights)

  // Indices into Network::params_ of one layer's tensors on one tower (batchnorm: weight = gamma, bias = beta).
  struct LayerParams {
    int weight = kNone, bias = kNone, running_mean = kNone, running_var = kNone;
  };

  // One layer on one tower during a step: what its backward pass needs, and what the other towers read.
  struct LayerState {
    Tensor in;   // what it read (gathered over the towers; flattened for a linear layer)
    Shape read;  // the shape of what it read, before a linear layer flattened it
    Tensor pre;  // pooling and batchnorm: the output before the layer's activation
    Tensor out;  // its output
    Tensor aux, aux2;  // lrn: scale; spatial_lrn: denominator; batchnorm: batch mean and 1/std
    Tensor dx;   // backward: the gradient of what it read (the other towers take their slices of it)
  };

  struct Tower {
    int index = 0;
    Device device;
    std::vector<LayerParams> params;  // per layer
    std::vector<LayerState> state;    // per layer
    Tensor images;                    // the prepared batch
#ifdef ALEXNET_WITH_CUDA
    cudaStream_t stream = nullptr;
    std::vector<cudaEvent_t> events;  // one per exchange point (num_points)
    cudaEvent_t timing[kNumTimings] = {};
#endif
    void clear() {
      for (LayerState& s : state) s = LayerState();
      images = Tensor();
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
  std::vector<LayerPlan> plans;
  int dropouts = 0;  // dropout layers in the net (their mask streams)
  std::vector<Tower> towers;
  std::vector<Tensor> mean;  // per tower, on its device (shared between towers on one device)
  float scale = 1.0f;
  Tensor labels;          // on tower 0's device
  Tensor probs, dlogits;  // on tower 0's device
  bool gpu = false;

  explicit Impl(Network& n) : net(n) {}

  const NetSpec& spec() const { return net.spec_; }
  const LayerDef& def(int i) const { return net.spec_.layers[i]; }
  int layers() const { return static_cast<int>(plans.size()); }
  Parameter& param(int i) { return net.params_[i]; }
  Tensor value_or_none(int i) { return i == kNone ? Tensor() : param(i).value; }
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
  // one tensor per tower, in tower order
  template <class Get>
  std::vector<Tensor> parts(Get get) {
    std::vector<Tensor> v;
    for (Tower& t : towers) v.push_back(get(t));
    return v;
  }

  // ---- construction (network.cpp): a layer's parameters and buffers, as indices into Network::params_ ----
  int add_tensor(int layer, int tower, const char* suffix, const Shape& shape, bool trainable, bool decay,
                 const std::vector<float>& host);
  void add_weight_and_bias(int layer, int tower);
  void add_batchnorm(int layer, int tower);

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

  // Dropout layer i's mask stream on tower t at this step (Network::dropout_offset), and the position of the
  // batch's first element in it: sample i of this batch is sample sample_offset + i of the global batch (network.h).
  uint64_t dropout_stream(const Tower& t, int i) const {
    return Network::dropout_offset(net.step, plans[i].dropout_index, t.index, dropouts);
  }
  uint64_t mask_first(const Tensor& x) const {
    return net.sample_offset * static_cast<uint64_t>(x.numel() / x.size(0));
  }

  // ---- layers (network_passes.cpp; inside the tower's Scope) ----
  // What layer i reads on tower t: the images, its input layer's output on this tower, or on every tower.
  Tensor layer_input(Tower& t, int i);
  // Layer i's forward on tower t (dropout on when `training`; batchnorm on the batch's statistics when
  // `batch_stats`), keeping what its backward needs in t.state[i].
  void forward(Tower& t, int i, bool training, bool batch_stats);
  // The gradient of layer i's output on tower t: the softmax gradient's columns of its classes for the last layer,
  // else the sum of what its consumers send back.
  Tensor output_gradient(Tower& t, int i);
  // Layer i's backward on tower t from the gradient g of its output: its parameters' gradients, and the gradient of
  // what it read in t.state[i].dx (unless it read the images).
  void backward(Tower& t, int i, Tensor g, bool training);

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

  // ---- input (network.cpp) ----
  void prepare_input(Tower& t, const HostBatch& b);

  // ---- the step (network_step.cpp) ----
  // training: dropout on (Train always; Gradients as the caller asks). opt: the update (Train only).
  // probs_out: host copy of the probabilities.
  StepStats run(const HostBatch& b, Mode mode, bool training, const OptimizerSettings& opt, float* probs_out);
  StepStats schedule(const HostBatch& b, Mode mode, bool training, const OptimizerSettings& opt, float* probs_out);
  void forward_all(const HostBatch& b, bool training, bool batch_stats);
  void backward_all(bool training);
  void update(Tower& t, const OptimizerSettings& opt);
  void apply_update(const OptimizerSettings& opt);
  void finish(bool backward, bool update);
  void free_step();
};

}  // namespace alexnet
