// DLPack, the array interchange protocol of the Python array API standard
// (https://data-apis.org/array-api/latest/design_topics/data_interchange.html, C ABI in csrc/dlpack.h):
// Tensor.__dlpack__ / Tensor.__dlpack_device__ export a tensor, from_dlpack imports one. Both directions share
// memory, never copy it (unless __dlpack__ is asked for copy=True or another device).
//
// Lifetimes:
// - Export: the DLManagedTensor's manager_ctx owns a Tensor sharing the exported storage, so the memory lives until
//   the consumer calls the deleter, however long after our Tensor object is gone. A capsule nobody consumed (still
//   named "dltensor") calls the deleter itself when it is collected; a consumer renames it "used_dltensor" and then
//   owns the deleter.
// - Import: the new Tensor's storage borrows the producer's memory (Tensor::from_external) and calls the producer's
//   deleter when the last Tensor sharing it dies. That can happen with the GIL released (ops run without it); the
//   protocol leaves taking the GIL to the deleter (NumPy's and PyTorch's take it when they need it), and ours
//   touches no Python object.
#include <climits>
#include <cstdint>
#include <functional>
#include <string>
#include <type_traits>
#include <utility>

#include "bindings.h"
#include "dlpack.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace alexnet::py_bindings {
namespace {

using namespace alexnet::dlpack;

constexpr const char* kCapsule = "dltensor";
constexpr const char* kCapsuleVersioned = "dltensor_versioned";
constexpr const char* kUsedCapsule = "used_dltensor";
constexpr const char* kUsedCapsuleVersioned = "used_dltensor_versioned";

DLDevice dl_device_of(const Device& d) { return d.is_cpu() ? DLDevice{kDLCPU, 0} : DLDevice{kDLCUDA, d.index}; }

DLDataType dl_dtype_of(DType d) {
  switch (d) {
    case DType::F32: return {kDLFloat, 32, 1};
    case DType::I32: return {kDLInt, 32, 1};
    case DType::U8: return {kDLUInt, 8, 1};
  }
  return {kDLFloat, 32, 1};
}

std::string dl_device_str(int32_t type, int32_t id) {
  switch (type) {
    case kDLCPU: return "kDLCPU (1)";
    case kDLCUDA: return str_cat("kDLCUDA (2), device ", id);
    case kDLCUDAHost: return "kDLCUDAHost (3)";
  }
  return str_cat("device type ", type);
}

// The Device a DLPack device names, or ValueError: only the CPU and this build's visible CUDA devices hold tensors.
Device device_from_dl(int32_t type, int32_t id, const char* what) {
  if (type == kDLCPU) return Device::cpu();
  AX_CHECK(type == kDLCUDA, what, ": expected memory on the CPU (kDLCPU) or a CUDA device (kDLCUDA), got ",
           dl_device_str(type, id));
#ifdef ALEXNET_WITH_CUDA
  const int count = cuda::device_count();
  AX_CHECK(id >= 0 && id < count, what, ": the tensor is on CUDA device ", id, ", but ", count,
           " CUDA device(s) are visible");
  return Device::cuda(id);
#else
  throw ValueError(str_cat(what, ": the tensor is on CUDA device ", id, ", but alexnet_cuda was built without CUDA"));
#endif
}

// A (first, second) pair of ints from Python (dl_device, max_version, __dlpack_device__'s answer), or TypeError naming
// it: pybind11's own cast would raise a bare RuntimeError.
std::pair<int64_t, int64_t> int_pair(const py::handle& obj, const char* what, const char* name) {
  const bool ok = py::isinstance<py::tuple>(obj) || py::isinstance<py::list>(obj);
  const py::sequence seq = ok ? py::reinterpret_borrow<py::sequence>(obj) : py::sequence();
  AX_CHECK_TYPE(ok && seq.size() == 2 && PyLong_Check(seq[0].ptr()) && PyLong_Check(seq[1].ptr()), what, ": ", name,
                " must be a pair of ints, got ", std::string(py::repr(obj)));
  int overflow = 0;
  const long long first = PyLong_AsLongLongAndOverflow(seq[0].ptr(), &overflow);
  const long long second = overflow ? 0 : PyLong_AsLongLongAndOverflow(seq[1].ptr(), &overflow);
  AX_CHECK(!overflow && first >= INT32_MIN && first <= INT32_MAX && second >= INT32_MIN && second <= INT32_MAX, what,
           ": ", name, " out of range: ", std::string(py::repr(obj)));
  return {first, second};
}

// ---- Export.

// Owns what the DLTensor points to: a Tensor sharing the storage, and the shape and strides arrays.
template <typename Managed>
struct Exported {
  Managed managed{};
  Tensor tensor;
  Shape shape, strides;

