// The CUDA runtime API of the emulated devices (api.h): devices, errors, memory, streams, events and copies.
// Every call takes the runtime lock; asynchronous calls validate their arguments at once (as CUDA does) and queue
// the work (streams.cpp).
#include <algorithm>
#include <cstring>
#include <limits>
#include <sstream>

#include "api.h"
#include "config.h"
#include "grid.h"
#include "launch.h"
#include "memory.h"
#include "streams.h"

namespace axemu {

namespace {

thread_local int t_device = 0;
thread_local cudaError_t t_last_error = cudaSuccess;
thread_local cudaError_t t_detail_code = cudaSuccess;
thread_local std::string t_detail;

// Records an error for cudaGetLastError and its explanation for cudaGetErrorString.
cudaError_t fail(cudaError_t code, std::string detail) {
  t_last_error = code;
  t_detail_code = code;
  t_detail = std::move(detail);
  return code;
}

// A device's sticky fault, reported by every call that touches the device (as on a GPU).
cudaError_t sticky(int device) {
  const DeviceState& d = runtime().devices[static_cast<size_t>(device)];
  return d.sticky == cudaSuccess ? cudaSuccess : fail(d.sticky, d.sticky_detail);
}

using Lock = std::lock_guard<std::recursive_mutex>;

// Catches a bad AXEMU_* setting, which config() reports by throwing on first use.
template <class F>
cudaError_t guarded(F f) {
  try {
    Lock lock(runtime().mutex);
    return f();
  } catch (const std::exception& e) {
    return fail(cudaErrorInitializationError, e.what());
  }
}

bool valid_device(int d) { return d >= 0 && d < config().devices; }

cudaError_t check_stream(cudaStream_t s, const char* call) {
  if (!is_live_stream(s))
    return fail(cudaErrorInvalidResourceHandle, std::string(call) + ": the stream was destroyed or never created");
  return cudaSuccess;
}

// Device memory [p, p + bytes) inside one allocation; `device` (if >= 0) must own it.
cudaError_t check_device_range(const void* p, size_t bytes, int device, const char* call, const char* what) {
  Allocation a;
  if (!find_allocation(p, bytes, &a)) {
    std::ostringstream out;
    out << call << ": " << what << " range of " << bytes << " bytes at " << describe_pointer(p)
        << " is not inside one device allocation";
    return fail(cudaErrorInvalidValue, out.str());
  }
  if (device >= 0 && a.device != device) {
    std::ostringstream out;
    out << call << ": " << what << " is memory of cuda:" << a.device << ", not of cuda:" << device;
    return fail(cudaErrorInvalidValue, out.str());
  }
  return cudaSuccess;
}

bool is_device_pointer(const void* p) { return find_allocation(p, 0, nullptr); }

}  // namespace

bool peer_access_enabled(int device, int peer) {
  return device == peer || runtime().devices[static_cast<size_t>(device)].peers.count(peer) > 0;
}

void submit(KernelLaunch&& launch) {
  guarded([&]() -> cudaError_t {
    const int device = t_device;
    if (cudaError_t e = sticky(device)) return e;
    if (cudaError_t e = check_stream(launch.stream, "kernel launch")) return e;
    Stream* s = resolve_stream(launch.stream, device);
    if (s->device != device)
      return fail(cudaErrorInvalidResourceHandle, std::string("kernel ") + launch.name + " (launched at " +
                                                      launch.file + ":" + std::to_string(launch.line) +
                                                      "): the stream belongs to cuda:" + std::to_string(s->device) +
                                                      ", but the current device is cuda:" + std::to_string(device));
    std::string detail;
    const cudaError_t e = check_launch(launch, device, &detail);
    if (e != cudaSuccess) return fail(e, detail);
    auto shared = std::make_shared<KernelLaunch>(std::move(launch));
    enqueue(s, [shared, device] { return execute(*shared, device); });
    return cudaSuccess;
  });
}

}  // namespace axemu

