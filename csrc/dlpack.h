// The DLPack ABI (https://dmlc.github.io/dlpack/latest/c_api.html, version 1.0): the C structs a producer and a
// consumer exchange. Declared here from the specification (only the members and enum values this project uses) so
// the build needs no extra header; the layouts must match the specification's byte for byte.
#pragma once

#include <cstdint>

namespace alexnet::dlpack {

// DLDeviceType: kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3 (pinned host memory), ... (an int-sized C enum).
enum : int32_t { kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3 };
// DLDataTypeCode.
enum : uint8_t { kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBool = 6 };

struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};

struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};

struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; NULL means C-contiguous
  uint64_t byte_offset;
};

// The legacy (pre-1.0) managed tensor, carried by a capsule named "dltensor".
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor* self);
};

struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};

// The 1.0 managed tensor, carried by a capsule named "dltensor_versioned" (what consumers ask for with
// __dlpack__(max_version=(1, 0))).
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned* self);
  uint64_t flags;
  DLTensor dl_tensor;
};

constexpr uint64_t kFlagReadOnly = 1u << 0;  // DLPACK_FLAG_BITMASK_READ_ONLY
constexpr uint64_t kFlagIsCopied = 1u << 1;  // DLPACK_FLAG_BITMASK_IS_COPIED
constexpr uint32_t kVersionMajor = 1, kVersionMinor = 0;

}  // namespace alexnet::dlpack
