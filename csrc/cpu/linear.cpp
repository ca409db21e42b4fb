// Fully connected layers (paper Section 3.5: fc6 and fc7 with 4096 units, fc8 with 1000) as one matrix product
// each, on the blocked GEMM (gemm.h), threaded over tiles of the output. x (n, in), w (out, in), y (n, out).
#include "cpu/gemm.h"
#include "cpu/kernels.h"

namespace alexnet::cpu {

// y = act(x w^T + bias): the bias is a per-column bias of y, added with the activation in the GEMM's final store.
void linear_forward(int n, int in, int out, const float* x, const float* w, const float* bias, Activation act, float* y) {
  GemmEpilogue ep;
  ep.col_bias = bias;
  ep.act = act;
  gemm(Trans::No, Trans::Yes, n, out, in, x, in, w, in, y, out, false, ep);
}

// dx (n, in) = dy (n, out) w (out, in)
void linear_backward_input(int n, int in, int out, const float* dy, const float* w, float* dx) {
  gemm(Trans::No, Trans::No, n, in, out, dy, out, w, in, dx, in, false);
}

// dw (out, in) = dy^T (out, n) x (n, in). Each element of dw is summed by one thread in a fixed order.
void linear_backward_weight(int n, int in, int out, const float* x, const float* dy, float* dw) {
  gemm(Trans::Yes, Trans::No, out, in, n, dy, out, x, in, dw, in, false);
}

}  // namespace alexnet::cpu