using namespace axemu;

// ---- devices ------------------------------------------------------------------------------------------------------

cudaError_t cudaGetDeviceCount(int* count) {
  return guarded([&] {
    *count = config().devices;
    return *count > 0 ? cudaSuccess : fail(cudaErrorNoDevice, "AXEMU_DEVICES=0");
  });
}

cudaError_t cudaGetDevice(int* device) {
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) {
  return guarded([&] {
    if (!valid_device(device))
      return fail(cudaErrorInvalidDevice, "cudaSetDevice(" + std::to_string(device) + "): " +
                                              std::to_string(config().devices) + " emulated device(s)");
    t_device = device;
    return cudaSuccess;
  });
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* prop, int device) {
  return guarded([&] {
    if (!valid_device(device)) return fail(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no such device");
    std::memset(prop, 0, sizeof(*prop));
    std::snprintf(prop->name, sizeof(prop->name), "Emulated CUDA device %d (alexnet_cuda, runs on the CPU)", device);
    prop->totalGlobalMem = config().memory_bytes;
    prop->sharedMemPerBlock = 48 * 1024;
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsDim[0] = prop->maxThreadsDim[1] = 1024;
    prop->maxThreadsDim[2] = 64;
    prop->maxGridSize[0] = 0x7fffffff;
    prop->maxGridSize[1] = prop->maxGridSize[2] = 65535;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = config().sms;
    prop->maxThreadsPerMultiProcessor = 2048;
    return cudaSuccess;
  });
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int device) {
  cudaDeviceProp p;
  if (cudaError_t e = cudaGetDeviceProperties(&p, device)) return e;
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock: *value = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *value = static_cast<int>(p.sharedMemPerBlock); break;
    case cudaDevAttrWarpSize: *value = p.warpSize; break;
    case cudaDevAttrMultiProcessorCount: *value = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *value = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *value = p.minor; break;
    default: return fail(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not emulated");
  }
  return cudaSuccess;
}

cudaError_t cudaRuntimeGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* version) {
  *version = 13000;
  return cudaSuccess;
}

cudaError_t axemuOccupancy(int* blocks, int block_size) {
  if (block_size <= 0 || block_size > 1024) return fail(cudaErrorInvalidValue, "occupancy: bad block size");
  *blocks = std::max(1, std::min(32, 2048 / block_size));
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize() {
  return guarded([&] {
    if (cudaError_t e = sticky(t_device)) return e;
    complete_device(t_device);
    return sticky(t_device);
  });
}

cudaError_t cudaDeviceCanAccessPeer(int* can_access, int device, int peer) {
  return guarded([&] {
    if (!valid_device(device) || !valid_device(peer)) return fail(cudaErrorInvalidDevice, "cudaDeviceCanAccessPeer");
    *can_access = config().peer && device != peer;
    return cudaSuccess;
  });
}

cudaError_t cudaDeviceEnablePeerAccess(int peer, unsigned flags) {
  return guarded([&] {
    if (!valid_device(peer) || peer == t_device) return fail(cudaErrorInvalidDevice, "cudaDeviceEnablePeerAccess");
    if (flags != 0) return fail(cudaErrorInvalidValue, "cudaDeviceEnablePeerAccess: flags must be 0");
    if (!config().peer) return fail(cudaErrorInvalidDevice, "cudaDeviceEnablePeerAccess: AXEMU_PEER=0");
    auto& peers = runtime().devices[static_cast<size_t>(t_device)].peers;
    if (!peers.insert(peer).second)
      return fail(cudaErrorPeerAccessAlreadyEnabled, "cudaDeviceEnablePeerAccess: already enabled");
    return cudaSuccess;
  });
}

// ---- errors -------------------------------------------------------------------------------------------------------

cudaError_t cudaGetLastError() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return t_last_error; }

