// The emulated devices' memory: every allocation is a host block with a redzone on each side, owned by one
// device and counted against that device's capacity. It can answer which allocation a pointer falls in (for the
// launch and copy checks), detect writes past either end (the redzones hold NaN bytes, checked after every kernel
// for the memory the kernel could reach; an out-of-bounds read returns NaN; under AddressSanitizer the redzones
// are poisoned instead, so every such read and write is reported where it happens), and fill memory with NaN
// bytes so that reading what was never written shows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "types.h"

namespace axemu {

struct Allocation {
  char* base = nullptr;
  size_t bytes = 0;
  int device = -1;
};

cudaError_t device_malloc(int device, size_t bytes, void** out, std::string* detail);
// Frees an allocation given by its base pointer; false if `p` is not the base of a live allocation.
bool device_free(void* p, std::string* detail);
// The live allocation containing [p, p + bytes) (bytes = 0: p itself, or one past its end); false if none.
bool find_allocation(const void* p, size_t bytes, Allocation* out);
// The allocation p points into, or a description of where it points instead ("freed", "host memory").
std::string describe_pointer(const void* p);
size_t device_used(int device);

// Marks [p, p + used) of an allocated block live and [p + used, p + capacity) as slack that no kernel may touch
// (AddressSanitizer builds), and fills the block with NaN bytes (poisoning on).
void mark_block_in_use(void* p, size_t used, size_t capacity);
// Marks a whole block unused (a tensor freed into the caching allocator): any access is a use after free.
void mark_block_unused(void* p, size_t capacity);

// The redzones of `a` still hold their canary; false (with *detail) after an out-of-bounds write.
bool redzones_intact(const Allocation& a, std::string* detail);

}  // namespace axemu
