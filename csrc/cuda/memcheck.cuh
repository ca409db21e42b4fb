// What the caching allocator (runtime.cu) tells a memory checker. A cached block is larger than the tensor that
// gets it (sizes are rounded up) and outlives the tensor (it goes back to the cache), so a checker that only sees
// cudaMalloc/cudaFree misses reads of the rounding slack and uses after free. The emulated device (ALEXNET_CUDA_
// EMULATED builds) takes these notes in stream order: the slack and cached blocks are poisoned for
// AddressSanitizer, and a reused block reads as NaN until written. On a GPU they compile to nothing.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace alexnet::cuda {

#if defined(ALEXNET_CUDA_EMULATED)
// Notes only: a note that cannot be taken (never expected) must not fail the allocation or the release (which
// runs in destructors), so its error is cleared rather than thrown.
inline void note_block_in_use(void* p, size_t used, size_t capacity, cudaStream_t s) {
  if (axemuMarkBlockInUse(p, used, capacity, s) != cudaSuccess) cudaGetLastError();
}
inline void note_block_cached(void* p, size_t capacity, cudaStream_t s) {
  if (axemuMarkBlockUnused(p, capacity, s) != cudaSuccess) cudaGetLastError();
}
#else
inline void note_block_in_use(void*, size_t, size_t, cudaStream_t) {}
inline void note_block_cached(void*, size_t, cudaStream_t) {}
#endif

}  // namespace alexnet::cuda