const char* cudaGetErrorName(cudaError_t err) {
  switch (err) {
#define AXEMU_NAME(e) \
  case e: return #e;
    AXEMU_NAME(cudaSuccess)
    AXEMU_NAME(cudaErrorInvalidValue)
    AXEMU_NAME(cudaErrorMemoryAllocation)
    AXEMU_NAME(cudaErrorInitializationError)
    AXEMU_NAME(cudaErrorInvalidConfiguration)
    AXEMU_NAME(cudaErrorInvalidDevicePointer)
    AXEMU_NAME(cudaErrorInvalidMemcpyDirection)
    AXEMU_NAME(cudaErrorInsufficientDriver)
    AXEMU_NAME(cudaErrorNoDevice)
    AXEMU_NAME(cudaErrorInvalidDevice)
    AXEMU_NAME(cudaErrorInvalidResourceHandle)
    AXEMU_NAME(cudaErrorNotReady)
    AXEMU_NAME(cudaErrorIllegalAddress)
    AXEMU_NAME(cudaErrorLaunchOutOfResources)
    AXEMU_NAME(cudaErrorPeerAccessAlreadyEnabled)
    AXEMU_NAME(cudaErrorPeerAccessNotEnabled)
    AXEMU_NAME(cudaErrorMisalignedAddress)
    AXEMU_NAME(cudaErrorLaunchFailure)
    AXEMU_NAME(cudaErrorUnknown)
#undef AXEMU_NAME
  }
  return "cudaErrorUnknown";
}

static const char* standard_error_string(cudaError_t err) {
  switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInitializationError: return "initialization error";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorNotReady: return "device not ready";
    case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
    case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
    case cudaErrorPeerAccessAlreadyEnabled: return "peer access is already enabled";
    case cudaErrorPeerAccessNotEnabled: return "peer access has not been enabled";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    default: return "unknown error";
  }
}

// CUDA's text, followed by what the emulated device found when this thread's latest error had that code.
const char* cudaGetErrorString(cudaError_t err) {
  thread_local std::string text;
  text = standard_error_string(err);
  if (err != cudaSuccess && err == t_detail_code && !t_detail.empty()) text += "; emulated device: " + t_detail;
  return text.c_str();
}

// ---- memory -------------------------------------------------------------------------------------------------------

cudaError_t cudaMalloc(void** ptr, size_t bytes) {
  return guarded([&] {
    *ptr = nullptr;
    if (cudaError_t e = sticky(t_device)) return e;
    if (bytes == 0) return cudaSuccess;
    std::string detail;
    const cudaError_t e = device_malloc(t_device, bytes, ptr, &detail);
    return e == cudaSuccess ? e : fail(e, detail);
  });
}

cudaError_t cudaFree(void* ptr) {
  return guarded([&] {
    if (!ptr) return cudaSuccess;
    Allocation a;
    if (find_allocation(ptr, 0, &a)) complete_device(a.device);  // cudaFree synchronizes: pending work may use it
    std::string detail;
    return device_free(ptr, &detail) ? cudaSuccess : fail(cudaErrorInvalidValue, detail);
  });
}

cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  return guarded([&] {
    *total_bytes = config().memory_bytes;
    *free_bytes = config().memory_bytes - device_used(t_device);
    return cudaSuccess;
  });
}

cudaError_t axemuMarkBlockInUse(void* ptr, size_t used, size_t capacity, cudaStream_t stream) {
  return guarded([&] {
    if (cudaError_t e = check_stream(stream, "axemuMarkBlockInUse")) return e;
    enqueue(resolve_stream(stream, t_device), [=] {
      mark_block_in_use(ptr, used, capacity);
      return Fault{};
    });
    return cudaSuccess;
  });
}

cudaError_t axemuMarkBlockUnused(void* ptr, size_t capacity, cudaStream_t stream) {
  return guarded([&] {
    if (cudaError_t e = check_stream(stream, "axemuMarkBlockUnused")) return e;
    enqueue(resolve_stream(stream, t_device), [=] {
      mark_block_unused(ptr, capacity);
      return Fault{};
    });
    return cudaSuccess;
  });
}