  static void deleter(Managed* self) { delete static_cast<Exported*>(self->manager_ctx); }
};

template <typename Managed>
Managed* export_tensor(const Tensor& t) {
  auto* ctx = new Exported<Managed>;
  ctx->tensor = t;
  ctx->shape = t.shape();
  ctx->strides.assign(t.shape().size(), 1);  // C-contiguous, in elements (explicit: older consumers need them)
  for (int i = t.ndim() - 2; i >= 0; --i) ctx->strides[i] = ctx->strides[i + 1] * t.shape()[i + 1];
  DLTensor& dl = ctx->managed.dl_tensor;
  dl.data = t.raw();
  dl.device = dl_device_of(t.device());
  dl.ndim = t.ndim();
  dl.dtype = dl_dtype_of(t.dtype());
  dl.shape = ctx->shape.data();
  dl.strides = ctx->strides.data();
  dl.byte_offset = 0;
  ctx->managed.manager_ctx = ctx;
  ctx->managed.deleter = &Exported<Managed>::deleter;
  return &ctx->managed;
}

// The capsule's destructor: a capsule still carrying its original name was never consumed, so its managed tensor
// is released here; a consumed ("used_...") one belongs to its consumer.
template <typename Managed>
void unconsumed_capsule_destructor(PyObject* capsule) {
  const char* name = std::is_same_v<Managed, DLManagedTensor> ? kCapsule : kCapsuleVersioned;
  if (!PyCapsule_IsValid(capsule, name)) return;
  auto* managed = static_cast<Managed*>(PyCapsule_GetPointer(capsule, name));
  if (managed && managed->deleter) managed->deleter(managed);
}

template <typename Managed>
py::capsule make_capsule(Managed* managed, const char* name) {
  PyObject* capsule = PyCapsule_New(managed, name, &unconsumed_capsule_destructor<Managed>);
  if (!capsule) {
    managed->deleter(managed);
    throw py::error_already_set();
  }
  return py::reinterpret_steal<py::capsule>(capsule);
}

// Tensor.__dlpack__(*, stream=None, max_version=None, dl_device=None, copy=None), as the array API standard
// specifies it (https://data-apis.org/array-api/latest/API_specification/generated/array_api.array.__dlpack__.html).
py::capsule tensor_dlpack(const Tensor& given, const py::object& stream, const py::object& max_version,
                          const py::object& dl_device, const py::object& copy) {
  // Every argument is checked before any work is done.
  // Where the consumer wants the data; another device than the tensor's means a copy, which copy=False forbids.
  Device target = given.device();
  if (!dl_device.is_none()) {
    const auto [type, id] = int_pair(dl_device, "Tensor.__dlpack__", "dl_device (device_type, device_id)");
    try {
      target = device_from_dl(static_cast<int32_t>(type), static_cast<int32_t>(id), "Tensor.__dlpack__");
    } catch (const ValueError& e) {
      throw py::buffer_error(e.what());
    }
  }
  AX_CHECK_TYPE(copy.is_none() || PyBool_Check(copy.ptr()), "Tensor.__dlpack__: copy must be None, True or False, got ",
                std::string(py::repr(copy)));
  const bool copy_asked = !copy.is_none() && copy.cast<bool>();
  if (target != given.device() && !copy.is_none() && !copy_asked) {
    throw py::buffer_error(str_cat("Tensor.__dlpack__: the tensor is on ", given.device().str(),
                                   " and copy=False forbids the copy to ", target.str()));
  }
  const bool copied = copy_asked || target != given.device();

  // stream: the consumer's stream, on which the data must be ready. None is the only value on the CPU. On CUDA, -1
  // asks for no synchronization; any other stream (None = the legacy default stream, 1, 2 or a stream handle; 0 is
  // ambiguous and forbidden by the standard) gets a host-side wait for the work queued on the device's current
  // stream, which orders it before anything the consumer queues later on any stream.
  [[maybe_unused]] bool wait = false;
  if (target.is_cpu()) {
    AX_CHECK(stream.is_none(), "Tensor.__dlpack__: stream must be None for a CPU tensor, got ",
             std::string(py::repr(stream)));
  } else {
    AX_CHECK_TYPE(stream.is_none() || (PyLong_Check(stream.ptr()) && !PyBool_Check(stream.ptr())),
                  "Tensor.__dlpack__: stream must be None or an int, got ", std::string(py::repr(stream)));
    int overflow = 0;
    const long long s = stream.is_none() ? 1 : PyLong_AsLongLongAndOverflow(stream.ptr(), &overflow);
    AX_CHECK(!overflow, "Tensor.__dlpack__: stream ", std::string(py::repr(stream)), " is not a stream handle");
    AX_CHECK(s != 0, "Tensor.__dlpack__: stream=0 is ambiguous for CUDA (the array API standard forbids it); pass 1 "
             "for the legacy default stream, 2 for the per-thread default stream, or the stream's handle");
    wait = s != -1 || copied;  // our own copy is queued on a stream the consumer does not know: always waited for
  }

  // The versioned (DLPack 1.0) struct when the consumer says it reads it, else the legacy one.
  bool versioned = false;
  if (!max_version.is_none()) {
    versioned = int_pair(max_version, "Tensor.__dlpack__", "max_version (major, minor)").first >= kVersionMajor;
  }

  Tensor t = given;
  {
    py::gil_scoped_release release;
    if (copied) t = t.to(target);
#ifdef ALEXNET_WITH_CUDA
    if (wait) cuda::synchronize_stream(cuda::current_stream(t.device().index));
#endif
  }
  if (versioned) {
    auto* managed = export_tensor<DLManagedTensorVersioned>(t);
    managed->version = {kVersionMajor, kVersionMinor};
    managed->flags = copied ? kFlagIsCopied : 0;
    return make_capsule(managed, kCapsuleVersioned);
  }
  return make_capsule(export_tensor<DLManagedTensor>(t), kCapsule);
}

// ---- Import.

DType dtype_from_dl(const DLDataType& d) {
  if (d.lanes == 1 && d.code == kDLFloat && d.bits == 32) return DType::F32;
  if (d.lanes == 1 && d.code == kDLInt && d.bits == 32) return DType::I32;
  if (d.lanes == 1 && d.code == kDLUInt && d.bits == 8) return DType::U8;
  const int bits = d.bits;  // a uint8_t would print as a character
  const std::string kind = d.code == kDLInt     ? str_cat("int", bits)
                           : d.code == kDLUInt  ? str_cat("uint", bits)
                           : d.code == kDLFloat ? str_cat("float", bits)
                           : d.code == kDLBool  ? std::string("bool")
                                                : str_cat("type code ", int(d.code), " of ", bits, " bits");
  throw TypeError(str_cat("from_dlpack: expected float32, int32 or uint8 data, got ", kind,
                          d.lanes == 1 ? std::string() : str_cat(" x", d.lanes, " lanes")));
}

// A Tensor sharing a managed tensor's memory, checked first: dtype, device, C-contiguous, aligned to its element.
// A check that fails leaves the capsule unconsumed (its own destructor releases it). Once every check passed,
// `consume` renames the capsule, and from then on the deleter is ours to call: by the Tensor's storage when the
// last Tensor sharing it dies, or here if making the Tensor fails.
template <typename Managed>
Tensor import_managed(Managed* managed, const std::function<void()>& consume) {
  const DLTensor& dl = managed->dl_tensor;
  const DType dtype = dtype_from_dl(dl.dtype);
  const Device device = device_from_dl(dl.device.device_type, dl.device.device_id, "from_dlpack");
  AX_CHECK(dl.ndim >= 0 && (dl.ndim == 0 || dl.shape), "from_dlpack: malformed DLTensor (ndim ", dl.ndim, ")");
  const Shape shape(dl.shape, dl.shape + dl.ndim);
  for (int64_t d : shape) AX_CHECK(d >= 0, "from_dlpack: malformed DLTensor (shape ", shape_str(shape), ")");
  // C-contiguous: strides absent, or equal to the row-major ones wherever they matter (a dimension of size 1 may
  // have any stride; so may every dimension of an empty tensor).
  bool empty = false;
  for (int64_t d : shape) empty = empty || d == 0;
  if (dl.strides && !empty) {
    int64_t expected = 1;
    for (int i = dl.ndim - 1; i >= 0; --i) {
      AX_CHECK(shape[i] == 1 || dl.strides[i] == expected, "from_dlpack: expected a C-contiguous tensor, got shape ",
               shape_str(shape), " with strides ", shape_str(Shape(dl.strides, dl.strides + dl.ndim)),
               " (in elements; make a contiguous copy first, e.g. numpy.ascontiguousarray or torch's .contiguous())");
      expected *= shape[i];
    }
  }
  char* data = static_cast<char*>(dl.data) + dl.byte_offset;
  AX_CHECK(reinterpret_cast<uintptr_t>(data) % dtype_size(dtype) == 0, "from_dlpack: the data at ",
           static_cast<void*>(data), " is not aligned to its ", dtype_size(dtype), "-byte ", dtype_name(dtype),
           " elements");
  auto release = [managed] {
    if (managed->deleter) managed->deleter(managed);
  };
  consume();
  try {
    return Tensor::from_external(data, shape, device, dtype, release, "from_dlpack");
  } catch (...) {
    release();  // from_external never ran it: the Storage was not made
    throw;
  }
}

// Consumes a DLPack capsule: checks it, renames it "used_..." so that nobody else imports it and its destructor
// leaves the deleter to our Tensor, wraps its memory.
Tensor import_capsule(const py::handle& capsule) {
  const char* name = PyCapsule_GetName(capsule.ptr());
  if (!name) throw py::error_already_set();
  const std::string n = name;
  AX_CHECK(n != kUsedCapsule && n != kUsedCapsuleVersioned, "from_dlpack: this DLPack capsule was already consumed ",
           "(each capsule can be imported once; call __dlpack__() again for another one)");
  auto consume = [&] {
    if (PyCapsule_SetName(capsule.ptr(), n == kCapsule ? kUsedCapsule : kUsedCapsuleVersioned) != 0) {
      throw py::error_already_set();
    }
  };
  if (n == kCapsule) {
    return import_managed(static_cast<DLManagedTensor*>(PyCapsule_GetPointer(capsule.ptr(), kCapsule)), consume);
  } else if (n == kCapsuleVersioned) {
    auto* managed = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(capsule.ptr(), kCapsuleVersioned));
    AX_CHECK(managed->version.major == kVersionMajor, "from_dlpack: expected DLPack version 1.x, the producer wrote ",
             managed->version.major, ".", managed->version.minor);
    // Our ops may write into any tensor (an optimizer step updates weights in place), so read-only memory is refused.
    AX_CHECK(!(managed->flags & kFlagReadOnly), "from_dlpack: the producer exported read-only memory and "
             "alexnet_cuda tensors are writable; import a writable copy (e.g. numpy's array.copy())");
    return import_managed(managed, consume);
  }
  throw TypeError(str_cat("from_dlpack: expected a capsule named 'dltensor' or 'dltensor_versioned', got '", n, "'"));
}

