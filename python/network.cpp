// Bindings of the network (csrc/network.h) as alexnet_cuda._C.Network, built from a _C.NetSpec. The Python class
// alexnet_cuda.model.AlexNet wraps it and checks every argument first; these bindings check again (the C++ core
// never trusts its caller) and release the GIL while a step runs.
#include <pybind11/stl.h>

#include <array>
#include <optional>

#include "bindings.h"
#include "nccl.h"
#include "network.h"
#include "ops.h"

namespace alexnet::py_bindings {

namespace {

// A C-contiguous array of the given dtype kind/size, or TypeError/ValueError naming `what`.
void check_array(const py::array& a, char kind, int itemsize, const char* dtype, const std::string& what) {
  AX_CHECK_TYPE(a.dtype().kind() == kind && a.itemsize() == itemsize, what, ": expected dtype ", dtype, ", got ",
                std::string(py::str(a.dtype())));
  AX_CHECK(a.flags() & py::array::c_style, what, ": expected a C-contiguous array (use numpy.ascontiguousarray)");
  AX_CHECK(a.dtype().attr("isnative").cast<bool>(), what, ": expected native byte order, got ",
           std::string(py::str(a.dtype())), " (convert with .astype(", dtype, "))");
}

Shape shape_of(const py::array& a) { return Shape(a.shape(), a.shape() + a.ndim()); }

// Borrows the arrays' memory (the caller keeps them alive for the call).
HostBatch make_batch(const py::array& images, const std::optional<py::array>& labels,
                     const std::optional<py::array>& crops, const std::optional<py::array>& flips,
                     const std::optional<py::array>& rgb_shift) {
  HostBatch b;
  b.images_shape = shape_of(images);
  AX_CHECK(images.ndim() == 4, "AlexNet: expected a 4-d image batch, got shape ", shape_str(b.images_shape));
  const int64_t n = b.images_shape[0];
  if (images.dtype().kind() == 'f' && images.itemsize() == 4) {
    check_array(images, 'f', 4, "float32", "AlexNet: images");
    b.images_f32 = static_cast<const float*>(images.data());
  } else if (images.dtype().kind() == 'u' && images.itemsize() == 1) {
    check_array(images, 'u', 1, "uint8", "AlexNet: images");
    b.images_u8 = static_cast<const uint8_t*>(images.data());
  } else {
    throw TypeError(str_cat("AlexNet: expected float32 (n, 3, S, S) or uint8 (n, H, W, 3) images, got dtype ",
                            std::string(py::str(images.dtype()))));
  }
  if (labels) {
    check_array(*labels, 'i', 4, "int32", "AlexNet: labels");
    AX_CHECK(labels->ndim() == 1 && labels->shape(0) == n, "AlexNet: expected ", n, " labels, got shape ",
             shape_str(shape_of(*labels)));
    b.labels = static_cast<const int32_t*>(labels->data());
  }
  if (crops) {
    // (n, 2) int32 (y, x): split into the two columns prepare_batch takes.
    check_array(*crops, 'i', 4, "int32", "AlexNet: crops");
    AX_CHECK(crops->ndim() == 2 && crops->shape(0) == n && crops->shape(1) == 2,
             "AlexNet: expected crops of shape (", n, ", 2), got ", shape_str(shape_of(*crops)));
  }
  if (flips) {
    check_array(*flips, 'i', 4, "int32", "AlexNet: flips");
    AX_CHECK(flips->ndim() == 1 && flips->shape(0) == n, "AlexNet: expected flips of shape (", n, ",), got ",
             shape_str(shape_of(*flips)));
    b.flip = static_cast<const int32_t*>(flips->data());
  }
  if (rgb_shift) {
    check_array(*rgb_shift, 'f', 4, "float32", "AlexNet: rgb_shift");
    AX_CHECK(rgb_shift->ndim() == 2 && rgb_shift->shape(0) == n && rgb_shift->shape(1) == 3,
             "AlexNet: expected rgb_shift of shape (", n, ", 3), got ", shape_str(shape_of(*rgb_shift)));
    b.rgb_shift = static_cast<const float*>(rgb_shift->data());
  }
  return b;
}

// Crops arrive as (n, 2); HostBatch takes two columns.
struct CropColumns {
  std::vector<int32_t> y, x;
  void attach(HostBatch& b, const std::optional<py::array>& crops) {
    if (!crops) return;
    const int64_t n = crops->shape(0);
    const int32_t* c = static_cast<const int32_t*>(crops->data());
    y.resize(n);
    x.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      y[i] = c[2 * i];
      x[i] = c[2 * i + 1];
    }
    b.crop_y = y.data();
    b.crop_x = x.data();
  }
};

py::dict memory_dict(const MemoryStats& s) {
  py::dict d;
  d["allocated"] = s.allocated;
  d["peak_allocated"] = s.peak_allocated;
  d["reserved"] = s.reserved;
  return d;
}

OptimizerKind parse_optimizer(const std::string& name) {
  if (name == "sgd") return OptimizerKind::Sgd;
  if (name == "adam") return OptimizerKind::Adam;
  if (name == "adamw") return OptimizerKind::AdamW;
  throw ValueError(str_cat("network: optimizer must be 'sgd', 'adam' or 'adamw', got '", name, "'"));
}

// A parameter's tensor by slot: "value", "momentum" (SGD's velocity or Adam's m) or "variance" (Adam's v).
Tensor& slot_tensor(Network& net, const std::string& name, const std::string& slot) {
  AX_CHECK(slot == "value" || slot == "momentum" || slot == "variance", "AlexNet: unknown state slot '", slot, "'");
  Parameter& p = net.parameter(name);
  Tensor& t = slot == "value" ? p.value : slot == "momentum" ? p.momentum : p.variance;
  AX_CHECK(t.defined(), "AlexNet: ", name, " has no ", slot, " (a buffer, or not kept by this optimizer)");
  return t;
}

}  // namespace