// ---- streams and events -------------------------------------------------------------------------------------------

cudaError_t cudaStreamCreateWithFlags(cudaStream_t* stream, unsigned flags) {
  return guarded([&] {
    if (cudaError_t e = sticky(t_device)) return e;
    auto s = std::make_unique<Stream>();
    s->device = t_device;
    s->flags = flags;
    *stream = reinterpret_cast<cudaStream_t>(s.get());
    runtime().devices[static_cast<size_t>(t_device)].streams.push_back(s.get());
    runtime().streams.push_back(std::move(s));
    return cudaSuccess;
  });
}
cudaError_t cudaStreamCreate(cudaStream_t* stream) { return cudaStreamCreateWithFlags(stream, cudaStreamDefault); }

cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  return guarded([&] {
    if (!stream || !is_live_stream(stream))
      return fail(cudaErrorInvalidResourceHandle, "cudaStreamDestroy: not a live stream");
    Stream* s = resolve_stream(stream, t_device);
    complete_through(s, std::numeric_limits<uint64_t>::max());  // queued work still completes, as in CUDA
    s->live = false;
    auto& list = runtime().devices[static_cast<size_t>(s->device)].streams;
    list.erase(std::remove(list.begin(), list.end(), s), list.end());
    return cudaSuccess;
  });
}

cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return guarded([&] {
    if (cudaError_t e = check_stream(stream, "cudaStreamSynchronize")) return e;
    Stream* s = resolve_stream(stream, t_device);
    complete_through(s, std::numeric_limits<uint64_t>::max());
    return sticky(s->device);
  });
}

cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
  return guarded([&] {
    if (cudaError_t e = check_stream(stream, "cudaStreamWaitEvent")) return e;
    if (!is_live_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaStreamWaitEvent: not a live event");
    if (flags != 0) return fail(cudaErrorInvalidValue, "cudaStreamWaitEvent: flags must be 0");
    // An event of another device is allowed: that is how streams of two GPUs are ordered.
    enqueue_wait(resolve_stream(stream, t_device), reinterpret_cast<Event*>(event));
    return cudaSuccess;
  });
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t* event, unsigned flags) {
  return guarded([&] {
    auto e = std::make_unique<Event>();
    e->device = t_device;
    e->flags = flags;
    *event = reinterpret_cast<cudaEvent_t>(e.get());
    runtime().events.push_back(std::move(e));
    return cudaSuccess;
  });
}
cudaError_t cudaEventCreate(cudaEvent_t* event) { return cudaEventCreateWithFlags(event, cudaEventDefault); }

