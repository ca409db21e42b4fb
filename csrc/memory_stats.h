// Memory statistics for the CPU allocator (tensor.cpp); CUDA's come from cuda/runtime.h with the same fields.
#pragma once

#include <cstddef>

namespace alexnet {

struct MemoryStats {
  size_t allocated = 0;       // bytes in live tensors
  size_t peak_allocated = 0;  // maximum of allocated since the last reset
  size_t reserved = 0;        // bytes held from the system (live + cached)
};
MemoryStats cpu_memory_stats();
void reset_cpu_peak_memory();
void cpu_empty_cache();  // frees the cached (unused) CPU blocks

}  // namespace alexnet
