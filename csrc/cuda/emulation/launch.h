// Kernel launches on the emulated device. The build-time rewrite (rewrite.py) turns
//     kernel<<<grid, block, shared_bytes, stream>>>(args...);
// into
//     ::axemu::launch(kernel, "kernel", __FILE__, __LINE__, grid, block, shared_bytes, stream)(args...);
// which converts the arguments to the kernel's parameter types (as a launch does), checks the configuration the
// way CUDA does, and queues the launch on the stream (streams.cpp). The kernel runs later, when the stream is
// drained, under each configured thread schedule (grid.cpp).
#pragma once

#include <cstring>
#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "types.h"

namespace axemu {

// A value among the kernel's arguments that may be a device pointer. `typed` ones are parameters declared as
// pointers (checked strictly against the launching device's allocations); the others are 8-byte words found
// inside struct arguments (loader and epilogue structs carry their tensors' pointers), used to find the memory a
// launch can reach.
struct ArgPointer {
  const void* value;
  bool typed;
  int parameter;
};

struct KernelLaunch {
  const char* name;
  const char* file;
  int line;
  dim3 grid, block;
  size_t dynamic_shared_bytes;
  cudaStream_t stream;
  int max_threads_per_block;  // from __launch_bounds__ (0: none)
  std::vector<ArgPointer> pointers;
  std::function<void()> run_thread;  // runs the kernel body for the current fiber's thread
  std::function<void()> probe;       // runs the kernel's entry only (reads its __launch_bounds__)
};

// Queues the launch after checking it; a bad configuration sets the error cudaGetLastError returns.
void submit(KernelLaunch&& launch);

template <class T>
void collect_pointers(const T& value, int parameter, std::vector<ArgPointer>& out) {
  if constexpr (std::is_pointer_v<T>) {
    out.push_back({reinterpret_cast<const void*>(value), true, parameter});
  } else if constexpr (std::is_class_v<T> && sizeof(T) >= sizeof(void*)) {
    const unsigned char* bytes = reinterpret_cast<const unsigned char*>(&value);
    for (size_t off = 0; off + sizeof(void*) <= sizeof(T); off += alignof(void*)) {
      const void* word;
      std::memcpy(&word, bytes + off, sizeof(word));
      if (word) out.push_back({word, false, parameter});
    }
  }
}

template <class... P>
class Launcher {
 public:
  Launcher(void (*kernel)(P...), const char* name, const char* file, int line, dim3 grid, dim3 block,
           size_t shared_bytes, cudaStream_t stream)
      : kernel_(kernel) {
    launch_.name = name;
    launch_.file = file;
    launch_.line = line;
    launch_.grid = grid;
    launch_.block = block;
    launch_.dynamic_shared_bytes = shared_bytes;
    launch_.stream = stream;
    launch_.max_threads_per_block = 0;
  }

  template <class... A>
  void operator()(A&&... args) {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong number of arguments");
    // The arguments are copied at launch, as CUDA does: the caller may change or free its variables afterwards.
    auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
    collect(*params, std::index_sequence_for<P...>{});
    auto* kernel = kernel_;
    launch_.run_thread = [kernel, params] { std::apply(kernel, *params); };
    launch_.probe = launch_.run_thread;
    submit(std::move(launch_));
  }

 private:
  template <class Tuple, size_t... I>
  void collect(const Tuple& t, std::index_sequence<I...>) {
    (collect_pointers(std::get<I>(t), static_cast<int>(I), launch_.pointers), ...);
  }

  void (*kernel_)(P...);
  KernelLaunch launch_;
};

template <class... P>
Launcher<P...> launch(void (*kernel)(P...), const char* name, const char* file, int line, dim3 grid, dim3 block,
                      size_t shared_bytes = 0, cudaStream_t stream = nullptr) {
  return Launcher<P...>(kernel, name, file, line, grid, block, shared_bytes, stream);
}

}  // namespace axemu
