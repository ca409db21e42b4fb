// Each layer's forward and backward pass on one tower (network_engine.h): the ops of ops.h for the layer's kind,
// the exchanges where a layer reads every tower's maps, and what each pass keeps for the next.
#include <tuple>

#include "network_engine.h"

namespace alexnet {

namespace {

// The activation after a layer that has no fused one (pooling, batchnorm): forward and backward.
Tensor activate(const Tensor& x, Activation act) {
  return act == Activation::None ? x : ops::activation_forward(x, act);
}
Tensor activate_backward(const Tensor& y, const Tensor& g, Activation act) {
  return act == Activation::None ? g : ops::activation_backward(y, g, act);
}

}  // namespace

Tensor Network::Impl::layer_input(Tower& t, int i) {
  const LayerDef& d = def(i);
  if (d.input < 0) return t.images;
  if (!d.sees_all) return t.state[d.input].out;
  return gather(t, parts([&](Tower& s) { return s.state[d.input].out; }), forward_point(d.input));
}

void Network::Impl::forward(Tower& t, int i, bool training, bool batch_stats) {
  const LayerDef& d = def(i);
  const LayerParams& p = t.params[i];
  LayerState& st = t.state[i];
  const Tensor x = layer_input(t, i);
  const int64_t n = x.size(0);
  st.in = x;
  st.read = x.shape();
  switch (d.kind) {
    case LayerKind::Conv:
      st.out = ops::conv2d_forward(x, param(p.weight).value, value_or_none(p.bias), d.stride, d.pad, 1,
                                   d.activation);
      break;
    case LayerKind::Local:
      st.out = ops::local_forward(x, param(p.weight).value, value_or_none(p.bias), d.stride, d.pad, 1, d.activation);
      break;
    case LayerKind::Linear:
      // a linear layer on maps reads them flattened (channel, y, x), every tower's in tower order when sees_all
      if (x.ndim() != 2) st.in = x.view({n, x.numel() / n});
      st.out = ops::linear_forward(st.in, param(p.weight).value, value_or_none(p.bias), d.activation);
      break;
    case LayerKind::MaxPool:
      st.pre = ops::maxpool_forward(x, d.size, d.stride, d.start, d.outputs, d.outputs);
      st.out = activate(st.pre, d.activation);
      break;
    case LayerKind::AvgPool:
      st.pre = ops::avgpool_forward(x, d.size, d.stride, d.start, d.outputs, d.outputs);
      st.out = activate(st.pre, d.activation);
      break;
    case LayerKind::Lrn:
      std::tie(st.out, st.aux) = ops::lrn_forward(x, d.lrn);
      break;
    case LayerKind::SpatialLrn:
      std::tie(st.out, st.aux) = ops::spatial_lrn_forward(x, d.lrn);
      break;
    case LayerKind::BatchNorm: {
      // Ioffe & Szegedy 2015, Algorithm 1: the batch's statistics (updating the running ones) when a backward pass
      // follows; the running statistics in evaluation (their Section 3.1).
      Parameter& rm = param(p.running_mean);
      Parameter& rv = param(p.running_var);
      if (batch_stats) {
        std::tie(st.pre, st.aux, st.aux2) = ops::batchnorm_forward_train(
            x, param(p.weight).value, param(p.bias).value, rm.value, rv.value, d.bn_momentum, d.bn_eps);
      } else {
        st.pre = ops::batchnorm_forward_eval(x, param(p.weight).value, param(p.bias).value, rm.value, rv.value,
                                             d.bn_eps);
      }
      st.out = activate(st.pre, d.activation);
      break;
    }
    case LayerKind::Dropout:
      st.out = training ? ops::dropout_forward(x, d.dropout, spec().seed, dropout_stream(t, i), true, mask_first(x))
                        : x;
      break;
    case LayerKind::GlobalAvgPool:
      st.out = ops::global_avgpool_forward(x);
      break;
  }
}

Tensor Network::Impl::output_gradient(Tower& t, int i) {
  if (i == layers() - 1) {
    if (towers.size() == 1) return dlogits;
    return slice_from(t, towers[0], dlogits, plans[i].offset[t.index], plans[i].output[t.index][0], kDLogits);
  }
  Tensor sum;
  for (int j : plans[i].consumers) {
    // A consumer reading every tower's maps sends each tower the slice of its input gradient that is that tower's.
    Tensor piece = !def(j).sees_all ? t.state[j].dx
                                    : reduce_slice(t, parts([&](Tower& s) { return s.state[j].dx; }),
                                                   plans[i].offset[t.index], plans[i].output[t.index][0],
                                                   backward_point(j));
    // (each consumer's dx is read only here, so the sum may accumulate into the first one)
    if (!sum.defined()) {
      sum = piece;
    } else {
      ops::add_(sum, piece);
    }
  }
  return sum;
}

void Network::Impl::backward(Tower& t, int i, Tensor g, bool training) {
  const LayerDef& d = def(i);
  const LayerParams& p = t.params[i];
  LayerState& st = t.state[i];
  const bool need_dx = plans[i].input_gradient;
  Tensor dx;
  switch (d.kind) {
    case LayerKind::Conv: {
      g = activate_backward(st.out, g, d.activation);
      Parameter& w = param(p.weight);
      w.grad = ops::conv2d_backward_weight(st.in, g, d.size, d.size, d.stride, d.pad, 1);
      if (p.bias != kNone) param(p.bias).grad = ops::bias_backward(g);
      if (need_dx) {
        dx = ops::conv2d_backward_input(g, w.value, static_cast<int>(st.in.size(2)), static_cast<int>(st.in.size(3)),
                                        d.stride, d.pad, 1);
      }
      break;
    }
    case LayerKind::Local: {
      g = activate_backward(st.out, g, d.activation);
      auto [dinput, dw, db] = ops::local_backward(st.in, param(p.weight).value, g, d.stride, d.pad, 1);
      param(p.weight).grad = dw;
      if (p.bias != kNone) param(p.bias).grad = db;
      dx = dinput;
      break;
    }
    case LayerKind::Linear: {
      g = activate_backward(st.out, g, d.activation);
      Parameter& w = param(p.weight);
      w.grad = ops::linear_backward_weight(st.in, g);
      if (p.bias != kNone) param(p.bias).grad = ops::bias_backward(g);
      // back in the shape of what it read, so each tower takes its channels
      if (need_dx) dx = ops::linear_backward_input(g, w.value).view(st.read);
      break;
    }
    case LayerKind::MaxPool:
      g = activate_backward(st.out, g, d.activation);
      dx = ops::maxpool_backward(st.in, st.pre, g, d.size, d.stride, d.start, d.outputs, d.outputs);
      break;
    case LayerKind::AvgPool:
      g = activate_backward(st.out, g, d.activation);
      dx = ops::avgpool_backward(g, static_cast<int>(st.in.size(2)), static_cast<int>(st.in.size(3)), d.size, d.stride,
                                 d.start, d.outputs, d.outputs);
      break;
    case LayerKind::Lrn:
      dx = ops::lrn_backward(st.in, st.out, st.aux, g, d.lrn);
      break;
    case LayerKind::SpatialLrn:
      dx = ops::spatial_lrn_backward(st.in, st.out, st.aux, g, d.lrn);
      break;
    case LayerKind::BatchNorm: {
      g = activate_backward(st.out, g, d.activation);
      auto [dinput, dgamma, dbeta] = ops::batchnorm_backward(st.in, g, param(p.weight).value, st.aux, st.aux2);
      param(p.weight).grad = dgamma;
      param(p.bias).grad = dbeta;
      dx = dinput;
      break;
    }
    case LayerKind::Dropout:
      dx = training ? ops::dropout_backward(g, d.dropout, spec().seed, dropout_stream(t, i), true, mask_first(g)) : g;
      break;
    case LayerKind::GlobalAvgPool:
      dx = ops::global_avgpool_backward(g, static_cast<int>(st.in.size(2)), static_cast<int>(st.in.size(3)));
      break;
  }
  std::vector<Parameter*> trained;
  for (int k : {p.weight, p.bias})
    if (k != kNone) trained.push_back(&param(k));
  if (!trained.empty()) gradients_ready(t, trained);
  st.dx = need_dx ? dx : Tensor();
}

}  // namespace alexnet
