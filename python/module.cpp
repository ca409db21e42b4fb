// The extension module alexnet_cuda._C: Tensor, every op of csrc/ops.h, build and device information.
// The Python package wraps these (alexnet_cuda/ops.py) so ops also take and return NumPy arrays.
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <thread>

#include "bindings.h"
#include "memory_stats.h"
#include "ops.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/peak.h"
#include "cuda/runtime.h"
#endif
#ifdef ALEXNET_CUDA_EMULATED
#include "cuda/emulation/info.h"
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

namespace alexnet::py_bindings {

Tensor tensor_from_numpy(const py::array& given, const Device& device, const std::string& what) {
  // Tensors hold native-endian numbers: a big-endian array is converted (a copy is made below anyway), not
  // reinterpreted.
  const py::array array = given.dtype().attr("isnative").cast<bool>()
                              ? given
                              : py::array(given.attr("astype")(given.dtype().attr("newbyteorder")("=")));
  DType dtype;
  if (array.dtype().kind() == 'f' && array.itemsize() == 4) {
    dtype = DType::F32;
  } else if (array.dtype().kind() == 'i' && array.itemsize() == 4) {
    dtype = DType::I32;
  } else if (array.dtype().kind() == 'u' && array.itemsize() == 1) {
    dtype = DType::U8;
  } else {
    throw TypeError(str_cat(what, ": expected a float32, int32 or uint8 array, got dtype ",
                            std::string(py::str(array.dtype()))));
  }
  AX_CHECK(array.flags() & py::array::c_style, what,
           ": expected a C-contiguous array (use numpy.ascontiguousarray), got a strided view");
  Shape shape(array.shape(), array.shape() + array.ndim());
  return Tensor::from_host(array.data(), shape, device, dtype);
}

py::array tensor_to_numpy(const Tensor& t) {
  std::vector<py::ssize_t> shape(t.shape().begin(), t.shape().end());
  py::array out;
  switch (t.dtype()) {
    case DType::F32: out = py::array_t<float>(shape); break;
    case DType::I32: out = py::array_t<int32_t>(shape); break;
    case DType::U8: out = py::array_t<uint8_t>(shape); break;
  }
  if (t.nbytes()) {
    py::gil_scoped_release release;
    t.copy_to_host(out.mutable_data());
  }
  return out;
}

// A shape from Python (a list or tuple of ints, NumPy integers included), or TypeError/ValueError naming `what`
// instead of pybind11's dump of the signature. Values are checked later (Tensor: >= 0, no overflowing size).
static Shape shape_from_python(const py::handle& obj, const char* what) {
  AX_CHECK_TYPE(py::isinstance<py::sequence>(obj) && !py::isinstance<py::str>(obj) && !py::isinstance<py::bytes>(obj),
                what, ": expected the shape as a list or tuple of ints, got ",
                std::string(py::str(py::type::of(obj).attr("__name__"))));
  Shape shape;
  for (py::handle d : obj) {
    AX_CHECK_TYPE(PyIndex_Check(d.ptr()) && !PyBool_Check(d.ptr()), what, ": expected the shape as ints, got ",
                  std::string(py::repr(d)));
    int overflow = 0;
    const py::object index = py::reinterpret_steal<py::object>(PyNumber_Index(d.ptr()));
    if (!index) throw py::error_already_set();
    const long long v = PyLong_AsLongLongAndOverflow(index.ptr(), &overflow);
    AX_CHECK(!overflow, what, ": dimension ", std::string(py::repr(d)), " does not fit in 64 bits");
    shape.push_back(v);
  }
  return shape;
}

// A string argument of the Tensor API, or TypeError naming it (pybind11 would dump the signature).
static std::string str_from_python(const py::handle& obj, const char* what, const char* name) {
  AX_CHECK_TYPE(py::isinstance<py::str>(obj), what, ": ", name, " must be a string, got ", std::string(py::repr(obj)));
  return obj.cast<std::string>();
}

static py::dict build_info() {
  py::dict info;
  info["cpu"] = true;
#ifdef _OPENMP
  info["openmp_threads"] = omp_get_max_threads();
#else
  info["openmp_threads"] = 1;
#endif
  py::list gpus;
#ifdef ALEXNET_WITH_CUDA
  info["cuda"] = true;
  info["cuda_compiler_version"] = ALEXNET_CUDA_VERSION_STRING;
  info["cuda_runtime_version"] = cuda::runtime_version();
  std::string driver = cuda::driver_version();
  info["cuda_driver_version"] = driver.empty() || driver == "0.0" ? py::object(py::none()) : py::object(py::str(driver));
  const int count = cuda::device_count();
  for (int i = 0; i < count; ++i) gpus.append(cuda::device_name(i));
#ifdef ALEXNET_CUDA_EMULATED
  info["cuda_emulated"] = true;  // the 'gpus' are emulated devices on the CPU (csrc/cuda/emulation)
  info["emulator"] = axemu::config_summary();
#else
  info["cuda_emulated"] = false;
#endif
#else
  info["cuda"] = false;
  info["cuda_emulated"] = false;
  info["cuda_compiler_version"] = py::none();
  info["cuda_runtime_version"] = py::none();
  info["cuda_driver_version"] = py::none();
#endif
  info["gpus"] = gpus;
  return info;
}

static py::dict memory_stats(const std::string& device) {
  Device d = Device::parse(device);
  MemoryStats s;
  if (d.is_cpu()) {
    s = cpu_memory_stats();
  } else {
#ifdef ALEXNET_WITH_CUDA
    s = cuda::memory_stats(d.index);
#endif
  }
  py::dict out;
  out["allocated"] = s.allocated;
  out["peak_allocated"] = s.peak_allocated;
  out["reserved"] = s.reserved;
  return out;
}

static void reset_peak_memory(const std::string& device) {
  Device d = Device::parse(device);
  if (d.is_cpu()) {
    reset_cpu_peak_memory();
  } else {
#ifdef ALEXNET_WITH_CUDA
    cuda::reset_peak_memory(d.index);
#endif
  }
}

static void empty_cache(const std::string& device) {
  Device d = Device::parse(device);
  if (d.is_cpu()) {
    cpu_empty_cache();
  } else {
#ifdef ALEXNET_WITH_CUDA
    cuda::empty_cache(d.index);
#endif
  }
}

static void synchronize(const std::string& device) {
  [[maybe_unused]] Device d = Device::parse(device);
#ifdef ALEXNET_WITH_CUDA
  if (d.is_cuda()) {
    py::gil_scoped_release release;
    cuda::synchronize_stream(cuda::current_stream(d.index));
  }
#endif
}

static LrnParams lrn_params(int size, float alpha, float beta, float k) { return LrnParams{size, alpha, beta, k}; }

static void bind_ops(py::module_& m) {
  using namespace ops;
  using py::arg;
  // Kernels run with the GIL released so the Python data loader threads keep working.
  auto nogil = py::call_guard<py::gil_scoped_release>();
  m.def("parse_activation", [](const std::string& s) { return static_cast<int>(parse_activation(s)); });
  m.def(
      "conv2d_forward",
      [](const Tensor& x, const Tensor& w, std::optional<Tensor> b, int stride, int pad, int groups, int act) {
        return conv2d_forward(x, w, b.value_or(Tensor()), stride, pad, groups, static_cast<Activation>(act));
      },
      arg("x"), arg("weight"), arg("bias"), arg("stride"), arg("padding"), arg("groups"), arg("activation") = 0, nogil);
  m.def("conv2d_backward_input", &conv2d_backward_input, arg("dy"), arg("weight"), arg("in_h"), arg("in_w"),
        arg("stride"), arg("padding"), arg("groups"), nogil);
  m.def("conv2d_backward_weight", &conv2d_backward_weight, arg("x"), arg("dy"), arg("kh"), arg("kw"), arg("stride"),
        arg("padding"), arg("groups"), nogil);
  m.def("bias_backward", &bias_backward, arg("dy"), nogil);
  m.def(
      "local_forward",
      [](const Tensor& x, const Tensor& w, std::optional<Tensor> b, int stride, int pad, int groups, int act) {
        return local_forward(x, w, b.value_or(Tensor()), stride, pad, groups, static_cast<Activation>(act));
      },
      arg("x"), arg("weight"), arg("bias"), arg("stride"), arg("padding"), arg("groups"), arg("activation") = 0, nogil);
  m.def("local_backward", &local_backward, arg("x"), arg("weight"), arg("dy"), arg("stride"), arg("padding"),
        arg("groups"), nogil);
  m.def(
      "linear_forward",
      [](const Tensor& x, const Tensor& w, std::optional<Tensor> b, int act) {
        return linear_forward(x, w, b.value_or(Tensor()), static_cast<Activation>(act));
      },
      arg("x"), arg("weight"), arg("bias"), arg("activation") = 0, nogil);
  m.def("linear_backward_input", &linear_backward_input, arg("dy"), arg("weight"), nogil);
  m.def("linear_backward_weight", &linear_backward_weight, arg("x"), arg("dy"), nogil);
  m.def(
      "activation_forward", [](const Tensor& x, int act) { return activation_forward(x, static_cast<Activation>(act)); },
      arg("x"), arg("activation"), nogil);
  m.def(
      "activation_backward",
      [](const Tensor& y, const Tensor& dy, int act) { return activation_backward(y, dy, static_cast<Activation>(act)); },
      arg("y"), arg("dy"), arg("activation"), nogil);
  m.def(
      "lrn_forward",
      [](const Tensor& x, int size, float alpha, float beta, float k) {
        return lrn_forward(x, lrn_params(size, alpha, beta, k));
      },
      arg("x"), arg("size"), arg("alpha"), arg("beta"), arg("k"), nogil);
  m.def(
      "lrn_backward",
      [](const Tensor& x, const Tensor& y, const Tensor& scale, const Tensor& dy, int size, float alpha, float beta,
         float k) { return lrn_backward(x, y, scale, dy, lrn_params(size, alpha, beta, k)); },
      arg("x"), arg("y"), arg("scale"), arg("dy"), arg("size"), arg("alpha"), arg("beta"), arg("k"), nogil);
  m.def("batchnorm_forward_train", &batchnorm_forward_train, arg("x"), arg("gamma"), arg("beta"), arg("running_mean"),
        arg("running_var"), arg("momentum"), arg("eps"), nogil);
  m.def("batchnorm_forward_eval", &batchnorm_forward_eval, arg("x"), arg("gamma"), arg("beta"), arg("running_mean"),
        arg("running_var"), arg("eps"), nogil);
  m.def("batchnorm_backward", &batchnorm_backward, arg("x"), arg("dy"), arg("gamma"), arg("saved_mean"),
        arg("saved_invstd"), nogil);
  m.def(
      "spatial_lrn_forward",
      [](const Tensor& x, int size, float alpha, float beta, float k) {
        return spatial_lrn_forward(x, lrn_params(size, alpha, beta, k));
      },
      arg("x"), arg("size"), arg("alpha"), arg("beta"), arg("k"), nogil);
  m.def(
      "spatial_lrn_backward",
      [](const Tensor& x, const Tensor& y, const Tensor& denom, const Tensor& dy, int size, float alpha, float beta,
         float k) { return spatial_lrn_backward(x, y, denom, dy, lrn_params(size, alpha, beta, k)); },
      arg("x"), arg("y"), arg("denom"), arg("dy"), arg("size"), arg("alpha"), arg("beta"), arg("k"), nogil);
  // Pooling: start, h_out, w_out as in ops.h (0 outputs: as many whole windows as fit).
  m.def("maxpool_forward", &maxpool_forward, arg("x"), arg("kernel"), arg("stride"), arg("start") = 0,
        arg("h_out") = 0, arg("w_out") = 0, nogil);
  m.def("maxpool_backward", &maxpool_backward, arg("x"), arg("y"), arg("dy"), arg("kernel"), arg("stride"),
        arg("start") = 0, arg("h_out") = 0, arg("w_out") = 0, nogil);
  m.def("avgpool_forward", &avgpool_forward, arg("x"), arg("kernel"), arg("stride"), arg("start") = 0,
        arg("h_out") = 0, arg("w_out") = 0, nogil);
  m.def("avgpool_backward", &avgpool_backward, arg("dy"), arg("h"), arg("w"), arg("kernel"), arg("stride"),
        arg("start") = 0, arg("h_out") = 0, arg("w_out") = 0, nogil);
  m.def("global_avgpool_forward", &global_avgpool_forward, arg("x"), nogil);
  m.def("global_avgpool_backward", &global_avgpool_backward, arg("dy"), arg("h"), arg("w"), nogil);
  m.def("dropout_forward", &dropout_forward, arg("x"), arg("p"), arg("seed"), arg("offset"), arg("training"),
        arg("first") = 0, nogil);
  m.def("dropout_backward", &dropout_backward, arg("dy"), arg("p"), arg("seed"), arg("offset"), arg("training"),
        arg("first") = 0, nogil);
  m.def("softmax_xent_forward", &softmax_xent_forward, arg("logits"), arg("labels"), nogil);
  m.def("softmax_xent_backward", &softmax_xent_backward, arg("probs"), arg("labels"), nogil);
  m.def("topk_correct", &topk_correct, arg("scores"), arg("labels"), nogil);
  m.def("sgd_update", &sgd_update, arg("weight"), arg("momentum_buffer"), arg("grad"), arg("lr"), arg("momentum"),
        arg("weight_decay"), nogil);
  m.def("adam_update", &adam_update, arg("weight"), arg("m"), arg("v"), arg("grad"), arg("lr"), arg("beta1"),
        arg("beta2"), arg("eps"), arg("weight_decay"), arg("decoupled"), arg("step"), nogil);
  m.def(
      "prepare_batch",
      [](const Tensor& images, const Tensor& mean, const Tensor& crop_y, const Tensor& crop_x, const Tensor& flip,
         const Tensor& rgb_shift, int crop, const std::array<float, 3>& scale) {
        return prepare_batch(images, mean, crop_y, crop_x, flip, rgb_shift, crop,
                             ChannelScale{{scale[0], scale[1], scale[2]}});
      },
      arg("images"), arg("mean"), arg("crop_y"), arg("crop_x"), arg("flip"), arg("rgb_shift"), arg("crop"),
      arg("scale"), nogil);
  m.def("add_", &add_, arg("dst"), arg("src"), nogil);
  m.def("copy_channels", &copy_channels, arg("src"), arg("src_c0"), arg("dst"), arg("dst_c0"), arg("count"), nogil);
}

// Benchmark-only (benchmarks/kernels.py, csrc/cuda/peak.h): the GPU's measured FP32 FMA peak and copy bandwidth,
// and a CUDA-event timer on the device's current stream. Absent in a CPU-only build.
static void bind_bench(py::module_& m) {
#ifdef ALEXNET_WITH_CUDA
  auto cuda_index = [](const std::string& device, const char* what) {
    Device d = Device::parse(device);
    AX_CHECK(d.is_cuda(), what, ": expected a CUDA device ('cuda' or 'cuda:N'), got '", device, "'");
    return d.index;
  };
  auto to_dict = [](const cuda::PeakMeasurement& pm, const char* unit) {
    py::dict out;
    out["times_ms"] = pm.times_ms;
    out["work_per_launch"] = pm.work_per_launch;
    out["unit"] = unit;
    out["rate"] = pm.best_rate();
    return out;
  };
  m.def(
      "bench_fma_peak",
      [=](const std::string& device, int iterations, int repetitions) {
        const int index = cuda_index(device, "bench_fma_peak");
        cuda::PeakMeasurement pm;
        {
          py::gil_scoped_release release;
          pm = cuda::fma_peak(index, iterations, repetitions);
        }
        return to_dict(pm, "FLOP");
      },
      py::arg("device"), py::arg("iterations") = 16384, py::arg("repetitions") = 10,
      "Measured FP32 FMA throughput: {'rate': FLOP/s of the fastest launch, 'times_ms', 'work_per_launch', 'unit'}.");
  m.def(
      "bench_copy_bandwidth",
      [=](const std::string& device, int64_t bytes, int repetitions) {
        const int index = cuda_index(device, "bench_copy_bandwidth");
        cuda::PeakMeasurement pm;
        {
          py::gil_scoped_release release;
          pm = cuda::copy_bandwidth(index, bytes, repetitions);
        }
        return to_dict(pm, "byte");
      },
      py::arg("device"), py::arg("bytes") = int64_t(1) << 30, py::arg("repetitions") = 10,
      "Measured device-to-device copy bandwidth, bytes read + written per second of the fastest launch.");
  py::class_<cuda::EventTimer>(m, "Timer", "CUDA-event timer on the device's current stream (benchmarks only).")
      .def(py::init([=](const std::string& device) { return new cuda::EventTimer(cuda_index(device, "Timer")); }),
           py::arg("device"))
      .def("start", &cuda::EventTimer::start)
      .def("stop", &cuda::EventTimer::stop)
      .def("elapsed_ms", &cuda::EventTimer::elapsed_ms, py::call_guard<py::gil_scoped_release>());
#endif
}

}  // namespace alexnet::py_bindings

