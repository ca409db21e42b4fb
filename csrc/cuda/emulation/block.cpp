// The block scheduler (block.h) and the kernel-side calls that need it (device.h).
#include "block.h"

#include <algorithm>
#include <cstring>
#include <random>
#include <sstream>

#include "config.h"

namespace axemu {

namespace {
thread_local BlockRunner* t_runner = nullptr;  // the runner whose block this host thread is running
thread_local bool t_probing = false;
thread_local int t_probe_max_threads = 0;
constexpr size_t kStaticSharedLimit = 48 * 1024;  // CUDA's static shared-memory limit per block
}  // namespace

const char* schedule_name(Schedule s) {
  switch (s) {
    case Schedule::Forward: return "forward";
    case Schedule::Reverse: return "reverse";
    case Schedule::Shuffled: return "shuffled";
  }
  return "?";
}

BlockRunner& this_thread_runner() {
  thread_local BlockRunner runner;
  return runner;
}

bool in_kernel() { return t_runner != nullptr; }

// ---- the block --------------------------------------------------------------------------------------------------

bool BlockRunner::run(const KernelLaunch& launch, uint3 block_idx, Schedule schedule, uint64_t seed, Fault* fault) {
  const dim3 bd = launch.block;
  count_ = bd.x * bd.y * bd.z;
  launch_ = &launch;
  block_idx_ = block_idx;
  failed_ = false;
  fault_ = Fault{};
  shared_seen_.clear();
  shared_bytes_ = launch.dynamic_shared_bytes;
  while (threads_.size() < count_) threads_.push_back(std::make_unique<Thread>());
  order_.resize(count_);
  for (unsigned i = 0; i < count_; ++i) {
    Thread& t = *threads_[i];
    t.runner = this;
    t.linear = i;
    t.builtins.thread_idx = uint3{i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
    t.builtins.block_idx = block_idx;
    t.builtins.block_dim = bd;
    t.builtins.grid_dim = launch.grid;
    t.state = State::Runnable;
    t.file = nullptr;
    t.line = 0;
    t.fiber.start(&BlockRunner::thread_main, &t);
    order_[i] = schedule == Schedule::Reverse ? count_ - 1 - i : i;
  }
  if (schedule == Schedule::Shuffled) {
    std::mt19937_64 rng(seed ^ (uint64_t{block_idx.x} * 0x9E3779B97F4A7C15ull) ^ (uint64_t{block_idx.y} << 20) ^
                        (uint64_t{block_idx.z} << 40));
    std::shuffle(order_.begin(), order_.end(), rng);
  }

  BlockRunner* outer = t_runner;
  t_runner = this;
  for (;;) {
    bool all_done = true;
    for (unsigned i : order_) {
      Thread& t = *threads_[i];
      if (t.state == State::Runnable) {
        current_ = &t;
        t_builtins = &t.builtins;
        Fiber::switch_to(scheduler_, t.fiber);
        t_builtins = nullptr;
        current_ = nullptr;
        if (failed_) break;
      }
      if (t.state != State::Done) all_done = false;
    }
    if (failed_ || all_done) break;
    if (resolve_shuffles()) continue;
    if (failed_) break;
    resolve_barrier();
    if (failed_) break;
  }
  t_runner = outer;
  if (failed_ && fault) *fault = fault_;
  return !failed_;
}

void BlockRunner::thread_main(void* arg) {
  Thread& t = *static_cast<Thread*>(arg);
  Fiber::entered(t.runner->scheduler_);
  t.runner->launch_->run_thread();
  t.state = State::Done;
  Fiber::switch_to(t.fiber, t.runner->scheduler_);
  __builtin_trap();  // a finished fiber is never resumed
}

void BlockRunner::switch_to_scheduler(Thread& t) { Fiber::switch_to(t.fiber, scheduler_); }

std::string BlockRunner::thread_name(const Thread& t) const {
  const uint3 i = t.builtins.thread_idx;
  return "thread (" + std::to_string(i.x) + "," + std::to_string(i.y) + "," + std::to_string(i.z) + ")";
}

std::string BlockRunner::where(const Thread& t) const {
  return t.file ? std::string(t.file) + ":" + std::to_string(t.line) : std::string("?");
}

void BlockRunner::block_fault(cudaError_t code, const std::string& message) {
  std::ostringstream out;
  out << "kernel " << launch_->name << " (launched at " << launch_->file << ":" << launch_->line << "), block ("
      << block_idx_.x << "," << block_idx_.y << "," << block_idx_.z << "): " << message;
  fault_ = Fault{code, out.str()};
  failed_ = true;
  throw fault_;  // caught in resolve_*: faults found by the scheduler unwind only the scheduler's own frames
}

void BlockRunner::fail(cudaError_t code, const std::string& message) {
  Thread& t = *current_;
  std::ostringstream out;
  out << "kernel " << launch_->name << " (launched at " << launch_->file << ":" << launch_->line << "), block ("
      << block_idx_.x << "," << block_idx_.y << "," << block_idx_.z << "), " << thread_name(t) << ": " << message;
  fault_ = Fault{code, out.str()};
  failed_ = true;
  t.state = State::Failed;
  switch_to_scheduler(t);  // never resumed: the block is abandoned
  __builtin_trap();
}

// ---- barriers ---------------------------------------------------------------------------------------------------

void BlockRunner::wait_at_barrier(const char* file, int line) {
  Thread& t = *current_;
  t.state = State::Barrier;
  t.file = file;
  t.line = line;
  switch_to_scheduler(t);
}

// Every thread is blocked or finished. A barrier is released only when all threads of the block wait at the same
// __syncthreads; anything else is the misuse CUDA leaves undefined (a hang, or a barrier that releases early).
void BlockRunner::resolve_barrier() {
  try {
    const Thread* first = nullptr;
    const Thread* exited = nullptr;
    const Thread* other_site = nullptr;
    const Thread* in_shuffle = nullptr;
    unsigned waiting = 0;
    for (unsigned i = 0; i < count_; ++i) {
      const Thread& t = *threads_[i];
      if (t.state == State::Barrier) {
        ++waiting;
        if (!first) first = &t;
        else if ((t.line != first->line || std::strcmp(t.file, first->file) != 0) && !other_site) other_site = &t;
      } else if (t.state == State::Done && !exited) {
        exited = &t;
      } else if (t.state == State::Shuffle && !in_shuffle) {
        in_shuffle = &t;
      }
    }
    if (!first) {
      if (in_shuffle)
        block_fault(cudaErrorLaunchFailure, thread_name(*in_shuffle) + " waits forever in a warp shuffle at " +
                                                where(*in_shuffle) + ": a lane its mask names never arrives");
      return;
    }
    if (other_site)
      block_fault(cudaErrorLaunchFailure, "threads wait at different __syncthreads: " + thread_name(*first) +
                                              " at " + where(*first) + ", " + thread_name(*other_site) + " at " +
                                              where(*other_site) + " (a barrier in divergent code)");
    if (exited)
      block_fault(cudaErrorLaunchFailure, thread_name(*exited) + " exited while " + std::to_string(waiting) +
                                              " thread(s) wait at __syncthreads at " + where(*first) +
                                              " (a barrier that not every thread reaches)");
    if (in_shuffle)
      block_fault(cudaErrorLaunchFailure, thread_name(*in_shuffle) + " waits in a warp shuffle at " +
                                              where(*in_shuffle) + " while " + thread_name(*first) +
                                              " waits at __syncthreads at " + where(*first));
    for (unsigned i = 0; i < count_; ++i) threads_[i]->state = State::Runnable;
  } catch (const Fault&) {
  }
}

// ---- warp shuffles ----------------------------------------------------------------------------------------------

uint64_t BlockRunner::shuffle(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t bits, int param,
                              int width) {
  Thread& t = *current_;
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0)
    fail(cudaErrorInvalidValue, "shuffle width " + std::to_string(width) + " is not a power of 2 in [1, 32] at " +
                                    std::string(file) + ":" + std::to_string(line));
  if (!(mask >> (t.linear % 32) & 1u))
    fail(cudaErrorLaunchFailure, "a warp shuffle at " + std::string(file) + ":" + std::to_string(line) +
                                     " by a lane that its own mask 0x" + [&] {
                                       std::ostringstream h;
                                       h << std::hex << mask;
                                       return h.str();
                                     }() + " does not name");
  t.state = State::Shuffle;
  t.file = file;
  t.line = line;
  t.kind = kind;
  t.mask = mask;
  t.param = param;
  t.width = width;
  t.value = bits;
  switch_to_scheduler(t);
  return t.result;
}

// For each warp with lanes waiting in a shuffle: when every lane of the mask is there, exchange and release them.
// Returns whether any lane was released.
bool BlockRunner::resolve_shuffles() {
  bool released = false;
  try {
    for (unsigned warp0 = 0; warp0 < count_; warp0 += 32) {
      const unsigned lanes = std::min(32u, count_ - warp0);
      Thread* first = nullptr;
      for (unsigned l = 0; l < lanes && !first; ++l)
        if (threads_[warp0 + l]->state == State::Shuffle) first = threads_[warp0 + l].get();
      if (!first) continue;
      const unsigned mask = first->mask;
      bool complete = true;
      for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        if (l >= lanes)
          block_fault(cudaErrorLaunchFailure, "the shuffle at " + where(*first) + " names lane " + std::to_string(l) +
                                                  " of warp " + std::to_string(warp0 / 32) + ", which has only " +
                                                  std::to_string(lanes) + " threads");
        const Thread& t = *threads_[warp0 + l];
        if (t.state == State::Runnable) complete = false;
        else if (t.state == State::Done)
          block_fault(cudaErrorLaunchFailure, thread_name(t) + " exited, but " + thread_name(*first) +
                                                  " waits for it in the warp shuffle at " + where(*first));
        else if (t.state == State::Barrier)
          block_fault(cudaErrorLaunchFailure, thread_name(t) + " waits at __syncthreads at " + where(t) + " while " +
                                                  thread_name(*first) + " waits for it in the warp shuffle at " +
                                                  where(*first));
        else if (t.state == State::Shuffle && t.mask != mask)
          block_fault(cudaErrorLaunchFailure, "lanes of warp " + std::to_string(warp0 / 32) +
                                                  " disagree on the shuffle mask: " + where(t) + " vs " + where(*first));
      }
      if (!complete) continue;
      for (unsigned l = 0; l < 32; ++l) {
        if (!(mask >> l & 1u)) continue;
        Thread& t = *threads_[warp0 + l];
        const int w = t.width, segment = static_cast<int>(l) & ~(w - 1), pos = static_cast<int>(l) & (w - 1);
        int src = static_cast<int>(l);
        switch (t.kind) {
          case ShuffleKind::Index: src = segment + (t.param & (w - 1)); break;
          case ShuffleKind::Up: src = pos >= t.param ? static_cast<int>(l) - t.param : static_cast<int>(l); break;
          case ShuffleKind::Down: src = pos + t.param < w ? static_cast<int>(l) + t.param : static_cast<int>(l); break;
          case ShuffleKind::Xor: src = static_cast<int>(l) ^ t.param; break;
        }
        // A source outside the segment or outside the mask: CUDA leaves the result undefined; the lane keeps its own.
        if (src < segment || src >= segment + w || !(mask >> src & 1u)) src = static_cast<int>(l);
        t.result = threads_[warp0 + src]->value;
      }
      for (unsigned l = 0; l < 32; ++l)
        if (mask >> l & 1u) threads_[warp0 + l]->state = State::Runnable;
      released = true;
    }
  } catch (const Fault&) {
  }
  return released;
}

