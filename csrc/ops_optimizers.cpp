// The op boundary of the optimizers (sgd.cpp / sgd.cu, adam.cpp / adam.cu): checks every argument once and
// dispatches to the in-place update kernels. The layers' boundary is ops.cpp.
#include <utility>

#include "adam.h"
#include "cpu/kernels.h"
#include "ops.h"
#include "ops_checks.h"
#ifdef ALEXNET_WITH_CUDA
#include "cuda/kernels.h"
#endif

namespace alexnet::ops {

using namespace detail;

namespace {

// The state tensors and the gradient must match the weight in shape, dtype and device.
void check_like_weight(const char* op, const Tensor& w, NamedTensors others) {
  check_tensor(op, "weight", w, -1);
  check_all_shaped(op, w, w.shape(), others);
}

}  // namespace

// ---- sgd -----------------------------------------------------------------------------------------------------
void sgd_update(Tensor& w, Tensor& v, const Tensor& dw, float lr, float momentum, float weight_decay) {
  const char* op = "sgd_update";
  check_like_weight(op, w, {{"momentum_buffer", &v}, {"grad", &dw}});
  check_finite(op, "lr", lr);
  check_finite(op, "weight_decay", weight_decay);
  AX_CHECK(lr >= 0.0f, op, ": lr must be >= 0, got ", lr);
  AX_CHECK(momentum >= 0.0f && momentum < 1.0f, op, ": momentum must be in [0, 1), got ", momentum);
  AX_CHECK(weight_decay >= 0.0f, op, ": weight_decay must be >= 0, got ", weight_decay);
  AX_DISPATCH(w.device(), cpu::sgd_update(w.numel(), lr, momentum, weight_decay, w.data(), v.data(), dw.data()),
              cuda::sgd_update(w.numel(), lr, momentum, weight_decay, w.data(), v.data(), dw.data(), stream));
}

// ---- adam ----------------------------------------------------------------------------------------------------
void adam_update(Tensor& w, Tensor& m, Tensor& v, const Tensor& dw, float lr, float beta1, float beta2, float eps,
                 float weight_decay, bool decoupled, int64_t step) {
  const char* op = "adam_update";
  check_like_weight(op, w, {{"m", &m}, {"v", &v}, {"grad", &dw}});
  for (auto [name, value] : {std::pair<const char*, float>{"lr", lr}, {"beta1", beta1}, {"beta2", beta2},
                             {"eps", eps}, {"weight_decay", weight_decay}}) {
    check_finite(op, name, value);
  }
  AX_CHECK(lr >= 0.0f, op, ": lr must be >= 0, got ", lr);
  // beta = 1 would never forget and make the bias correction 1 - beta^t zero (Kingma & Ba: beta in [0, 1)).
  AX_CHECK(beta1 >= 0.0f && beta1 < 1.0f, op, ": beta1 must be in [0, 1), got ", beta1);
  AX_CHECK(beta2 >= 0.0f && beta2 < 1.0f, op, ": beta2 must be in [0, 1), got ", beta2);
  AX_CHECK(eps > 0.0f, op, ": eps must be > 0 (it keeps the denominator positive), got ", eps);
  AX_CHECK(weight_decay >= 0.0f, op, ": weight_decay must be >= 0, got ", weight_decay);
  AX_CHECK(step >= 1, op, ": step must be >= 1 (it counts the updates from 1, for the bias correction), got ", step);
  const adam::StepCoefficients k = adam::step_coefficients(lr, beta1, beta2, eps, weight_decay, decoupled, step);
  AX_DISPATCH(w.device(), cpu::adam_update(w.numel(), k, w.data(), m.data(), v.data(), dw.data()),
              cuda::adam_update(w.numel(), k, w.data(), m.data(), v.data(), dw.data(), stream));
}

}  // namespace alexnet::ops