PYBIND11_MODULE(ALEXNET_MODULE_NAME, m) {
  namespace py = pybind11;
  using namespace alexnet;
  using namespace alexnet::py_bindings;
  m.doc() = "alexnet_cuda native core: CPU (OpenMP) and CUDA kernels for AlexNet";

  py::register_exception<OutOfMemory>(m, "OutOfMemoryError", PyExc_MemoryError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const TypeError& e) {
      PyErr_SetString(PyExc_TypeError, e.what());
    } catch (const ValueError& e) {
      PyErr_SetString(PyExc_ValueError, e.what());
    }
  });

  py::class_<Tensor> tensor_class(m, "Tensor", "A dense float32/int32/uint8 tensor on 'cpu' or 'cuda:N'.");
  tensor_class
      .def_static(
          "from_numpy",
          [](const py::array& a, const py::object& device, const py::object& what) {
            const std::string name = str_from_python(what, "Tensor.from_numpy", "what");
            return tensor_from_numpy(a, Device::parse(str_from_python(device, name.c_str(), "device")), name);
          },
          py::arg("array"), py::arg("device") = "cpu", py::arg("what") = "Tensor.from_numpy")
      .def_static(
          "zeros",
          [](const py::object& shape, const py::object& device_obj, const py::object& dtype_obj) {
            const std::string device = str_from_python(device_obj, "Tensor.zeros", "device");
            const std::string dtype = str_from_python(dtype_obj, "Tensor.zeros", "dtype");
            DType d = dtype == "float32" ? DType::F32 : dtype == "int32" ? DType::I32 : dtype == "uint8" ? DType::U8
                      : throw ValueError("Tensor.zeros: dtype must be 'float32', 'int32' or 'uint8', got '" + dtype + "'");
            return Tensor::zeros(shape_from_python(shape, "Tensor.zeros"), Device::parse(device), d);
          },
          py::arg("shape"), py::arg("device") = "cpu", py::arg("dtype") = "float32")
      .def("numpy", &tensor_to_numpy, "A NumPy copy of the data (waits for pending GPU work).")
      .def(
          "to",
          [](const Tensor& t, const py::object& device) {
            const Device d = Device::parse(str_from_python(device, "Tensor.to", "device"));
            py::gil_scoped_release release;
            return t.to(d);
          },
          py::arg("device"))
      .def("clone", &Tensor::clone)
      .def("view",
           [](const Tensor& t, const py::object& shape) { return t.view(shape_from_python(shape, "Tensor.view")); })
      .def_property_readonly("shape", [](const Tensor& t) { return py::tuple(py::cast(t.shape())); })
      .def_property_readonly("device", [](const Tensor& t) { return t.device().str(); })
      .def_property_readonly("dtype", [](const Tensor& t) { return std::string(dtype_name(t.dtype())); })
      .def_property_readonly("ndim", &Tensor::ndim)
      .def("numel", &Tensor::numel)
      .def(
          "data_ptr", [](const Tensor& t) { return reinterpret_cast<uintptr_t>(t.raw()); },
          "The address of the first element (host or device memory): equal addresses mean shared memory.")
      .def("__repr__", [](const Tensor& t) {
        return str_cat("Tensor(shape=", shape_str(t.shape()), ", dtype=", dtype_name(t.dtype()),
                       ", device='", t.device().str(), "')");
      });

  bind_dlpack(m, tensor_class);

  py::module_ ops_module = m.def_submodule("ops", "Every AlexNet op on Tensors (see csrc/ops.h)");
  bind_ops(ops_module);

  m.def("build_info", &build_info);
