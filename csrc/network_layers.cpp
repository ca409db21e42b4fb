// The configurations, spatial sizes and layer table of the network (network_layers.h says why they are one file).
#include "network_layers.h"

#include <cmath>

namespace alexnet {

namespace {

// Section 5: "We initialized the neuron biases in the second, fourth, and fifth convolutional layers, as well as in
// the fully-connected hidden layers, with the constant 1 ... the remaining layers with the constant 0."
// (With other heads: every hidden fc layer 1, the output layer 0.)
constexpr bool kConvBiasOne[kConvLayers] = {false, true, false, true, true};

int pooled(int side, int kernel, int stride) { return side >= kernel ? (side - kernel) / stride + 1 : 0; }

}  // namespace

// ---- configurations --------------------------------------------------------------------------------------------
NetworkConfig NetworkConfig::make(const std::string& arch, int input_size, int num_classes, int towers) {
  NetworkConfig c;
  c.arch = arch;
  c.num_classes = num_classes;
  c.towers = towers;
  if (arch == "alexnet") {
    if (input_size <= 0) input_size = 227;
    AX_CHECK(input_size == 227, "AlexNet: arch='alexnet' takes 227x227 inputs (the size that gives the paper's 55x55 "
             "conv1 maps: (227 - 11) / 4 + 1 = 55), got input_size=", input_size);
  } else if (arch == "alexnet-small") {
    // Same layer types and the same 5 conv + 3 fc structure for 32x32 (CIFAR-10) and 64x64 (Tiny ImageNet):
    // conv1 5x5 pad 2 (stride 1 at 32, stride 2 at 64, so both reach 32x32 maps), conv2 5x5 pad 2, conv3-5 3x3 pad 1,
    // the paper's channel counts, 3/2 pooling after conv1, conv2, conv5: 32 -> 15 -> 7 -> 3, so fc6 sees 256x3x3.
    // The fully connected layers are narrower (1024) for these small datasets.
    if (input_size <= 0) input_size = 32;
    AX_CHECK(input_size == 32 || input_size == 64, "AlexNet: arch='alexnet-small' takes 32x32 or 64x64 inputs, got "
             "input_size=", input_size);
    c.conv_kernel = {5, 5, 3, 3, 3};
    c.conv_stride = {input_size == 64 ? 2 : 1, 1, 1, 1, 1};
    c.conv_pad = {2, 2, 1, 1, 1};
    c.fc_width = {1024, 1024};
  } else {
    throw ValueError(str_cat("AlexNet: arch must be 'alexnet' or 'alexnet-small', got '", arch, "'"));
  }
  c.input_size = input_size;
  AX_CHECK(towers == 1 || towers == 2, "AlexNet: towers must be 1 or 2, got ", towers);
  if (towers == 1) {
    // The one-GPU net of the paper's footnote to Section 6.1 ("half as many kernels in each convolutional layer"):
    // conv1-conv4 keep one tower's kernels (48, 128, 192, 192), but "we did not halve the size of the final
    // convolutional layer (nor the fully-connected layers which follow)", so conv5 keeps 256 kernels and
    // fc6/fc7 keep 4096 neurons: about the same number of parameters as the two-tower net.
    for (int l = 0; l < kConvLayers - 1; ++l) c.conv_channels[l] /= 2;
  }
  return c;
}

NetworkGeometry network_geometry(const NetworkConfig& cfg) {
  NetworkGeometry g;
  int side = cfg.input_size;
  for (int l = 0; l < kConvLayers; ++l) {
    g.conv_in[l] = side;
    const int k = cfg.conv_kernel[l], s = cfg.conv_stride[l], p = cfg.conv_pad[l];
    AX_CHECK(side + 2 * p >= k && side > 0, "AlexNet: ", kConvNames[l], "'s ", k, "x", k, " kernel (pad ", p,
             ") does not fit its ", side, "x", side, " input (input_size=", cfg.input_size, ")");
    side = (side + 2 * p - k) / s + 1;
    g.conv_out[l] = side;
    if (kPoolAfter[l]) {
      AX_CHECK(side >= cfg.pool_kernel, "AlexNet: the ", cfg.pool_kernel, "x", cfg.pool_kernel, " pooling after ",
               kConvNames[l], " does not fit its ", side, "x", side, " maps (input_size=", cfg.input_size, ")");
      side = pooled(side, cfg.pool_kernel, cfg.pool_stride);
    }
    g.block_out[l] = side;
  }
  // Global average pooling leaves one number per conv5 map.
  g.fc6_inputs = cfg.conv_channels[kConvLayers - 1] * (cfg.gap_head ? 1 : side * side);
  return g;
}

void validate_config(const NetworkConfig& cfg) {
  AX_CHECK(cfg.towers == 1 || cfg.towers == 2, "AlexNet: towers must be 1 or 2, got ", cfg.towers);
  AX_CHECK(static_cast<int>(cfg.devices.size()) >= cfg.towers, "AlexNet: expected ", cfg.towers,
           " devices (one per tower), got ", cfg.devices.size());
  AX_CHECK(cfg.devices.empty() || cfg.devices[0].is_cpu() == cfg.devices.back().is_cpu(),
           "AlexNet: the towers must be both on the CPU or both on GPUs, got ", cfg.devices[0].str(), " and ",
           cfg.devices.back().str());
  AX_CHECK(cfg.num_classes >= 2, "AlexNet: num_classes must be >= 2, got ", cfg.num_classes);
  AX_CHECK(cfg.in_channels >= 1, "AlexNet: in_channels must be >= 1, got ", cfg.in_channels);
  for (int l = 0; l < kConvLayers; ++l) {
    AX_CHECK(cfg.conv_channels[l] >= cfg.towers && cfg.conv_channels[l] % cfg.towers == 0, "AlexNet: ",
             kConvNames[l], " width ", cfg.conv_channels[l], " must be a positive multiple of towers=", cfg.towers);
    AX_CHECK(cfg.conv_kernel[l] >= 1 && cfg.conv_stride[l] >= 1 && cfg.conv_pad[l] >= 0, "AlexNet: ",
             kConvNames[l], " needs kernel >= 1, stride >= 1, pad >= 0");
  }
  for (size_t k = 0; k < cfg.fc_width.size(); ++k) {
    AX_CHECK(cfg.fc_width[k] >= cfg.towers && cfg.fc_width[k] % cfg.towers == 0, "AlexNet: head: ",
             fc_name(static_cast<int>(k)), " width ", cfg.fc_width[k], " must be a positive multiple of towers=",
             cfg.towers);
  }
  AX_CHECK(!cfg.gap_head || cfg.fc_width.empty(), "AlexNet: head='gap' is global average pooling then one linear "
           "layer; it takes no hidden widths, got ", cfg.fc_width.size());
  AX_CHECK(cfg.norm == Norm::None || cfg.norm == Norm::Lrn || cfg.norm == Norm::BatchNorm,
           "AlexNet: norm must be 'lrn', 'batchnorm' or 'none'");
  AX_CHECK(cfg.bn_position == BnPosition::BeforePool || cfg.bn_position == BnPosition::AfterPool,
           "AlexNet: bn_position must be 'before_pool' or 'after_pool'");
  AX_CHECK(cfg.bn_momentum >= 0.0f && cfg.bn_momentum <= 1.0f, "AlexNet: bn_momentum must be in [0, 1], got ",
           cfg.bn_momentum);
  AX_CHECK(cfg.bn_eps > 0.0f && std::isfinite(cfg.bn_eps), "AlexNet: bn_eps must be finite and > 0, got ",
           cfg.bn_eps);
  AX_CHECK(cfg.optimizer == OptimizerKind::Sgd || cfg.optimizer == OptimizerKind::Adam ||
           cfg.optimizer == OptimizerKind::AdamW, "AlexNet: optimizer must be 'sgd', 'adam' or 'adamw'");
  AX_CHECK(cfg.pool_kernel >= 1 && cfg.pool_stride >= 1, "AlexNet: pooling needs kernel >= 1 and stride >= 1");
  AX_CHECK(cfg.dropout >= 0.0f && cfg.dropout < 1.0f, "AlexNet: dropout must be in [0, 1), got ", cfg.dropout);
  AX_CHECK(cfg.weight_std >= 0.0f && std::isfinite(cfg.weight_std), "AlexNet: weight_std must be finite and >= 0, got ",
           cfg.weight_std);
  AX_CHECK(std::isfinite(cfg.bias_init), "AlexNet: bias_init must be finite, got ", cfg.bias_init);
  AX_CHECK(cfg.activation == Activation::ReLU || cfg.activation == Activation::Tanh,
           "AlexNet: activation must be 'relu' or 'tanh'");
  network_geometry(cfg);
}


// ---- the layer table -------------------------------------------------------------------------------------------
std::string fc_name(int k) { return "fc" + std::to_string(kConvLayers + 1 + k); }

std::string fc_module(int k, int layers) {
  const int hidden = layers - 1;
  return "classifier." + std::to_string(k < hidden ? 3 * k + 1 : 3 * hidden);
}

bool bn_after_conv(const NetworkConfig& cfg, int l) {
  return cfg.batchnorm() && !(kPoolAfter[l] && cfg.bn_position == BnPosition::AfterPool);
}

bool bn_after_pool(const NetworkConfig& cfg, int l) {
  return cfg.batchnorm() && kPoolAfter[l] && cfg.bn_position == BnPosition::AfterPool;
}

int fc8_classes(const NetworkConfig& cfg, int tower) {
  return cfg.num_classes / cfg.towers + (tower < cfg.num_classes % cfg.towers ? 1 : 0);
}

int fc8_class_offset(const NetworkConfig& cfg, int tower) {
  int offset = 0;
  for (int t = 0; t < tower; ++t) offset += fc8_classes(cfg, t);
  return offset;
}

int64_t LayerSpec::parameters() const {
  int64_t w = weight.empty() ? 0 : 1;
  for (int64_t d : weight) w *= d;
  return w + bias;
}

namespace {

// Builds the table row by row: per_tower adds one row per tower, fill(t, row) completes tower t's.
struct TableBuilder {
  const NetworkConfig& cfg;
  const NetworkGeometry geo;
  const int T;
  const std::string act;
  std::vector<LayerSpec> out;