// from_dlpack(obj): obj has __dlpack__ and __dlpack_device__ (a NumPy array, a PyTorch tensor, one of ours), or is
// a DLPack capsule itself.
Tensor from_dlpack(const py::object& obj) {
  if (PyCapsule_CheckExact(obj.ptr())) return import_capsule(obj);
  AX_CHECK_TYPE(py::hasattr(obj, "__dlpack__") && py::hasattr(obj, "__dlpack_device__"),
                "from_dlpack: expected an object with __dlpack__ and __dlpack_device__ (a NumPy array, a PyTorch ",
                "tensor, an alexnet_cuda.Tensor) or a DLPack capsule, got ",
                std::string(py::str(py::type::of(obj).attr("__name__"))));
  const auto [type, id] = int_pair(obj.attr("__dlpack_device__")(), "from_dlpack", "__dlpack_device__()");
  [[maybe_unused]] const Device device = device_from_dl(static_cast<int32_t>(type), static_cast<int32_t>(id),
                                                        "from_dlpack");
  // The stream our ops will read the data on: the device's current stream (the producer makes the data ready
  // there). The CPU takes no stream.
  py::object stream = py::none();
#ifdef ALEXNET_WITH_CUDA
  if (device.is_cuda()) stream = py::int_(reinterpret_cast<uintptr_t>(cuda::current_stream(device.index)));
#endif
  py::object capsule;
  try {
    capsule = obj.attr("__dlpack__")(py::arg("stream") = stream,
                                     py::arg("max_version") = py::make_tuple(kVersionMajor, kVersionMinor));
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;
    capsule = obj.attr("__dlpack__")(py::arg("stream") = stream);  // a producer older than DLPack 1.0
  }
  AX_CHECK_TYPE(PyCapsule_CheckExact(capsule.ptr()), "from_dlpack: __dlpack__() returned ",
                std::string(py::str(py::type::of(capsule).attr("__name__"))), ", not a capsule");
  return import_capsule(capsule);
}

}  // namespace

void bind_dlpack(py::module_& m, py::class_<Tensor>& tensor) {
  using py::arg;
  tensor
      .def("__dlpack__", &tensor_dlpack, py::kw_only(), arg("stream") = py::none(), arg("max_version") = py::none(),
           arg("dl_device") = py::none(), arg("copy") = py::none(),
           "A DLPack capsule sharing this tensor's memory (the array API standard's protocol; numpy.from_dlpack and "
           "torch.from_dlpack call it).")
      .def(
          "__dlpack_device__",
          [](const Tensor& t) {
            const DLDevice d = dl_device_of(t.device());
            return py::make_tuple(d.device_type, d.device_id);
          },
          "(device_type, device_id) in DLPack's numbering: (1, 0) on the CPU, (2, N) on cuda:N.");
  m.def("from_dlpack", &from_dlpack, arg("obj"),
        "A Tensor sharing the memory of obj (anything with __dlpack__, or a DLPack capsule): no copy is made, and "
        "obj's memory stays alive as long as the Tensor does.");
}

}  // namespace alexnet::py_bindings