// ---- shared memory ----------------------------------------------------------------------------------------------

void BlockRunner::declare_shared(void* address, size_t bytes, const char* file, int line) {
  if (std::find(shared_seen_.begin(), shared_seen_.end(), address) != shared_seen_.end()) return;
  shared_seen_.push_back(address);
  shared_bytes_ += bytes;
  if (shared_bytes_ > kStaticSharedLimit)
    fail(cudaErrorLaunchOutOfResources, "the block uses " + std::to_string(shared_bytes_) +
                                            " bytes of shared memory (with the declaration at " + file + ":" +
                                            std::to_string(line) + "), more than CUDA's 48 KiB per block");
  // Uninitialised shared memory reads as NaN (and as -1 for integers), so a kernel that reads before it writes
  // shows it in its results.
  if (config().poison) std::memset(address, 0xFF, bytes);
}

// ---- device.h entry points --------------------------------------------------------------------------------------

void set_probing(bool on) { t_probing = on; t_probe_max_threads = 0; }
int probed_max_threads() { return t_probe_max_threads; }

bool kernel_entry(int max_threads_per_block, int /*min_blocks_per_sm*/) {
  if (!t_probing) return false;
  t_probe_max_threads = max_threads_per_block;
  return true;
}

void shared_declared(void* address, size_t bytes, const char* file, int line) {
  if (t_runner) t_runner->declare_shared(address, bytes, file, line);
}

void syncthreads(const char* file, int line) {
  if (t_runner) t_runner->wait_at_barrier(file, line);
}

void syncwarp(unsigned mask, const char* file, int line) {
  if (t_runner) t_runner->shuffle(ShuffleKind::Xor, file, line, mask, 0, 0, 32);
}

uint64_t shuffle_bits(ShuffleKind kind, const char* file, int line, unsigned mask, uint64_t bits, int param,
                      int width) {
  return t_runner ? t_runner->shuffle(kind, file, line, mask, bits, param, width) : bits;
}

void misaligned_vector_access(const void* address, int alignment) {
  std::ostringstream out;
  out << "misaligned " << alignment << "-byte vector access at address " << address << " (address % " << alignment
      << " = " << reinterpret_cast<uintptr_t>(address) % static_cast<uintptr_t>(alignment) << ")";
  t_runner->fail(cudaErrorMisalignedAddress, out.str());
}

}  // namespace axemu