  explicit TableBuilder(const NetworkConfig& c)
      : cfg(c), geo(network_geometry(c)), T(c.towers), act(c.activation == Activation::Tanh ? "tanh" : "relu") {}

  template <class Fill>
  void per_tower(const std::string& name, const std::string& kind, Fill fill) {
    for (int t = 0; t < T; ++t) {
      LayerSpec s;
      s.name = name;
      s.kind = kind;
      s.tower = t;
      fill(t, s);
      out.push_back(std::move(s));
    }
  }

  // Batch normalization of conv l's maps (channels c, side x side) within the tower (Ioffe & Szegedy 2015).
  void batchnorm(int l, int c, int side, bool then_activation) {
    per_tower("bn" + std::to_string(l + 1), "batchnorm", [&](int, LayerSpec& s) {
      s.detail = str_cat("per channel within the tower", then_activation ? ", then " + act : std::string());
      s.module = kBnParamNames[l];
      s.weight_index = l;
      s.input = s.output = {c, side, side};
      s.weight = {c};
      s.bias = c;
      s.buffers = c;
    });
  }

  void conv_block(int l) {
    const int k = cfg.conv_kernel[l], c_out = cfg.conv_channels[l] / T, side = geo.conv_out[l];
    const int c_in = l == 0 ? cfg.in_channels : cfg.conv_channels[l - 1] / (kConvSeesAllTowers[l] ? 1 : T);
    const int in_side = geo.conv_in[l];
    const bool bn_first = bn_after_conv(cfg, l);
    per_tower(kConvNames[l], "conv", [&](int, LayerSpec& s) {
      s.detail = str_cat(k, "x", k, " stride ", cfg.conv_stride[l], " pad ", cfg.conv_pad[l],
                         bn_first ? ", no bias" : ", " + act, kConvSeesAllTowers[l] ? ", sees both towers" : "");
      s.module = kConvParamNames[l];
      s.weight_index = l;
      s.input = {c_in, in_side, in_side};
      s.output = {c_out, side, side};
      s.weight = {c_out, c_in, k, k};
      s.bias = bn_first ? 0 : c_out;
      s.bias_one = kConvBiasOne[l];
      s.mult_adds = static_cast<int64_t>(c_out) * side * side * c_in * k * k;
    });
    const std::string n = std::to_string(l + 1);
    if (bn_first) batchnorm(l, c_out, side, true);
    if (kLrnAfter[l] && cfg.norm == Norm::Lrn) {
      per_tower("lrn" + n, "lrn", [&](int, LayerSpec& s) {
        s.detail = str_cat("size ", cfg.lrn_params.size, " (within the tower)");
        s.input = s.output = {c_out, side, side};
      });
    }
    if (kPoolAfter[l]) {
      per_tower("pool" + n, "maxpool", [&](int, LayerSpec& s) {
        s.detail = str_cat(cfg.pool_kernel, "x", cfg.pool_kernel, " stride ", cfg.pool_stride);
        s.input = {c_out, side, side};
        s.output = {c_out, geo.block_out[l], geo.block_out[l]};
      });
    }
    if (bn_after_pool(cfg, l)) batchnorm(l, c_out, geo.block_out[l], false);
  }

