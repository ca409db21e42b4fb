// Each layer of a NetSpec on each tower (network_layers.h): shapes, channel shares, parameters, and the checks.
#include "network_layers.h"

#include <cmath>

#include "ops.h"

namespace alexnet {

namespace {

constexpr std::pair<LayerKind, const char*> kKindNames[] = {
    {LayerKind::Conv, "conv"},           {LayerKind::Local, "local"},     {LayerKind::Linear, "linear"},
    {LayerKind::MaxPool, "maxpool"},     {LayerKind::AvgPool, "avgpool"}, {LayerKind::Lrn, "lrn"},
    {LayerKind::SpatialLrn, "spatial_lrn"}, {LayerKind::BatchNorm, "batchnorm"}, {LayerKind::Dropout, "dropout"},
    {LayerKind::GlobalAvgPool, "global_avgpool"}};

// A count split between the towers, tower 0 taking the larger half of an odd count.
std::vector<int64_t> split(int64_t total, int towers) {
  std::vector<int64_t> out;
  for (int t = 0; t < towers; ++t) out.push_back(total / towers + (t < total % towers ? 1 : 0));
  return out;
}

int64_t product(const Shape& s) {
  int64_t p = 1;
  for (int64_t d : s) p *= d;
  return p;
}

bool weighted(LayerKind k) { return k == LayerKind::Conv || k == LayerKind::Local || k == LayerKind::Linear; }

// Checks and shapes of one layer; `fail` prefixes the network's and the layer's names.
struct LayerPlanner {
  const NetSpec& spec;
  const LayerDef& d;
  LayerPlan& plan;
  const int T;

  template <class... Args>
  void check(bool ok, const Args&... why) const {
    if (!ok) throw ValueError(str_cat("network '", spec.name, "': layer '", d.name, "': ", why...));
  }

  // What the layer reads on each tower: its own tower's maps, or every tower's in tower order.
  void inputs(const std::vector<Shape>& source) {
    plan.input = source;
    if (!d.sees_all || T == 1) return;
    Shape gathered = source[0];
    for (int t = 1; t < T; ++t) gathered[0] += source[t][0];
    plan.input.assign(T, gathered);
  }

  void maps_only() const {
    check(plan.input[0].size() == 3, "a ", layer_kind_name(d.kind), " layer needs maps, but its input is flat (",
          shape_str(plan.input[0]), ")");
  }

  void outputs_from(const std::vector<int64_t>& channels, int64_t side) {
    int64_t offset = 0;
    for (int t = 0; t < T; ++t) {
      plan.output.push_back(side > 0 ? Shape{channels[t], side, side} : Shape{channels[t]});
      plan.offset.push_back(static_cast<int>(offset));
      offset += channels[t];
    }
  }

  std::vector<int64_t> even_split(int64_t total) const {
    check(total >= T && total % T == 0, total, " filters do not split evenly between ", T, " towers");
    return split(total, T);
  }

  void conv_or_local() {
    maps_only();
    const int64_t side = plan.input[0][1];
    check(d.size >= 1 && d.stride >= 1 && d.pad >= 0, "needs size >= 1, stride >= 1, padding >= 0");
    check(side + 2 * d.pad >= d.size, "a ", d.size, "x", d.size, " kernel (padding ", d.pad, ") does not fit its ",
          side, "x", side, " maps");
    const bool local = d.kind == LayerKind::Local;
    // a local layer follows cuda-convnet's output rule (ops.h: local_output_size)
    const int64_t out = local ? ops::local_output_size(side, d.size, d.stride, d.pad)
                              : (side + 2 * d.pad - d.size) / d.stride + 1;
    const std::vector<int64_t> channels = even_split(d.outputs);
    outputs_from(channels, out);
    for (int t = 0; t < T; ++t) {
      const int64_t c_in = plan.input[t][0];
      plan.weight.push_back(local ? Shape{out, out, c_in, d.size, d.size, channels[t]}
                                  : Shape{channels[t], c_in, d.size, d.size});
      plan.bias.push_back(!d.bias ? 0 : local ? channels[t] * out * out : channels[t]);
    }
  }

  void linear() {
    plan.flat_input = plan.input[0].size() != 1;
    for (Shape& s : plan.input) s = Shape{product(s)};
    check(d.outputs >= T, d.outputs, " outputs cannot be split between ", T, " towers");
    const std::vector<int64_t> n = split(d.outputs, T);
    outputs_from(n, 0);
    for (int t = 0; t < T; ++t) {
      plan.weight.push_back({n[t], plan.input[t][0]});
      plan.bias.push_back(d.bias ? n[t] : 0);
    }
  }

  void pooling() {
    maps_only();
    const int64_t side = plan.input[0][1];
    check(d.size >= 1 && d.stride >= 1 && d.outputs >= 1, "needs size >= 1, stride >= 1 and outputs >= 1");
    // every window holds at least one input element (pool_geometry.h clips the rest)
    check(d.start + d.size > 0 && d.start + int64_t{d.outputs - 1} * d.stride < side, d.outputs, " windows of ",
          d.size, " every ", d.stride, " from ", d.start, " do not fit its ", side, "x", side, " maps");
    std::vector<int64_t> channels;
    for (const Shape& s : plan.input) channels.push_back(s[0]);
    outputs_from(channels, d.outputs);
  }

  void same_shape() {
    plan.output = plan.input;
    int64_t offset = 0;
    for (int t = 0; t < T; ++t) {
      plan.offset.push_back(static_cast<int>(offset));
      offset += plan.input[t][0];
    }
  }

