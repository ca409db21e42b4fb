// CUDA runtime plumbing: device queries, per-thread current streams, events, the caching allocator and copies.
#include <cuda_runtime.h>

#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/memcheck.cuh"
#include "cuda/runtime.h"

namespace alexnet::cuda {

int device_count() {
  int count = 0;
  // No driver (cudaErrorInsufficientDriver) or no GPU (cudaErrorNoDevice) is a normal answer: zero devices.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    return 0;
  }
  return count;
}

std::string device_name(int device) {
  cudaDeviceProp prop;
  AX_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

static std::string version_string(int v) {
  return v > 0 ? std::to_string(v / 1000) + "." + std::to_string((v % 1000) / 10) : std::string();
}
std::string runtime_version() {
  int v = 0;
  return cudaRuntimeGetVersion(&v) == cudaSuccess ? version_string(v) : std::string();
}
std::string driver_version() {
  int v = 0;
  return cudaDriverGetVersion(&v) == cudaSuccess ? version_string(v) : std::string();
}

DeviceGuard::DeviceGuard(int device) : previous_(0) {
  AX_CUDA_CHECK(cudaGetDevice(&previous_));
  if (previous_ != device) AX_CUDA_CHECK(cudaSetDevice(device));
}
DeviceGuard::~DeviceGuard() { cudaSetDevice(previous_); }

// ---- streams -------------------------------------------------------------------------------------------------
namespace {
constexpr int kMaxDevices = 64;
std::mutex g_default_stream_mutex;
cudaStream_t g_default_stream[kMaxDevices] = {};
thread_local cudaStream_t t_current_stream[kMaxDevices] = {};

cudaStream_t default_stream(int device) {
  std::lock_guard<std::mutex> lock(g_default_stream_mutex);
  if (!g_default_stream[device]) {
    DeviceGuard guard(device);
    AX_CUDA_CHECK(cudaStreamCreateWithFlags(&g_default_stream[device], cudaStreamNonBlocking));
  }
  return g_default_stream[device];
}
}  // namespace

cudaStream_t current_stream(int device) {
  AX_CHECK(device >= 0 && device < kMaxDevices, "cuda: device index ", device, " out of range");
  return t_current_stream[device] ? t_current_stream[device] : default_stream(device);
}

StreamGuard::StreamGuard(int device, cudaStream_t stream) : device_(device), previous_(t_current_stream[device]) {
  t_current_stream[device] = stream;
}
StreamGuard::~StreamGuard() { t_current_stream[device_] = previous_; }

cudaStream_t create_stream(int device) {
  DeviceGuard guard(device);
  cudaStream_t s;
  AX_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  return s;
}
void forget_stream_blocks(int device, cudaStream_t stream);  // the caching allocator, below

void destroy_stream(int device, cudaStream_t stream) {
  DeviceGuard guard(device);
  AX_CUDA_CHECK(cudaStreamSynchronize(stream));
  forget_stream_blocks(device, stream);
  cudaStreamDestroy(stream);
}
void synchronize_stream(cudaStream_t stream) { AX_CUDA_CHECK(cudaStreamSynchronize(stream)); }
void synchronize_device(int device) {
  DeviceGuard guard(device);
  AX_CUDA_CHECK(cudaDeviceSynchronize());
}

cudaEvent_t create_event(int device) {
  DeviceGuard guard(device);
  cudaEvent_t e;
  AX_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  return e;
}
void destroy_event(int device, cudaEvent_t event) {
  DeviceGuard guard(device);
  cudaEventDestroy(event);
}
void record_event(cudaEvent_t event, cudaStream_t stream) { AX_CUDA_CHECK(cudaEventRecord(event, stream)); }
void stream_wait_event(cudaStream_t stream, cudaEvent_t event) {
  AX_CUDA_CHECK(cudaStreamWaitEvent(stream, event, 0));
}
cudaEvent_t create_timing_event(int device) {
  DeviceGuard guard(device);
  cudaEvent_t e;
  AX_CUDA_CHECK(cudaEventCreate(&e));
  return e;
}
float event_elapsed_ms(cudaEvent_t start, cudaEvent_t end) {
  float ms = 0.0f;
  AX_CUDA_CHECK(cudaEventElapsedTime(&ms, start, end));
  return ms;
}

// ---- caching allocator ---------------------------------------------------------------------------------------
// Blocks are rounded (512 B below 1 MiB, 1 MiB above) and cached per (stream, size) on free. A block is reused only
// on the stream it was allocated on, so work queued on that stream is ordered before any reuse. A tensor used on
// another stream must be kept alive by its user until that stream has passed an event (the network keeps its
// exchange buffers as members for this reason).
// When a stream is destroyed (a Network going away), its cached blocks are freed and its live blocks become
// orphans (stream null) that are freed, not cached, when released: no block stays cached under a dead stream,
// where nothing could ever reuse it (and where a new stream that happened to get the same handle could reuse it
// too early).
namespace {
struct Block {
  size_t bytes;
  cudaStream_t stream;
};
struct DevicePool {
  std::mutex mutex;
  std::unordered_map<void*, Block> live;
  std::map<std::pair<cudaStream_t, size_t>, std::vector<void*>> cached;
  MemoryStats stats;
};
DevicePool g_pools[kMaxDevices];

size_t round_size(size_t bytes) {
  constexpr size_t kSmall = 512, kLarge = 1 << 20;
  return bytes < kLarge ? (bytes + kSmall - 1) / kSmall * kSmall : (bytes + kLarge - 1) / kLarge * kLarge;
}

void free_cached_locked(int device, DevicePool& pool) {
  DeviceGuard guard(device);
  for (auto& [key, ptrs] : pool.cached) {
    for (void* p : ptrs) {
      cudaFree(p);
      pool.stats.reserved -= key.second;
    }
  }
  pool.cached.clear();
}
}  // namespace

void* allocate(int device, size_t bytes) {
  const size_t size = round_size(bytes);
  cudaStream_t stream = current_stream(device);
  DevicePool& pool = g_pools[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  void* ptr = nullptr;
  auto it = pool.cached.find({stream, size});
  if (it != pool.cached.end() && !it->second.empty()) {
    ptr = it->second.back();
    it->second.pop_back();
  } else {
    DeviceGuard guard(device);
    cudaError_t err = cudaMalloc(&ptr, size);
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      // Give cached blocks back (after the work that may still use them) and try once more.
      AX_CUDA_CHECK(cudaDeviceSynchronize());
      free_cached_locked(device, pool);
      err = cudaMalloc(&ptr, size);
    }
    if (err == cudaErrorMemoryAllocation) {
      cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      cudaMemGetInfo(&free_bytes, &total_bytes);
      throw OutOfMemory(str_cat("cuda:", device, ": out of memory: tried to allocate ", size, " bytes (",
                                size / 1048576.0, " MiB); ", free_bytes / 1048576.0, " MiB free of ",
                                total_bytes / 1048576.0, " MiB, ", pool.stats.allocated / 1048576.0,
                                " MiB held by alexnet_cuda tensors"));
    }
    AX_CUDA_CHECK(err);
    pool.stats.reserved += size;
  }
  note_block_in_use(ptr, bytes, size, stream);
  pool.live[ptr] = Block{size, stream};
  pool.stats.allocated += size;
  if (pool.stats.allocated > pool.stats.peak_allocated) pool.stats.peak_allocated = pool.stats.allocated;
  return ptr;
}

void release(int device, void* ptr) {
  DevicePool& pool = g_pools[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  auto it = pool.live.find(ptr);
  if (it == pool.live.end()) return;
  const Block block = it->second;
  pool.stats.allocated -= block.bytes;
  pool.live.erase(it);
  if (!block.stream) {  // an orphan of a destroyed stream (release runs in destructors: nothing may throw)
    DeviceGuard guard(device);
    if (cudaFree(ptr) != cudaSuccess) cudaGetLastError();
    pool.stats.reserved -= block.bytes;
    return;
  }
  note_block_cached(ptr, block.bytes, block.stream);
  pool.cached[{block.stream, block.bytes}].push_back(ptr);
}

void forget_stream_blocks(int device, cudaStream_t stream) {
  DevicePool& pool = g_pools[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  for (auto it = pool.cached.begin(); it != pool.cached.end();) {
    if (it->first.first != stream) {
      ++it;
      continue;
    }
    for (void* p : it->second) {
      AX_CUDA_CHECK(cudaFree(p));
      pool.stats.reserved -= it->first.second;
    }
    it = pool.cached.erase(it);
  }
  for (auto& [ptr, block] : pool.live) {
    if (block.stream == stream) block.stream = nullptr;
  }
}

void empty_cache(int device) {
  DevicePool& pool = g_pools[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  synchronize_device(device);
  free_cached_locked(device, pool);
}

MemoryStats memory_stats(int device) {
  DevicePool& pool = g_pools[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  return pool.stats;
}
void reset_peak_memory(int device) {
  DevicePool& pool = g_pools[device];
  std::lock_guard<std::mutex> lock(pool.mutex);
  pool.stats.peak_allocated = pool.stats.allocated;
}

// ---- copies --------------------------------------------------------------------------------------------------
void copy_host_to_device(int device, void* dst, const void* src, size_t bytes) {
  DeviceGuard guard(device);
  cudaStream_t s = current_stream(device);
  AX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, s));
  AX_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_device_to_host(int device, void* dst, const void* src, size_t bytes) {
  DeviceGuard guard(device);
  cudaStream_t s = current_stream(device);
  AX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, s));
  AX_CUDA_CHECK(cudaStreamSynchronize(s));
}

void copy_device_to_device(int dst_device, void* dst, int src_device, const void* src, size_t bytes) {
  DeviceGuard guard(dst_device);
  cudaStream_t s = current_stream(dst_device);
  if (dst_device == src_device) {
    AX_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, s));
  } else {
    // Direct over NVLink/PCIe when peer access is on, staged through host memory by the driver otherwise.
    AX_CUDA_CHECK(cudaMemcpyPeerAsync(dst, dst_device, src, src_device, bytes, s));
  }
}