  void gap() {
    const int c = cfg.conv_channels[kConvLayers - 1] / T, side = geo.block_out[kConvLayers - 1];
    per_tower("gap", "global_avgpool", [&](int, LayerSpec& s) {
      s.detail = "global average pooling (within the tower)";
      s.input = {c, side, side};
      s.output = {c};
    });
  }

  // Every fc layer reads the previous layer of every tower (an exchange point).
  void fc_layer(int k) {
    const int layers = cfg.fc_layers();
    const bool hidden = k < layers - 1;
    const int in = k == 0 ? geo.fc6_inputs : cfg.fc_width[k - 1];
    per_tower(fc_name(k), "linear", [&](int t, LayerSpec& s) {
      const int n_out = hidden ? cfg.fc_width[k] / T : fc8_classes(cfg, t);
      s.detail = hidden ? act + ", sees both towers" : std::string(T > 1 ? "sees both towers" : "");
      s.module = fc_module(k, layers);
      s.weight_index = kConvLayers + k;
      s.input = {in};
      s.output = {n_out};
      s.weight = {n_out, in};
      s.bias = n_out;
      s.bias_one = hidden;
      s.mult_adds = static_cast<int64_t>(n_out) * in;
    });
    if (hidden && cfg.dropout > 0.0f) {
      per_tower("dropout" + std::to_string(kConvLayers + k + 1), "dropout", [&](int, LayerSpec& s) {
        s.detail = str_cat("p=", cfg.dropout);
        s.input = s.output = {cfg.fc_width[k] / T};
      });
    }
  }
};

}  // namespace

std::vector<LayerSpec> describe_layers(const NetworkConfig& cfg) {
  validate_config(cfg);
  TableBuilder table(cfg);
  for (int l = 0; l < kConvLayers; ++l) table.conv_block(l);
  if (cfg.gap_head) table.gap();
  for (int k = 0; k < cfg.fc_layers(); ++k) table.fc_layer(k);
  return std::move(table.out);
}

}  // namespace alexnet
