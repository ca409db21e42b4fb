// Planted bugs for the emulated device's own tests (tests/emulator/test_emulator.py): each program below contains one
// mistake of the kind the emulator must catch, and the test checks that it is caught. Compiled only into the
// emulated build, after the same rewrite as every other kernel; each runs in a fresh process, since a kernel
// fault is sticky for its device as on a GPU.
#include <cuda_runtime.h>

#include <cmath>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/emulation/info.h"
#include "cuda/runtime.h"

namespace axemu {
namespace {

constexpr int kThreads = 128;

// Block sum in shared memory; with_barrier = false drops the barrier between the stores and the tree, so a thread
// may read a neighbour's slot before the neighbour has written it.
__global__ void block_sum_kernel(const float* x, float* out, bool with_barrier) {
  __shared__ float partial[kThreads];
  partial[threadIdx.x] = x[blockIdx.x * kThreads + threadIdx.x];
  if (with_barrier) __syncthreads();
  for (int width = kThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    if (with_barrier) __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

__global__ void divergent_barrier_kernel(float* out) {
  if (threadIdx.x < 16) __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void barrier_after_exit_kernel(float* out) {
  if (threadIdx.x == 0) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

__global__ void divergent_shuffle_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  if (threadIdx.x % 32 < 16) v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

__global__ void warp_sum_kernel(float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int delta = 16; delta > 0; delta /= 2) v += __shfl_xor_sync(0xffffffffu, v, delta);
  out[threadIdx.x] = v;
}

__global__ void write_kernel(float* out, int index, float value) { out[index] = value; }

__global__ void read_kernel(const float* in, int index, float* out) { *out = in[index]; }

__global__ void vector_copy_kernel(const float* in, float* out) {
  reinterpret_cast<float4*>(out)[threadIdx.x] = reinterpret_cast<const float4*>(in)[threadIdx.x];
}

__global__ void __launch_bounds__(128) bounded_kernel(float* out) { out[threadIdx.x] = 1.0f; }

__global__ void uninitialized_shared_kernel(float* out) {
  __shared__ float scratch[kThreads];
  out[threadIdx.x] = scratch[threadIdx.x];  // never written
}

__global__ void big_shared_kernel(float* out) {
  __shared__ float big[16 * 1024];  // 64 KiB: over CUDA's 48 KiB static limit
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}

__global__ void add_one_kernel(float* x, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) x[i] += 1.0f;
}

// ---- host side --------------------------------------------------------------------------------------------------

float* device_floats(size_t n) {
  void* p = nullptr;
  AX_CUDA_CHECK(cudaMalloc(&p, n * sizeof(float)));
  return static_cast<float*>(p);
}

std::vector<float> to_host(const float* d, size_t n) {
  std::vector<float> h(n);
  AX_CUDA_CHECK(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
  return h;
}

void upload(float* d, const std::vector<float>& h) {
  AX_CUDA_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(float), cudaMemcpyHostToDevice));
}

using Result = std::map<std::string, double>;

// Launches and waits; a launch error or a fault is thrown as CUDA would report it.
template <class Launch>
void run_and_wait(const char* what, Launch launch) {
  launch();
  AX_CUDA_CHECK_LAUNCH("selftest");
  (void)what;
  AX_CUDA_CHECK(cudaDeviceSynchronize());
}

Result block_sum(bool with_barrier) {
  const int blocks = 4;
  float* x = device_floats(blocks * kThreads);
  float* out = device_floats(blocks);
  std::vector<float> h(blocks * kThreads);
  for (size_t i = 0; i < h.size(); ++i) h[i] = static_cast<float>(i % 7);
  upload(x, h);
  run_and_wait("block_sum", [&] { block_sum_kernel<<<blocks, kThreads>>>(x, out, with_barrier); });
  return {{"sum0", to_host(out, blocks)[0]}};
}

Result one_block(void (*kernel)(float*), unsigned threads) {
  float* out = device_floats(1024);
  run_and_wait("kernel", [&] { kernel<<<1, threads>>>(out); });
  return {{"out0", to_host(out, 1)[0]}};
}

// Two streams: a producer adds 1 to a buffer, a consumer copies it. With the event, the copy sees the update.
Result stream_order(bool with_wait) {
  const int n = 256;
  cudaStream_t producer = alexnet::cuda::create_stream(0), consumer = alexnet::cuda::create_stream(0);
  cudaEvent_t produced = alexnet::cuda::create_event(0);
  float* x = device_floats(n);
  float* y = device_floats(n);
  upload(x, std::vector<float>(n, 1.0f));
  add_one_kernel<<<1, 64, 0, producer>>>(x, n);
  AX_CUDA_CHECK_LAUNCH("selftest");
  AX_CUDA_CHECK(cudaEventRecord(produced, producer));
  if (with_wait) AX_CUDA_CHECK(cudaStreamWaitEvent(consumer, produced, 0));
  AX_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, consumer));
  AX_CUDA_CHECK(cudaStreamSynchronize(consumer));
  const float seen = to_host(y, 1)[0];
  AX_CUDA_CHECK(cudaDeviceSynchronize());
  return {{"seen", seen}};
}

// A buffer handed to another stream while work queued on its first stream still reads it (what a caching
// allocator that ignored streams would do): with the event, the first stream's copy sees the old contents.
Result reuse_across_streams(bool with_wait) {
  const int n = 256;
  cudaStream_t first = alexnet::cuda::create_stream(0), second = alexnet::cuda::create_stream(0);
  cudaEvent_t read_done = alexnet::cuda::create_event(0);
  float* x = device_floats(n);
  float* y = device_floats(n);
  upload(x, std::vector<float>(n, 5.0f));
  AX_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, first));  // reads x
  AX_CUDA_CHECK(cudaEventRecord(read_done, first));
  if (with_wait) AX_CUDA_CHECK(cudaStreamWaitEvent(second, read_done, 0));
  AX_CUDA_CHECK(cudaMemsetAsync(x, 0, n * sizeof(float), second));  // the new owner overwrites x
  AX_CUDA_CHECK(cudaStreamSynchronize(second));
  AX_CUDA_CHECK(cudaStreamSynchronize(first));
  return {{"copied", to_host(y, 1)[0]}};
}

