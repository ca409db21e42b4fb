// What the runtime API's files (api.cpp, copies.cpp) share: the calling thread's device and error state, and the
// argument checks CUDA makes.
#pragma once

#include <mutex>
#include <stdexcept>
#include <string>

#include "streams.h"
#include "types.h"

namespace axemu {

int current_device();  // the calling host thread's device (cudaSetDevice)
// Records an error for cudaGetLastError and its explanation for cudaGetErrorString; returns `code`.
cudaError_t fail(cudaError_t code, std::string detail);
// A device's sticky fault, reported by every call that touches the device (as on a GPU).
cudaError_t sticky(int device);
bool valid_device(int device);
cudaError_t check_stream(cudaStream_t s, const char* call);
// Device memory [p, p + bytes) inside one allocation; `device` (if >= 0) must own it.
cudaError_t check_device_range(const void* p, size_t bytes, int device, const char* call, const char* what);
bool is_device_pointer(const void* p);

// Runs an API call under the runtime lock; a bad AXEMU_* setting (config() throws on first use) becomes
// cudaErrorInitializationError with its explanation.
template <class F>
cudaError_t guarded(F f) {
  try {
    std::lock_guard<std::recursive_mutex> lock(runtime().mutex);
    return f();
  } catch (const std::exception& e) {
    return fail(cudaErrorInitializationError, e.what());
  }
}

}  // namespace axemu
