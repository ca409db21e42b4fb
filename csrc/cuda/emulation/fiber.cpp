// Fiber context switches (see fiber.h). The x86-64 switch follows the System V ABI: rbx, rbp, r12-r15 and rsp
// are callee-saved (the caller of switch_to expects them back); everything else is caller-saved, so the compiler
// has already spilled what it needs. MXCSR and the x87 control word are not touched by kernels and not switched.
#include "fiber.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstdlib>
#include <new>

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define AXEMU_ASAN 1
#endif

namespace axemu {

namespace {
// Kernel threads use little stack (a GEMM thread: ~1 KB of registers-as-locals); AddressSanitizer's redzones
// need more. Pages are committed only when touched.
#if defined(AXEMU_ASAN)
constexpr size_t kStackBytes = 256 * 1024;
#else
constexpr size_t kStackBytes = 64 * 1024;
#endif
constexpr size_t kGuardBytes = 4096;
}  // namespace

#if defined(__x86_64__)
extern "C" void axemu_switch_context(void** save_sp, void* load_sp);
extern "C" void axemu_fiber_trampoline();
asm(R"(
.text
.globl axemu_switch_context
.type axemu_switch_context,@function
axemu_switch_context:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
.size axemu_switch_context,.-axemu_switch_context

.globl axemu_fiber_trampoline
.type axemu_fiber_trampoline,@function
axemu_fiber_trampoline:
  movq %r13, %rdi
  callq *%r12
  ud2
.size axemu_fiber_trampoline,.-axemu_fiber_trampoline
)");
#endif

Fiber::~Fiber() {
  if (stack_) munmap(stack_, stack_bytes_ + kGuardBytes);
#if !defined(__x86_64__)
  delete static_cast<ucontext_t*>(sp_);
#endif
}

void Fiber::start(void (*entry)(void*), void* arg) {
  if (!stack_) {
    void* m = mmap(nullptr, kStackBytes + kGuardBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    stack_ = static_cast<char*>(m);
    stack_bytes_ = kStackBytes;
    mprotect(stack_, kGuardBytes, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
  }
  char* bottom = stack_ + kGuardBytes;
  asan_bottom_ = bottom;
  asan_size_ = stack_bytes_;
#if defined(AXEMU_ASAN)
  // A fiber abandoned mid-kernel (a fault) leaves its frames' redzones poisoned: clear them before reuse.
  ASAN_UNPOISON_MEMORY_REGION(bottom, stack_bytes_);
#endif
#if defined(__x86_64__)
  // Initial frame popped by axemu_switch_context: r15, r14, r13 (= arg), r12 (= entry), rbx, rbp, then the
  // return address (the trampoline). The top is 16-byte aligned so the trampoline's call enters entry with the
  // ABI's alignment.
  auto* top = reinterpret_cast<uintptr_t*>((reinterpret_cast<uintptr_t>(bottom + stack_bytes_)) & ~uintptr_t{15});
  uintptr_t* sp = top - 7;
  sp[0] = 0;                                            // r15
  sp[1] = 0;                                            // r14
  sp[2] = reinterpret_cast<uintptr_t>(arg);             // r13
  sp[3] = reinterpret_cast<uintptr_t>(entry);           // r12
  sp[4] = 0;                                            // rbx
  sp[5] = 0;                                            // rbp
  sp[6] = reinterpret_cast<uintptr_t>(&axemu_fiber_trampoline);
  sp_ = sp;
#else
  auto* uc = static_cast<ucontext_t*>(sp_);
  if (!uc) sp_ = uc = new ucontext_t;
  getcontext(uc);
  uc->uc_stack.ss_sp = bottom;
  uc->uc_stack.ss_size = stack_bytes_;
  uc->uc_link = nullptr;
  makecontext(uc, reinterpret_cast<void (*)()>(entry), 1, arg);  // pointer-sized int argument on LP64 ABIs
#endif
}

void Fiber::switch_to(Fiber& from, Fiber& to) {
#if defined(AXEMU_ASAN)
  // Tell AddressSanitizer which stack is about to run, so it does not mistake the switch for an overflow.
  __sanitizer_start_switch_fiber(&from.asan_fake_stack_, to.asan_bottom_, to.asan_size_);
#endif
#if defined(__x86_64__)
  axemu_switch_context(&from.sp_, to.sp_);
#else
  if (!from.sp_) from.sp_ = new ucontext_t;
  swapcontext(static_cast<ucontext_t*>(from.sp_), static_cast<ucontext_t*>(to.sp_));
#endif
#if defined(AXEMU_ASAN)
  __sanitizer_finish_switch_fiber(from.asan_fake_stack_, nullptr, nullptr);
#endif
}

void Fiber::entered(Fiber& caller) {
#if defined(AXEMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &caller.asan_bottom_, &caller.asan_size_);
#else
  (void)caller;
#endif
}

}  // namespace axemu
