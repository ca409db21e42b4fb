// Launch checks and execution (grid.h).
#include "grid.h"

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "config.h"
#include "memory.h"

namespace axemu {

void set_probing(bool on);  // block.cpp
int probed_max_threads();
bool peer_access_enabled(int device, int peer);  // api.cpp

namespace {

std::atomic<uint64_t> g_launches{0}, g_race_checked{0}, g_blocks{0};
std::mutex g_by_kernel_mutex;
std::map<std::string, uint64_t> g_by_kernel;

// Persistent worker threads: each keeps its BlockRunner (and the runner's fiber stacks) across launches.
class WorkerPool {
 public:
  explicit WorkerPool(int workers) {
    for (int i = 1; i < workers; ++i) threads_.emplace_back([this] { loop(); });
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  // Runs job on every worker and on the calling thread; returns when all have finished.
  void run(const std::function<void()>& job) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      job_ = &job;
      ++generation_;
      pending_ = static_cast<int>(threads_.size());
    }
    wake_.notify_all();
    job();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      const std::function<void()>* job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
      }
      (*job)();
      std::lock_guard<std::mutex> lock(mutex_);
      if (--pending_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void()>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
};

WorkerPool& pool() {
  static WorkerPool p(config().workers);
  return p;
}

// Runs every block once under `schedule`. Blocks are handed out from a shared counter (in reverse order for the
// reverse schedule); the first fault stops the rest.
Fault run_grid(const KernelLaunch& launch, Schedule schedule) {
  const dim3 g = launch.grid;
  const uint64_t total = uint64_t{g.x} * g.y * g.z;
  std::atomic<uint64_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex fault_mutex;
  Fault first;
  const std::function<void()> job = [&] {
    BlockRunner& runner = this_thread_runner();
    for (;;) {
      const uint64_t i = next.fetch_add(1);
      if (i >= total || failed.load()) return;
      const uint64_t b = schedule == Schedule::Reverse ? total - 1 - i : i;
      const uint3 idx{static_cast<unsigned>(b % g.x), static_cast<unsigned>((b / g.x) % g.y),
                      static_cast<unsigned>(b / (uint64_t{g.x} * g.y))};
      Fault f;
      if (!runner.run(launch, idx, schedule, config().seed, &f)) {
        std::lock_guard<std::mutex> lock(fault_mutex);
        if (!failed.exchange(true)) first = f;
        return;
      }
      g_blocks.fetch_add(1, std::memory_order_relaxed);
    }
  };
  if (total == 1 || config().workers == 1) {
    job();
  } else {
    pool().run(job);
  }
  return first;
}

// The allocations a launch can reach: those its pointer arguments (and pointer-like words inside its struct
// arguments) point into.
std::vector<Allocation> reachable(const KernelLaunch& launch) {
  std::vector<Allocation> out;
  for (const ArgPointer& p : launch.pointers) {
    Allocation a;
    if (!find_allocation(p.value, 0, &a)) continue;
    bool seen = false;
    for (const Allocation& b : out) seen = seen || b.base == a.base;
    if (!seen) out.push_back(a);
  }
  return out;
}

std::string launch_name(const KernelLaunch& launch) {
  return std::string("kernel ") + launch.name + " (launched at " + launch.file + ":" + std::to_string(launch.line) + ")";
}

// The first byte where `after` differs from the memory now, as a readable description.
std::string first_difference(const Allocation& a, const std::vector<char>& first_run) {
  for (size_t i = 0; i < a.bytes; ++i) {
    if (first_run[i] != a.base[i]) {
      const size_t word = i / 4 * 4;
      float x = 0, y = 0;
      if (word + 4 <= a.bytes) {
        std::memcpy(&x, first_run.data() + word, 4);
        std::memcpy(&y, a.base + word, 4);
      }
      std::ostringstream out;
      out << "byte " << i << " of a " << a.bytes << "-byte allocation on cuda:" << a.device << " (as float32: " << x
          << " vs " << y << ")";
      return out.str();
    }
  }
  return "";
}

}  // namespace

LaunchStats launch_stats() {
  std::lock_guard<std::mutex> lock(g_by_kernel_mutex);
  return {g_launches.load(), g_race_checked.load(), g_blocks.load(), g_by_kernel};
}

cudaError_t check_launch(const KernelLaunch& launch, int device, std::string* detail) {
  const dim3 b = launch.block, g = launch.grid;
  std::ostringstream msg;
  msg << launch_name(launch) << ": ";
  const uint64_t threads = uint64_t{b.x} * b.y * b.z;
  if (b.x == 0 || b.y == 0 || b.z == 0 || g.x == 0 || g.y == 0 || g.z == 0) {
    msg << "a zero grid or block dimension (grid " << g.x << "x" << g.y << "x" << g.z << ", block " << b.x << "x" << b.y
        << "x" << b.z << ")";
  } else if (threads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64) {
    msg << "block " << b.x << "x" << b.y << "x" << b.z << " (" << threads
        << " threads) exceeds CUDA's limits (1024 threads; 1024 x 1024 x 64)";
  } else if (g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535) {
    msg << "grid " << g.x << "x" << g.y << "x" << g.z << " exceeds CUDA's limits (2^31-1 x 65535 x 65535)";
  } else if (launch.dynamic_shared_bytes > 48 * 1024) {
    msg << launch.dynamic_shared_bytes
        << " bytes of dynamic shared memory: more than 48 KiB needs cudaFuncSetAttribute, which this kernel did not set";
    *detail = msg.str();
    return cudaErrorInvalidValue;
  } else {
    set_probing(true);
    launch.probe();
    const int bound = probed_max_threads();
    set_probing(false);
    if (bound > 0 && threads > static_cast<uint64_t>(bound)) {
      msg << "block of " << threads << " threads, but the kernel's __launch_bounds__ allows at most " << bound;
      *detail = msg.str();
      return cudaErrorLaunchOutOfResources;
    }
    for (const ArgPointer& p : launch.pointers) {
      if (!p.typed || p.value == nullptr) continue;
      Allocation a;
      if (!find_allocation(p.value, 0, &a)) {
        msg << "pointer argument " << p.parameter << " = " << describe_pointer(p.value);
        *detail = msg.str();
        return cudaErrorInvalidValue;
      }
      if (a.device != device && !peer_access_enabled(device, a.device)) {
        msg << "pointer argument " << p.parameter << " is memory of cuda:" << a.device
            << ", but the kernel runs on cuda:" << device << " without peer access to it";
        *detail = msg.str();
        return cudaErrorInvalidValue;
      }
    }
    return cudaSuccess;
  }
  *detail = msg.str();
  return cudaErrorInvalidConfiguration;
}

Fault execute(const KernelLaunch& launch, int device) {
  (void)device;
  g_launches.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard<std::mutex> lock(g_by_kernel_mutex);
    ++g_by_kernel[launch.name];
  }
  const std::vector<Schedule>& schedules = config().schedules;
  std::vector<Allocation> regions = reachable(launch);
  size_t reach = 0;
  for (const Allocation& a : regions) reach += a.bytes;
  const bool compare = schedules.size() > 1 && reach <= config().race_check_bytes;

