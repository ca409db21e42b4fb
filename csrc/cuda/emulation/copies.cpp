// Copies and memset of the emulated devices (api.h): arguments are checked at once, as CUDA checks them (every
// device range must lie inside one allocation, of the right device), and the work is queued on the stream.
#include <cstring>
#include <limits>
#include <memory>
#include <sstream>
#include <vector>

#include "api.h"
#include "api_checks.h"
#include "memory.h"
#include "streams.h"

using namespace axemu;

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
  Stream* s = resolve_stream(stream, current_device());
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
    complete_through(resolve_stream(nullptr, current_device()), std::numeric_limits<uint64_t>::max());
    return sticky(current_device());
  });
}

cudaError_t cudaMemcpyPeerAsync(void* dst, int dst_device, const void* src, int src_device, size_t bytes,
                                cudaStream_t stream) {
  return guarded([&] {
    if (!valid_device(dst_device) || !valid_device(src_device))
      return fail(cudaErrorInvalidDevice, "cudaMemcpyPeerAsync");
    if (cudaError_t e = check_stream(stream, "cudaMemcpyPeerAsync")) return e;
    if (bytes == 0) return cudaSuccess;
    if (cudaError_t e = check_device_range(dst, bytes, dst_device, "cudaMemcpyPeerAsync", "destination"))
      return e;
    if (cudaError_t e = check_device_range(src, bytes, src_device, "cudaMemcpyPeerAsync", "source")) return e;
    return queue_copy(dst, src, bytes, resolve_stream(stream, current_device()), false, false);
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
  Stream* s = resolve_stream(stream, current_device());
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
    Stream* s = resolve_stream(stream, current_device());
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
    complete_through(resolve_stream(nullptr, current_device()), std::numeric_limits<uint64_t>::max());
    return sticky(current_device());
  });
}
