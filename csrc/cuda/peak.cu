// Benchmark-only kernels: measured FP32 FMA peak and copy bandwidth, plus the event timer (see peak.h).
#include <cuda_runtime.h>

#include <algorithm>

#include "cuda/check.cuh"
#include "cuda/peak.h"

namespace alexnet::cuda {

namespace {

constexpr int kFmaChains = 8;     // independent dependency chains per thread: enough to hide the FMA latency
constexpr int kFmaUnroll = 16;    // loop trips unrolled so the loop counter costs ~1 instruction per 128 FMAs
constexpr int kPeakThreads = 256;

// Each thread runs kFmaChains independent chains acc = acc * a + b. a and b are kernel arguments (not constants),
// so the compiler cannot fold the loop; every thread writes its sum, so it cannot drop it either.
__global__ void fma_loop_kernel(float* out, int iterations, float a, float b) {
  float acc[kFmaChains];
#pragma unroll
  for (int i = 0; i < kFmaChains; ++i) acc[i] = threadIdx.x * 1e-3f + i;
  for (int it = 0; it < iterations; it += kFmaUnroll) {
#pragma unroll
    for (int u = 0; u < kFmaUnroll; ++u) {
#pragma unroll
      for (int i = 0; i < kFmaChains; ++i) acc[i] = fmaf(acc[i], a, b);
    }
  }
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kFmaChains; ++i) sum += acc[i];
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

__global__ void copy_kernel(float4* __restrict__ dst, const float4* __restrict__ src, int64_t count) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < count; i += step) dst[i] = src[i];
}

// Times `launch` once untimed, then `repetitions` times with events on the device's current stream.
template <typename Launch>
std::vector<double> time_launches(int device, int repetitions, Launch launch) {
  cudaStream_t stream = current_stream(device);
  cudaEvent_t start, stop;
  AX_CUDA_CHECK(cudaEventCreate(&start));
  AX_CUDA_CHECK(cudaEventCreate(&stop));
  std::vector<double> times;
  launch(stream);  // warm-up: first-launch costs, clocks ramping up
  for (int r = 0; r < repetitions; ++r) {
    AX_CUDA_CHECK(cudaEventRecord(start, stream));
    launch(stream);
    AX_CUDA_CHECK(cudaEventRecord(stop, stream));
    AX_CUDA_CHECK(cudaEventSynchronize(stop));
    float ms = 0.f;
    AX_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return times;
}

int sm_count(int device) {
  int sms = 0;
  AX_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

}  // namespace

double PeakMeasurement::best_rate() const {
  if (times_ms.empty()) return 0.0;
  const double best = *std::min_element(times_ms.begin(), times_ms.end());
  return best > 0 ? work_per_launch / (best * 1e-3) : 0.0;
}

PeakMeasurement fma_peak(int device, int iterations, int repetitions) {
  AX_CHECK(iterations > 0 && repetitions > 0, "bench_fma_peak: expected iterations > 0 and repetitions > 0, got ",
           iterations, " and ", repetitions);
  iterations = (iterations + kFmaUnroll - 1) / kFmaUnroll * kFmaUnroll;
  DeviceGuard guard(device);
  const int blocks = sm_count(device) * 8;  // 8 x 256 threads: a full SM (2048 threads) on Ampere/Hopper
  const int64_t threads = int64_t(blocks) * kPeakThreads;
  float* out = static_cast<float*>(allocate(device, threads * sizeof(float)));
  PeakMeasurement m;
  m.work_per_launch = 2.0 * kFmaChains * double(iterations) * double(threads);
  try {
    m.times_ms = time_launches(device, repetitions, [&](cudaStream_t s) {
      fma_loop_kernel<<<blocks, kPeakThreads, 0, s>>>(out, iterations, 0.999999f, 1e-6f);
      AX_CUDA_CHECK_LAUNCH("bench_fma_peak");
    });
  } catch (...) {
    release(device, out);
    throw;
  }
  release(device, out);
  return m;
}

PeakMeasurement copy_bandwidth(int device, int64_t bytes, int repetitions) {
  AX_CHECK(bytes > 0 && repetitions > 0, "bench_copy_bandwidth: expected bytes > 0 and repetitions > 0, got ",
           bytes, " and ", repetitions);
  const int64_t count = (bytes + 15) / 16;
  DeviceGuard guard(device);
  void* src = allocate(device, count * 16);
  void* dst = nullptr;
  PeakMeasurement m;
  m.work_per_launch = 2.0 * double(count) * 16.0;
  try {
    dst = allocate(device, count * 16);
    memset_zero(device, src, count * 16);
    // Enough resident blocks to keep every SM's loads in flight; the grid-stride loop covers the rest.
    const unsigned blocks = grid_for(count, kPeakThreads, int64_t(sm_count(device)) * 8);
    m.times_ms = time_launches(device, repetitions, [&](cudaStream_t s) {
      copy_kernel<<<blocks, kPeakThreads, 0, s>>>(static_cast<float4*>(dst), static_cast<const float4*>(src), count);
      AX_CUDA_CHECK_LAUNCH("bench_copy_bandwidth");
    });
  } catch (...) {
    release(device, src);
    if (dst) release(device, dst);
    throw;
  }
  release(device, src);
  release(device, dst);
  return m;
}

EventTimer::EventTimer(int device) : device_(device) {
  DeviceGuard guard(device);
  AX_CUDA_CHECK(cudaEventCreate(&start_));
  AX_CUDA_CHECK(cudaEventCreate(&stop_));
}
EventTimer::~EventTimer() {
  DeviceGuard guard(device_);
  cudaEventDestroy(start_);
  cudaEventDestroy(stop_);
}
void EventTimer::start() { AX_CUDA_CHECK(cudaEventRecord(start_, current_stream(device_))); }
void EventTimer::stop() { AX_CUDA_CHECK(cudaEventRecord(stop_, current_stream(device_))); }
float EventTimer::elapsed_ms() {
  AX_CUDA_CHECK(cudaEventSynchronize(stop_));
  float ms = 0.f;
  AX_CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
  return ms;
}

}  // namespace alexnet::cuda