  Fault fault;
  if (!compare) {
    fault = run_grid(launch, schedules.front());
  } else {
    // Run under the first schedule from a snapshot of everything reachable, keep the results, restore, and run
    // under each further schedule: every run must leave the same bytes.
    std::vector<std::vector<char>> before(regions.size()), first(regions.size());
    for (size_t i = 0; i < regions.size(); ++i) before[i].assign(regions[i].base, regions[i].base + regions[i].bytes);
    g_race_checked.fetch_add(1, std::memory_order_relaxed);
    for (size_t s = 0; s < schedules.size() && fault.code == cudaSuccess; ++s) {
      if (s > 0) {  // keep the previous schedule's results, start again from the snapshot
        for (size_t i = 0; i < regions.size(); ++i) {
          first[i].assign(regions[i].base, regions[i].base + regions[i].bytes);
          std::memcpy(regions[i].base, before[i].data(), regions[i].bytes);
        }
      }
      fault = run_grid(launch, schedules[s]);
      if (fault.code != cudaSuccess || s == 0) continue;
      for (size_t i = 0; i < regions.size(); ++i) {
        const std::string diff = first_difference(regions[i], first[i]);
        if (!diff.empty()) {
          fault.code = cudaErrorLaunchFailure;
          fault.message = launch_name(launch) + ": results differ between the " + schedule_name(schedules[s - 1]) +
                          " and " + schedule_name(schedules[s]) + " thread schedules at " + diff +
                          ": a data race (a missing __syncthreads, or threads or blocks writing the same address)";
          break;
        }
      }
    }
  }
  if (fault.code != cudaSuccess) return fault;
  for (const Allocation& a : regions) {
    std::string detail;
    if (!redzones_intact(a, &detail)) return Fault{cudaErrorIllegalAddress, launch_name(launch) + ": " + detail};
  }
  return fault;
}

}  // namespace axemu
