// The op layer's shared boundary checks and backend dispatch, used by every ops_*.cpp / ops.cpp source. Each check
// throws ValueError/TypeError naming the op and what was expected (common.h).
#pragma once

#include <cmath>
#include <initializer_list>
#include <utility>

#include "common.h"
#include "tensor.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

// Runs cpu_call on the CPU, or cuda_call with `stream` (the device's current stream) on the tensor's GPU.
#ifdef ALEXNET_WITH_CUDA
#define AX_DISPATCH(device, cpu_call, cuda_call)                      \
  do {                                                                \
    if ((device).is_cpu()) {                                          \
      cpu_call;                                                       \
    } else {                                                          \
      cuda::DeviceGuard ax_guard_((device).index);                    \
      cudaStream_t stream = cuda::current_stream((device).index);     \
      cuda_call;                                                      \
    }                                                                 \
  } while (0)
#else
#define AX_DISPATCH(device, cpu_call, cuda_call) \
  do {                                           \
    cpu_call;                                    \
  } while (0)
#endif

namespace alexnet::ops::detail {

inline void check_tensor(const char* op, const char* name, const Tensor& t, int ndim, DType dtype = DType::F32) {
  AX_CHECK(t.defined(), op, ": ", name, " is missing");
  AX_CHECK_TYPE(t.dtype() == dtype, op, ": expected ", name, " of dtype ", dtype_name(dtype), ", got ",
                dtype_name(t.dtype()));
  AX_CHECK(ndim < 0 || t.ndim() == ndim, op, ": expected ", name, " with ", ndim, " dimensions, got shape ",
           shape_str(t.shape()));
}

inline void check_shape(const char* op, const char* name, const Tensor& t, const Shape& expected) {
  AX_CHECK(t.shape() == expected, op, ": expected ", name, " of shape ", shape_str(expected), ", got ",
           shape_str(t.shape()));
}

inline void check_device(const char* op, const char* name, const Tensor& t, const Tensor& ref) {
  AX_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device().str(), " but the other inputs are on ",
           ref.device().str());
}

using NamedTensors = std::initializer_list<std::pair<const char*, const Tensor*>>;

// Each named tensor: float32 of the given shape, on ref's device.
inline void check_all_shaped(const char* op, const Tensor& ref, const Shape& shape, NamedTensors tensors) {
  for (auto [name, t] : tensors) {
    check_tensor(op, name, *t, -1);
    check_shape(op, name, *t, shape);
    check_device(op, name, *t, ref);
  }
}

inline int to_int(const char* op, const char* what, int64_t v) {
  AX_CHECK(v >= 0 && v <= 0x7fffffff, op, ": ", what, " = ", v, " is out of the supported range");
  return static_cast<int>(v);
}

// Float arguments: NaN fails every range comparison, but +-inf (a Python float above the float32 maximum becomes
// inf on the way in) passes one-sided ones, and would turn the outputs into inf/NaN.
inline void check_finite(const char* op, const char* name, float v) {
  AX_CHECK(std::isfinite(v), op, ": ", name, " must be a finite float32 (|", name, "| <= 3.4e38), got ", v);
}

// The window arguments of conv2d and local, and the groups' fit to the channels.
inline void check_window_arguments(const char* op, int stride, int pad, int groups) {
  AX_CHECK(stride >= 1, op, ": stride must be >= 1, got ", stride);
  AX_CHECK(pad >= 0, op, ": padding must be >= 0, got ", pad);
  AX_CHECK(groups >= 1, op, ": groups must be >= 1, got ", groups);
}

inline void check_groups_divide(const char* op, int groups, int c_in, int c_out) {
  AX_CHECK(c_in % groups == 0, op, ": groups=", groups, " does not divide the ", c_in, " input channels");
  AX_CHECK(c_out % groups == 0, op, ": groups=", groups, " does not divide the ", c_out, " output channels");
}

inline int64_t spatial_of(const Tensor& t) {
  int64_t s = 1;
  for (int d = 2; d < t.ndim(); ++d) s *= t.size(d);
  return s;
}

}  // namespace alexnet::ops::detail
