// Benchmark-only helpers (benchmarks/kernels.py): the device's measured peaks and a CUDA-event timer.
// Not used by any op or by training. Declared without CUDA headers so module.cpp compiles with a plain C++
// compiler; defined in peak.cu (built only with the CUDA backend).
//
// The kernel benchmarks judge each kernel against what THIS GPU can do, measured in the same run, rather than a
// datasheet number: FP32 FMA throughput for the matrix-multiply-bound ops (fully connected layers) and
// device-to-device copy bandwidth for the memory-bound ones (LRN, pooling, ReLU, dropout, SGD).
#pragma once

#include <cstdint>
#include <vector>

#include "cuda/runtime.h"

namespace alexnet::cuda {

// One measurement: the time of each timed launch (after one untimed warm-up launch) and the work one launch does
// (FLOPs for fma_peak, bytes read + written for copy_bandwidth). rate = work / fastest time.
struct PeakMeasurement {
  std::vector<double> times_ms;
  double work_per_launch = 0;
  double best_rate() const;  // work per second of the fastest launch
};

// FP32 FMA throughput: every SM filled with threads that each run `iterations` x 8 independent fmaf chains
// (8 chains hide the FMA latency; 2 FLOPs per fmaf). `iterations` is rounded up to a multiple of 16.
PeakMeasurement fma_peak(int device, int iterations, int repetitions);
// Device-to-device copy of `bytes` (rounded up to 16) with a float4 grid-stride kernel; work counts the bytes
// read plus the bytes written (2 x bytes), the same convention the benchmarks use for memory-bound ops.
PeakMeasurement copy_bandwidth(int device, int64_t bytes, int repetitions);

// Elapsed GPU time between start() and stop(), both recorded on the device's current stream (the stream every op
// launches on), so it brackets exactly the work queued between the two calls.
class EventTimer {
 public:
  explicit EventTimer(int device);
  ~EventTimer();
  EventTimer(const EventTimer&) = delete;
  EventTimer& operator=(const EventTimer&) = delete;
  void start();
  void stop();
  float elapsed_ms();  // waits for the stop event

 private:
  int device_;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
};

}  // namespace alexnet::cuda
