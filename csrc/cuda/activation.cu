// activation: the element-wise non-linearity (ReLU, paper Section 3.1; tanh as the saturating baseline), with the
// maths shared with the CPU and the fused epilogues through csrc/activation.h.
//
// Purely memory-bound: each element is read once and written once. When every pointer is 16-byte aligned (always
// the case for tensors from the caching allocator) the kernels move float4s, so a warp issues 512-byte
// transactions; the last count % 4 elements, or everything when a pointer is misaligned, go through the scalar
// path. A grid-stride loop covers any count with a capped grid.
#include "activation.h"
#include "cuda/check.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {

namespace {

constexpr int kThreads = 256;

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

template <Activation A>
__device__ __forceinline__ float4 activate4(float4 v) {
  return make_float4(activate(A, v.x), activate(A, v.y), activate(A, v.z), activate(A, v.w));
}

// Elements [0, vec_count*4) as float4 (only when vec_count > 0, i.e. the pointers are aligned), then the scalar
// elements [vec_count*4, count).
template <Activation A>
__global__ void activation_forward_kernel(int64_t count, int64_t vec_count, const float* __restrict__ x,
                                          float* __restrict__ y) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const float4* x4 = reinterpret_cast<const float4*>(x);
  float4* y4 = reinterpret_cast<float4*>(y);
  for (int64_t i = tid; i < vec_count; i += stride) y4[i] = activate4<A>(__ldg(x4 + i));
  for (int64_t i = vec_count * 4 + tid; i < count; i += stride) y[i] = activate(A, __ldg(x + i));
}

template <Activation A>
__device__ __forceinline__ float4 grad4(float4 y, float4 dy) {
  return make_float4(dy.x * activation_grad_from_output(A, y.x), dy.y * activation_grad_from_output(A, y.y),
                     dy.z * activation_grad_from_output(A, y.z), dy.w * activation_grad_from_output(A, y.w));
}

template <Activation A>
__global__ void activation_backward_kernel(int64_t count, int64_t vec_count, const float* __restrict__ y,
                                           const float* __restrict__ dy, float* __restrict__ dx) {
  const int64_t stride = (int64_t)gridDim.x * blockDim.x;
  const int64_t tid = blockIdx.x * (int64_t)blockDim.x + threadIdx.x;
  const float4* y4 = reinterpret_cast<const float4*>(y);
  const float4* dy4 = reinterpret_cast<const float4*>(dy);
  float4* dx4 = reinterpret_cast<float4*>(dx);
  for (int64_t i = tid; i < vec_count; i += stride) dx4[i] = grad4<A>(__ldg(y4 + i), __ldg(dy4 + i));
  for (int64_t i = vec_count * 4 + tid; i < count; i += stride)
    dx[i] = __ldg(dy + i) * activation_grad_from_output(A, __ldg(y + i));
}

template <Activation A>
void launch_forward(int64_t count, const float* x, float* y, cudaStream_t stream) {
  const int64_t vec_count = (aligned16(x) && aligned16(y)) ? count / 4 : 0;
  const int64_t items = vec_count + (count - vec_count * 4);  // a thread's worth of work per float4 or scalar
  activation_forward_kernel<A><<<grid_for(items, kThreads), kThreads, 0, stream>>>(count, vec_count, x, y);
  AX_CUDA_CHECK_LAUNCH("activation_forward");
}

template <Activation A>
void launch_backward(int64_t count, const float* y, const float* dy, float* dx, cudaStream_t stream) {
  const int64_t vec_count = (aligned16(y) && aligned16(dy) && aligned16(dx)) ? count / 4 : 0;
  const int64_t items = vec_count + (count - vec_count * 4);
  activation_backward_kernel<A><<<grid_for(items, kThreads), kThreads, 0, stream>>>(count, vec_count, y, dy, dx);
  AX_CUDA_CHECK_LAUNCH("activation_backward");
}

}  // namespace

void activation_forward(Activation act, int64_t count, const float* x, float* y, cudaStream_t stream) {
  if (count == 0) return;
  switch (act) {
    case Activation::ReLU: return launch_forward<Activation::ReLU>(count, x, y, stream);
    case Activation::Tanh: return launch_forward<Activation::Tanh>(count, x, y, stream);
    case Activation::None: return launch_forward<Activation::None>(count, x, y, stream);
  }
}

void activation_backward(Activation act, int64_t count, const float* y, const float* dy, float* dx,
                         cudaStream_t stream) {
  if (count == 0) return;
  switch (act) {
    case Activation::ReLU: return launch_backward<Activation::ReLU>(count, y, dy, dx, stream);
    case Activation::Tanh: return launch_backward<Activation::Tanh>(count, y, dy, dx, stream);
    case Activation::None: return launch_backward<Activation::None>(count, y, dy, dx, stream);
  }
}

}  // namespace alexnet::cuda
