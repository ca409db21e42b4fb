// Fibers: the lightweight contexts that run the CUDA threads of a block on one host thread (block.cpp).
//
// A switch saves the callee-saved registers and the stack pointer of the running context and restores another's:
// on x86-64 it is 14 instructions (fiber.cpp), tens of nanoseconds, with no system call (swapcontext makes one to
// save the signal mask, which makes it ~20x slower). Other architectures fall back to ucontext.
#pragma once

#include <cstddef>

namespace axemu {

class Fiber {
 public:
  Fiber() = default;
  ~Fiber();
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  // (Re)starts the fiber at entry(arg) on its own stack (allocated once, with a guard page below it). entry must
  // never return: a finished fiber switches away for the last time.
  void start(void (*entry)(void*), void* arg);
  // Saves the current context into `from` and runs `to`. A plain Fiber (never started) serves as the slot that
  // holds the scheduler's own context.
  static void switch_to(Fiber& from, Fiber& to);
  // The first thing a fiber's entry does: records the stack of `caller` (the scheduler that started it) for
  // AddressSanitizer's fiber support; nothing otherwise.
  static void entered(Fiber& caller);

 private:
  void* sp_ = nullptr;            // saved stack pointer (x86-64) or ucontext_t* (fallback)
  char* stack_ = nullptr;         // mapping: guard page, then the stack
  size_t stack_bytes_ = 0;
  void* asan_fake_stack_ = nullptr;
  const void* asan_bottom_ = nullptr;  // the stack this context runs on, as AddressSanitizer must be told
  size_t asan_size_ = 0;
  friend struct FiberAccess;
};

}  // namespace axemu