void copy_2d(int dst_device, void* dst, size_t dst_pitch, int src_device, const void* src, size_t src_pitch,
             size_t row_bytes, size_t rows) {
  DeviceGuard guard(dst_device);
  cudaStream_t s = current_stream(dst_device);
  if (dst_device == src_device) {
    AX_CUDA_CHECK(cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, row_bytes, rows, cudaMemcpyDeviceToDevice, s));
    return;
  }
  cudaMemcpy3DPeerParms p = {};
  p.srcPtr = make_cudaPitchedPtr(const_cast<void*>(src), src_pitch, row_bytes, rows);
  p.srcDevice = src_device;
  p.dstPtr = make_cudaPitchedPtr(dst, dst_pitch, row_bytes, rows);
  p.dstDevice = dst_device;
  p.extent = make_cudaExtent(row_bytes, rows, 1);
  AX_CUDA_CHECK(cudaMemcpy3DPeerAsync(&p, s));
}

void memset_zero(int device, void* ptr, size_t bytes) {
  DeviceGuard guard(device);
  AX_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, current_stream(device)));
}

bool enable_peer_access(int device, int peer) {
  if (device == peer) return true;
  int can = 0;
  AX_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, device, peer));
  if (!can) return false;
  DeviceGuard guard(device);
  cudaError_t err = cudaDeviceEnablePeerAccess(peer, 0);
  if (err == cudaErrorPeerAccessAlreadyEnabled) {
    cudaGetLastError();
    return true;
  }
  AX_CUDA_CHECK(err);
  return true;
}

}  // namespace alexnet::cuda