#ifdef ALEXNET_CUDA_EMULATED
  m.def("emulator_stats", [] {
    const axemu::LaunchStats st = axemu::launch_stats();
    py::dict d;
    d["launches"] = st.launches;
    d["race_checked"] = st.race_checked;
    d["blocks"] = st.blocks;
    d["by_kernel"] = st.by_kernel;
    return d;
  }, "Kernels the emulated device has run: launches, how many were compared under two thread schedules, blocks, "
     "launches per kernel.");
  m.def("emulator_selftest", [](const std::string& name) {
    py::gil_scoped_release release;
    return axemu::run_selftest(name);
  }, py::arg("name"), "Runs a planted-bug program of csrc/cuda/emulation/selftest.cu (tests/emulator/test_emulator.py).");
  m.attr("emulator_selftest_names") = axemu::selftest_names();
#endif
  m.def("memory_stats", &memory_stats, py::arg("device"));
  m.def("reset_peak_memory", &reset_peak_memory, py::arg("device"));
  m.def("synchronize", &synchronize, py::arg("device"));
  m.def("empty_cache", &empty_cache, py::arg("device"), "Frees the allocator's cached, unused blocks on a device.");
  m.def("parse_device", [](const std::string& d) { return Device::parse(d).str(); });
  bind_network(m);
  bind_bench(m);
}