// A tensor freed into the caching allocator and read afterwards (a use after free the allocator would hide).
Result use_after_release() {
  float* block = static_cast<float*>(alexnet::cuda::allocate(0, 64 * sizeof(float)));
  float* out = device_floats(1);
  upload(block, std::vector<float>(64, 2.0f));
  alexnet::cuda::release(0, block);
  cudaStream_t s = alexnet::cuda::current_stream(0);
  read_kernel<<<1, 1, 0, s>>>(block, 3, out);
  AX_CUDA_CHECK_LAUNCH("selftest");
  AX_CUDA_CHECK(cudaStreamSynchronize(s));
  return {{"read", to_host(out, 1)[0]}};
}

const std::map<std::string, std::function<Result()>>& programs() {
  static const std::map<std::string, std::function<Result()>> p = {
      {"block_sum", [] { return block_sum(true); }},
      {"missing_syncthreads", [] { return block_sum(false); }},
      {"divergent_barrier", [] { return one_block(divergent_barrier_kernel, 64); }},
      {"barrier_after_exit", [] { return one_block(barrier_after_exit_kernel, 64); }},
      {"divergent_shuffle", [] { return one_block(divergent_shuffle_kernel, 64); }},
      {"warp_sum", [] { return one_block(warp_sum_kernel, 64); }},
      {"too_many_threads", [] { return one_block(bounded_kernel, 1025); }},
      {"launch_bounds_exceeded", [] { return one_block(bounded_kernel, 256); }},
      {"within_launch_bounds", [] { return one_block(bounded_kernel, 128); }},
      {"uninitialized_shared", [] { return one_block(uninitialized_shared_kernel, kThreads); }},
      {"shared_over_48k", [] { return one_block(big_shared_kernel, 32); }},
      {"zero_grid",
       [] {
         float* out = device_floats(1);
         run_and_wait("zero_grid", [&] { write_kernel<<<0, 32>>>(out, 0, 1.0f); });
         return Result{};
       }},
      {"grid_y_too_large",
       [] {
         float* out = device_floats(1);
         run_and_wait("grid_y", [&] { write_kernel<<<dim3(1, 65536), 32>>>(out, 0, 1.0f); });
         return Result{};
       }},
      {"dynamic_shared_over_limit",
       [] {
         float* out = device_floats(1);
         run_and_wait("dynamic_shared", [&] { write_kernel<<<1, 32, 64 * 1024>>>(out, 0, 1.0f); });
         return Result{};
       }},
      {"out_of_bounds_write",
       [] {
         float* out = device_floats(10);
         run_and_wait("oob_write", [&] { write_kernel<<<1, 1>>>(out, 10, 1.0f); });
         return Result{};
       }},
      {"out_of_bounds_read",
       [] {
         float* in = device_floats(10);
         float* out = device_floats(1);
         upload(in, std::vector<float>(10, 1.0f));
         run_and_wait("oob_read", [&] { read_kernel<<<1, 1>>>(in, 12, out); });
         return Result{{"read", to_host(out, 1)[0]}};
       }},
      {"uninitialized_global",
       [] {
         float* in = device_floats(10);
         float* out = device_floats(1);
         run_and_wait("uninit", [&] { read_kernel<<<1, 1>>>(in, 4, out); });
         return Result{{"read", to_host(out, 1)[0]}};
       }},
      {"misaligned_float4",
       [] {
         float* in = device_floats(64);
         float* out = device_floats(64);
         upload(in, std::vector<float>(64, 1.0f));
         run_and_wait("misaligned", [&] { vector_copy_kernel<<<1, 4>>>(in + 1, out); });
         return Result{};
       }},
      {"host_pointer_argument",
       [] {
         static float host[4];
         run_and_wait("host_pointer", [&] { write_kernel<<<1, 1>>>(host, 0, 1.0f); });
         return Result{};
       }},
      {"stream_of_other_device",
       [] {
         cudaStream_t other = alexnet::cuda::create_stream(1);
         float* out = device_floats(1);
         run_and_wait("other_stream", [&] { write_kernel<<<1, 1, 0, other>>>(out, 0, 1.0f); });
         return Result{};
       }},
      {"event_of_other_device",
       [] {
         cudaEvent_t e = alexnet::cuda::create_event(1);
         AX_CUDA_CHECK(cudaEventRecord(e, alexnet::cuda::current_stream(0)));
         return Result{};
       }},
      {"stream_wait", [] { return stream_order(true); }},
      {"missing_stream_wait", [] { return stream_order(false); }},
      {"use_after_release", [] { return use_after_release(); }},
      {"reuse_after_reader", [] { return reuse_across_streams(true); }},
      {"reuse_before_reader", [] { return reuse_across_streams(false); }},
  };
  return p;
}

}  // namespace

std::map<std::string, double> run_selftest(const std::string& name) {
  auto it = programs().find(name);
  if (it == programs().end()) throw std::invalid_argument("emulator_selftest: no program named '" + name + "'");
  alexnet::cuda::DeviceGuard guard(0);
  return it->second();
}

std::string selftest_names() {
  std::string out;
  for (const auto& [name, fn] : programs()) out += (out.empty() ? "" : ",") + name;
  return out;
}

}  // namespace axemu