void bind_network(py::module_& m) {
  using py::arg;
  using OptArray = std::optional<py::array>;

  py::class_<LayerDef>(m, "LayerDef", "One layer of a network, its settings resolved (csrc/network.h).")
      .def(py::init<>())
      .def_readwrite("name", &LayerDef::name)
      .def_property(
          "kind", [](const LayerDef& d) { return std::string(layer_kind_name(d.kind)); },
          [](LayerDef& d, const std::string& k) { d.kind = parse_layer_kind(k); })
      .def_readwrite("module", &LayerDef::module)
      .def_readwrite("input", &LayerDef::input)
      .def_readwrite("sees_all", &LayerDef::sees_all)
      .def_readwrite("outputs", &LayerDef::outputs)
      .def_readwrite("size", &LayerDef::size)
      .def_readwrite("stride", &LayerDef::stride)
      .def_readwrite("pad", &LayerDef::pad)
      .def_readwrite("start", &LayerDef::start)
      .def_property(
          "activation", [](const LayerDef& d) { return std::string(ops::activation_name(d.activation)); },
          [](LayerDef& d, const std::string& a) { d.activation = ops::parse_activation(a); })
      .def_readwrite("bias", &LayerDef::bias)
      .def_readwrite("init_std", &LayerDef::init_std)
      .def_readwrite("init_bias", &LayerDef::init_bias)
      .def_property(
          "lrn", [](const LayerDef& d) { return py::make_tuple(d.lrn.size, d.lrn.alpha, d.lrn.beta, d.lrn.k); },
          [](LayerDef& d, const std::tuple<int, float, float, float>& v) {
            d.lrn = LrnParams{std::get<0>(v), std::get<1>(v), std::get<2>(v), std::get<3>(v)};
          })
      .def_readwrite("bn_momentum", &LayerDef::bn_momentum)
      .def_readwrite("bn_eps", &LayerDef::bn_eps)
      .def_readwrite("dropout", &LayerDef::dropout);

  py::class_<NetSpec>(m, "NetSpec", "A network as layers (csrc/network.h); alexnet_cuda.model fills it in.")
      .def(py::init<>())
      .def_readwrite("name", &NetSpec::name)
      .def_readwrite("input_size", &NetSpec::input_size)
      .def_readwrite("in_channels", &NetSpec::in_channels)
      .def_readwrite("classes", &NetSpec::classes)
      .def_readwrite("towers", &NetSpec::towers)
      .def_readwrite("layers", &NetSpec::layers)
      .def_readwrite("seed", &NetSpec::seed)
      .def_property(
          "optimizer",
          [](const NetSpec& s) {
            return std::string(s.optimizer == OptimizerKind::Sgd ? "sgd" : s.optimizer == OptimizerKind::Adam ? "adam"
                                                                                                              : "adamw");
          },
          [](NetSpec& s, const std::string& o) { s.optimizer = parse_optimizer(o); });

  py::class_<OptimizerSettings>(m, "OptimizerSettings", "One update's settings (csrc/network.h).")
      .def(py::init<>())
      .def_readwrite("lr", &OptimizerSettings::lr)
      .def_readwrite("momentum", &OptimizerSettings::momentum)
      .def_readwrite("weight_decay", &OptimizerSettings::weight_decay)
      .def_readwrite("beta1", &OptimizerSettings::beta1)
      .def_readwrite("beta2", &OptimizerSettings::beta2)
      .def_readwrite("eps", &OptimizerSettings::eps);

  py::class_<Network>(m, "Network", "A network built from a NetSpec (csrc/network.h). Use alexnet_cuda.AlexNet.")
      .def(py::init([](NetSpec spec, const std::vector<std::string>& devices) {
             spec.devices.clear();
             for (const std::string& d : devices) spec.devices.push_back(Device::parse(d));
             py::gil_scoped_release release;
             return std::make_unique<Network>(spec);
           }),
           arg("spec"), arg("devices"))
      .def("num_parameters", &Network::num_parameters)
      .def("parameter_names", &Network::parameter_names)
      .def("buffer_names", &Network::buffer_names)
      .def(
          "get_tensor",
          [](Network& net, const std::string& name, const std::string& slot) {
            return tensor_to_numpy(slot_tensor(net, name, slot));
          },
          arg("name"), arg("slot") = "value")
      .def(
          "get_gradient",
          [](Network& net, const std::string& name) -> py::object {
            const Tensor& g = net.parameter(name).grad;
            if (!g.defined()) return py::none();
            return tensor_to_numpy(g);
          },
          arg("name"))
      .def(
          "set_gradient",
          [](Network& net, const std::string& name, const py::array& value) {
            // Data-parallel training replaces each gradient by its average over the ranks (distributed.py).
            Parameter& p = net.parameter(name);
            const std::string what = str_cat("AlexNet.set_gradient: ", name);
            AX_CHECK(p.grad.defined(), what, ": no gradient to replace (call compute_gradients first)");
            check_array(value, 'f', 4, "float32", what);
            AX_CHECK(shape_of(value) == p.grad.shape(), what, ": expected shape ", shape_str(p.grad.shape()),
                     ", got ", shape_str(shape_of(value)));
            Tensor host = Tensor::from_host(value.data(), p.grad.shape(), Device::cpu());
            py::gil_scoped_release release;
            p.grad.copy_from(host);
          },
          arg("name"), arg("value"))
      .def(
          "use_nccl",
          [](Network& net, const std::vector<py::bytes>& unique_ids, int rank, int size) {
            std::vector<std::string> ids(unique_ids.begin(), unique_ids.end());
            py::gil_scoped_release release;
            net.set_gradient_reducer(nccl::make_reducer(net, ids, rank, size));
          },
          "Average every gradient over the ranks with NCCL as backward produces it (csrc/nccl.h).",
          arg("unique_ids"), arg("rank"), arg("size"))
      .def("drop_gradient_reducer", [](Network& net) { net.set_gradient_reducer(nullptr); })
      .def(
          "apply_update",
          [](Network& net, const OptimizerSettings& opt) {
            py::gil_scoped_release release;
            net.apply_update(opt);
          },
          arg("optimizer"))
      .def(
          "set_learning",
          [](Network& net, const std::string& name, float lr_scale, float momentum, float weight_decay) {
            Parameter& p = net.parameter(name);
            AX_CHECK(p.trainable, "AlexNet.set_learning: ", name, " is a buffer, not a trained parameter");
            p.learning = LearningSettings{lr_scale, momentum, weight_decay};
          },
          "A parameter's own learning settings (NaN momentum or weight decay: the step's); checked in model.py.",
          arg("name"), arg("lr_scale"), arg("momentum"), arg("weight_decay"))
      .def("learning",
           [](Network& net, const std::string& name) {
             const LearningSettings& l = net.parameter(name).learning;
             return py::make_tuple(l.lr_scale, l.momentum, l.weight_decay);
           },
           arg("name"))
      .def(
          "set_tensor",
          [](Network& net, const std::string& name, const std::string& slot, const py::array& value) {
            Tensor& dst = slot_tensor(net, name, slot);
            const std::string what = str_cat("AlexNet: ", slot, " of ", name);
            check_array(value, 'f', 4, "float32", what);
            AX_CHECK(shape_of(value) == dst.shape(), what, ": expected shape ", shape_str(dst.shape()), ", got ",
                     shape_str(shape_of(value)));
            Tensor host = Tensor::from_host(value.data(), dst.shape(), Device::cpu());
            py::gil_scoped_release release;
            dst.copy_from(host);  // synchronous host-to-device copy on the device's default stream
          },
          arg("name"), arg("slot"), arg("value"))
      .def("logits",
           [](const Network& net) -> py::object {
             if (!net.logits().defined()) return py::none();
             return tensor_to_numpy(net.logits());
           })
      .def(
          "set_normalization",
          [](Network& net, const py::array& mean, const std::array<float, 3>& scale) {
            check_array(mean, 'f', 4, "float32", "AlexNet.set_normalization: mean");
            net.set_normalization(static_cast<const float*>(mean.data()), shape_of(mean),
                                  ChannelScale{{scale[0], scale[1], scale[2]}});
          },
          arg("mean"), arg("scale"))
      .def(
          "train_step",
          [](Network& net, const py::array& images, const py::array& labels, const OptimizerSettings& opt,
             const OptArray& crops, const OptArray& flips, const OptArray& rgb_shift) {
            HostBatch b = make_batch(images, labels, crops, flips, rgb_shift);
            CropColumns cc;
            cc.attach(b, crops);
            py::gil_scoped_release release;
            return net.train_step(b, opt);
          },
          arg("images"), arg("labels"), arg("optimizer"), arg("crops") = py::none(), arg("flips") = py::none(),
          arg("rgb_shift") = py::none())
      .def(
          "compute_gradients",
          [](Network& net, const py::array& images, const py::array& labels, bool training, const OptArray& crops,
             const OptArray& flips, const OptArray& rgb_shift) {
            HostBatch b = make_batch(images, labels, crops, flips, rgb_shift);
            CropColumns cc;
            cc.attach(b, crops);
            py::gil_scoped_release release;
            return net.compute_gradients(b, training);
          },
          arg("images"), arg("labels"), arg("training"), arg("crops") = py::none(), arg("flips") = py::none(),
          arg("rgb_shift") = py::none())
      .def(
          "evaluate",
          [](Network& net, const py::array& images, const py::array& labels, const OptArray& crops,
             const OptArray& flips) {
            HostBatch b = make_batch(images, labels, crops, flips, std::nullopt);
            CropColumns cc;
            cc.attach(b, crops);
            py::gil_scoped_release release;
            return net.evaluate(b);
          },
          arg("images"), arg("labels"), arg("crops") = py::none(), arg("flips") = py::none())
      .def(
          "predict",
          [](Network& net, const py::array& images, const OptArray& crops, const OptArray& flips) {
            HostBatch b = make_batch(images, std::nullopt, crops, flips, std::nullopt);
            CropColumns cc;
            cc.attach(b, crops);
            py::array_t<float> probs({b.images_shape[0], static_cast<int64_t>(net.spec().classes)});
            float* out = probs.mutable_data();
            {
              py::gil_scoped_release release;
              net.predict(b, out);
            }
            return probs;
          },
          arg("images"), arg("crops") = py::none(), arg("flips") = py::none())
      .def_property(
          "step", [](const Network& net) { return net.step; }, [](Network& net, uint64_t s) { net.step = s; })
      .def_property(
          "sample_offset", [](const Network& net) { return net.sample_offset; },
          [](Network& net, uint64_t s) { net.sample_offset = s; })
      .def_static("dropout_offset", &Network::dropout_offset, arg("step"), arg("fc"), arg("tower"),
                  arg("hidden_layers") = 2)
      .def("tower_timings",
           [](const Network& net) {
             py::list out;
             for (const TowerTiming& t : net.tower_timings()) {
               py::dict d;
               d["device"] = t.device;
               d["forward_ms"] = t.forward_ms;
               d["backward_ms"] = t.backward_ms;
               d["update_ms"] = t.update_ms;
               d["total_ms"] = t.total_ms;
               out.append(d);
             }
             return out;
           })
      .def("memory_stats",
           [](const Network& net) {
             py::dict out;
             for (const auto& [device, s] : net.memory_stats()) out[py::str(device)] = memory_dict(s);
             return out;
           })
      .def("reset_peak_memory", &Network::reset_peak_memory);

  // NCCL, loaded at run time (csrc/nccl.h); alexnet_cuda/train/distributed.py searches for the library.
  m.def("nccl_load", &nccl::load_library, arg("path"));
  m.def("nccl_loaded", &nccl::library_loaded);
  m.def("nccl_version", &nccl::library_version);
  m.def("nccl_unique_id", [] { return py::bytes(nccl::unique_id()); });

  py::class_<StepStats>(m, "StepStats")
      .def_readonly("loss", &StepStats::loss)
      .def_readonly("top1", &StepStats::top1)
      .def_readonly("top5", &StepStats::top5)
      .def_readonly("n", &StepStats::n);
}

}  // namespace alexnet::py_bindings
