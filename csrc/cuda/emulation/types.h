// CUDA's host-visible types as the emulated device defines them: vector types with CUDA's alignment, dim3, the
// error codes (same numbers as CUDA 12/13), and the structs of the runtime calls the backend makes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace axemu {
[[noreturn]] void misaligned_vector_access(const void* address, int alignment);
// Inside a kernel a vector access through a misaligned pointer faults (cudaErrorMisalignedAddress), as on a GPU;
// on the host (no kernel running) it is a plain copy.
bool in_kernel();
inline void check_vector_alignment(const void* p, int alignment) {
  if (reinterpret_cast<uintptr_t>(p) % static_cast<uintptr_t>(alignment) != 0 && in_kernel())
    misaligned_vector_access(p, alignment);
}
}  // namespace axemu

// float4 / float2 keep CUDA's 16- / 8-byte alignment, and every copy into or out of one checks that alignment:
// `*reinterpret_cast<float4*>(p)` on a misaligned p is caught even though x86 would happily load it.
#define AXEMU_VECTOR_TYPE(NAME, T, ALIGN, ...)                                                          \
  struct alignas(ALIGN) NAME {                                                                          \
    T __VA_ARGS__;                                                                                      \
    NAME() = default;                                                                                   \
    NAME(const NAME& o) { ::axemu::check_vector_alignment(&o, ALIGN); copy(o); }                        \
    NAME& operator=(const NAME& o) {                                                                    \
      ::axemu::check_vector_alignment(this, ALIGN);                                                     \
      ::axemu::check_vector_alignment(&o, ALIGN);                                                       \
      copy(o);                                                                                          \
      return *this;                                                                                     \
    }                                                                                                   \
                                                                                                        \
   private:                                                                                             \
    void copy(const NAME& o) { __builtin_memcpy(static_cast<void*>(this), &o, sizeof(NAME)); }          \
  }

AXEMU_VECTOR_TYPE(float4, float, 16, x, y, z, w);
AXEMU_VECTOR_TYPE(float2, float, 8, x, y);
AXEMU_VECTOR_TYPE(int4, int, 16, x, y, z, w);
AXEMU_VECTOR_TYPE(int2, int, 8, x, y);
AXEMU_VECTOR_TYPE(double2, double, 16, x, y);

inline float4 make_float4(float x, float y, float z, float w) {
  float4 r;
  r.x = x, r.y = y, r.z = z, r.w = w;
  return r;
}
inline float2 make_float2(float x, float y) {
  float2 r;
  r.x = x, r.y = y;
  return r;
}
inline int4 make_int4(int x, int y, int z, int w) {
  int4 r;
  r.x = x, r.y = y, r.z = z, r.w = w;
  return r;
}

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x = 1, y = 1, z = 1;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
  constexpr dim3(const uint3& v) : x(v.x), y(v.y), z(v.z) {}
};

// Error codes: the numbers of CUDA's driver_types.h, so logs read the same as a GPU's.
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorPeerAccessAlreadyEnabled = 704,
  cudaErrorPeerAccessNotEnabled = 705,
  cudaErrorMisalignedAddress = 716,
  cudaErrorLaunchFailure = 719,
  cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;

struct CUstream_st;
typedef struct CUstream_st* cudaStream_t;
struct CUevent_st;
typedef struct CUevent_st* cudaEvent_t;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
};

constexpr unsigned cudaStreamDefault = 0x0;
constexpr unsigned cudaStreamNonBlocking = 0x1;
constexpr unsigned cudaEventDefault = 0x0;
constexpr unsigned cudaEventBlockingSync = 0x1;
constexpr unsigned cudaEventDisableTiming = 0x2;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major, minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
};

struct cudaPitchedPtr {
  void* ptr;
  size_t pitch, xsize, ysize;
};
struct cudaExtent {
  size_t width, height, depth;
};
struct cudaPos {
  size_t x, y, z;
};
struct cudaArray;
struct cudaMemcpy3DPeerParms {
  cudaArray* srcArray;
  cudaPos srcPos;
  cudaPitchedPtr srcPtr;
  int srcDevice;
  cudaArray* dstArray;
  cudaPos dstPos;
  cudaPitchedPtr dstPtr;
  int dstDevice;
  cudaExtent extent;
};
inline cudaPitchedPtr make_cudaPitchedPtr(void* d, size_t p, size_t xsz, size_t ysz) { return {d, p, xsz, ysz}; }
inline cudaExtent make_cudaExtent(size_t w, size_t h, size_t d) { return {w, h, d}; }
