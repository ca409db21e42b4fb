// A dense, contiguous tensor on the CPU or one GPU. Row-major (NCHW for images, (N, F) for features).
// Storage is reference counted: copies of a Tensor share memory; view() reshapes without copying.
// CUDA memory comes from the caching allocator (cuda/runtime.h), so steady-state training never calls cudaMalloc.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common.h"
#include "device.h"

namespace alexnet {

enum class DType : int { F32 = 0, I32 = 1, U8 = 2 };
const char* dtype_name(DType d);
size_t dtype_size(DType d);

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);

struct Storage;  // owns one allocation; frees it through the right allocator

class Tensor {
 public:
  Tensor() = default;  // undefined: defined() is false (used for "no bias")

  static Tensor empty(const Shape& shape, Device device, DType dtype = DType::F32);
  static Tensor zeros(const Shape& shape, Device device, DType dtype = DType::F32);
  // Copies host memory holding numel() elements of dtype into a new tensor on device.
  static Tensor from_host(const void* src, const Shape& shape, Device device, DType dtype = DType::F32);
  // Wraps C-contiguous memory this library did not allocate (a DLPack import, python/dlpack.cpp) without copying:
  // `release` runs exactly once, when the last Tensor sharing the memory is destroyed, and gives it back to its
  // owner. Such memory is not counted by memory_stats(). A shape too large to address raises ValueError naming `what`
  // (and `release` is not run).
  static Tensor from_external(void* data, const Shape& shape, Device device, DType dtype,
                              std::function<void()> release, const char* what = "from_external");

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t size(int dim) const;  // negative dims count from the end
  int64_t numel() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  Device device() const { return device_; }
  DType dtype() const { return dtype_; }

  template <typename T = float>
  T* data() { return static_cast<T*>(raw()); }
  template <typename T = float>
  const T* data() const { return static_cast<const T*>(raw()); }
  void* raw() const;

  // Same storage, new shape with the same numel.
  Tensor view(const Shape& shape) const;
  // A deep copy on another (or the same) device. CUDA copies run on the current stream of the
  // destination device (or the source device for device-to-host) and are complete when to() returns
  // only for device-to-host copies.
  Tensor to(Device device) const;
  Tensor clone() const { return to(device_); }
  // Copies numel() elements to host memory (synchronous).
  void copy_to_host(void* dst) const;
  // Overwrites this tensor's contents with src's (same shape and dtype; devices may differ).
  void copy_from(const Tensor& src);
  void fill_zero();

 private:
  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Device device_;
  DType dtype_ = DType::F32;
};

}  // namespace alexnet
