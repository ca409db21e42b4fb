// softmax cross-entropy (mean over the batch), its gradient, and the top-1/top-5 counts on the GPU; the maths and
// the numerical-stability argument are in cpu/softmax_xent.cpp.
//
// One warp per row: rows are short (1000 classes for ImageNet) and a warp's shuffles reduce them without shared
// memory or block barriers; consecutive lanes read consecutive classes, so every pass is coalesced. The mean loss
// is deterministic: each warp writes its row's loss to a scratch array and one block then sums the rows in a
// fixed order (no float atomics, whose order would vary run to run).
#include <cmath>

#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowThreads = 256;  // 8 rows (warps) per block
constexpr int kWarpsPerBlock = kRowThreads / kWarp;
constexpr int kReduceThreads = 256;

__device__ __forceinline__ float warp_max(float v) {
  for (int delta = kWarp / 2; delta > 0; delta /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, delta));
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
  for (int delta = kWarp / 2; delta > 0; delta /= 2) v += __shfl_xor_sync(0xffffffffu, v, delta);
  return v;
}

// Writes probs and row_loss[i] = log(sum_j exp(z_ij - m_i)) - (z_i,label - m_i) for each row i.
__global__ void softmax_xent_rows_kernel(int n, int classes, const float* __restrict__ logits,
                                         const int32_t* __restrict__ labels, float* __restrict__ probs,
                                         double* __restrict__ row_loss) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  for (int64_t row = first_row; row < n; row += row_stride) {  // warp-uniform: the shuffles see all 32 lanes
    const float* z = logits + row * classes;
    float* prob = probs + row * classes;
    float row_max = -INFINITY;
    for (int j = lane; j < classes; j += kWarp) row_max = fmaxf(row_max, z[j]);
    row_max = warp_max(row_max);
    float sum = 0.0f;
    for (int j = lane; j < classes; j += kWarp) {
      const float e = expf(z[j] - row_max);
      prob[j] = e;
      sum += e;
    }
    sum = warp_sum(sum);  // >= 1: the maximum contributes exp(0)
    const float inv_sum = 1.0f / sum;
    for (int j = lane; j < classes; j += kWarp) prob[j] *= inv_sum;  // each lane rescales what it wrote
    if (lane == 0) row_loss[row] = static_cast<double>(logf(sum)) - static_cast<double>(z[labels[row]] - row_max);
  }
}

// loss = mean of row_loss, summed in a fixed order by one block (thread t takes rows t, t+256, ..., then a tree).
__global__ void mean_loss_kernel(int n, const double* __restrict__ row_loss, float* __restrict__ loss) {
  __shared__ double partial[kReduceThreads];
  double acc = 0.0;
  for (int i = threadIdx.x; i < n; i += kReduceThreads) acc += row_loss[i];
  partial[threadIdx.x] = acc;
  __syncthreads();
  for (int width = kReduceThreads / 2; width > 0; width /= 2) {
    if (threadIdx.x < width) partial[threadIdx.x] += partial[threadIdx.x + width];
    __syncthreads();
  }
  if (threadIdx.x == 0) *loss = static_cast<float>(partial[0] / n);
}

__global__ void softmax_xent_backward_kernel(int n, int classes, const float* __restrict__ probs,
                                             const int32_t* __restrict__ labels, float* __restrict__ dlogits) {
  const int64_t total = static_cast<int64_t>(n) * classes;
  const float inv_n = 1.0f / static_cast<float>(n);
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; idx < total; idx += stride) {
    const int64_t row = idx / classes;
    const int col = static_cast<int>(idx - row * classes);
    const float target = col == labels[row] ? 1.0f : 0.0f;
    dlogits[idx] = (probs[idx] - target) * inv_n;
  }
}

// correct must be zeroed first. Integer atomics are order-independent, so the counts are deterministic.
__global__ void topk_correct_kernel(int n, int classes, const float* __restrict__ scores,
                                    const int32_t* __restrict__ labels, int32_t* __restrict__ correct) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first_row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int64_t row_stride = static_cast<int64_t>(gridDim.x) * kWarpsPerBlock;
  int top1 = 0, top5 = 0;  // this warp's counts (kept by lane 0)
  for (int64_t row = first_row; row < n; row += row_stride) {
    const float* s = scores + row * classes;
    const int label = labels[row];
    const float label_score = s[label];
    // Rank = other classes scoring at least as high (ties and NaNs go against the label); a NaN label score is
    // never correct. The rule and why: cpu/softmax_xent.cpp.
    int higher = 0;
    for (int j = lane; j < classes; j += kWarp) higher += j != label && !(s[j] < label_score) ? 1 : 0;
    higher = warp_sum(higher);
    const bool scored = label_score == label_score;  // false only for NaN (and compiles as CUDA and as host C++)
    top1 += scored && higher < 1 ? 1 : 0;
    top5 += scored && higher < 5 ? 1 : 0;
  }
  if (lane == 0 && (top1 != 0 || top5 != 0)) {
    atomicAdd(&correct[0], top1);
    atomicAdd(&correct[1], top5);
  }
}

unsigned row_grid(int n) { return grid_for(n, kWarpsPerBlock); }

}  // namespace

void softmax_xent_forward(int n, int classes, const float* logits, const int32_t* labels, float* probs, float* loss,
                          cudaStream_t stream) {
  int device = 0;
  AX_CUDA_CHECK(cudaGetDevice(&device));
  // Per-row losses: scratch from the caching allocator (stream-ordered on this device's current stream, which
  // is `stream`), released after the launches; a later reuse is ordered after these kernels on the same stream.
  auto* row_loss = static_cast<double*>(allocate(device, static_cast<size_t>(n) * sizeof(double)));
  try {
    softmax_xent_rows_kernel<<<row_grid(n), kRowThreads, 0, stream>>>(n, classes, logits, labels, probs, row_loss);
    AX_CUDA_CHECK_LAUNCH("softmax_xent_forward");
    mean_loss_kernel<<<1, kReduceThreads, 0, stream>>>(n, row_loss, loss);
    AX_CUDA_CHECK_LAUNCH("softmax_xent_forward (mean)");
  } catch (...) {
    release(device, row_loss);
    throw;
  }
  release(device, row_loss);
}

void softmax_xent_backward(int n, int classes, const float* probs, const int32_t* labels, float* dlogits,
                           cudaStream_t stream) {
  constexpr int kThreads = 256;
  softmax_xent_backward_kernel<<<grid_for(static_cast<int64_t>(n) * classes, kThreads), kThreads, 0, stream>>>(
      n, classes, probs, labels, dlogits);
  AX_CUDA_CHECK_LAUNCH("softmax_xent_backward");
}

void topk_correct(int n, int classes, const float* scores, const int32_t* labels, int32_t* correct,
                  cudaStream_t stream) {
  AX_CUDA_CHECK(cudaMemsetAsync(correct, 0, 2 * sizeof(int32_t), stream));
  topk_correct_kernel<<<row_grid(n), kRowThreads, 0, stream>>>(n, classes, scores, labels, correct);
  AX_CUDA_CHECK_LAUNCH("topk_correct");
}

}  // namespace alexnet::cuda
