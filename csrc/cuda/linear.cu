// The fully connected layer on the GPU: three products on gemm.cuh with explicit matrices.
//
//   forward          y (n, out) = act(x (n, in) w^T + b)    M = n, N = out, K = in
//                    A[m][k] = x[m][k] (row-major, k contiguous), B[k][n] = w[n][k] (k contiguous),
//                    epilogue adds b[n] and applies the activation (activation.h).
//   backward-input   dx (n, in) = dy (n, out) w (out, in)     M = n, N = in, K = out
//                    A[m][k] = dy[m][k] (k contiguous), B[k][n] = w[k][n] (n contiguous).
//   backward-weight  dw (out, in) = dy^T x                    M = out, N = in, K = n
//                    A[m][k] = dy[k][m] (m contiguous), B[k][n] = x[k][n] (n contiguous).
// The bias gradient is bias_backward (conv2d.cu) with spatial = 1.
//
// AlexNet's shapes (one tower, batch 128): fc6 9216 -> 2048, fc7 4096 -> 2048. Forward and backward-input are
// skinny: M = 128 gives a single row of 128-row tiles, i.e. 16 (fc6 forward) to 72 (fc6 backward-input) blocks
// for 132 SMs, each with a long K (9216 / 2048). The planner (gemm.cuh) therefore splits K: e.g. fc6 forward
// becomes 16 tiles x ~16 K-ranges of 576, whose partial sums go to a scratch buffer from the caching allocator
// and are added in fixed order by a second kernel that also applies bias and activation (deterministic; the
// extra traffic is ~2 x splits x 1 MiB, small next to the 4.8 GFLOP). Backward-weight (M = out, N = in, K = 128)
// has 1152 128x128 tiles and needs no split. All operands are float4-loaded when their rows are 16-byte aligned
// (in, out multiples of 4), which holds for AlexNet.
//
// What would make these faster: for batch 128 the products are close to bandwidth-bound on the weights at
// split-K (w is read once per M tile: 75 MB for fc6 at 3 TB/s = 25 us vs ~100 us of FMAs), so the FMA
// efficiency of the 128x128 tile is what matters; a Hopper-specific path would stream w with TMA into a
// 3-4 stage shared-memory pipeline and use thread-block clusters to multicast the x tile.
#include <cstdint>

#include "cuda/check.cuh"
#include "cuda/gemm.cuh"
#include "cuda/gemm_matrix.cuh"
#include "cuda/kernels.h"

namespace alexnet::cuda {

namespace {
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }
}  // namespace

void linear_forward(int n, int in, int out, const float* x, const float* w, const float* bias, Activation act,
                    float* y, cudaStream_t stream) {
  if (n == 0 || out == 0) return;
  gemm::Problem<gemm::Matrix<true>, gemm::Matrix<true>, gemm::MatrixStore> pr;
  pr.M = n;
  pr.N = out;
  pr.K = in;
  pr.batches = 1;
  pr.a = gemm::Matrix<true>{x, in, 0, n, in, in % 4 == 0 && aligned16(x)};
  pr.b = gemm::Matrix<true>{w, in, 0, out, in, in % 4 == 0 && aligned16(w)};
  pr.ep = gemm::MatrixStore{y, out, 0, bias, act, out % 4 == 0 && aligned16(y)};
  gemm::run(gemm::AllTiles{}, "linear_forward", pr, stream);
}

void linear_backward_input(int n, int in, int out, const float* dy, const float* w, float* dx, cudaStream_t stream) {
  if (n == 0 || in == 0) return;
  gemm::Problem<gemm::Matrix<true>, gemm::Matrix<false>, gemm::MatrixStore> pr;
  pr.M = n;
  pr.N = in;
  pr.K = out;
  pr.batches = 1;
  pr.a = gemm::Matrix<true>{dy, out, 0, n, out, out % 4 == 0 && aligned16(dy)};
  pr.b = gemm::Matrix<false>{w, in, 0, in, out, in % 4 == 0 && aligned16(w)};
  pr.ep = gemm::MatrixStore{dx, in, 0, nullptr, Activation::None, in % 4 == 0 && aligned16(dx)};
  gemm::run(gemm::AllTiles{}, "linear_backward_input", pr, stream);
}

void linear_backward_weight(int n, int in, int out, const float* x, const float* dy, float* dw, cudaStream_t stream) {
  if (in == 0 || out == 0) return;
  gemm::Problem<gemm::Matrix<false>, gemm::Matrix<false>, gemm::MatrixStore> pr;
  pr.M = out;
  pr.N = in;
  pr.K = n;  // n == 0: no k-tiles, the kernel writes zeros
  pr.batches = 1;
  pr.a = gemm::Matrix<false>{dy, out, 0, out, n, out % 4 == 0 && aligned16(dy)};
  pr.b = gemm::Matrix<false>{x, in, 0, in, n, in % 4 == 0 && aligned16(x)};
  pr.ep = gemm::MatrixStore{dw, in, 0, nullptr, Activation::None, in % 4 == 0 && aligned16(dw)};
  gemm::run(gemm::AllTiles{}, "linear_backward_weight", pr, stream);
}

}  // namespace alexnet::cuda
