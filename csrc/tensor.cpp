#include "tensor.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <utility>
#include <unordered_map>
#include <vector>

#include "memory_stats.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/runtime.h"
#endif

namespace alexnet {

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "float32";
    case DType::I32: return "int32";
    case DType::U8: return "uint8";
  }
  return "?";
}

size_t dtype_size(DType d) { return d == DType::U8 ? 1 : 4; }

std::string shape_str(const Shape& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + (s.size() == 1 ? ",)" : ")");
}

// ---- CPU memory: 64-byte aligned (one cache line, a full AVX-512 vector), with the same statistics as CUDA's.
// Blocks of 1 MiB and more are cached after free and reused for the same rounded size, like the CUDA allocator:
// glibc serves large requests with fresh mmap'd pages, and their first-touch page faults cost more than an
// element-wise kernel itself (a 9 MB ReLU: 1.6 ms of work, 5 ms of faults). Every training step allocates the same
// shapes, so the cache stops growing after the first step.
namespace {
constexpr size_t kCpuCacheMin = 1 << 20;
std::atomic<size_t> g_cpu_allocated{0}, g_cpu_peak{0};
std::mutex g_cpu_cache_mutex;
std::unordered_map<size_t, std::vector<void*>> g_cpu_cache;
size_t g_cpu_cached_bytes = 0;

size_t cpu_round(size_t bytes) { return bytes < kCpuCacheMin ? (bytes + 63) / 64 * 64 : (bytes + 4095) / 4096 * 4096; }

void* cpu_allocate(size_t bytes) {
  if (bytes >= kCpuCacheMin) {
    std::lock_guard<std::mutex> lock(g_cpu_cache_mutex);
    auto it = g_cpu_cache.find(bytes);
    if (it != g_cpu_cache.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      g_cpu_cached_bytes -= bytes;
      return p;
    }
  }
  void* p = std::aligned_alloc(64, bytes);
  if (!p) throw OutOfMemory(str_cat("cpu: out of memory allocating ", bytes, " bytes (", bytes / 1048576.0, " MiB)"));
  return p;
}

void cpu_release(void* p, size_t bytes) {
  if (bytes >= kCpuCacheMin) {
    std::lock_guard<std::mutex> lock(g_cpu_cache_mutex);
    g_cpu_cache[bytes].push_back(p);
    g_cpu_cached_bytes += bytes;
    return;
  }
  std::free(p);
}
}  // namespace

MemoryStats cpu_memory_stats() {
  std::lock_guard<std::mutex> lock(g_cpu_cache_mutex);
  const size_t live = g_cpu_allocated.load();
  return MemoryStats{live, g_cpu_peak.load(), live + g_cpu_cached_bytes};
}
void reset_cpu_peak_memory() { g_cpu_peak.store(g_cpu_allocated.load()); }
void cpu_empty_cache() {
  std::lock_guard<std::mutex> lock(g_cpu_cache_mutex);
  for (auto& [bytes, blocks] : g_cpu_cache) {
    for (void* p : blocks) std::free(p);
  }
  g_cpu_cache.clear();
  g_cpu_cached_bytes = 0;
}

// The element count of `shape`, checked: every dimension >= 0 and numel * itemsize representable as a byte count an
// allocation can have (at most PTRDIFF_MAX). An unchecked product wraps, e.g. (2^31, 2^31) float32 is 2^64 bytes = 0,
// and a 0-byte buffer would then be indexed as a huge one. The product of the nonzero dimensions must fit too, even
// when another dimension is 0 (NumPy's rule, so that every tensor converts to an array).
static int64_t checked_numel(const char* what, const Shape& shape, DType dtype) {
  const int64_t max_elements = PTRDIFF_MAX / static_cast<int64_t>(dtype_size(dtype));
  int64_t n = 1;
  bool empty = false;
  for (int64_t d : shape) {
    AX_CHECK(d >= 0, what, ": negative dimension in shape ", shape_str(shape));
    if (d == 0) {
      empty = true;
      continue;
    }
    AX_CHECK(n <= max_elements / d, what, ": shape ", shape_str(shape), " of ", dtype_name(dtype),
             " is too large (more than 2^63 bytes)");
    n *= d;
  }
  return empty ? 0 : n;
}

struct Storage {
  void* ptr = nullptr;
  size_t bytes = 0;
  Device device;
  std::function<void()> external_release;  // set for borrowed memory (from_external): its owner frees it

