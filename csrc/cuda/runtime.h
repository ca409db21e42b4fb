// The CUDA runtime, seen from plain C++: device queries, the caching allocator, copies, streams and events.
// Declared without CUDA headers so ops.cpp, tensor.cpp and network.cpp compile with any C++ compiler; the
// definitions live in runtime.cu (built only with the CUDA backend).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "memory_stats.h"

// Same definitions as the CUDA headers, so both may be included together.
struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
struct CUevent_st;
typedef struct CUevent_st* cudaEvent_t;

namespace alexnet::cuda {

// Number of visible GPUs; 0 (not an error) when there is no driver or no device.
int device_count();
std::string device_name(int device);
// The runtime version this module was linked against, and the driver's, as "major.minor" (empty if none).
std::string runtime_version();
std::string driver_version();

// Selects the device for the calling thread until destruction (restores the previous one).
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_;
};

// Each thread has a current stream per device (default: a non-blocking stream owned by the library). Every op
// launches on the current stream of its device; the network points it at a tower's stream with StreamGuard.
cudaStream_t current_stream(int device);
class StreamGuard {
 public:
  StreamGuard(int device, cudaStream_t stream);
  ~StreamGuard();
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  int device_;
  cudaStream_t previous_;
};
cudaStream_t create_stream(int device);  // non-blocking stream, lives until destroy_stream
void destroy_stream(int device, cudaStream_t stream);
void synchronize_stream(cudaStream_t stream);
void synchronize_device(int device);

// Events for ordering work between streams (the towers' exchange points).
cudaEvent_t create_event(int device);
void destroy_event(int device, cudaEvent_t event);
void record_event(cudaEvent_t event, cudaStream_t stream);
void stream_wait_event(cudaStream_t stream, cudaEvent_t event);
// Events that record time (for per-tower step timings): milliseconds between two completed events.
cudaEvent_t create_timing_event(int device);
float event_elapsed_ms(cudaEvent_t start, cudaEvent_t end);

// Caching allocator: blocks are kept per (device, stream) after free and reused for requests of the same rounded
// size, so a training step after the first calls no cudaMalloc. Throws OutOfMemory naming the request and the
// free memory when even a cache flush does not help.
void* allocate(int device, size_t bytes);
void release(int device, void* ptr);
void empty_cache(int device);
MemoryStats memory_stats(int device);
void reset_peak_memory(int device);

// Copies on the current stream of the device doing the copy. Host-to-device and device-to-host copies are
// synchronous with respect to the host; device-to-device copies (same or different GPU) are asynchronous.
void copy_host_to_device(int device, void* dst, const void* src, size_t bytes);
void copy_device_to_host(int device, void* dst, const void* src, size_t bytes);
void copy_device_to_device(int dst_device, void* dst, int src_device, const void* src, size_t bytes);
// rows x row_bytes block, for channel slices of NCHW tensors; may cross devices (peer copy, or staged through the
// host when peer access is unavailable).
void copy_2d(int dst_device, void* dst, size_t dst_pitch, int src_device, const void* src, size_t src_pitch,
             size_t row_bytes, size_t rows);
void memset_zero(int device, void* ptr, size_t bytes);
// Turns on peer access between two GPUs when possible; returns whether it is on.
bool enable_peer_access(int device, int peer);

}  // namespace alexnet::cuda