  void plan_kind() {
    switch (d.kind) {
      case LayerKind::Conv:
      case LayerKind::Local:
        return conv_or_local();
      case LayerKind::Linear:
        return linear();
      case LayerKind::MaxPool:
      case LayerKind::AvgPool:
        return pooling();
      case LayerKind::Lrn:
      case LayerKind::SpatialLrn:
        maps_only();
        check(d.lrn.size >= 1, "size must be at least 1");
        return same_shape();
      case LayerKind::BatchNorm:
        check(d.bn_momentum >= 0.0f && d.bn_momentum <= 1.0f, "momentum must be in [0, 1], got ", d.bn_momentum);
        check(d.bn_eps > 0.0f && std::isfinite(d.bn_eps), "eps must be finite and > 0, got ", d.bn_eps);
        same_shape();
        for (int t = 0; t < T; ++t) {
          plan.weight.push_back({plan.input[t][0]});
          plan.bias.push_back(plan.input[t][0]);
        }
        return;
      case LayerKind::Dropout:
        check(d.dropout >= 0.0f && d.dropout < 1.0f, "p must be in [0, 1), got ", d.dropout);
        return same_shape();
      case LayerKind::GlobalAvgPool: {
        maps_only();
        std::vector<int64_t> channels;
        for (const Shape& s : plan.input) channels.push_back(s[0]);
        return outputs_from(channels, 0);
      }
    }
  }

  void check_settings() const {
    check(d.sees_all ? weighted(d.kind) : true, "only conv, local and linear layers can read every tower's maps");
    const bool own_activation = weighted(d.kind) || d.kind == LayerKind::MaxPool || d.kind == LayerKind::AvgPool ||
                                d.kind == LayerKind::BatchNorm;
    check(own_activation || d.activation == Activation::None, "a ", layer_kind_name(d.kind),
          " layer takes no activation");
    if (weighted(d.kind)) {
      check(d.init_std >= 0.0f && std::isfinite(d.init_std), "init_std must be finite and >= 0, got ", d.init_std);
      check(std::isfinite(d.init_bias), "init_bias must be finite, got ", d.init_bias);
    }
  }
};

}  // namespace

LayerKind parse_layer_kind(const std::string& name) {
  std::string known;
  for (const auto& [kind, text] : kKindNames) {
    if (name == text) return kind;
    known += str_cat(known.empty() ? "" : ", ", text);
  }
  throw ValueError(str_cat("network: unknown layer kind '", name, "' (known: ", known, ")"));
}

const char* layer_kind_name(LayerKind kind) {
  for (const auto& [k, text] : kKindNames)
    if (k == kind) return text;
  return "?";
}

int dropout_layers(const NetSpec& spec) {
  int n = 0;
  for (const LayerDef& d : spec.layers) n += d.kind == LayerKind::Dropout ? 1 : 0;
  return n;
}

std::vector<LayerPlan> plan_layers(const NetSpec& spec) {
  const int T = spec.towers;
  const std::string net = str_cat("network '", spec.name, "': ");
  AX_CHECK(T == 1 || T == 2, net, "towers must be 1 or 2, got ", T);
  AX_CHECK(static_cast<int>(spec.devices.size()) >= T, net, "expected ", T, " devices (one per tower), got ",
           spec.devices.size());
  AX_CHECK(spec.devices[0].is_cpu() == spec.devices[T - 1].is_cpu(), net,
           "the towers must be both on the CPU or both on GPUs, got ", spec.devices[0].str(), " and ",
           spec.devices[T - 1].str());
  AX_CHECK(spec.classes >= 2, net, "classes must be >= 2, got ", spec.classes);
  AX_CHECK(spec.in_channels >= 1 && spec.input_size >= 1, net, "the input must be at least 1x1x1");
  AX_CHECK(!spec.layers.empty(), net, "no layers");
  AX_CHECK(spec.optimizer == OptimizerKind::Sgd || spec.optimizer == OptimizerKind::Adam ||
           spec.optimizer == OptimizerKind::AdamW, net, "optimizer must be 'sgd', 'adam' or 'adamw'");
  std::vector<LayerPlan> plans(spec.layers.size());
  int weighted_count = 0, dropout_count = 0;
  const Shape image{spec.in_channels, spec.input_size, spec.input_size};
  for (size_t i = 0; i < spec.layers.size(); ++i) {
    const LayerDef& d = spec.layers[i];
    LayerPlanner p{spec, d, plans[i], T};
    p.check(d.input >= -1 && d.input < static_cast<int>(i), "its input must be an earlier layer or the images");
    p.check(!(d.sees_all && d.input < 0 && T > 1), "every tower has the whole image; it cannot read every tower's");
    p.check_settings();
    p.inputs(d.input < 0 ? std::vector<Shape>(T, image) : plans[d.input].output);
    p.plan_kind();
    LayerPlan& plan = plans[i];
    plan.input_gradient = d.input >= 0;
    if (d.input >= 0) plans[d.input].consumers.push_back(static_cast<int>(i));
    if (weighted(d.kind)) plan.weight_index = weighted_count++;
    if (d.kind == LayerKind::Dropout) plan.dropout_index = dropout_count++;
  }
  const LayerPlan& last = plans.back();
  int64_t classes = 0;
  for (const Shape& s : last.output) classes += s.size() == 1 ? s[0] : -1;
  AX_CHECK(last.output[0].size() == 1 && classes == spec.classes, net, "the last layer ('", spec.layers.back().name,
           "') must output the ", spec.classes, " classes, got ", shape_str(last.output[0]), " per tower");
  for (size_t i = 0; i + 1 < plans.size(); ++i) {
    AX_CHECK(!plans[i].consumers.empty(), net, "layer '", spec.layers[i].name,
             "': no layer reads it (only the last layer's outputs are the network's)");
  }
  return plans;
}

}  // namespace alexnet