  Storage(void* borrowed, size_t nbytes, Device dev, std::function<void()> release)
      : ptr(borrowed), bytes(nbytes), device(dev), external_release(std::move(release)) {}

  Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
    if (device.is_cpu()) {
      const size_t rounded = cpu_round(nbytes);
      ptr = rounded ? cpu_allocate(rounded) : nullptr;
      const size_t now = (g_cpu_allocated += rounded);
      size_t peak = g_cpu_peak.load();
      while (now > peak && !g_cpu_peak.compare_exchange_weak(peak, now)) {
      }
      bytes = rounded;
    } else {
#ifdef ALEXNET_WITH_CUDA
      ptr = nbytes ? cuda::allocate(device.index, nbytes) : nullptr;
#endif
    }
  }
  ~Storage() {
    if (external_release) {
      external_release();
      return;
    }
    if (!ptr) return;
    if (device.is_cpu()) {
      g_cpu_allocated -= bytes;
      cpu_release(ptr, bytes);
    } else {
#ifdef ALEXNET_WITH_CUDA
      cuda::release(device.index, ptr);
#endif
    }
  }
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

Tensor Tensor::empty(const Shape& shape, Device device, DType dtype) {
  const int64_t n = checked_numel("tensor", shape, dtype);
  Tensor t;
  // Always allocate (even 0 bytes) so an empty tensor is still defined().
  t.storage_ = std::make_shared<Storage>(static_cast<size_t>(n) * dtype_size(dtype), device);
  t.shape_ = shape;
  t.device_ = device;
  t.dtype_ = dtype;
  return t;
}

Tensor Tensor::zeros(const Shape& shape, Device device, DType dtype) {
  Tensor t = empty(shape, device, dtype);
  t.fill_zero();
  return t;
}

Tensor Tensor::from_host(const void* src, const Shape& shape, Device device, DType dtype) {
  Tensor t = empty(shape, device, dtype);
  if (t.nbytes() == 0) return t;
  if (device.is_cpu()) {
    std::memcpy(t.raw(), src, t.nbytes());
  } else {
#ifdef ALEXNET_WITH_CUDA
    cuda::copy_host_to_device(device.index, t.raw(), src, t.nbytes());
#endif
  }
  return t;
}

Tensor Tensor::from_external(void* data, const Shape& shape, Device device, DType dtype,
                             std::function<void()> release, const char* what) {
  const int64_t n = checked_numel(what, shape, dtype);
  Tensor t;
  t.storage_ = std::make_shared<Storage>(data, static_cast<size_t>(n) * dtype_size(dtype), device, std::move(release));
  t.shape_ = shape;
  t.device_ = device;
  t.dtype_ = dtype;
  return t;
}

int64_t Tensor::size(int dim) const {
  const int nd = ndim();
  const int d = dim < 0 ? dim + nd : dim;
  AX_CHECK(d >= 0 && d < nd, "tensor: dim ", dim, " out of range for shape ", shape_str(shape_));
  return shape_[d];
}

int64_t Tensor::numel() const {
  int64_t n = 1;
  for (int64_t d : shape_) n *= d;
  return n;
}

void* Tensor::raw() const { return storage_ ? storage_->ptr : nullptr; }

Tensor Tensor::view(const Shape& shape) const {
  AX_CHECK(checked_numel("Tensor.view", shape, dtype_) == numel(), "Tensor.view: cannot view ", shape_str(shape_),
           " as ", shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::to(Device device) const {
  Tensor t = empty(shape_, device, dtype_);
  t.copy_from(*this);
  return t;
}

void Tensor::copy_to_host(void* dst) const {
  if (nbytes() == 0) return;
  if (device_.is_cpu()) {
    std::memcpy(dst, raw(), nbytes());
  } else {
#ifdef ALEXNET_WITH_CUDA
    cuda::copy_device_to_host(device_.index, dst, raw(), nbytes());
#endif
  }
}

void Tensor::copy_from(const Tensor& src) {
  AX_CHECK(src.shape_ == shape_ && src.dtype_ == dtype_, "copy: shape/dtype mismatch ", shape_str(src.shape_), " ",
           dtype_name(src.dtype_), " -> ", shape_str(shape_), " ", dtype_name(dtype_));
  if (nbytes() == 0) return;
  if (device_.is_cpu() && src.device_.is_cpu()) {
    std::memcpy(raw(), src.raw(), nbytes());
    return;
  }
#ifdef ALEXNET_WITH_CUDA
  if (device_.is_cpu()) {
    cuda::copy_device_to_host(src.device_.index, raw(), src.raw(), nbytes());
  } else if (src.device_.is_cpu()) {
    cuda::copy_host_to_device(device_.index, raw(), src.raw(), nbytes());
  } else {
    cuda::copy_device_to_device(device_.index, raw(), src.device_.index, src.raw(), nbytes());
  }
#endif
}

void Tensor::fill_zero() {
  if (nbytes() == 0) return;
  if (device_.is_cpu()) {
    std::memset(raw(), 0, nbytes());
  } else {
#ifdef ALEXNET_WITH_CUDA
    cuda::memset_zero(device_.index, raw(), nbytes());
#endif
  }
}

}  // namespace alexnet