cudaError_t cudaEventDestroy(cudaEvent_t event) {
  return guarded([&] {
    if (!is_live_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventDestroy: not a live event");
    reinterpret_cast<Event*>(event)->live = false;  // queued records and waits still complete
    return cudaSuccess;
  });
}

cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  return guarded([&] {
    if (!is_live_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: not a live event");
    if (cudaError_t e = check_stream(stream, "cudaEventRecord")) return e;
    Event* e = reinterpret_cast<Event*>(event);
    Stream* s = resolve_stream(stream, t_device);
    if (e->device != s->device)
      return fail(cudaErrorInvalidResourceHandle, "cudaEventRecord: the event belongs to cuda:" +
                                                      std::to_string(e->device) + ", the stream to cuda:" +
                                                      std::to_string(s->device));
    enqueue_record(s, e);
    return cudaSuccess;
  });
}

cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  return guarded([&] {
    if (!is_live_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventSynchronize: not a live event");
    Event* e = reinterpret_cast<Event*>(event);
    complete_event(e);
    return sticky(e->device);
  });
}

cudaError_t cudaEventQuery(cudaEvent_t event) {
  return guarded([&] {
    if (!is_live_event(event)) return fail(cudaErrorInvalidResourceHandle, "cudaEventQuery: not a live event");
    return reinterpret_cast<Event*>(event)->pending.empty() ? cudaSuccess : cudaErrorNotReady;
  });
}

cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end) {
  return guarded([&] {
    if (!is_live_event(start) || !is_live_event(end))
      return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: not a live event");
    const Event* a = reinterpret_cast<Event*>(start);
    const Event* b = reinterpret_cast<Event*>(end);
    if ((a->flags | b->flags) & cudaEventDisableTiming)
      return fail(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: an event was created with DisableTiming");
    if (!a->pending.empty() || !b->pending.empty() || !a->completed_once || !b->completed_once)
      return fail(cudaErrorNotReady, "cudaEventElapsedTime: an event has not completed");
    *ms = static_cast<float>(b->time_ms - a->time_ms);
    return cudaSuccess;
  });
}

// ---- copies and memset --------------------------------------------------------------------------------------------

namespace {

// Queues a copy of `bytes` from src to dst (device or host memory; host sources are staged at once, as CUDA
// stages pageable memory) and, for a host destination, waits for it (pageable device-to-host copies are
// synchronous).
cudaError_t queue_copy(void* dst, const void* src, size_t bytes, Stream* s, bool dst_host, bool src_host) {
  if (bytes == 0) return cudaSuccess;
  std::function<Fault()> run;
  if (src_host) {
    auto staged = std::make_shared<std::vector<char>>(static_cast<const char*>(src), static_cast<const char*>(src) + bytes);
    run = [dst, staged] {
      std::memcpy(dst, staged->data(), staged->size());
      return Fault{};
    };
  } else {
    run = [dst, src, bytes] {
      std::memmove(dst, src, bytes);
      return Fault{};
    };
  }
  const uint64_t seq = enqueue(s, std::move(run));
  if (dst_host) complete_through(s, seq);
  return sticky(s->device);
}

cudaError_t memcpy_async(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream,
                         const char* call) {
  if (cudaError_t e = check_stream(stream, call)) return e;
  Stream* s = resolve_stream(stream, t_device);
  if (cudaError_t e = sticky(s->device)) return e;
  if (kind == cudaMemcpyDefault) {
    const bool d = is_device_pointer(dst), sr = is_device_pointer(src);
    kind = d ? (sr ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
             : (sr ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  }
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if (kind < cudaMemcpyHostToHost || kind > cudaMemcpyDeviceToDevice)
    return fail(cudaErrorInvalidMemcpyDirection, std::string(call) + ": unknown direction");
  if (bytes && dst_dev)
    if (cudaError_t e = check_device_range(dst, bytes, -1, call, "destination")) return e;
  if (bytes && src_dev)
    if (cudaError_t e = check_device_range(src, bytes, -1, call, "source")) return e;
  if (bytes && !dst_dev && is_device_pointer(dst))
    return fail(cudaErrorInvalidValue, std::string(call) + ": the destination is device memory, not host memory");
  if (bytes && !src_dev && is_device_pointer(src))
    return fail(cudaErrorInvalidValue, std::string(call) + ": the source is device memory, not host memory");
  return queue_copy(dst, src, bytes, s, !dst_dev, !src_dev);
}

}  // namespace

cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
  return guarded([&] { return memcpy_async(dst, src, bytes, kind, stream, "cudaMemcpyAsync"); });
}

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  return guarded([&] {
    cudaError_t e = memcpy_async(dst, src, bytes, kind, nullptr, "cudaMemcpy");
    if (e != cudaSuccess) return e;
    complete_through(resolve_stream(nullptr, t_device), std::numeric_limits<uint64_t>::max());
    return sticky(t_device);
  });
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                                cudaStream_t stream) {
  return guarded([&] {
    if (!valid_device(dst_device) || !valid_device(src_device)) return fail(cudaErrorInvalidDevice, "cudaMemcpyPeerAsync");
    if (cudaError_t e = check_stream(stream, "cudaMemcpyPeerAsync")) return e;
    if (bytes == 0) return cudaSuccess;
    if (cudaError_t e = check_device_range(dst, bytes, dst_device, "cudaMemcpyPeerAsync", "destination")) return e;
    if (cudaError_t e = check_device_range(src, bytes, src_device, "cudaMemcpyPeerAsync", "source")) return e;
    return queue_copy(dst, src, bytes, resolve_stream(stream, t_device), false, false);
  });
}

namespace {
cudaError_t copy_2d(void* dst, size_t dst_pitch, int dst_device, const void* src, size_t src_pitch, int src_device,
                    size_t width, size_t height, cudaStream_t stream, const char* call) {
  if (cudaError_t e = check_stream(stream, call)) return e;
  if (width == 0 || height == 0) return cudaSuccess;
  if (width > dst_pitch || width > src_pitch)
    return fail(cudaErrorInvalidValue, std::string(call) + ": the row width exceeds a pitch");
  const size_t dst_span = (height - 1) * dst_pitch + width, src_span = (height - 1) * src_pitch + width;
  if (cudaError_t e = check_device_range(dst, dst_span, dst_device, call, "destination")) return e;
  if (cudaError_t e = check_device_range(src, src_span, src_device, call, "source")) return e;
  Stream* s = resolve_stream(stream, t_device);
  enqueue(s, [=] {
    for (size_t r = 0; r < height; ++r)
      std::memmove(static_cast<char*>(dst) + r * dst_pitch, static_cast<const char*>(src) + r * src_pitch, width);
    return Fault{};
  });
  return sticky(s->device);
}
}  // namespace

cudaError_t cudaMemcpy2DAsync(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t width,
                              size_t height, cudaMemcpyKind kind, cudaStream_t stream) {
  return guarded([&] {
    if (kind != cudaMemcpyDeviceToDevice)
      return fail(cudaErrorInvalidMemcpyDirection, "cudaMemcpy2DAsync: only device-to-device copies are emulated");
    return copy_2d(dst, dst_pitch, -1, src, src_pitch, -1, width, height, stream, "cudaMemcpy2DAsync");
  });
}

cudaError_t cudaMemcpy3DPeerAsync(const cudaMemcpy3DPeerParms* p, cudaStream_t stream) {
  return guarded([&] {
    if (p->srcArray || p->dstArray || p->extent.depth != 1)
      return fail(cudaErrorInvalidValue, "cudaMemcpy3DPeerAsync: only 2D pitched copies are emulated");
    if (!valid_device(p->srcDevice) || !valid_device(p->dstDevice))
      return fail(cudaErrorInvalidDevice, "cudaMemcpy3DPeerAsync");
    return copy_2d(p->dstPtr.ptr, p->dstPtr.pitch, p->dstDevice, p->srcPtr.ptr, p->srcPtr.pitch, p->srcDevice,
                   p->extent.width, p->extent.height, stream, "cudaMemcpy3DPeerAsync");
  });
}

cudaError_t cudaMemsetAsync(void* ptr, int value, size_t bytes, cudaStream_t stream) {
  return guarded([&] {
    if (cudaError_t e = check_stream(stream, "cudaMemsetAsync")) return e;
    if (bytes == 0) return cudaSuccess;
    if (cudaError_t e = check_device_range(ptr, bytes, -1, "cudaMemsetAsync", "destination")) return e;
    Stream* s = resolve_stream(stream, t_device);
    enqueue(s, [=] {
      std::memset(ptr, value, bytes);
      return Fault{};
    });
    return sticky(s->device);
  });
}

cudaError_t cudaMemset(void* ptr, int value, size_t bytes) {
  return guarded([&] {
    cudaError_t e = cudaMemsetAsync(ptr, value, bytes, nullptr);
    if (e != cudaSuccess) return e;
    complete_through(resolve_stream(nullptr, t_device), std::numeric_limits<uint64_t>::max());
    return sticky(t_device);
  });
}
