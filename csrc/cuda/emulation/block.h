// One block of a kernel, run on one host thread: every CUDA thread is a fiber, and a small scheduler switches
// between them at __syncthreads and warp shuffles (the approach of HIP-CPU, MCUDA and CuPBoP).
//
// Within a barrier interval each thread runs until it reaches the next barrier, shuffle or its end, in the
// order the schedule gives: forward (thread 0 first), reverse, or a seeded shuffle. A kernel whose result depends
// on that order has a shared-memory race (grid.cpp runs each launch under two schedules and compares). The
// scheduler also knows exactly where every thread waits, so barrier and shuffle misuse is reported with the
// kernel, the block, the threads and the source lines involved.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "fiber.h"
#include "launch.h"

namespace axemu {

enum class Schedule { Forward, Reverse, Shuffled };
const char* schedule_name(Schedule s);

struct Fault {
  cudaError_t code = cudaSuccess;
  std::string message;
};

class BlockRunner {
 public:
  // Runs block `block_idx` of `launch`; false (with *fault filled) when the block faulted.
  bool run(const KernelLaunch& launch, uint3 block_idx, Schedule schedule, uint64_t seed, Fault* fault);

  // Called from kernel code (device.h) through the thread-local current runner.
  void wait_at_barrier(const char* file, int line);
  uint64_t shuffle(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t bits, int param, int width);
  void declare_shared(void* address, size_t bytes, const char* file, int line);
  [[noreturn]] void fail(cudaError_t code, const std::string& message);

 private:
  enum class State { Runnable, Barrier, Shuffle, Done, Failed };
  struct Thread {
    Builtins builtins;
    Fiber fiber;
    BlockRunner* runner;
    unsigned linear;
    State state;
    const char* file;
    int line;
    ShuffleKind kind;
    unsigned mask;
    int param, width;
    uint64_t value, result;
  };

  static void thread_main(void* arg);
  void switch_to_scheduler(Thread& t);
  bool resolve_shuffles();
  void resolve_barrier();
  std::string where(const Thread& t) const;
  std::string thread_name(const Thread& t) const;
  [[noreturn]] void block_fault(cudaError_t code, const std::string& message);

  std::vector<std::unique_ptr<Thread>> threads_;
  std::vector<unsigned> order_;
  std::vector<void*> shared_seen_;
  size_t shared_bytes_ = 0;
  unsigned count_ = 0;
  const KernelLaunch* launch_ = nullptr;
  uint3 block_idx_{};
  Thread* current_ = nullptr;
  Fiber scheduler_;
  Fault fault_;
  bool failed_ = false;
};

// The runner of the calling host thread (each worker of grid.cpp has one).
BlockRunner& this_thread_runner();

}  // namespace axemu
