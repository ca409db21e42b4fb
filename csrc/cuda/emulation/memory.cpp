// The emulated device heap (memory.h).
#include "memory.h"

#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>

#include "config.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define AXEMU_ASAN 1
#endif

namespace axemu {

namespace {

constexpr size_t kAlignment = 256;  // cudaMalloc's alignment
constexpr size_t kRedzone = 256;
// NaN bytes: an out-of-bounds read returns NaN (or -1 as an integer), so it shows in the results too.
constexpr unsigned char kCanary = 0xFF;

struct Heap {
  std::mutex mutex;
  std::map<uintptr_t, Allocation> live;  // by base address
  std::map<int, size_t> used;
};
Heap& heap() {
  static Heap h;
  return h;
}

void poison_redzones(const Allocation& a) {
#if defined(AXEMU_ASAN)
  ASAN_POISON_MEMORY_REGION(a.base - kRedzone, kRedzone);
  ASAN_POISON_MEMORY_REGION(a.base + a.bytes, kRedzone + (kAlignment - a.bytes % kAlignment) % kAlignment);
#else
  std::memset(a.base - kRedzone, kCanary, kRedzone);
  std::memset(a.base + a.bytes, kCanary, kRedzone);
#endif
}

const Allocation* find_locked(const Heap& h, const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  auto it = h.live.upper_bound(addr);
  if (it == h.live.begin()) return nullptr;
  --it;
  const Allocation& a = it->second;
  return addr <= reinterpret_cast<uintptr_t>(a.base) + a.bytes ? &a : nullptr;
}

}  // namespace

cudaError_t device_malloc(int device, size_t bytes, void** out, std::string* detail) {
  Heap& h = heap();
  std::lock_guard<std::mutex> lock(h.mutex);
  const size_t capacity = config().memory_bytes;
  if (bytes > capacity - std::min(capacity, h.used[device])) {
    std::ostringstream msg;
    msg << "cudaMalloc of " << bytes << " bytes on emulated device " << device << ": " << capacity - h.used[device]
        << " of " << capacity << " bytes free (AXEMU_MEMORY_MB sets the capacity)";
    *detail = msg.str();
    return cudaErrorMemoryAllocation;
  }
  const size_t padded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
  char* raw = static_cast<char*>(std::aligned_alloc(kAlignment, padded + 2 * kRedzone));
  if (!raw) {
    *detail = "the host could not provide " + std::to_string(bytes) + " bytes for emulated device memory";
    return cudaErrorMemoryAllocation;
  }
  Allocation a{raw + kRedzone, bytes, device};
  if (config().poison) std::memset(a.base, 0xFF, bytes);
  poison_redzones(a);
  h.live[reinterpret_cast<uintptr_t>(a.base)] = a;
  h.used[device] += bytes;
  *out = a.base;
  return cudaSuccess;
}

bool device_free(void* p, std::string* detail) {
  Heap& h = heap();
  std::lock_guard<std::mutex> lock(h.mutex);
  auto it = h.live.find(reinterpret_cast<uintptr_t>(p));
  if (it == h.live.end()) {
    const Allocation* inside = find_locked(h, p);
    *detail = inside ? "cudaFree: the pointer is inside an allocation, not at its start"
                     : "cudaFree: the pointer is not a live device allocation (never allocated, or already freed)";
    return false;
  }
  const Allocation a = it->second;
#if defined(AXEMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(a.base - kRedzone, (a.bytes + kAlignment - 1) / kAlignment * kAlignment + 2 * kRedzone);
#endif
  h.used[a.device] -= a.bytes;
  h.live.erase(it);
  std::free(a.base - kRedzone);
  return true;
}

bool find_allocation(const void* p, size_t bytes, Allocation* out) {
  Heap& h = heap();
  std::lock_guard<std::mutex> lock(h.mutex);
  const Allocation* a = find_locked(h, p);
  if (!a) return false;
  const auto offset = static_cast<size_t>(static_cast<const char*>(p) - a->base);
  if (bytes > a->bytes - std::min(a->bytes, offset) || (bytes > 0 && offset >= a->bytes)) {
    if (out) *out = *a;
    return false;
  }
  if (out) *out = *a;
  return true;
}

std::string describe_pointer(const void* p) {
  Heap& h = heap();
  std::lock_guard<std::mutex> lock(h.mutex);
  std::ostringstream out;
  const Allocation* a = find_locked(h, p);
  if (a) {
    out << p << " (offset " << static_cast<const char*>(p) - a->base << " of a " << a->bytes
        << "-byte allocation on cuda:" << a->device << ")";
  } else {
    out << p << " (not in any live device allocation: host memory, freed, or out of bounds)";
  }
  return out.str();
}

size_t device_used(int device) {
  Heap& h = heap();
  std::lock_guard<std::mutex> lock(h.mutex);
  return h.used[device];
}

void mark_block_in_use(void* p, size_t used, size_t capacity) {
#if defined(AXEMU_ASAN)
  ASAN_UNPOISON_MEMORY_REGION(p, used);
  if (capacity > used) ASAN_POISON_MEMORY_REGION(static_cast<char*>(p) + used, capacity - used);
#else
  (void)used;
#endif
  if (config().poison) std::memset(p, 0xFF, capacity);  // the slack too: a read past the tensor returns NaN
}

void mark_block_unused(void* p, size_t capacity) {
#if defined(AXEMU_ASAN)
  ASAN_POISON_MEMORY_REGION(p, capacity);
#else
  if (config().poison) std::memset(p, 0xFF, capacity);
#endif
}

bool redzones_intact(const Allocation& a, std::string* detail) {
#if defined(AXEMU_ASAN)
  (void)a;
  (void)detail;
  return true;  // AddressSanitizer reports the access itself
#else
  auto clean = [](const char* p, size_t n, size_t* first) {
    for (size_t i = 0; i < n; ++i) {
      if (static_cast<unsigned char>(p[i]) != kCanary) {
        *first = i;
        return false;
      }
    }
    return true;
  };
  size_t first = 0;
  if (!clean(a.base + a.bytes, kRedzone, &first)) {
    std::ostringstream out;
    out << "out-of-bounds write " << first << " byte(s) past the end of a " << a.bytes
        << "-byte allocation on cuda:" << a.device << " (at " << static_cast<void*>(a.base + a.bytes + first) << ")";
    *detail = out.str();
    std::memset(a.base + a.bytes, kCanary, kRedzone);  // report once
    return false;
  }
  if (!clean(a.base - kRedzone, kRedzone, &first)) {
    std::ostringstream out;
    out << "out-of-bounds write " << kRedzone - first << " byte(s) before the start of a " << a.bytes
        << "-byte allocation on cuda:" << a.device;
    *detail = out.str();
    std::memset(a.base - kRedzone, kCanary, kRedzone);
    return false;
  }
  return true;
#endif
}

}  // namespace axemu
